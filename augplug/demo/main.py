"""``augplug demo``: train small encoders with several view strategies, probe every task, report.

Defaults (about 4-5 minutes on one thread of a 2-core machine; docs/demo.md): ``digits-on-photos``, 2000 training and
1000 test images, 100 steps of batch 128 per strategy, strategies ``untrained`` (baseline),
``simclr``, ``viewmaker`` and ``combined``. Outputs under ``--out``: ``report.md``,
``results.json`` (config, versions, seed, metrics: identical for the same seed, device
type and thread count), ``views-<strategy>.png`` and ``scores.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

import augplug
from augplug.demo import report
from augplug.demo.arguments import (
    check_data,
    check_device,
    check_output_folder,
    output_folder,
    select_strategies,
)
from augplug.demo.mechanism import destruction, overlay_coverage, overlay_share
from augplug.demo.strategies import (
    DATASETS,
    VIEWMAKER_SIZE,
    Strategy,
    missing_components,
    strategies,
)
from augplug.demo.training import (
    DemoData,
    fit_probes,
    initial_encoder,
    load_data,
    train,
    views_of_test_set,
)
from augplug.pictures import save_view_grid
from augplug.threads import cpu_conditions, default_threads, thread_advice

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="augplug demo",
        description="Train small encoders with several view strategies, evaluate every task with "
        "linear probes, and write a report (see docs/demo.md).",
    )
    parser.add_argument(
        "--data", default="digits-on-photos", choices=sorted(DATASETS), help="the study's data set"
    )
    parser.add_argument(
        "--strategies", default=None,
        help="comma-separated strategies (default: untrained, the expert views, viewmaker, combined); "
        "'all' for every one, e.g. also '<expert>+features' and '<expert>+invariance'",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=int, default=100, help="training steps per strategy (default 100)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    parser.add_argument(
        "--train-size", type=int, default=2000, help="training images (default 2000)"
    )
    parser.add_argument("--test-size", type=int, default=1000, help="test images (default 1000)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the data, weights and views (default 0)"
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)"
    )
    parser.add_argument(
        "--threads", type=int, default=None,
        help="CPU threads; the numbers depend on it, fixed so reruns give identical numbers "
        "(default 1, or AUGPLUG_THREADS; see benchmarks/results/threads.md)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default="augplug-demo", help="output folder (default augplug-demo/)"
    )
    parser.add_argument(
        "--full", action="store_true",
        help="the paper's viewmaker size (3 residual blocks, width 32) instead of the demo's "
        "(1 block, width 8); ~7x slower per learned-view step on a CPU",
    )  # fmt: skip
    parser.add_argument(
        "--study", choices=["feature-dropout-theory", "feature-augmentation"], default=None,
        help="run a study instead: the linear-model feature-dropout sweep (about a minute on "
        "CPU), or feature-augmentation placements x augmenters with BYOL and SimCLR (minutes)",
    )  # fmt: skip
    return parser


def _positive(parser: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) < 1:
            parser.error(
                f"--{name.replace('_', '-')}: expected an int >= 1, got {getattr(args, name)}"
            )


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed CPU thread count for the block; restored afterwards.

    ``warn_only``: a CUDA kernel without a deterministic version warns instead of failing.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS determinism
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    previous_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.set_num_threads(previous_threads)


def _chance(data: DemoData) -> tuple[dict[str, float], dict[str, str]]:
    """The majority-class accuracy (classification) or R^2 = 0 / the MSE of the training mean."""
    scores, cells = {}, {}
    for task in data.tasks:
        test = data.test_targets[task.name]
        if task.kind == "classification":
            counts = torch.bincount(test, minlength=task.size)
            scores[task.name] = (counts.max() / counts.sum()).item()
            cells[task.name] = f"{100 * scores[task.name]:.1f}%"
        else:
            mean = data.train_targets[task.name].double().mean(0)
            mse = (test.double() - mean).square().mean().item()
            scores[task.name] = 0.0
            cells[task.name] = f"{mse:.4g} (R2 0.00)"
    return scores, cells


def _learned_deltas(pipeline, x: torch.Tensor, generator: torch.Generator):
    """Views whose last stage is a viewmaker, with that stage's own change ``|delta|``.

    For the viewmaker alone the change is from the input; for ``combined`` it is from the
    expert view the viewmaker perturbs, so both grids show what the learned views add.
    Returns ``(None, None)`` when a branch does not end in a viewmaker.
    """
    branches = [pipeline.views[index] for index in pipeline.branch_index]
    branches = [list(getattr(g, "stages", [g])) for g in branches]
    if not all(hasattr(stages[-1], "perturbation") for stages in branches):
        return None, None
    views, deltas = [], []
    for stages in branches:
        before = x
        for stage in stages[:-1]:
            before = stage(before, generator=generator)
        view = stages[-1](before, generator=generator)
        views.append(view)
        deltas.append(view - before)
    return views, deltas


def _view_grid(
    path: Path, strategy: Strategy, run, data: DemoData, seed: int, device: torch.device
) -> None:
    """Eight test samples: input, two views, and the viewmaker's |delta| where there is one."""
    if strategy.views_input == "inputs":
        x = data.test_inputs[:8]
    else:
        x = torch.stack([data.test_targets[t.name][:8] for t in data.tasks], 1).float()
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        views, delta = _learned_deltas(run.pipeline, x, generator)
        if views is None:
            views, _ = run.pipeline.make_views(x, generator=generator)
    shown = data.test_inputs[:8]  # the clean image beside views rendered from its factors
    if data.spec.modality == "audio":  # low frequencies at the bottom, as spectrograms are drawn
        shown, views = shown.flip(-2), [v.flip(-2) for v in views]
        delta = None if delta is None else [d.flip(-2) for d in delta]
    title = f"{strategy.name} on {data.spec.name}"
    save_view_grid(path, shown, views, delta=delta, scale=None, labels=True, title=title)


def main(argv: list[str]) -> int:
    """Entry point of ``augplug demo`` (``argv`` without the ``demo`` word)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = default_threads()
    _positive(parser, args, "steps", "batch_size", "train_size", "test_size", "threads")
    if args.seed < 0:
        parser.error(f"--seed: expected an int >= 0, got {args.seed}")
    # Everything that can be wrong is checked before the data is built (tens of seconds).
    try:
        if args.study is None:
            args.strategies = select_strategies(args.strategies, check_data(args.data))
        check_device(args.device)
        check_output_folder(args.out)
    except ValueError as exc:
        parser.error(str(exc))
    advice = thread_advice(args.threads)
    if advice:
        print(f"augplug demo: note: {advice}", file=sys.stderr)
    with output_folder(args.out) as out, deterministic(args.threads):
        if args.study == "feature-dropout-theory":
            from augplug.demo.theory import run_study

            return run_study(out, seed=args.seed)
        if args.study == "feature-augmentation":
            from augplug.demo.feature_study import run_study as run_feature_study

            return run_feature_study(out, seed=args.seed, device=args.device)
        return _run_demo(parser, args, out)


def _run_demo(parser: argparse.ArgumentParser, args: argparse.Namespace, out: Path) -> int:
    device = check_device(args.device)  # checked in main, with the data and strategies
    spec = DATASETS[args.data]
    started = time.perf_counter()
    at_start = cpu_conditions()
    print(f"augplug demo: {spec.name}, {args.train_size} train / {args.test_size} test, "
          f"{args.steps} steps x {args.batch_size}, seed {args.seed}, {device}, {args.threads} thread(s); "
          f"load average {at_start['load_1min']} on {at_start['cores']} cores", file=sys.stderr)  # fmt: skip
    data = load_data(spec, args.train_size, args.test_size, args.seed, device)
    table = strategies(spec, data.channels, data.train_inputs.shape[-1], full=args.full)
    selected = args.strategies
    chance_scores, chance_cells = _chance(data)
    # The mechanism's fixed yardsticks: the untrained encoder's clean-trained probes, and
    # the overlay's opacity on the test images (photo data sets only).
    reference = initial_encoder(data, args.seed, device)
    reference_probes, reference_features = fit_probes(reference, data)
    overlay = overlay_coverage(spec.name, "test", args.test_size, args.seed, device)

    runs: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    grids: dict[str, str] = {}
    for name in selected:
        strategy = table[name]
        entry: dict[str, Any] = {"description": strategy.description, "recipe": strategy.recipe}
        missing = missing_components(strategy.recipe)
        if missing:
            entry.update(
                status="skipped",
                reason=f"not installed: {', '.join(missing)} (see `augplug plugins`)",
            )
            runs[name] = entry
            print(f"{name:>22} skipped: {entry['reason']}", file=sys.stderr)
            continue
        try:
            run = train(
                strategy,
                data,
                steps=args.steps,
                batch_size=args.batch_size,
                seed=args.seed,
                device=device,
            )
        except (augplug.RecipeError, ImportError) as exc:
            entry.update(status="skipped", reason=f"could not build: {exc}")
            runs[name] = entry
            print(f"{name:>22} skipped: {entry['reason']}", file=sys.stderr)
            continue
        probes, test_features = fit_probes(run.encoder, data)
        metrics = probes.evaluate(test_features, data.test_targets)
        entry.update(status="ok", final_loss=run.final_loss, metrics=metrics)
        timings[name] = run.seconds
        if run.pipeline is not None:
            views = views_of_test_set(run.pipeline, data, strategy.views_input, args.seed, device)
            entry["label_destruction"] = {
                "own encoder": destruction(
                    probes, run.encoder, test_features, views, data.test_targets
                ),
                "untrained encoder": destruction(
                    reference_probes, reference, reference_features, views, data.test_targets
                ),
            }
            if overlay is not None:
                generator = torch.Generator(device=device).manual_seed(args.seed + 2)
                share = overlay_share(run.pipeline, data.test_inputs, overlay, generator)
                if share is not None:
                    entry["overlay"] = share
            grids[name] = f"views-{name}.png"
            _view_grid(out / grids[name], strategy, run, data, args.seed, device)
        runs[name] = entry

    config = {k: v for k, v in vars(args).items() if k not in ("out", "study")}
    config["viewmaker_size"] = dict(zip(("width", "depth"), config_size(args)))
    config["device"] = device.type
    config["strategies"] = selected
    results = {
        "config": config,
        "versions": report.versions(),
        "seed": args.seed,
        "data": {"name": spec.name, "tasks": [vars(t) for t in data.tasks]},
        "chance": chance_scores,
        "strategies": runs,
    }
    report.write_json(out / "results.json", results)
    scores = {
        name: {t.name: report.score(t, run["metrics"][t.name]) for t in data.tasks}
        for name, run in runs.items() if run["status"] == "ok"
    }  # fmt: skip
    report.bar_chart(
        out / "scores.png",
        _panels(data, runs, scores, chance_scores),
        line_label="chance (scores); the overlay's share of the pixels (last panel)",
    )
    results_table = report.table(data.tasks, runs, chance_cells)
    mechanism = report.mechanism_table(data.tasks, runs)
    print("\n" + results_table + "\n\n" + mechanism + "\n")
    _write_markdown(
        out,
        args,
        spec.name,
        data,
        runs,
        results_table,
        mechanism,
        timings,
        grids,
        time.perf_counter() - started,
        _conditions(at_start, cpu_conditions()),
    )
    print(
        f"augplug demo: wrote {out}/report.md, results.json, scores.png and {len(grids)} view "
        f"grid(s); {time.perf_counter() - started:.0f} s in all",
        file=sys.stderr,
    )
    return 0


def config_size(args: argparse.Namespace) -> tuple[int, int]:
    """The viewmaker's (width, depth) for this run."""
    return VIEWMAKER_SIZE["paper" if args.full else "demo"]


def _panels(data: DemoData, runs, scores, chance_scores) -> list[report.Panel]:
    """Scores per task (chance dashed), label destruction per task, the overlay's share of |delta|."""
    panels = []
    for t in data.tasks:
        metric = "accuracy" if t.kind == "classification" else "R^2"
        panels.append(
            report.Panel(
                f"{t.name} ({metric})",
                {n: s[t.name] for n, s in scores.items()},
                chance_scores[t.name],
                percent=t.kind == "classification",
            )
        )
    destroyed = {n: r["label_destruction"] for n, r in runs.items() if "label_destruction" in r}
    for t in data.tasks:
        drops = {n: d["own encoder"][t.name]["drop"] for n, d in destroyed.items()}
        panels.append(report.Panel(f"{t.name}: drop on views", drops, None))
    shares = {n: r["overlay"] for n, r in runs.items() if "overlay" in r}
    if shares:
        pixels = next(iter(shares.values()))["pixel_share"]
        values = {n: s["delta_share"] for n, s in shares.items()}
        panels.append(report.Panel("|delta| share on overlay", values, pixels, "pixels"))
    return panels


def _conditions(at_start: dict[str, Any], at_end: dict[str, Any]) -> str:
    """What the run's time depends on besides its arguments: cores and the machine's load."""
    return (
        f"{at_start['cores']} usable cores, load average {at_start['load_1min']} at the start "
        f"and {at_end['load_1min']} at the end, OMP_WAIT_POLICY {at_start['omp_wait_policy']}"
    )


def _write_markdown(
    out, args, data_name, data, runs, results_table, mechanism, timings, grids, seconds, conditions
) -> None:
    lines = [
        "# augplug demo",
        "",
        f"`augplug demo --data {data_name} --steps {args.steps} --seed {args.seed} --device {args.device}"
        f"{' --full' if args.full else ''}` "
        f"({args.train_size} train / {args.test_size} test, batch {args.batch_size}, {args.threads} threads); "
        f"{seconds:.0f} s in all ({conditions}).",
        "",
        f"Viewmaker: width {config_size(args)[0]}, {config_size(args)[1]} residual block(s)"
        + (
            " (the paper's size, --full)."
            if args.full
            else " (narrowed; the paper's 32 and 3 with --full cost ~7x per learned-view step "
            "on a CPU: ~3.4 s against ~0.5 s per batch of 128 on a 2-core VM, see docs/demo.md)."
        ),
        "",
        "Tasks: " + ", ".join(f"`{t.name}` ({t.kind}, {t.size})" for t in data.tasks) + ". "
        "Test-set linear probes on the frozen encoder's pooled features (accuracy, or MSE and R2).",
        "",
        results_table,
        "",
        "## The mechanism (Feature Dropout)",
        "",
        "Label destruction: a linear probe fitted on clean training features, evaluated on one "
        "view of every test image (the strategy's own views) against the clean test images; "
        "the drop in points of accuracy (R2 x 100 for regression), through the strategy's own "
        "encoder and through the untrained encoder every strategy starts from. For learned "
        "views, the share of the viewmaker's sum |delta| on the pasted overlay (weighted by its "
        "opacity) beside the overlay's share of the pixels: the paper's mechanism needs the "
        "first well above the second and a large drop on the overlay task.",
        "",
        mechanism,
        "",
        "## Strategies",
        "",
    ]
    for name, run in runs.items():
        if run["status"] != "ok":
            detail = f"skipped: {run['reason']}"
        elif run["final_loss"] is None:
            detail = "no training"
        else:
            detail = f"{timings[name]:.1f} s training, final loss {run['final_loss']:.4f}"
        lines.append(f"- **{name}**: {run['description']} ({detail})")
    lines += [
        "",
        "![per-task scores, label destruction and the overlay share](scores.png)",
        "",
    ]
    for name, grid in grids.items():
        lines += [f"### Views: {name}", "", f"![{name}]({grid})", ""]
    lines.append(
        "Numbers and settings: `results.json` (identical for the same seed, device type and threads)."
    )
    (out / "report.md").write_text("\n".join(lines) + "\n")
