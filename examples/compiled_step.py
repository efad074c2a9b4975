"""A whole training step under ``torch.compile``: augplug views -> encoder -> InfoNCE.

    python examples/compiled_step.py                    # SimCLR views
    python examples/compiled_step.py --viewmaker        # SimCLR views, then a learned viewmaker
    python examples/compiled_step.py --generator        # an explicit torch.Generator
    python examples/compiled_step.py --backend aot_eager --steps 3   # no code generation

Two ways to compile a step, each one graph (``fullgraph=True``, so a graph break anywhere
is an error) whose backward AOTAutograd compiles too:

* **Global RNG** (the default): ``pipeline(x, encoder, projector)`` without a generator.
  The views' random draws are traced into the graph; under inductor they come from its
  own RNG unless ``torch._inductor.config.fallback_random = True``, which replays eager's.
* **Explicit generator** (``--generator``): dynamo cannot trace a ``torch.Generator``
  argument (each ``torch.rand(..., generator=g)`` is a graph break, gb0055 in PyTorch's
  graph-break catalogue, and one inside the pipeline's view loop makes dynamo run that
  whole frame eagerly). So the step draws the view parameters eagerly with the generator
  (``views.sample``, a few small tensors) and compiles the rest: ``views.apply`` (which
  replays them exactly), the encoder and the loss.

:func:`graph_breaks` lists where dynamo breaks a function's graph (docs/trainers.md
records the counts).
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import augplug

ROOT = Path(__file__).resolve().parents[1]


def build(
    *, viewmaker: bool = False, size: int = 16, out_dim: int = 32
) -> tuple[augplug.Pipeline, nn.Module, nn.Module]:
    """A SimCLR pipeline (optionally SimCLR views then a small viewmaker), encoder, projector."""
    views: list[dict] = [{"name": "simclr", "size": size}]
    if viewmaker:
        views.append({"name": "viewmaker", "depth": 1, "width": 8})
    pipeline = augplug.build({"views": views, "objective": {"name": "infonce", "temperature": 0.2}})
    encoder = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, out_dim),
    )  # fmt: skip
    projector = nn.Sequential(nn.Linear(out_dim, 64), nn.ReLU(), nn.Linear(64, out_dim))
    return pipeline, encoder, projector


def global_rng_step(
    pipeline: augplug.Pipeline, encoder: nn.Module, projector: nn.Module
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> loss``: views drawn from the global RNG inside the step."""

    def step(x: torch.Tensor) -> torch.Tensor:
        return pipeline(x, encoder, projector).loss

    return step


def sampled_params_step(
    pipeline: augplug.Pipeline, encoder: nn.Module, projector: nn.Module
) -> Callable[..., torch.Tensor]:
    """``(x, params_1, params_2) -> loss``: the views' parameters drawn outside, eagerly.

    The same computation as the pipeline's (both views encoded in one call, InfoNCE), from
    the pipeline's own view generator and objective.
    """
    views, loss_fn = pipeline.views[0], pipeline.terms[0]

    def step(x: torch.Tensor, params_1: dict, params_2: dict) -> torch.Tensor:
        z = projector(encoder(torch.cat([views.apply(x, params_1), views.apply(x, params_2)])))
        return loss_fn(*z.chunk(2))

    return step


class _BreakLocations(logging.Handler):
    """Collects "file:line" of every graph break dynamo logs."""

    _AT = re.compile(r"in user code at (\S+):(\d+)")

    def __init__(self):
        super().__init__()
        self.locations: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = self._AT.search(record.getMessage())
        if match:
            path = Path(match[1])
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            self.locations.append(f"{shown}:{match[2]}")


def graph_breaks(fn: Callable, *args) -> tuple[int, list[str]]:
    """The graph-break count of ``fn(*args)`` under dynamo and the breaks' file:line."""
    torch._dynamo.reset()
    handler = _BreakLocations()
    torch._logging.set_logs(graph_breaks=True)  # first: it resets torch's log handlers
    logger = logging.getLogger("torch._dynamo.symbolic_convert.__graph_breaks")
    logger.addHandler(handler)
    logger.propagate = False  # collected here, not printed
    try:
        explanation = torch._dynamo.explain(fn)(*args)
    finally:
        logger.removeHandler(handler)
        torch._logging.set_logs()
    # A break is logged once per frame it splits: the distinct locations are the causes.
    return explanation.graph_break_count, sorted(set(handler.locations))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewmaker", action="store_true", help="SimCLR views, then a viewmaker")
    parser.add_argument("--generator", action="store_true", help="an explicit torch.Generator")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[float]:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    pipeline, encoder, projector = build(viewmaker=args.viewmaker, size=args.size)
    modules = nn.ModuleList([pipeline, encoder, projector]).to(device)
    optimizer = torch.optim.SGD([p for p in modules.parameters() if p.requires_grad], lr=0.05)
    images = torch.rand(args.batch, 3, args.size, args.size, device=device)

    if args.generator:
        generator = torch.Generator(device=device).manual_seed(args.seed)
        views = pipeline.views[0]
        compiled = torch.compile(
            sampled_params_step(pipeline, encoder, projector), fullgraph=True, backend=args.backend
        )

        def step(x: torch.Tensor) -> torch.Tensor:
            params_1 = views.sample(x, generator=generator)
            params_2 = views.sample(x, generator=generator)
            return compiled(x, params_1, params_2)
    else:
        step = torch.compile(
            global_rng_step(pipeline, encoder, projector), fullgraph=True, backend=args.backend
        )

    losses, seconds = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = step(images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    values = torch.stack(losses).tolist()
    print(
        f"{args.steps} compiled steps ({args.backend}, {device}): first {seconds[0]:.1f} s "
        f"(compiles), then {min(seconds[1:], default=float('nan')) * 1e3:.1f} ms; "
        f"loss {values[0]:.4f} -> {values[-1]:.4f}"
    )
    return values


if __name__ == "__main__":
    main()
