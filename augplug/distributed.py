"""Collectives for losses and queues under ``torch.distributed`` (DDP, torchrun).

Outside an initialised process group every function is the identity for one rank,
so the same code runs on one process and many.

Gradient scale under DDP: :func:`all_gather_with_grad` hands each rank the *sum* of every
rank's gradient for its rows. A loss that is the same on every rank (all anchors against
all keys) therefore gives rank r's embeddings ``world_size`` times the single-process
gradient, and a loss over local anchors only (1/world_size of the anchors each) gives them
the gradient of the *sum* of the ranks' losses. DDP then averages the parameter gradients
over the ranks, which divides that factor back out: the update equals single-process
training on the concatenated batch, with no extra scaling by the user.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather_no_grad", "all_gather_with_grad", "is_distributed", "rank", "world_size"]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Ranks in the default process group; 1 outside one."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default process group; 0 outside one."""
    return dist.get_rank() if is_distributed() else 0


class _AllGather(torch.autograd.Function):
    """Concatenate every rank's rows; the backward hands each rank the summed gradient of its rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Every rank computed a loss over all rows, so the gradient of rank r's rows is the
        # sum of all ranks' contributions (a sum, not a mean).
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0 (rank order), differentiable.

    Rank r's rows are ``[r * len(x), (r + 1) * len(x))`` of the result (offset labels by
    that). The backward returns each rank the summed gradient of its own rows from every
    rank's loss (see the module docstring for how that meets DDP's averaging). Every rank
    must call it with the same shape and dtype, and every rank must run the backward
    (it is a collective).
    """
    if not is_distributed():
        return x
    return _AllGather.apply(x)


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0, without gradient (for queues)."""
    if not is_distributed():
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts)
