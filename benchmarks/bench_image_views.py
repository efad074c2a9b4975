"""SimCLR views: augplug_image against kornia.augmentation.AugmentationSequential, side by side.

Same process, same inputs, same recipe (RandomResizedCrop, flip p 0.5, colour jitter
0.4/0.4/0.4/0.1 p 0.8, grayscale p 0.2, Gaussian blur sigma 0.1-2 p 0.5 with a kernel 10% of
the side). Two configurations (``--config``):

* ``bench`` - crop scale (0.2, 1) at <= 32 px, (0.08, 1) above; Kornia's jitter in the fixed
  order brightness -> contrast -> saturation -> hue (augplug's order);
* ``anchor`` - the H100 Kornia anchor's set-up (/work/shared/ANCHORS.md): scale (0.08, 1) at
  every size and Kornia's default random jitter order (one permutation per batch). augplug
  keeps its fixed order (it has no random order; the order does not change the work).

Times are medians after warm-up with the spread (interquartile range over the median), the
rows timed round-robin (one call of each per round, so a change in load hits every row alike;
the order rotates every round): CUDA events on a GPU, ``time.perf_counter`` on the CPU. The
header gives date, versions, threads, the CPU's vector ISA and bf16 support, and the load
average at the start and the end. Rows:

* ``copy floor`` - ``y.copy_(x)``: one read and one write of the batch, the bandwidth floor;
* ``kornia`` / ``augplug`` - forward, and forward + backward to the input;
* ``torchvision loop`` (``--torchvision``) - torchvision.transforms.v2 applied image by image
  (its per-sample semantics; forward only: its hue step writes into views, so no backward);
* ``augplug compiled`` (``--compile``) - ``torch.compile(views)``, sampling included;
* ``augplug@REV`` (``--baseline REV``) - the same recipe from the ``augplug_image`` sources of an
  earlier git revision (read with ``git show``, imported under another name), to compare a
  change against the code before it in one process;
* ``--train-step`` - two views + a ResNet-18 bf16 channels_last SGD step, images/s, fed by
  each library;
* ``--profile`` - instead of timing, ``torch.profiler``'s self time per op of augplug's
  ``views(x)`` and of ``views(x)`` + backward (3 warm-up calls, 5 profiled), per size.

Example::

    python benchmarks/bench_image_views.py --device cuda --sizes 512x32 256x224 \\
        --dtypes float32 bfloat16 --compile --train-step
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import kornia
import kornia.augmentation as K
import torch
from torch import nn

import augplug
from augplug.checks import validation


def _elapsed_ms(device: torch.device, fn: Callable[[], object]) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)
    start_time = time.perf_counter()
    fn()
    return (time.perf_counter() - start_time) * 1e3


def timer(device: torch.device, fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median milliseconds of ``fn`` after ``warmup`` calls."""
    return interleaved({"fn": fn}, warmup, repeats, device)["fn"]


def interleaved(
    rows: dict[str, Callable[[], object]],
    warmup: int,
    repeats: int,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Median milliseconds per row, timed round-robin after ``warmup`` rounds."""
    return {name: t[0] for name, t in interleaved_spread(rows, warmup, repeats, device).items()}


def interleaved_spread(
    rows: dict[str, Callable[[], object]],
    warmup: int,
    repeats: int,
    device: torch.device | None = None,
) -> dict[str, tuple[float, float]]:
    """(median ms, interquartile range / median) per row, timed round-robin after ``warmup``.

    The order rotates every round: on a shared CPU the row run right after another one was
    measured up to 7% slower or faster than in the opposite order; rotating spreads that bias
    over every row.
    """
    device = torch.device("cpu") if device is None else device
    times: dict[str, list[float]] = {name: [] for name in rows}
    names = list(rows)
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = _elapsed_ms(device, rows[name])
            if round_ >= warmup:
                times[name].append(elapsed)
    spread = {}
    for name, t in times.items():
        median = statistics.median(t)
        quartiles = statistics.quantiles(t, n=4) if len(t) > 1 else [median] * 3
        spread[name] = (median, (quartiles[2] - quartiles[0]) / median)
    return spread


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu_description() -> str:
    """The CPU's model, its vector ISA as torch dispatches to it, and whether bf16 is native."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    bf16 = "bf16 native (" + ", ".join(native) + ")" if native else "no native bf16"
    isa = torch.backends.cpu.get_cpu_capability()
    return f"{model}, {os.cpu_count()} cores, ISA {isa}, {bf16}"


def header(**extra: object) -> str:
    """Date, versions, threads, CPU, load average and the command line, for the results file."""
    fields = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "kornia": kornia.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_description(),
        "load": load_average(),
        **extra,
    }
    return (
        ", ".join(f"{k} {v}" for k, v in fields.items()) + "\ncommand: python " + " ".join(sys.argv)
    )


def baseline_views(revision: str) -> Callable[..., nn.Module]:
    """``SimCLRViews`` from ``plugins/augplug_image`` at ``revision``, as package ``augplug_image_at``."""
    root = Path(__file__).resolve().parent.parent
    package = Path(tempfile.mkdtemp()) / "augplug_image_at"
    package.mkdir()
    for name in ("__init__.py", "functional.py", "views.py"):
        source = subprocess.run(
            ["git", "show", f"{revision}:plugins/augplug_image/{name}"],
            cwd=root, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        (package / name).write_text(
            source.replace("from augplug_image import", "from augplug_image_at import")
        )
    sys.path.insert(0, str(package.parent))
    return importlib.import_module("augplug_image_at.views").SimCLRViews


def kernel_size(side: int) -> int:
    size = int(0.1 * side)
    return max(3, size if size % 2 else size + 1)


def kornia_simclr(
    side: int, scale: tuple[float, float], order: tuple[int, ...] | None = (0, 1, 2, 3)
) -> nn.Module:
    """Kornia's SimCLR pipeline; ``order=None`` is Kornia's default random jitter order."""
    return K.AugmentationSequential(
        K.RandomResizedCrop((side, side), scale=scale, ratio=(3 / 4, 4 / 3)),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8, order=order),
        K.RandomGrayscale(p=0.2),
        K.RandomGaussianBlur(kernel_size(side), (0.1, 2.0), p=0.5),
    )


def torchvision_loop(
    side: int, scale: tuple[float, float]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The same recipe with torchvision.transforms.v2, one image at a time (per-sample params)."""
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.RandomResizedCrop(side, scale=scale, ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(0.2),
            v2.RandomApply([v2.GaussianBlur(kernel_size(side), (0.1, 2.0))], p=0.5),
        ]
    )
    return lambda x: torch.stack([transform(image) for image in x])


CONFIGS = ("bench", "anchor")


def config_scale(config: str, side: int) -> tuple[float, float]:
    if config == "anchor":
        return (0.08, 1.0)
    return (0.2, 1.0) if side <= 32 else (0.08, 1.0)


def forward_backward(
    views: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> Callable[[], None]:
    leaf = x.detach().requires_grad_()

    def step() -> None:
        leaf.grad = None
        views(leaf).float().sum().backward()

    return step


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18(num_outputs: int = 128) -> nn.Module:
    """torchvision's ResNet-18 layout (7x7 stem, max-pool, 2-2-2-2 basic blocks), written out."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
    ]  # fmt: skip
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_outputs)]
    return nn.Sequential(*layers)


def train_step_rate(device, x, make_views, warmup, repeats) -> float:
    """Images/s of: two views, ResNet-18 forward/backward in bf16 autocast (channels_last), SGD step."""
    model = resnet18().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        v1, v2 = make_views(x), make_views(x)
        batch = torch.cat((v1, v2)).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            z = model(batch).float()
        z1, z2 = z.chunk(2)
        loss = -torch.nn.functional.cosine_similarity(z1, z2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return x.shape[0] / (timer(device, step, warmup, repeats) / 1e3)


def profile_views(sizes: list[str], config: str, device: torch.device, rows: int = 12) -> None:
    """Print the ops that take augplug's time, forward and forward + backward, per size."""
    from torch.profiler import ProfilerActivity, profile

    for spec in sizes:
        batch, side = (int(v) for v in spec.split("x"))
        views = augplug.create("views", "simclr", size=side, scale=config_scale(config, side))
        x = torch.rand(batch, 3, side, side, device=device)
        x = x.contiguous(memory_format=torch.channels_last)
        steps = {"fwd": lambda views=views, x=x: views(x), "fwd+bwd": forward_backward(views, x)}
        for what, step in steps.items():
            for _ in range(3):
                step()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(5):
                    step()
            print(f"{spec} {what}: 5 calls")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="+", default=["512x32", "256x224"], help="BATCHxSIDE")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument(
        "--config", nargs="+", choices=CONFIGS, default=list(CONFIGS), help="see above"
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(views)")
    parser.add_argument(
        "--torchvision", action="store_true", help="also time a per-sample torchvision v2 loop"
    )
    parser.add_argument(
        "--train-step", action="store_true", help="two views + ResNet-18 bf16 step (first size)"
    )
    parser.add_argument("--profile", action="store_true", help="op profile of augplug's views")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU intra-op threads (torch default if unset)"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="also time augplug_image at this git revision",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    baseline = baseline_views(args.baseline) if args.baseline else None
    print(
        header(
            device=f"{device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'})"
        )
    )
    if args.profile:
        with validation(False):
            profile_views(args.sizes, args.config[0], device)
        print(f"load at the end: {load_average()}")
        return
    print(
        f"{'config':>6} {'shape':>14} {'dtype':>9} {'what':>17} {'fwd ms':>9} {'spread':>6}"
        f" {'fwd+bwd ms':>10} {'spread':>6} {'kornia/x':>9} {'/copy':>6}"
    )
    with validation(False):  # production setting: no host-syncing value checks
        for config in args.config:
            for spec in args.sizes:
                batch, side = (int(v) for v in spec.split("x"))
                scale = config_scale(config, side)
                order = None if config == "anchor" else (0, 1, 2, 3)
                ours = augplug.create("views", "simclr", size=side, scale=scale).to(device)
                rows: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
                    ("kornia", kornia_simclr(side, scale, order).to(device)),
                    ("augplug", ours),
                ]
                if baseline is not None:
                    old = baseline(size=side, scale=scale).to(device)
                    rows.append((f"augplug@{args.baseline}", old))
                if args.compile:
                    # The whole module, sampling included (no generator, so dynamo can trace it).
                    rows.append(("augplug compiled", torch.compile(ours)))
                for dtype_name in args.dtypes:
                    dtype = getattr(torch, dtype_name)
                    x = torch.rand(batch, 3, side, side, device=device).to(dtype)
                    x = x.contiguous(memory_format=torch.channels_last)
                    shape = f"{batch}x3x{side}x{side}"
                    out = torch.empty_like(x)
                    copy = timer(
                        device, lambda x=x, out=out: out.copy_(x), args.warmup, args.repeats
                    )
                    forward = {n: (lambda views=views, x=x: views(x)) for n, views in rows}
                    if args.torchvision:
                        loop = torchvision_loop(side, scale)
                        forward["torchvision loop"] = lambda loop=loop, x=x: loop(x)
                    fwd = interleaved_spread(forward, args.warmup, args.repeats, device)
                    bwd = interleaved_spread(
                        {n: forward_backward(v, x) for n, v in rows},
                        args.warmup,
                        args.repeats,
                        device,
                    )
                    print(f"{config:>6} {shape:>14} {dtype_name:>9} {'copy floor':>17} {copy:9.3f}")
                    kornia_fwd, kornia_bwd = fwd["kornia"][0], bwd["kornia"][0]
                    for name, (ms, spread) in fwd.items():
                        line = f"{config:>6} {shape:>14} {dtype_name:>9} {name:>17} {ms:9.3f} {spread:6.0%}"
                        if name in bwd:
                            ms_bwd, spread_bwd = bwd[name]
                            ratio = f"{kornia_fwd / ms:.2f}/{kornia_bwd / ms_bwd:.2f}"
                            line += f" {ms_bwd:10.3f} {spread_bwd:6.0%} {ratio:>9}"
                        else:
                            line += f" {'n/a':>10} {'':>6} {kornia_fwd / ms:9.2f}"
                        print(f"{line} {ms / copy:6.0f}")
        if args.train_step:
            batch, side = (int(v) for v in args.sizes[0].split("x"))
            scale = config_scale("bench", side)
            x = torch.rand(batch, 3, side, side, device=device).contiguous(
                memory_format=torch.channels_last
            )
            ours = augplug.create("views", "simclr", size=side, scale=scale).to(device)
            theirs = kornia_simclr(side, scale).to(device)
            for name, views in [("kornia", theirs), ("augplug", ours)]:
                rate = train_step_rate(device, x, views, args.warmup, args.repeats)
                print(
                    f"train step (2 views + ResNet-18 bf16), {batch}x3x{side}x{side}, {name}: {rate:,.0f} img/s"
                )
    print(f"load at the end: {load_average()}")


if __name__ == "__main__":
    main()
