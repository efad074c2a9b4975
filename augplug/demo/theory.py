"""``augplug demo --study feature-dropout-theory``: the Feature Dropout paper's linear-model setting.

Tamkin, Glasgow, He & Goodman (NeurIPS 2023) argue that in one representation serving
several tasks, label-preserving views let a strong, easy feature group suppress a weak
one, and that views which randomly drop a group ("feature dropout") make both be
learned. This simulation (seconds on a CPU) checks that claim:

* an input is ``[strong group | weak group]``, ``group_dim = 8`` dimensions each; group g
  holds ``scale_g * (2 * label_g * e_1 + instance noise)`` with a binary label per group
  (task ``strong`` and task ``weak``, independent) and standard normal instance noise;
  ``strong_scale = 1``, ``weak_scale = 0.25``;
* the encoder is linear, ``group_dim`` outputs (room for one group's worth of
  directions), initialised small, trained with InfoNCE (temperature 0.2, Adam) on two views
  per input;
* ``label-preserving`` views add isotropic Gaussian noise (std ``view_noise = 0.3``);
  ``feature-dropout`` views do the same and then, with probability 0.5 per view, zero one
  group chosen uniformly at random;
* a linear probe on the frozen encoder's outputs reports test accuracy on both tasks.

Then a sweep over the representation's width (``width`` outputs: narrower than, equal to
and wider than the 16 input features) and the weak group's strength (``weak_scale`` 1,
0.5, 0.25 against the strong group's 1) reports, in every cell, the weak task's accuracy
with and without feature dropout next to a linear probe on the raw inputs (the most any
encoder can give). A cell shows **suppression** when the weak task's accuracy is closer
to chance (50%) than to that ceiling.

Assumptions of this setting, beside the paper's (as recorded in this project's notes on
Tamkin et al. 2023; the paper's full theorem is not reproduced here): both use two
feature groups, one per task, one stronger, a linear encoder and a contrastive objective,
and views that preserve both labels versus views that drop a group at random. Choices of
this simulation that the notes do not give for the paper: Gaussian groups with the label
along one axis, isotropic noise views (std 0.3), InfoNCE at temperature 0.2 with Adam,
400 steps, dropout of one group in half of the views. The sweep shows that here the
suppression depends on the width: measure, do not assume, where it appears.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import augplug
from augplug import rng
from augplug.evaluate import probe_tasks
from augplug.progress import Progress

__all__ = [
    "SWEEP_RATIOS",
    "SWEEP_WIDTHS",
    "TheorySettings",
    "ceiling",
    "run_study",
    "simulate",
    "sweep",
]

VIEWS = ("label-preserving", "feature-dropout")
TASKS = (augplug.Task("strong", "classification", 2), augplug.Task("weak", "classification", 2))


@dataclass(frozen=True)
class TheorySettings:
    """The simulation's sizes and scales (module docstring); defaults run in seconds."""

    group_dim: int = 8
    #: Encoder outputs; ``None``: ``group_dim`` (room for one group's directions).
    width: int | None = None
    strong_scale: float = 1.0
    weak_scale: float = 0.25
    view_noise: float = 0.3
    dropout_p: float = 0.5
    train_size: int = 2000
    test_size: int = 2000
    steps: int = 400
    batch_size: int = 256
    temperature: float = 0.2
    lr: float = 0.01


def _data(
    settings: TheorySettings, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    d = settings.group_dim
    labels = rng.randint((size, 2), 0, 2, device="cpu", generator=generator)
    signs = (2 * labels - 1).float()
    groups = []
    for g, scale in enumerate((settings.strong_scale, settings.weak_scale)):
        content = rng.normal((size, d), device="cpu", generator=generator)
        content[:, 0] += 2.0 * signs[:, g]  # the label lives along the group's first axis
        groups.append(scale * content)
    return torch.cat(groups, 1), {"strong": labels[:, 0], "weak": labels[:, 1]}


def _view(
    x: torch.Tensor, settings: TheorySettings, dropout: bool, generator: torch.Generator
) -> torch.Tensor:
    view = x + settings.view_noise * rng.normal(x.shape, device="cpu", generator=generator)
    if not dropout:
        return view
    d = settings.group_dim
    drop = rng.bernoulli((x.shape[0], 1), settings.dropout_p, device="cpu", generator=generator)
    which = rng.randint((x.shape[0], 1), 0, 2, device="cpu", generator=generator)
    group = torch.arange(2 * d) // d  # 0 for the strong dimensions, 1 for the weak ones
    return torch.where(drop & (group == which), torch.zeros_like(view), view)


def _infonce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    # A plain NT-Xent so the study runs without the objectives plugin.
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, positives)


def simulate(
    settings: TheorySettings = TheorySettings(), seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Train one linear encoder per view kind; ``{views: {task: probe metrics}}`` on test data."""
    generator = torch.Generator().manual_seed(seed)
    train_x, train_y = _data(settings, settings.train_size, generator)
    test_x, test_y = _data(settings, settings.test_size, generator)
    results: dict[str, dict[str, Any]] = {}
    for kind in VIEWS:
        # The same initial weights and draws for both kinds: only the views differ.
        stream = torch.Generator().manual_seed(seed + 1)
        width = settings.group_dim if settings.width is None else settings.width
        weights = 0.01 * rng.normal((2 * settings.group_dim, width), device="cpu", generator=stream)
        weights.requires_grad_(True)
        optimizer = torch.optim.Adam([weights], lr=settings.lr)
        for _ in range(settings.steps):
            rows = rng.randint(
                (settings.batch_size,), 0, settings.train_size, device="cpu", generator=stream
            )
            x = train_x[rows]
            dropout = kind == "feature-dropout"
            v1, v2 = _view(x, settings, dropout, stream), _view(x, settings, dropout, stream)
            loss = _infonce(v1 @ weights, v2 @ weights, settings.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            results[kind] = probe_tasks(train_x @ weights, train_y, test_x @ weights, test_y, TASKS)
    return results


#: The sweep: widths narrower than, equal to and wider than the 16 input features, and
#: the weak group's scale against the strong group's 1.
SWEEP_WIDTHS = (8, 16, 32)
SWEEP_RATIOS = (1.0, 0.5, 0.25)


def ceiling(settings: TheorySettings, seed: int = 0) -> float:
    """The weak task's test accuracy of a linear probe on the raw inputs (no encoder)."""
    generator = torch.Generator().manual_seed(seed)
    train_x, train_y = _data(settings, settings.train_size, generator)
    test_x, test_y = _data(settings, settings.test_size, generator)
    return probe_tasks(train_x, train_y, test_x, test_y, TASKS)["weak"]["accuracy"]


def sweep(
    base: TheorySettings = TheorySettings(),
    widths: tuple[int, ...] = SWEEP_WIDTHS,
    ratios: tuple[float, ...] = SWEEP_RATIOS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (width, weak_scale): both tasks' accuracy per view kind, the ceiling, suppression."""
    rows = []
    # A line at least every 10 s of work when stderr is a log, a live bar on a terminal.
    progress = Progress("feature-dropout sweep", len(ratios) * len(widths), label_width=0)
    for ratio in ratios:
        settings = replace(base, weak_scale=ratio)
        top = ceiling(settings, seed)
        for width in widths:
            metrics = simulate(replace(settings, width=width), seed)
            row: dict[str, Any] = {"width": width, "weak_scale": ratio, "ceiling": top}
            for kind in VIEWS:
                weak = metrics[kind]["weak"]["accuracy"]
                row[kind] = {
                    "strong": metrics[kind]["strong"]["accuracy"],
                    "weak": weak,
                    "suppressed": weak - 0.5 < 0.5 * (top - 0.5),
                }
            rows.append(row)
            if progress.due(len(rows)):
                progress.update(len(rows))
    return rows


def _sweep_table(rows: list[dict[str, Any]], inputs: int) -> str:
    lines = [
        "| width (inputs "
        + str(inputs)
        + ") | weak scale | raw-input ceiling | weak task, label-preserving "
        "| weak task, feature dropout | strong task (preserving / dropout) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        keep, drop = r["label-preserving"], r["feature-dropout"]

        def cell(m):
            return f"{100 * m['weak']:.1f}%" + (" **suppressed**" if m["suppressed"] else "")

        lines.append(
            f"| {r['width']} | {r['weak_scale']} | {100 * r['ceiling']:.1f}% | {cell(keep)} | {cell(drop)} "
            f"| {100 * keep['strong']:.1f}% / {100 * drop['strong']:.1f}% |"
        )
    return "\n".join(lines)


def run_study(
    out: Path,
    seed: int = 0,
    settings: TheorySettings = TheorySettings(),
    widths: tuple[int, ...] = SWEEP_WIDTHS,
    ratios: tuple[float, ...] = SWEEP_RATIOS,
) -> int:
    """Run :func:`simulate`, print the table and write ``results.json`` and ``report.md`` to ``out``."""
    from augplug.demo.report import versions, write_json

    results = simulate(settings, seed)
    rows = ["| views | strong task accuracy | weak task accuracy |", "| --- | --- | --- |"]
    for kind, metrics in results.items():
        rows.append(
            f"| {kind} | {100 * metrics['strong']['accuracy']:.1f}% | {100 * metrics['weak']['accuracy']:.1f}% |"
        )
    table = "\n".join(rows)
    print("\n" + table + "\n(chance: 50%)\n")
    swept = sweep(settings, widths, ratios, seed)
    sweep_table = _sweep_table(swept, 2 * settings.group_dim)
    print(sweep_table + "\n")
    write_json(
        out / "results.json",
        {
            "study": "feature-dropout-theory",
            "config": vars(settings),
            "seed": seed,
            "versions": versions(),
            "metrics": results,
            "sweep": swept,
        },
    )
    doc = (__doc__ or "").split("\n\n", 1)[1]
    (out / "report.md").write_text(
        f"# Feature dropout: the linear-model study\n\n{doc}\n## Result (seed {seed})\n\n"
        f"Default setting (width {settings.group_dim}):\n\n{table}\n\n## Sweep\n\n{sweep_table}\n"
    )
    print(f"augplug demo: wrote {out}/report.md and results.json", file=sys.stderr)
    return 0
