"""Kernels an image-view recipe launches, eager and under ``torch.compile``.

    python benchmarks/count_kernels.py --views simclr --shape 16x224 [--device cuda]

At 32 px a view costs launches, not bytes; at 224 px it costs passes over the batch. Both can
be counted on any machine: eager ops through a ``TorchDispatchMode`` (view and metadata ops,
which launch nothing, are left out), compiled kernels from the code inductor generates
(``cpp_fused_*`` loops on the CPU, ``triton_*`` kernels on CUDA, plus ``extern_kernels``
calls such as convolutions). "full-batch" counts the ops whose output has at least a quarter
of the input's elements. Prints a table; see benchmarks/results/image_views.md.
"""

from __future__ import annotations

import argparse
import re

import torch
from torch._inductor.utils import run_and_get_code
from torch.utils._python_dispatch import TorchDispatchMode

import augplug

# Ops that only re-describe memory: no kernel runs for them.
_NO_KERNEL = re.compile(
    r"\.(view|_unsafe_view|unsqueeze|squeeze|expand|slice|select|unbind|detach|alias|t|transpose|permute|split\w*)\."
)


class _KernelCounter(TorchDispatchMode):
    def __init__(self, full_size: int):
        super().__init__()
        self.full_size = full_size
        self.kernels = 0
        self.full_batch = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not _NO_KERNEL.search(str(func)):
            self.kernels += 1
            if isinstance(out, torch.Tensor) and out.numel() >= self.full_size:
                self.full_batch += 1
        return out


def _count_eager(fn, full_size: int) -> tuple[int, int]:
    with _KernelCounter(full_size) as counter:
        fn()
    return counter.kernels, counter.full_batch


def _count_compiled(source: str) -> int:
    body = source[source.find("def call(") :]
    return len(
        re.findall(
            r"^\s+(?:cpp_fused_\w+|triton_\w+\.run|buf\d+ = extern_kernels\.\w+)\(", body, re.M
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--views", default="simclr")
    parser.add_argument("--shape", default="16x224", help="BATCHxSIDE")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    batch, side = (int(part) for part in args.shape.split("x"))
    views = augplug.create("views", args.views)
    gen = torch.Generator(device=args.device).manual_seed(0)
    x = torch.rand(batch, 3, side, side, device=args.device, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last)
    params = views.sample(x, generator=gen)
    full_size = x.numel() // 4

    sample = _count_eager(lambda: views.sample(x, generator=gen), full_size)
    forward = _count_eager(lambda: views.apply(x, params), full_size)
    leaf = x.detach().requires_grad_(True)
    out = views.apply(leaf, params)
    backward = _count_eager(lambda: out.sum().backward(), full_size)

    compiled = torch.compile(views.apply, fullgraph=True)
    _, forward_code = run_and_get_code(compiled, x, params)
    leaf = x.detach().requires_grad_(True)
    _, train_code = run_and_get_code(lambda: compiled(leaf, params).sum().backward())

    print(
        f"{args.views} views, {batch}x3x{side}x{side} channels_last float32 on {args.device}, torch {torch.__version__}\n"
    )
    # Training compiles two graphs: the forward (saving what the backward needs), then the backward.
    train_forward, train_backward = (_count_compiled(source) for source in train_code)
    print(
        "| path | sample | apply forward (full-batch) | forward when training | backward (full-batch) |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| eager | {sample[0]} | {forward[0]} ({forward[1]}) | {forward[0]} | {backward[0]} ({backward[1]}) |"
    )
    print(
        f"| torch.compile(apply) | (eager) | {sum(map(_count_compiled, forward_code))} | {train_forward} | {train_backward} |"
    )


if __name__ == "__main__":
    main()
