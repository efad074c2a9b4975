"""NT-Xent forward + backward: augplug's tiled InfoNCE beside the materialised 2N x 2N loss.

    python benchmarks/bench_infonce.py --device cuda --sizes 4096 16384 32768 131072 --dtypes float32 bfloat16
    python benchmarks/bench_infonce.py --device cpu --sizes 512 2048 4096 --tile-size 256 --threads 1

"naive" is NT-Xent as lightly's ``NTXentLoss`` computes it (normalise, the full 2N x 2N
logits in the input dtype, cross-entropy), written inline so the benchmark runs without
lightly; lightly's own loss is timed too when it is importable. "matmul" is one
(2N, d) @ (d, 2N) similarity matmul in the input dtype: the floor. An exact forward +
backward needs at least three of them (similarities, then one per gradient); augplug's
tiled loss does four (it recomputes the similarities in the backward instead of storing
them); on CUDA, "augplug triton" (``kernel="triton"``, fused kernels) does five, but never
writes a similarity to memory. Times are medians after warm-up (CUDA events on GPU,
perf_counter on CPU), interleaved round-robin; memory is the peak above what was
allocated before the call (CUDA allocator peak on GPU, the resident-set high-water mark on
CPU, see infonce_memory.py), read after one warm-up call so one-time allocations (thread
pools, caches) are not counted. "error vs float64" compares with an independent float64
NT-Xent written below from the formula (row chunks, no autograd), not with the tiled path.
On a CPU without native bf16 (``cpu capability`` below: AVX2), bfloat16 rows time
emulated arithmetic: they are no bf16 comparison, and the CPU default is float32 only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from augplug_objectives.infonce import InfoNCE
from infonce_memory import naive_nt_xent, peak_cpu_bytes, use_mmap_for_large_allocations

TEMPERATURE = 0.1


def exact_nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, chunk: int = 2048
) -> float:
    """NT-Xent in float64 from its formula: mean over all 2N anchors of lse_{j != i}(s_ij) - s_i,pos.

    Row chunks keep memory at O(chunk * N); independent of augplug's tiled implementation.
    """
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n = z1.shape[0]
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    total = torch.zeros((), dtype=torch.float64, device=z.device)
    for start in range(0, 2 * n, chunk):
        rows = torch.arange(start, min(start + chunk, 2 * n), device=z.device)
        logits = z[rows] @ z.T / temperature
        logits[torch.arange(len(rows)), rows] = float("-inf")  # an anchor is not its own key
        positive = (z[rows] * z[partner[rows]]).sum(1) / temperature
        total += (torch.logsumexp(logits, dim=1) - positive).sum()
    return float(total / (2 * n))


def _lightly_loss() -> Callable | None:
    try:
        from lightly.loss import NTXentLoss
    except ImportError:
        return None
    return NTXentLoss(temperature=TEMPERATURE)


def _time_once_ms(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(stop)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def _median_ms(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int
):
    """Median time of each function; repeats are interleaved so load drifts hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_time_once_ms(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def _peak_mib(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    return peak_cpu_bytes(fn) / 2**20


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[4096, 16384, 32768, 131072], help="N (pairs)"
    )
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument(
        "--dtypes", nargs="+", default=None, help="default: float32 bfloat16 (CUDA), float32 (CPU)"
    )
    parser.add_argument(
        "--tile-size", type=int, default=None, help="augplug's tile rows (default: its own)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    use_mmap_for_large_allocations()
    if args.dtypes is None:
        args.dtypes = ["float32", "bfloat16"] if device.type == "cuda" else ["float32"]
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or 'CPU'}"
    )
    capability = torch.backends.cpu.get_cpu_capability()
    print(
        f"{datetime.date.today()}  torch {torch.__version__}  {name}  cpu capability {capability}  "
        f"threads={torch.get_num_threads()}  load average at start {os.getloadavg()[0]:.2f}"
    )
    print(
        f"d={args.dim}, temperature={TEMPERATURE}, medians of {args.repeats} after {args.warmup} warm-up\n"
    )
    print("| N | dtype | impl | fwd+bwd ms | x matmul | peak MiB | loss | error vs float64 |")
    print("|---|---|---|---|---|---|---|---|")

    augplug_loss = InfoNCE(temperature=TEMPERATURE, tile_size=args.tile_size)
    fused_loss = None
    if device.type == "cuda":
        from augplug_objectives.fused_lse import MAX_FEATURES  # imports triton

        if args.dim <= MAX_FEATURES:
            fused_loss = InfoNCE(temperature=TEMPERATURE, kernel="triton")
    lightly_loss = _lightly_loss()
    gen = torch.Generator(device=device).manual_seed(0)
    for n in args.sizes:
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            z1 = torch.randn(n, args.dim, device=device, dtype=dtype, generator=gen)
            z2 = torch.randn(n, args.dim, device=device, dtype=dtype, generator=gen)
            both = torch.cat([z1, z2])
            # The exact loss of these (already rounded) inputs, independent of augplug's code.
            exact = exact_nt_xent(z1, z2, TEMPERATURE)
            impls = {
                "naive": lambda a, b: naive_nt_xent(a, b, TEMPERATURE),
                "augplug": augplug_loss,
            }
            if fused_loss is not None:
                impls["augplug triton"] = fused_loss
            if lightly_loss is not None:
                impls["lightly"] = lightly_loss
            steps: dict[str, Callable[[], object]] = {
                "matmul (floor)": lambda both=both: both @ both.T
            }
            values: dict[str, torch.Tensor] = {}
            rows: dict[str, str] = {}
            for impl, loss_fn in impls.items():
                # The materialised loss holds a few (2N)^2 matrices; skip what cannot fit.
                needs = 4 * (2 * n) ** 2 * dtype.itemsize
                if not impl.startswith("augplug") and needs > 0.8 * _available_bytes(device):
                    rows[impl] = f"skipped (needs ~{needs / 2**30:.0f} GiB) | | | |"
                    continue

                def step(impl=impl, loss_fn=loss_fn, z1=z1, z2=z2, values=values) -> None:
                    a, b = z1.detach().requires_grad_(True), z2.detach().requires_grad_(True)
                    loss = loss_fn(a, b)
                    loss.backward()
                    values[impl] = loss.detach()

                try:
                    step()  # warm-up, so one-time allocations are not read as the loss's memory
                    peak = _peak_mib(step, device)
                except torch.OutOfMemoryError:
                    rows[impl] = "OOM | | | |"
                    torch.cuda.empty_cache()
                    continue
                value = float(values[impl])
                rows[impl] = f"{peak:.1f} | {value:.4f} | {abs(value - exact):.1e} |"
                steps[impl] = step
            times = _median_ms(steps, device, args.warmup, args.repeats)
            floor = times["matmul (floor)"]
            print(f"| {n} | {dtype_name} | matmul (floor) | {floor:.2f} | 1.0 | | | |")
            for impl, row in rows.items():
                timing = (
                    f"{times[impl]:.2f} | {times[impl] / floor:.1f} | " if impl in times else ""
                )
                print(f"| {n} | {dtype_name} | {impl} | {timing}{row}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
