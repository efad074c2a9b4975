"""The demo's outputs: the strategy x task table, results.json, report.md and the bar chart."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import augplug

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


_COLOURS = [
    (66, 133, 244),
    (219, 68, 55),
    (244, 180, 0),
    (15, 157, 88),
    (171, 71, 188),
    (0, 172, 193),
    (255, 112, 67),
]


@dataclass(frozen=True)
class Panel:
    """One panel of :func:`bar_chart`: a title, one value per strategy, an optional dashed line."""

    title: str
    values: Mapping[str, float]
    line: float | None = None


def bar_chart(path: Path, panels: Sequence[Panel], line_label: str = "chance") -> tuple[int, int]:
    """Panels side by side, one bar per strategy (same colour in every panel), values on [0, 1].

    A value outside [0, 1] is drawn at the nearest end with its number printed. Returns the
    image size (width, height). Drawn with pillow (the ``demo`` extra).
    """
    from PIL import Image, ImageDraw

    names = list(dict.fromkeys(name for panel in panels for name in panel.values))
    colour = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(names)}
    panel_w, panel_h, margin = 60 + 36 * max(1, len(names)), 240, 40
    legend_h = 22 * ((len(names) + 2) // 3) + 10
    width = margin + len(panels) * (panel_w + margin)
    height = panel_h + 2 * margin + legend_h
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    plot_top, plot_bottom = margin + 20, margin + panel_h - 20

    def y_of(value: float) -> float:
        return plot_bottom - max(0.0, min(1.0, value)) * (plot_bottom - plot_top)

    for p, panel in enumerate(panels):
        left = margin + p * (panel_w + margin)
        draw.text((left, margin - 25), panel.title, fill="black")
        draw.line([(left, plot_bottom), (left + panel_w, plot_bottom)], fill="black")
        draw.line([(left, plot_top), (left, plot_bottom)], fill="black")
        for tick in (0.0, 0.5, 1.0):
            draw.line([(left - 4, y_of(tick)), (left, y_of(tick))], fill="black")
            draw.text((left - 28, y_of(tick) - 6), f"{tick:.1f}", fill="black")
        for i, name in enumerate(names):
            value = panel.values.get(name)
            if value is None:
                continue
            x0 = left + 20 + 36 * i
            draw.rectangle([x0, y_of(value), x0 + 26, plot_bottom], fill=colour[name])
            draw.text((x0, y_of(value) - 14), f"{value:.2f}", fill="black")
        if panel.line is not None:
            for x in range(left, left + panel_w, 8):
                draw.line([(x, y_of(panel.line)), (x + 4, y_of(panel.line))], fill=(90, 90, 90))
    for i, name in enumerate(names):
        x = margin + (i % 3) * 200
        y = margin + panel_h + 10 + 22 * (i // 3)
        draw.rectangle([x, y, x + 14, y + 14], fill=colour[name])
        draw.text((x + 20, y + 1), name, fill="black")
    draw.text(
        (margin + 3 * 200 if len(names) < 3 else margin, height - 14),
        f"dashed: {line_label}",
        fill=(90, 90, 90),
    )
    image.save(path)
    return width, height
