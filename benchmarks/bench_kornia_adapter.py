"""The Kornia adapter's overhead: ``augplug.create("views", "kornia", ops=...)`` against the same
``kornia.augmentation.AugmentationSequential`` called directly, in one process.

Rows, timed round-robin (one call of each per round, so load changes hit all rows alike),
medians of ``time.perf_counter``:

* ``kornia`` - ``module(x)``: Kornia samples from the global RNG and renders;
* ``kornia op by op`` - the same ops called one after another without the container (what the
  adapter does underneath, for telling the adapter's cost from ``AugmentationSequential``'s);
* ``adapter`` - ``views(x)``: the same ops through the adapter (global RNG, as Kornia);
* ``adapter+generator`` - ``views(x, generator=g)``: one seed from ``g``, Kornia's sampling
  inside ``torch.random.fork_rng`` (the global RNG untouched), params flattened and replayed.

The ratio column is each row over ``kornia`` in the same run (goal: <= 1.05 at 256x3x32x32 on
the CPU). The recipe is SimCLR's (as ``bench_image_views.py``, whose timing helpers this uses;
run it from the repository root so that ``benchmarks/`` is on the path). Example::

    python benchmarks/bench_kornia_adapter.py --batch 256 --side 32 --repeats 30
"""

from __future__ import annotations

import argparse

import kornia.augmentation as K
import torch
from bench_image_views import header, interleaved, kernel_size, load_average

import augplug
from augplug.checks import validation


def simclr_ops(side: int) -> list[dict]:
    kernel = kernel_size(side)
    return [
        {"op": "RandomResizedCrop", "size": (side, side), "scale": (0.2, 1.0)},
        {"op": "RandomHorizontalFlip", "p": 0.5},
        {
            "op": "ColorJitter",
            "brightness": 0.4,
            "contrast": 0.4,
            "saturation": 0.4,
            "hue": 0.1,
            "p": 0.8,
        },
        {"op": "RandomGrayscale", "p": 0.2},
        {"op": "RandomGaussianBlur", "kernel_size": kernel, "sigma": (0.1, 2.0), "p": 0.5},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ops = simclr_ops(args.side)
    module = K.AugmentationSequential(
        *(getattr(K, o["op"])(**{k: v for k, v in o.items() if k != "op"}) for o in ops)
    )
    views = augplug.create("views", "kornia", ops=ops)

    def op_by_op(x: torch.Tensor) -> torch.Tensor:
        for op in module.children():
            x = op(x)
        return x

    x = torch.rand(args.batch, 3, args.side, args.side)
    generator = torch.Generator().manual_seed(0)
    print(header(shape=f"{args.batch}x3x{args.side}x{args.side}"))
    with validation(False), torch.no_grad():
        medians = interleaved(
            {
                "kornia": lambda: module(x),
                "kornia op by op": lambda: op_by_op(x),
                "adapter": lambda: views(x),
                "adapter+generator": lambda: views(x, generator=generator),
            },
            args.warmup,
            args.repeats,
        )
    print(f"load at the end: {load_average()}")
    print(f"{'what':>18} {'ms':>8} {'/kornia':>8}")
    for name, ms in medians.items():
        print(f"{name:>18} {ms:8.2f} {ms / medians['kornia']:8.3f}")


if __name__ == "__main__":
    main()
