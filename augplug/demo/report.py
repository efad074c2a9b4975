"""The demo's outputs: the strategy x task table, results.json, report.md and the bar chart."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

import augplug
from augplug.pictures import ChartPanel, save_bar_chart

__all__ = ["Panel", "bar_chart", "mechanism_table", "score", "table", "versions", "write_json"]

_PACKAGES = ("numpy", "kornia", "torchaudio", "scikit-learn", "scikit-image", "pluggy")


def versions() -> dict[str, str]:
    """Python, augplug and the installed versions of the packages the demo touches."""
    # torch's own string keeps the build tag (e.g. +cu130), which metadata drops.
    found = {
        "python": platform.python_version(),
        "augplug": augplug.__version__,
        "torch": torch.__version__,
    }
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def score(task: augplug.Task, metrics: Mapping[str, Any]) -> float:
    """The one number per task that the chart shows: accuracy, or R^2 for regression."""
    return metrics["accuracy"] if task.kind == "classification" else metrics["r2"]


def _cell(task: augplug.Task, metrics: Mapping[str, Any] | None) -> str:
    if metrics is None:
        return "-"
    if task.kind == "classification":
        return f"{100 * metrics['accuracy']:.1f}%"
    return f"{metrics['mse']:.4g} (R2 {metrics['r2']:.2f})"


def table(
    tasks: Sequence[augplug.Task], runs: Mapping[str, Mapping[str, Any]], chance: Mapping[str, str]
) -> str:
    """A Markdown table: one row per strategy, one column per task (test metrics)."""
    header = [
        "strategy",
        *(f"{t.name} ({'accuracy' if t.kind == 'classification' else 'MSE'})" for t in tasks),
    ]
    rows = [header, ["---"] * len(header), ["chance", *(chance[t.name] for t in tasks)]]
    for name, run in runs.items():
        if run["status"] != "ok":
            rows.append([name, *(["skipped"] * len(tasks))])
            continue
        rows.append([name, *(_cell(t, run["metrics"].get(t.name)) for t in tasks)])
    return _markdown(rows)


def _markdown(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        if row[0] == "---":
            row = ["-" * w for w in widths]
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    return "\n".join(lines)


def mechanism_table(tasks: Sequence[augplug.Task], runs: Mapping[str, Mapping[str, Any]]) -> str:
    """Label destruction per task (own and untrained encoder) and the overlay share, per strategy.

    Drops are in points of accuracy (R^2 x 100 for regression); ``-`` where not measured.
    """
    header = ["strategy"]
    for encoder in ("own", "untrained"):
        header += [f"{t.name} drop ({encoder} encoder)" for t in tasks]
    header += ["|delta| on overlay", "overlay pixels"]
    rows = [header, ["---"] * len(header)]
    for name, run in runs.items():
        destroyed = run.get("label_destruction")
        if run.get("status") != "ok" or destroyed is None:
            continue
        row = [name]
        for encoder in ("own encoder", "untrained encoder"):
            row += [f"{100 * destroyed[encoder][t.name]['drop']:+.1f}" for t in tasks]
        share = run.get("overlay")
        row += (
            [f"{100 * share['delta_share']:.1f}%", f"{100 * share['pixel_share']:.1f}%"]
            if share
            else ["-", "-"]
        )
        rows.append(row)
    return _markdown(rows)


def write_json(path: Path, content: Mapping[str, Any]) -> None:
    """Sorted keys and a trailing newline, so equal results give byte-identical files."""
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


#: One panel of :func:`bar_chart`: title, values, ``line`` (dashed, e.g. chance) and its
#: ``line_name``, ``percent`` (default; ``False`` for R^2). See augplug.pictures.
Panel = ChartPanel


def bar_chart(path: Path, panels: Sequence[Panel], line_label: str = "chance") -> tuple[int, int]:
    """Panels side by side, one bar per strategy (same colour in every panel), the values
    written on the bars, each panel's dashed line (stated in its title), a legend.

    Drawn by :func:`augplug.pictures.save_bar_chart`, with no image library. Returns the
    image size (width, height).
    """
    return save_bar_chart(path, panels, line_label=line_label)
