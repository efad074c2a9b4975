"""Viewmaker training steps side by side: model only, expert views, viewmaker (one pass), reference two-pass.

Same process, same inputs, same CIFAR-stem ResNet-18 (3x3 stem, no max-pool, written
below) with a SimCLR projection head (512 -> 512 -> 128) and NT-Xent (temperature 0.07,
as the viewmaker paper). Encoder SGD (lr 0.03, momentum 0.9, wd 1e-4), viewmaker Adam
(lr 1e-3). Times are medians after warm-up: CUDA events on a GPU, ``time.perf_counter``
on the CPU. Rows (each a full training step):

* ``model only`` - two views made beforehand; forward, backward, SGD step;
* ``expert views`` - two views from augplug's ``simclr`` recipe (only if it is registered);
* ``viewmaker, one pass`` - two viewmaker views (one call on the batch stacked twice) with
  gradient reversal, ONE backward, both optimizers step;
* ``reference two-pass (augplug's viewmaker)`` - the reference's alternating schedule run
  with augplug's own viewmaker and encoder, NOT the reference's code: an encoder step on
  views made without a viewmaker graph, then fresh views and a viewmaker step on the negated
  loss with the encoder frozen (``gradient_reversal=False``). Against the one-pass row it
  compares two schedules on the same network, so its ratio is bounded by FLOPs (printed);
  the goal against the reference's own code needs its anchor (ANCHORS.md);
* ``expert views + viewmaker`` - the "combined" views (``simclr`` then viewmaker), one pass.

It also counts forward FLOPs per image of the encoder and of the viewmaker
(``torch.utils.flop_counter``), which gives each step's FLOP floor in model-only steps, with
r = viewmaker FLOPs / encoder FLOPs and a backward at about twice a forward: one pass 1 + r;
two-pass (1 + r / 3) + (2 / 3 + r) (an encoder step on views made without a graph, then the
encoder's forward and input-gradient backward and the viewmaker's forward and backward). The
ratio of the two floors is the most the one-pass schedule can gain over the two-pass one on
the same network.

Example::

    python benchmarks/bench_viewmaker.py --device cuda --batch 256 --size 32 --dtypes float32 bfloat16
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from augplug_viewmaker import Viewmaker
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import augplug


# ----------------------------------------------------------------------------- the model
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool) and a SimCLR head."""

    def __init__(self, embedding: int = 128):
        super().__init__()
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, embedding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1)
        return self.head(h)


def nt_xent(z: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """NT-Xent over 2B embeddings (the two views stacked), computed in float32."""
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0]
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    partner = torch.arange(n, device=z.device).roll(n // 2)
    return F.cross_entropy(logits, partner)


# ----------------------------------------------------------------------------- timing
def time_once(device: torch.device, fn: Callable[[], object]) -> float:
    """Milliseconds of one call of ``fn``."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def median_times(
    device: torch.device, steps: dict[str, Callable[[], object]], warmup: int, repeats: int
) -> dict[str, float]:
    """Median milliseconds per step after ``warmup`` calls each.

    The steps take turns (one call of each per round), so a change in machine load
    during the run affects every row alike instead of whichever row ran at the time.
    """
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(repeats):
        for label, fn in steps.items():
            samples[label].append(time_once(device, fn))
    return {label: statistics.median(values) for label, values in samples.items()}


def forward_flops(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return counter.get_total_flops()


# ----------------------------------------------------------------------------- the steps
TWO_PASS = "reference two-pass (augplug's viewmaker)"


def flop_floors(ratio: float) -> dict[str, float]:
    """Each step's FLOP floor in model-only steps, for viewmaker / encoder forward FLOPs ``ratio``."""
    one_pass = 1 + ratio
    return {
        "model only": 1.0,
        "expert views (simclr)": 1.0,  # the views' FLOPs are ~100 per pixel: negligible
        "viewmaker, one pass": one_pass,
        TWO_PASS: (1 + ratio / 3) + (2 / 3 + ratio),
        "expert views + viewmaker": one_pass,
    }


def make_steps(
    x: torch.Tensor, dtype: torch.dtype, device: torch.device
) -> dict[str, Callable[[], None]]:
    encoder = CifarResNet18().to(device)
    viewmaker = Viewmaker().to(device)
    reference_viewmaker = Viewmaker(gradient_reversal=False).to(device)
    reference_viewmaker.load_state_dict(viewmaker.state_dict())
    encoder_opt = torch.optim.SGD(encoder.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    viewmaker_opt = torch.optim.Adam(viewmaker.parameters(), lr=1e-3)
    reference_opt = torch.optim.Adam(reference_viewmaker.parameters(), lr=1e-3)
    generator = torch.Generator(device=device).manual_seed(0)
    premade = torch.cat((x, x.flip(-1)))
    pair = torch.cat((x, x))

    def autocast():
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def encoder_step(views: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
        with autocast():
            loss = nt_xent(encoder(views))
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()

    def model_only() -> None:
        encoder_step(premade, encoder_opt)

    def viewmaker_one_pass() -> None:
        # Both views in one call: every row draws its own noise and instance norm is
        # per sample, so the two halves are two independent views.
        with autocast():
            views = viewmaker(pair, generator=generator)
        encoder_step(views, encoder_opt, viewmaker_opt)

    def reference_two_pass() -> None:
        # Encoder pass: the viewmaker is not being trained, so its views carry no graph.
        with torch.no_grad(), autocast():
            views = torch.cat(
                (
                    reference_viewmaker(x, generator=generator),
                    reference_viewmaker(x, generator=generator),
                )
            )
        encoder_step(views, encoder_opt)
        # Viewmaker pass: fresh views, encoder frozen, maximise the same loss.
        encoder.requires_grad_(False)
        with autocast():
            views = torch.cat(
                (
                    reference_viewmaker(x, generator=generator),
                    reference_viewmaker(x, generator=generator),
                )
            )
            loss = -nt_xent(encoder(views))
        reference_opt.zero_grad(set_to_none=True)
        loss.backward()
        reference_opt.step()
        encoder.requires_grad_(True)

    steps = {"model only": model_only}
    if "simclr" in augplug.available("views"):
        expert = augplug.create("views", "simclr", size=x.shape[-1]).to(device)
        combined = augplug.ComposedViews([expert, viewmaker])

        def expert_views() -> None:
            with torch.no_grad():
                views = torch.cat((expert(x, generator=generator), expert(x, generator=generator)))
            encoder_step(views, encoder_opt)

        def combined_views() -> None:
            with autocast():
                views = combined(pair, generator=generator)
            encoder_step(views, encoder_opt, viewmaker_opt)

        steps["expert views (simclr)"] = expert_views
    steps["viewmaker, one pass"] = viewmaker_one_pass
    steps[TWO_PASS] = reference_two_pass
    if "simclr" in augplug.available("views"):
        steps["expert views + viewmaker"] = combined_views
    steps["_flops"] = lambda: (forward_flops(encoder, x[:1]), forward_flops(viewmaker, x[:1]))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16", "float16"]
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(f"device {name}, torch {torch.__version__}, batch {args.batch}, {args.size}x{args.size}")

    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        steps = make_steps(x, dtype, device)
        encoder_flops, viewmaker_flops = steps.pop("_flops")()
        print(
            f"\n{dtype_name}: forward GFLOPs per image - encoder {encoder_flops / 1e9:.3f}, "
            f"viewmaker {viewmaker_flops / 1e9:.3f} (ratio {viewmaker_flops / encoder_flops:.2f}; "
            f"floor of the viewmaker step {1 + viewmaker_flops / encoder_flops:.2f}x model only)"
        )
        floors = flop_floors(viewmaker_flops / encoder_flops)
        print(
            f"{TWO_PASS} is augplug's network in the reference's schedule, not the reference's "
            f"code; on the same network the FLOP-bound ceiling of two-pass / one-pass is "
            f"{floors[TWO_PASS] / floors['viewmaker, one pass']:.2f}x"
        )
        times = median_times(device, steps, args.warmup, args.repeats)
        base = times["model only"]
        reference = times[TWO_PASS]
        print(
            "| step | ms | vs model only | FLOP floor vs model only | vs two-pass |\n"
            "|---|---|---|---|---|"
        )
        for label, ms in times.items():
            print(
                f"| {label} | {ms:.1f} | {ms / base:.2f}x | {floors[label]:.2f}x | "
                f"{ms / reference:.2f}x |"
            )


if __name__ == "__main__":
    main()
