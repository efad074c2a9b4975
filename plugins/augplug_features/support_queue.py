"""Feature augmenters that look up a batch's neighbours in a FIFO support queue.

NNCLR (Dwibedi et al. 2021) replaces a feature by its cosine nearest neighbour in a queue
of past features; MeanShift (Koohpayegani et al. 2021) by the mean of its top-k neighbours.
Both keep an :class:`augplug.queue.SupportQueue` (see there for its buffers, lookup and
DDP behaviour); the batch is enqueued *after* the lookup, only in training mode.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from augplug.checks import check_generator, check_int
from augplug.components import FeatureAugmenter
from augplug.queue import SupportQueue

__all__ = ["NearestNeighbour", "NeighbourMean"]


class _QueueAugmenter(FeatureAugmenter):
    """Looks the batch up in a :class:`SupportQueue`, then (training only) enqueues rows.

    ``forward(z, *, partner=None, k=None, generator=None, enqueue=None)``: ``enqueue`` is
    what gets written to the queue after the lookup, (M, dim) rows on the queue's device;
    ``None`` writes ``z`` itself. NNCLR, for one, fills its queue from one view's
    projections only (B rows per step) while it looks up both views. Every argument is
    checked before the queue changes; a query row that is not finite comes back as NaN
    (never a stored neighbour), and the queue never stores a non-finite row (see
    :class:`augplug.queue.SupportQueue`).
    """

    #: ``forward`` takes ``enqueue=``, the rows to write after the lookup.
    takes_enqueue = True

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.queue = SupportQueue(size, dim)

    def forward(self, z, *, partner=None, k=None, generator=None, enqueue=None):
        self.queue.check_query(z)
        if enqueue is not None:
            self.queue.check_query(enqueue, "enqueue")
        self.check_samples(k)
        check_generator(generator, z.device)
        query = self.queue.normalise(z.detach())
        with torch.no_grad():
            out = self.augment(query, 1 if k is None else k)
            # A NaN/inf query scores NaN against every row and topk would still hand back
            # stored rows: mark those samples' results as NaN instead of a silent answer.
            finite = torch.isfinite(query).all(dim=-1)[:, None, None]
            out = torch.where(finite, out, torch.nan).to(z.dtype)
        if self.training:
            self.queue.enqueue((z if enqueue is None else enqueue).detach())
        return out.squeeze(1) if k is None else out

    def augment(self, query: torch.Tensor, samples: int) -> torch.Tensor:
        raise NotImplementedError


class NearestNeighbour(_QueueAugmenter):
    """Replaces each feature by its cosine nearest neighbour in a FIFO support queue (NNCLR).

    Returns the stored (unit-norm) queue row, without gradient. ``k`` samples are the k
    nearest neighbours, nearest first. Before anything is enqueued, or where fewer than k
    slots are filled, the feature itself (normalised) stands in for the missing neighbours.
    ``size=65536`` is NNCLR's smallest queue; ``dim`` is the feature dimension (required,
    so the queue exists before DDP broadcasts buffers and before ``load_state_dict``).
    """

    example_kwargs: ClassVar[dict[str, int]] = {"dim": 8, "size": 32}

    def __init__(self, dim: int, size: int = 65536):
        super().__init__(size, dim)

    def augment(self, query, samples):
        rows, filled = self.queue.nearest(query, samples)
        if rows.shape[1] < samples:  # k larger than the queue: the rest are stand-ins too
            rows = torch.cat([rows, query.unsqueeze(1).expand(-1, samples - rows.shape[1], -1)], 1)
            filled = nn.functional.pad(filled, (0, samples - filled.shape[1]), value=False)
        return torch.where(filled.unsqueeze(-1), rows, query.unsqueeze(1))


class NeighbourMean(_QueueAugmenter):
    """Replaces each feature by the mean of its ``neighbours`` nearest queue rows (MeanShift).

    Cosine top-k in a FIFO support queue, without gradient; the mean of unit rows is not
    re-normalised (objectives normalise). Unfilled picks count as the feature itself
    (normalised). The result is deterministic, so ``k`` samples are k identical copies.
    Defaults follow MeanShift (Koohpayegani et al. 2021): 5 neighbours, a 128000-row bank.
    """

    example_kwargs: ClassVar[dict[str, int]] = {"dim": 8, "size": 32}

    def __init__(self, dim: int, size: int = 128000, neighbours: int = 5):
        super().__init__(size, dim)
        self.neighbours = check_int(neighbours, "neighbours", minimum=1)
        if self.neighbours > size:
            raise ValueError(f"neighbours: expected at most size ({size}), got {neighbours}")

    def augment(self, query, samples):
        rows, filled = self.queue.nearest(query, self.neighbours)
        rows = torch.where(filled.unsqueeze(-1), rows, query.unsqueeze(1))
        mean = rows.float().mean(dim=1, keepdim=True).to(rows.dtype)
        return mean.expand(-1, samples, -1)

    def extra_repr(self) -> str:
        return f"neighbours={self.neighbours}"
