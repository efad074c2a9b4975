"""Peak CPU memory of InfoNCE forward + backward versus batch size: tiled (augplug) and naive.

    python benchmarks/infonce_memory.py --sizes 512 1024 2048 4096 8192 --dim 64 --tile-size 128

Memory is the process's resident-set high-water mark (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``) above the resident set just before the call. glibc is told to
serve every allocation over 64 KiB with its own mapping, so freed tensors leave the
resident set at once and one measurement does not hide inside the previous one's freed
heap. (``tracemalloc`` sees none of torch's allocations.) The tiled loss holds
O(N * d + tile * N) bytes, so its peak should double with N; the naive one materialises
(2N)^2 similarities, so its peak should quadruple.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import math
import re
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from augplug_objectives.infonce import info_nce

_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
_libc = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None


def use_mmap_for_large_allocations(threshold: int = 64 * 1024) -> None:
    """Make glibc return freed large blocks to the OS, so RSS follows live tensors."""
    if _libc is not None:
        _libc.mallopt(_M_MMAP_THRESHOLD, threshold)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"{field}:\s+(\d+) kB", status.read()).group(1))


def peak_cpu_bytes(fn: Callable[[], object]) -> int:
    """Resident-set high-water mark reached while running ``fn``, above the RSS before it."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) * 1024


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent as usually written (lightly's NTXentLoss): the full 2N x 2N logits, cross-entropy."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    labels = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, labels)


def _fwd_bwd(loss_fn, z1, z2) -> Callable[[], None]:
    def run() -> None:
        a, b = z1.detach().requires_grad_(True), z2.detach().requires_grad_(True)
        loss_fn(a, b).backward()

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--tile-size", type=int, default=128)
    parser.add_argument("--naive-max", type=int, default=4096, help="largest N for the naive loss")
    args = parser.parse_args(argv)
    use_mmap_for_large_allocations()
    torch.manual_seed(0)
    tiled = lambda a, b: info_nce(a, b, temperature=0.1, tile_size=args.tile_size)  # noqa: E731
    naive = lambda a, b: naive_nt_xent(a, b, 0.1)  # noqa: E731

    # Warm-up: the first backward initialises thread pools and autograd state, which would
    # count as the first measurement's memory.
    warm = torch.randn(64, args.dim)
    for fn in (tiled, naive):
        _fwd_bwd(fn, warm, warm)()

    print(f"CPU peak memory of forward+backward, d={args.dim}, float32, tile={args.tile_size} rows")
    print("| N (pairs) | tiled MiB | tiled growth | naive MiB | naive growth |")
    print("|---|---|---|---|---|")
    previous: dict[str, int] = {}
    measured: dict[str, list[tuple[int, int]]] = {"tiled": [], "naive": []}
    for n in args.sizes:
        z1, z2 = torch.randn(n, args.dim), torch.randn(n, args.dim)
        cells = []
        for name, fn in (("tiled", tiled), ("naive", naive)):
            if name == "naive" and n > args.naive_max:
                cells += ["-", "-"]
                continue
            peak = peak_cpu_bytes(_fwd_bwd(fn, z1, z2))
            growth = f"x{peak / previous[name]:.2f}" if name in previous else ""
            previous[name] = peak
            measured[name].append((n, peak))
            cells += [f"{peak / 2**20:.1f}", growth]
        print(f"| {n} | " + " | ".join(cells) + " |")
    # Growth exponent k in peak ~ N^k between the smallest and largest N: 1 linear, 2 quadratic.
    for name, points in measured.items():
        if len(points) >= 2:
            (n0, p0), (n1, p1) = points[0], points[-1]
            print(f"{name}: peak grows as N^{math.log(p1 / p0) / math.log(n1 / n0):.2f} from N={n0} to N={n1}")


if __name__ == "__main__":
    main()
