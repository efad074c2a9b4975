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

__all__ = ["bar_chart", "score", "table", "versions", "write_json"]

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
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        if row[0] == "---":
            row = ["-" * w for w in widths]
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    return "\n".join(lines)


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


def bar_chart(
    path: Path,
    tasks: Sequence[augplug.Task],
    scores: Mapping[str, Mapping[str, float]],
    chance: Mapping[str, float],
) -> tuple[int, int]:
    """One panel per task, one bar per strategy (accuracy or R^2), a dashed chance line; PNG.

    Returns the image size (width, height). Drawn with pillow (the ``demo`` extra).
    """
    from PIL import Image, ImageDraw

    names = list(scores)
    panel_w, panel_h, margin, legend_h = (
        60 + 36 * max(1, len(names)),
        240,
        40,
        22 * ((len(names) + 2) // 3) + 10,
    )
    width = margin + len(tasks) * (panel_w + margin)
    height = panel_h + 2 * margin + legend_h
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    plot_top, plot_bottom = margin + 20, margin + panel_h - 20
    for t, task in enumerate(tasks):
        left = margin + t * (panel_w + margin)
        metric = "accuracy" if task.kind == "classification" else "R^2"
        draw.text((left, margin - 25), f"{task.name} ({metric})", fill="black")
        draw.line([(left, plot_bottom), (left + panel_w, plot_bottom)], fill="black")
        draw.line([(left, plot_top), (left, plot_bottom)], fill="black")
        for tick in (0.0, 0.5, 1.0):
            y = plot_bottom - tick * (plot_bottom - plot_top)
            draw.line([(left - 4, y), (left, y)], fill="black")
            draw.text((left - 28, y - 6), f"{tick:.1f}", fill="black")
        for i, name in enumerate(names):
            value = scores[name].get(task.name)
            if value is None:
                continue
            x0 = left + 20 + 36 * i
            y0 = plot_bottom - max(0.0, min(1.0, value)) * (plot_bottom - plot_top)
            draw.rectangle([x0, y0, x0 + 26, plot_bottom], fill=_COLOURS[i % len(_COLOURS)])
            draw.text((x0, y0 - 14), f"{value:.2f}", fill="black")
        y = plot_bottom - max(0.0, min(1.0, chance[task.name])) * (plot_bottom - plot_top)
        for x in range(left, left + panel_w, 8):
            draw.line([(x, y), (x + 4, y)], fill=(90, 90, 90))
    for i, name in enumerate(names):
        x = margin + (i % 3) * 200
        y = margin + panel_h + 10 + 22 * (i // 3)
        draw.rectangle([x, y, x + 14, y + 14], fill=_COLOURS[i % len(_COLOURS)])
        draw.text((x + 20, y + 1), name, fill="black")
    draw.text(
        (margin + 3 * 200 if len(names) < 3 else margin, height - 14),
        "dashed: chance",
        fill=(90, 90, 90),
    )
    image.save(path)
    return width, height
