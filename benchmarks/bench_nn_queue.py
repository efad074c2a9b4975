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


def median_ms(
    candidates: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> dict[str, float]:
    """Median milliseconds per call of each candidate, timed round-robin.

    Interleaving the candidates means a busy shared machine slows them all alike, so
    their ratios stay meaningful even when the absolute times drift.
    """
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            if device.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times[name].append(start.elapsed_time(end))
            else:
                start_s = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start_s) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


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
    if args.threads is not None:
        torch.set_num_threads(args.threads)
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

        candidates = {"augplug": lambda: ours(z), "floor": floor}  # noqa: B023
        bank = lightly_bank(args.queue, args.dim)
        if isinstance(bank, str):
            lightly_note = bank
        else:
            bank = bank.to(device=device, dtype=dtype)
            bank(fill, update=True)
            candidates["lightly"] = lambda: bank(z, update=True)  # noqa: B023
        with torch.no_grad():
            ms = median_ms(candidates, device, args.warmup, args.repeats)
        ours_ms, floor_ms, lightly_ms = ms["augplug"], ms["floor"], ms.get("lightly")
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
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
