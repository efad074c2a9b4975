"""Nearest-neighbour support queue: lookup + enqueue, augplug vs lightly vs the matmul + top-k floor.

One training step of NNCLR's support set: find each feature's cosine nearest neighbour in a
FIFO queue, then enqueue the batch. Three columns on the same inputs, in one process:

* augplug   - ``augplug.create("features", "nearest_neighbour")`` in training mode;
* lightly   - ``lightly.models.modules.NNMemoryBankModule(...)(z, update=True)`` when lightly
  is importable (otherwise the column says why it is missing);
* floor     - the bare ``(q @ queue.T).topk(1)`` on already-normalised inputs: the matmul
  and the pass over the similarities that any implementation has to do.

Timing: CUDA events on GPU, ``time.perf_counter`` on CPU; the median of ``--repeats`` calls
after ``--warmup`` calls, with the queue already full (the steady state of training).

    python benchmarks/bench_nn_queue.py --device cuda                      # the issue's sizes
    python benchmarks/bench_nn_queue.py --device cpu --queue 8192 --batch 512
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

import augplug

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def median_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def lightly_bank(queue: int, dim: int) -> torch.nn.Module | str:
    """lightly's NNMemoryBankModule, or the reason it cannot be built."""
    try:
        from lightly.models.modules import NNMemoryBankModule
    except ImportError as exc:
        return f"lightly not importable ({exc.name or exc})"
    try:
        return NNMemoryBankModule(size=(queue, dim))  # lightly >= 1.5: (rows, dim)
    except TypeError:
        return NNMemoryBankModule(size=queue)  # older releases: rows only, dim on first call


def run(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    gen = torch.Generator(device=device).manual_seed(0)
    lightly_note = None
    print(
        f"# nearest_neighbour lookup + enqueue: queue {args.queue} x {args.dim}, batch {args.batch}, "
        f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print("| dtype | augplug ms | lightly ms | floor ms | augplug / floor | augplug / lightly |")
    print("|---|---|---|---|---|---|")
    for name in args.dtypes:
        dtype = DTYPES[name]
        fill = torch.randn(args.queue, args.dim, device=device, generator=gen).to(dtype)
        z = torch.randn(args.batch, args.dim, device=device, generator=gen).to(dtype)

        ours = augplug.create("features", "nearest_neighbour", dim=args.dim, size=args.queue)
        ours = ours.to(device=device, dtype=dtype).train()
        ours(fill)  # a full queue, as in steady-state training

        unit_queue = torch.nn.functional.normalize(fill.float(), dim=-1).to(dtype)
        unit_z = torch.nn.functional.normalize(z.float(), dim=-1).to(dtype)

        def floor(unit_queue=unit_queue, unit_z=unit_z):
            return (unit_z @ unit_queue.t()).topk(1, dim=-1)

        with torch.no_grad():
            ours_ms = median_ms(lambda: ours(z), device, args.warmup, args.repeats)  # noqa: B023
            floor_ms = median_ms(floor, device, args.warmup, args.repeats)
            bank = lightly_bank(args.queue, args.dim)
            if isinstance(bank, str):
                lightly_ms, lightly_note = None, bank
            else:
                bank = bank.to(device=device, dtype=dtype)
                bank(fill, update=True)
                lightly_ms = median_ms(
                    lambda: bank(z, update=True), device, args.warmup, args.repeats
                )  # noqa: B023
        lightly_cell = f"{lightly_ms:.3f}" if lightly_ms else "-"
        ratio_cell = f"{ours_ms / lightly_ms:.2f}" if lightly_ms else "-"
        print(
            f"| {name} | {ours_ms:.3f} | {lightly_cell} | {floor_ms:.3f} | "
            f"{ours_ms / floor_ms:.2f} | {ratio_cell} |"
        )
    if lightly_note:
        print(f"\nlightly column skipped: {lightly_note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--queue", type=int, default=65536, help="queue rows (default 65536)")
    parser.add_argument("--dim", type=int, default=256, help="feature dimension (default 256)")
    parser.add_argument("--batch", type=int, default=4096, help="features per step (default 4096)")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
