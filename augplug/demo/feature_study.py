"""``augplug demo --study feature-augmentation``: placements x augmenters, BYOL and SimCLR, on a CPU.

Zhang et al. (arXiv 2410.12396) compare feature augmentation (FA) placed relative to the
predictor - ``basic`` (no predictor), ``parallel`` (predictor and FA on different views),
``pre_predictor`` and ``post_predictor`` - with nearest-neighbour and mask augmenters, in
SimCLR-style and BYOL-style training. Their findings: the parallel placement is best, and
the stop-gradient on the features FA consumes is needed. This study runs the same grid at
a size a CPU finishes in minutes and reports what it finds, whichever way:

* data: ``digits-on-photos`` (tasks ``photo`` and ``digit``), ``train_size`` 1000 / ``test_size``
  500 images; views: the ``simclr`` recipe on both branches;
* networks: the demo's 4-stage conv encoder (64-d), SimCLR's 2-layer projector (64-d) and,
  for every placement but ``basic``, a 2-layer predictor (64 -> 64 -> 64), Adam lr 1e-3;
* objectives: ``infonce`` (temperature 0.2) and ``byol`` with a momentum target
  (EMA of encoder and projector, momentum 0.99 raised to 1 by BYOL's cosine schedule over
  the run: the paper's 0.996 barely moves a target in a run this short);
* FA: none, ``nearest_neighbour`` (support queue of 1024, one view enqueued per step),
  ``mask`` (ratio 0.25), ``noise`` (std 0.1 relative), one sample, ``keep_original``;
  ``none`` is run with and without a predictor; ``parallel`` x ``mask`` is also run without
  the stop-gradient (the study's ablation);
* ``steps`` 100 of batch 64 per run, one seed; every run starts from the same weights;
* score: linear-probe test accuracy per task on the frozen encoder (``augplug.evaluate``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import augplug
from augplug import rng
from augplug.demo.strategies import DATASETS, TEMPERATURE, Encoder, projector
from augplug.demo.training import evaluate, load_data

__all__ = ["AUGMENTERS", "PLACEMENTS", "FeatureStudySettings", "run_grid", "run_study"]

PLACEMENTS = ("basic", "parallel", "pre_predictor", "post_predictor")
AUGMENTERS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "nearest_neighbour": {"name": "nearest_neighbour", "dim": 64, "size": 1024},
    "mask": {"name": "mask", "ratio": 0.25},
    "noise": {"name": "noise", "std": 0.1},
}
OBJECTIVES = ("simclr", "byol")


@dataclass(frozen=True)
class FeatureStudySettings:
    """The study's sizes (module docstring); the defaults take minutes on two CPU cores."""

    train_size: int = 1000
    test_size: int = 500
    steps: int = 100
    batch_size: int = 64
    momentum: float = 0.99
    lr: float = 1e-3


@dataclass(frozen=True)
class Run:
    """One cell of the grid."""

    objective: str
    augmenter: str
    placement: str | None  # None: no FA
    predictor: bool
    stop_gradient: bool = True

    @property
    def label(self) -> str:
        where = self.placement or ("predictor" if self.predictor else "no predictor")
        sg = "" if self.stop_gradient else ", no stop-gradient"
        return f"{self.objective} | {self.augmenter} | {where}{sg}"


def grid() -> list[Run]:
    """Every run of the study, in table order."""
    runs = []
    for objective in OBJECTIVES:
        runs += [Run(objective, "none", None, False), Run(objective, "none", None, True)]
        for augmenter in ("nearest_neighbour", "mask", "noise"):
            for placement in PLACEMENTS:
                runs.append(Run(objective, augmenter, placement, placement != "basic"))
        runs.append(Run(objective, "mask", "parallel", True, stop_gradient=False))
    return runs


def recipe(run: Run, settings: FeatureStudySettings) -> dict[str, Any]:
    """The :func:`augplug.build` recipe of one run."""
    spec: dict[str, Any] = {"views": {"name": "simclr", "size": 32}}
    if run.objective == "byol":
        spec["objective"] = {"name": "byol"}
        spec["target"] = {
            "momentum": settings.momentum, "schedule": "cosine", "total_steps": settings.steps,
        }  # fmt: skip
    else:
        spec["objective"] = {"name": "infonce", "temperature": TEMPERATURE}
    if run.placement is not None:
        spec["features"] = {
            **AUGMENTERS[run.augmenter],
            "placement": run.placement,
            "stop_gradient": run.stop_gradient,
        }
    return spec


def _predictor(dim: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))


def train_run(run: Run, data, settings: FeatureStudySettings, seed: int, device) -> dict[str, Any]:
    """Train one run's encoder and probe it: ``{task: metrics}``, seconds, final loss."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # the same initial weights for every run
        encoder = Encoder(data.channels).to(device)
        head = projector(encoder.dim).to(device)
        predictor = _predictor().to(device) if run.predictor else None
        pipeline = augplug.build(recipe(run, settings)).to(device)
    networks = [encoder, head] + ([predictor] if predictor is not None else [])
    parameters = [p for net in networks for p in net.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    generator = torch.Generator(device=device).manual_seed(seed)
    started = time.perf_counter()
    loss = torch.zeros(())
    for net in (*networks, pipeline):
        net.train()
    for _ in range(settings.steps):
        rows = rng.randint(
            (settings.batch_size,),
            0,
            data.train_inputs.shape[0],
            device=device,
            generator=generator,
        )
        out = pipeline(data.train_inputs[rows], encoder, head, predictor, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if run.objective == "byol":
            pipeline.update_target()  # after the optimiser step, as the recipe documents
        loss = out.loss.detach()
    seconds = time.perf_counter() - started
    metrics = evaluate(encoder.eval(), data)
    return {"metrics": metrics, "seconds": seconds, "final_loss": loss.item()}


def run_grid(
    settings: FeatureStudySettings = FeatureStudySettings(),
    seed: int = 0,
    device: str | torch.device = "cpu",
    runs: list[Run] | None = None,
) -> list[dict[str, Any]]:
    """Train and probe every run; one result row per run."""
    device = torch.device(device)
    data = load_data(
        DATASETS["digits-on-photos"], settings.train_size, settings.test_size, seed, device
    )
    rows = []
    for run in runs if runs is not None else grid():
        result = train_run(run, data, settings, seed, device)
        row = {**vars(run), "label": run.label, **result}
        rows.append(row)
        accuracy = ", ".join(
            f"{task} {100 * m['accuracy']:.1f}%" for task, m in result["metrics"].items()
        )
        print(f"{run.label:>58}: {accuracy} ({result['seconds']:.0f} s)", file=sys.stderr)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per (augmenter, placement), SimCLR and BYOL accuracies side by side."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        where = row["label"].split(" | ", 2)[2]
        key = (row["augmenter"], where)
        m = row["metrics"]
        cells.setdefault(key, {})[row["objective"]] = (
            f"{100 * m['photo']['accuracy']:.1f}% / {100 * m['digit']['accuracy']:.1f}%"
        )
    lines = [
        "| FA | placement | SimCLR photo / digit | BYOL (momentum target) photo / digit |",
        "| --- | --- | --- | --- |",
    ]
    for (augmenter, where), by in cells.items():
        lines.append(f"| {augmenter} | {where} | {by.get('simclr', '-')} | {by.get('byol', '-')} |")
    return "\n".join(lines)


def run_study(out: Path, seed: int = 0, device: str | torch.device = "cpu") -> int:
    """Run the grid, print the table, write ``results.json`` and ``report.md`` to ``out``."""
    from augplug.demo.report import versions, write_json

    settings = FeatureStudySettings()
    started = time.perf_counter()
    rows = run_grid(settings, seed, device)
    result_table = table(rows)
    print("\n" + result_table + "\n")
    write_json(
        out / "results.json",
        {
            "study": "feature-augmentation",
            "config": vars(settings),
            "seed": seed,
            "versions": versions(),
            "runs": [{k: v for k, v in r.items() if k != "seconds"} for r in rows],
        },
    )
    doc = (__doc__ or "").split("\n\n", 1)[1]
    seconds = time.perf_counter() - started
    (out / "report.md").write_text(
        f"# Feature augmentation: placements x augmenters\n\n{doc}\n"
        f"## Result (seed {seed}, {seconds:.0f} s)\n\nLinear-probe test accuracy "
        f"(chance: photo ~10%, digit ~10%).\n\n{result_table}\n"
    )
    print(f"augplug demo: wrote {out}/report.md and results.json", file=sys.stderr)
    return 0
