"""Collectives for losses and queues under ``torch.distributed`` (DDP, torchrun).

Outside an initialised process group every function is the identity for one rank,
so the same code runs on one process and many.

Ranks may hold different numbers of rows (the last batch of an epoch without
``drop_last``): the gathers first exchange the row counts, pad every rank's rows to the
largest count, gather, and strip the padding, so the result is always the plain
concatenation of every rank's rows in rank order. Exchanging the counts reads them on the
host: one small synchronisation per gather, on top of the collective itself.

Gradient scale under DDP: :func:`all_gather_with_grad` hands each rank the *sum* of every
rank's gradient for its rows. A loss that is the same on every rank (all anchors against
all keys) therefore gives rank r's embeddings ``world_size`` times the single-process
gradient, and a loss over local anchors only gives them the gradient of the *sum* of the
ranks' losses. DDP then averages the parameter gradients over the ranks, which divides that
factor back out: the update equals single-process training on the concatenated batch, as
long as the ranks' losses average to the loss of the concatenated batch (weigh local sums
by ``world_size / total rows``, not by ``1 / local rows``, when the ranks' sizes differ).
"""

from __future__ import annotations

import zlib

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_no_grad",
    "all_gather_with_grad",
    "all_reduce_with_grad",
    "gather_sizes",
    "is_distributed",
    "rank",
    "row_offset",
    "world_size",
]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Ranks in the default process group; 1 outside one."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default process group; 0 outside one."""
    return dist.get_rank() if is_distributed() else 0


def _layout_code(x: torch.Tensor) -> int:
    """A checksum of everything but the row count that every rank's ``x`` must share."""
    return zlib.crc32(f"{tuple(x.shape[1:])} {x.dtype}".encode())


def gather_sizes(x: torch.Tensor) -> list[int]:
    """Every rank's ``len(x)``, in rank order (a collective: every rank must call it).

    ``[len(x)]`` outside a process group. Reads the sizes on the host (one small sync).
    Raises ``ValueError`` on every rank (so none waits forever in the next collective)
    when the ranks' ``x`` differ in anything but the row count: trailing shape or dtype.
    """
    if not is_distributed():
        return [x.shape[0]]
    # On the rows' device: NCCL moves only CUDA tensors.
    mine = torch.tensor([x.shape[0], _layout_code(x)], dtype=torch.long, device=x.device)
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    sizes, codes = torch.stack(every).t().tolist()
    if len(set(codes)) > 1:
        others = [r for r, code in enumerate(codes) if code != codes[dist.get_rank()]]
        raise ValueError(
            f"x: expected the same shape after the batch dimension and the same dtype on every "
            f"rank, got shape {tuple(x.shape)}, {x.dtype} on rank {dist.get_rank()} and "
            f"something else on rank(s) {others}"
        )
    return sizes


def row_offset(x: torch.Tensor) -> int:
    """Where this rank's rows start in the gathered concatenation (for label offsets).

    The sum of the lower ranks' ``len(x)``; 0 outside a process group. A collective, like
    :func:`gather_sizes`: every rank must call it.
    """
    return sum(gather_sizes(x)[: rank()])


def _gather_padded(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All ranks' rows (each rank ``sizes[r]`` of them) concatenated, padding stripped."""
    longest = max(sizes)
    x = x.contiguous()
    if x.shape[0] < longest:
        # all_gather moves equal shapes only: pad with zeros, strip them below.
        x = torch.cat([x, x.new_zeros((longest - x.shape[0], *x.shape[1:]))])
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x)
    if all(size == longest for size in sizes):
        return torch.cat(parts)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


class _AllGather(torch.autograd.Function):
    """Concatenate every rank's rows; the backward hands each rank the summed gradient of its rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.start = sum(sizes[: dist.get_rank()])
        ctx.rows = x.shape[0]
        return _gather_padded(x, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Every rank computed a loss over all rows, so the gradient of rank r's rows is the
        # sum of all ranks' contributions (a sum, not a mean). The gathered tensor has the
        # same shape on every rank, so the all-reduce needs no padding.
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.start + ctx.rows], None


def all_gather_with_grad(x: torch.Tensor, *, sizes: list[int] | None = None) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0 (rank order), differentiable.

    Ranks may pass different numbers of rows; every other dimension and the dtype must
    match. Rank r's rows start at :func:`row_offset` (``r * len(x)`` when every rank holds
    the same number). The backward returns each rank the summed gradient of its own rows
    from every rank's loss (see the module docstring for how that meets DDP's averaging).
    Every rank must call it and every rank must run the backward (both are collectives).
    ``sizes``: the result of :func:`gather_sizes` on ``x`` when the caller already has it
    (saves exchanging the sizes twice).
    """
    if not is_distributed():
        return x
    return _AllGather.apply(x, gather_sizes(x) if sizes is None else list(sizes))


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor, *, sizes: list[int] | None = None) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0, without gradient (for queues).

    Ranks may pass different numbers of rows, as for :func:`all_gather_with_grad`.
    """
    if not is_distributed():
        return x.detach()
    return _gather_padded(x.detach(), gather_sizes(x) if sizes is None else list(sizes))


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the backward sums the ranks' gradients (each rank computed the whole loss)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """The sum of every rank's ``x`` (same shape on every rank), differentiable.

    The same gradient convention as :func:`all_gather_with_grad`: a loss computed identically
    on every rank gives rank r's input ``world_size`` times the single-process gradient, which
    DDP's gradient average divides back out. The identity outside a process group.
    """
    if not is_distributed():
        return x
    return _AllReduceSum.apply(x)
