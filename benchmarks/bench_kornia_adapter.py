"""The Kornia adapter's overhead: ``augplug.create("views", "kornia", ops=...)`` against the same
``kornia.augmentation.AugmentationSequential`` called directly, in one process.

Rows, timed round-robin (one call of each per round, so load changes hit all rows alike),
medians of ``time.perf_counter``:

* ``kornia`` - ``module(x)``: Kornia samples from the global RNG and renders;
* ``adapter`` - ``views(x)``: the same ops through the adapter (global RNG, as Kornia);
* ``adapter+generator`` - ``views(x, generator=g)``: one seed from ``g``, Kornia's sampling
  inside ``torch.random.fork_rng`` (the global RNG untouched), params flattened and replayed.

The ratio column is each row over ``kornia`` in the same run (goal: <= 1.05 at 256x3x32x32 on
the CPU). The recipe is SimCLR's (as ``bench_image_views.py``). Example::

    python benchmarks/bench_kornia_adapter.py --batch 256 --side 32 --repeats 30
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable

import kornia
import kornia.augmentation as K
import torch

import augplug
from augplug.checks import validation


def interleaved(rows: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per row, timed round-robin after ``warmup`` rounds."""
    times: dict[str, list[float]] = {name: [] for name in rows}
    for round_ in range(warmup + repeats):
        for name, fn in rows.items():
            start = time.perf_counter()
            fn()
            if round_ >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def header(**extra: object) -> str:
    """Date, versions, threads, load average and the command line, for the results file."""
    fields = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "kornia": kornia.__version__,
        "threads": torch.get_num_threads(),
        "load": "%.2f %.2f %.2f" % os.getloadavg(),
        **extra,
    }
    return ", ".join(f"{k} {v}" for k, v in fields.items()) + "\ncommand: python " + " ".join(sys.argv)


def simclr_ops(side: int) -> list[dict]:
    kernel = max(3, int(0.1 * side) | 1)
    return [
        {"op": "RandomResizedCrop", "size": (side, side), "scale": (0.2, 1.0)},
        {"op": "RandomHorizontalFlip", "p": 0.5},
        {"op": "ColorJitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "p": 0.8},
        {"op": "RandomGrayscale", "p": 0.2},
        {"op": "RandomGaussianBlur", "kernel_size": kernel, "sigma": (0.1, 2.0), "p": 0.5},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ops = simclr_ops(args.side)
    module = K.AugmentationSequential(*(getattr(K, o["op"])(**{k: v for k, v in o.items() if k != "op"}) for o in ops))
    views = augplug.create("views", "kornia", ops=ops)
    x = torch.rand(args.batch, 3, args.side, args.side)
    generator = torch.Generator().manual_seed(0)
    print(header(shape=f"{args.batch}x3x{args.side}x{args.side}"))
    with validation(False), torch.no_grad():
        medians = interleaved(
            {
                "kornia": lambda: module(x),
                "adapter": lambda: views(x),
                "adapter+generator": lambda: views(x, generator=generator),
            },
            args.warmup,
            args.repeats,
        )
    print("load after: %.2f %.2f %.2f" % os.getloadavg())
    print(f"{'what':>18} {'ms':>8} {'/kornia':>8}")
    for name, ms in medians.items():
        print(f"{name:>18} {ms:8.2f} {ms / medians['kornia']:8.3f}")


if __name__ == "__main__":
    main()
