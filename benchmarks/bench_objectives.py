"""Every new objective beside lightly's implementation of the same method: time and peak memory.

    python benchmarks/bench_objectives.py --device cpu --sizes 1024 4096 --threads 1
    python benchmarks/bench_objectives.py --device cuda --sizes 1024 4096 16384 --dtypes float32 bfloat16

For each objective and batch size N, forward + backward of augplug's loss and of lightly's on
the same inputs (lightly 1.6: DCLLoss, DCLWLoss, BarlowTwinsLoss, VICRegLoss, NTXentLoss
with a memory bank for MoCo v2, SwaVLoss on the scores of the same unit prototypes,
DINOLoss), interleaved round-robin, medians after a warm-up; "ratio" is augplug's time or
memory over lightly's in the same run. Memory is the peak above what was allocated before
the call (CUDA allocator peak; on the CPU the resident-set high-water mark, see
infonce_memory.py), read after a warm-up. "|diff|" is |augplug loss - lightly loss|.

Shapes: d = 128 for the contrastive losses (DCL, DCLW, MoCo v2 with a 65536-key queue) and
SwAV (3000 prototypes, 2 global + 6 local crops); d = 2048 for Barlow Twins and VICReg
(``--wide-dim 8192`` for the papers' projector, GPU); DINO with 2 global + 6 local crops and
K = 4096 outputs on the CPU (``--dino-dim 65536``, the paper's, on a GPU). On a CPU without
native bf16 (see "cpu capability" in the header) bfloat16 is emulated: the CPU default is
float32 only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from collections.abc import Callable

import torch
import torch.nn.functional as F
from augplug_objectives.barlow_twins import BarlowTwins
from augplug_objectives.dcl import DCL, DCLW
from augplug_objectives.dino import DINOLoss
from augplug_objectives.moco import MoCo
from augplug_objectives.swav import SwAV
from augplug_objectives.vicreg import VICReg
from bench_infonce import _median_ms, _peak_mib
from infonce_memory import use_mmap_for_large_allocations

CROPS = (2, 6)  # global, local (SwAV, DINO)


def _inputs(shape, dtype, device, seed, grad=True):
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(dtype)
    return x.requires_grad_(grad)


def _pair(objective: str, n: int, args, dtype, device):
    """(augplug loss fn, lightly loss fn, make-inputs) for one objective at batch n."""
    import lightly.loss as ll

    def two(dim):
        return lambda: (_inputs((n, dim), dtype, device, 0), _inputs((n, dim), dtype, device, 1))

    if objective == "dcl":
        return DCL(), ll.DCLLoss(), two(128)
    if objective == "dclw":
        return DCLW(), ll.DCLWLoss(), two(128)
    if objective == "barlow_twins":
        return (
            BarlowTwins(lambda_offdiagonal=5e-3),
            ll.BarlowTwinsLoss(lambda_param=5e-3),
            two(args.wide_dim),
        )
    if objective == "vicreg":
        return VICReg(), ll.VICRegLoss(), two(args.wide_dim)
    if objective == "moco_v2":
        ours = MoCo(128, 65536).to(device).eval()  # eval: the queue stays as filled below
        theirs = ll.NTXentLoss(temperature=0.2, memory_bank_size=(65536, 128)).to(device)
        ours.queue.enqueue(theirs.memory_bank.bank.clone())

        def theirs_fixed(q, k):  # lightly updates its bank only when q requires grad
            return theirs(q, k.detach())

        def make():
            q, k = two(128)()
            return q, k.detach()

        return ours, theirs_fixed, make
    if objective == "swav":
        ours = SwAV(128, 3000).to(device).eval()
        swav = ll.SwaVLoss()

        def theirs(z):
            scores = F.normalize(z.float(), dim=-1) @ ours.prototypes.T
            crops = scores.unbind(1)
            return swav(list(crops[: CROPS[0]]), list(crops[CROPS[0] :]))

        return ours, theirs, lambda: (_inputs((n, sum(CROPS), 128), dtype, device, 2),)
    if objective == "dino":
        ours = DINOLoss(args.dino_dim).to(device)
        dino = ll.DINOLoss(output_dim=args.dino_dim, warmup_teacher_temp_epochs=0).to(device)

        def theirs(student, teacher):
            return dino(list(teacher.unbind(1)), list(student.unbind(1)))

        def make():
            student = _inputs((n, sum(CROPS), args.dino_dim), dtype, device, 3)
            return student, _inputs((n, CROPS[0], args.dino_dim), dtype, device, 4, grad=False)

        return ours, theirs, make
    raise ValueError(f"objective: unknown {objective!r}")


def _fwd_bwd(loss_fn: Callable, make: Callable) -> Callable[[], float]:
    inputs = make()

    def run() -> float:
        for x in inputs:
            x.grad = None
        loss = loss_fn(*inputs)
        loss.backward()
        return float(loss)

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument(
        "--objectives",
        nargs="+",
        default=["dcl", "dclw", "barlow_twins", "vicreg", "moco_v2", "swav", "dino"],
    )
    parser.add_argument("--wide-dim", type=int, default=2048, help="Barlow Twins / VICReg width")
    parser.add_argument("--dino-dim", type=int, default=4096, help="DINO's K (65536 in the paper)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    use_mmap_for_large_allocations()
    import lightly

    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}")
    print(
        f"# torch {torch.__version__}, lightly {lightly.__version__}, python {platform.python_version()}, "
        f"threads {torch.get_num_threads()}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
        f"load average {os.getloadavg()[0]:.2f}"
        + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
    )
    print(
        "| objective | N | dtype | augplug ms | lightly ms | time ratio | augplug MiB | lightly MiB | memory ratio | abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for objective in args.objectives:
        for n in args.sizes:
            for dtype_name in args.dtypes:
                dtype = getattr(torch, dtype_name)
                ours, theirs, make = _pair(objective, n, args, dtype, device)
                runs = {"augplug": _fwd_bwd(ours, make), "lightly": _fwd_bwd(theirs, make)}
                try:
                    times = _median_ms(runs, device, args.warmup, args.repeats)
                    memory = {name: _peak_mib(run, device) for name, run in runs.items()}
                    diff = abs(runs["augplug"]() - runs["lightly"]())
                except (RuntimeError, MemoryError) as exc:  # out of memory: say which
                    print(
                        f"| {objective} | {n} | {dtype_name} | {type(exc).__name__}: {str(exc)[:60]} |"
                    )
                    continue
                print(
                    f"| {objective} | {n} | {dtype_name} | {times['augplug']:.1f} | {times['lightly']:.1f} | "
                    f"{times['augplug'] / times['lightly']:.2f} | {memory['augplug']:.1f} | "
                    f"{memory['lightly']:.1f} | {memory['augplug'] / max(memory['lightly'], 1e-9):.2f} | {diff:.1e} |",
                    flush=True,
                )
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
