"""A FIFO support queue of past features and the augmenters that look up their neighbours in it.

NNCLR (Dwibedi et al. 2021) replaces a feature by its cosine nearest neighbour in a queue
of past features; MeanShift (Koohpayegani et al. 2021) by the mean of its top-k neighbours.
Both share :class:`SupportQueue`:

* the queue, its write pointer and fill count are buffers, so ``state_dict`` saves them and
  resuming continues exactly where training stopped;
* rows are stored L2-normalised in the module's dtype (``.to(torch.bfloat16)`` gives a bf16
  queue), so a lookup is one ``addmm`` + ``topk`` with no per-call normalisation of the queue;
* slots not yet filled are pushed out of the top-k by a bias added inside that same
  ``addmm``: no host sync, no boolean indexing;
* the batch is enqueued *after* the lookup, only in training mode, gathered from every rank
  under DDP (without gradient; so every rank must pass the same batch size, as
  ``all_gather`` requires); a batch that wraps past the end continues at slot 0.
"""

from __future__ import annotations

import torch
from torch import nn

from augplug.checks import check_generator, check_same_device, check_tensor
from augplug.components import FeatureAugmenter
from augplug.distributed import all_gather_no_grad

__all__ = ["NearestNeighbour", "NeighbourMean", "SupportQueue"]

# Cosine similarities lie in [-1, 1] (a little beyond in bf16), and an empty slot holds a
# zero row (similarity 0), so this bias ranks every empty slot below every filled one.
_EMPTY_SLOT_BIAS = -4.0


def _check_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


class SupportQueue(nn.Module):
    """FIFO queue of ``size`` L2-normalised ``dim``-dimensional features.

    Buffers: ``features`` (size, dim), ``pointer`` (the next slot to write) and ``count``
    (filled slots, at most ``size``), the latter two 0-d int64 tensors kept on the device
    so that neither a lookup nor a write needs a host sync.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.size = _check_int(size, "size")
        self.dim = _check_int(dim, "dim")
        self.register_buffer("features", torch.zeros(self.size, self.dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def check_query(self, z: object, name: str = "z") -> torch.Tensor:
        """A (B, dim) floating batch on the queue's device (checked before any state changes)."""
        check_tensor(
            z, name, ndim=2, shape=(None, self.dim), layout=f"(B, {self.dim}) for this queue"
        )
        check_same_device("the queue", self.features, name, z)
        return z

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        """Unit rows in the queue's dtype (normalised in float32 so bf16/fp16 keep their accuracy)."""
        return nn.functional.normalize(z.float(), dim=-1).to(self.features.dtype)

    @torch.no_grad()
    def nearest(self, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k most cosine-similar filled rows for each unit query row, nearest first.

        Returns ``rows`` (B, k, dim) and ``filled`` (B, k) bool: where fewer than k slots are
        filled, the surplus picks are empty slots and ``filled`` is False there.
        """
        slots = torch.arange(self.size, device=query.device)
        bias = torch.where(slots < self.count, 0.0, _EMPTY_SLOT_BIAS).to(self.features.dtype)
        similarity = torch.addmm(bias, query, self.features.t())  # (B, size)
        index = similarity.topk(min(k, self.size), dim=-1).indices
        return self.features[index], index < self.count

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor) -> None:
        """Write every rank's unit rows of ``z`` after the newest, overwriting the oldest."""
        rows = all_gather_no_grad(self.normalise(z))
        total = rows.shape[0]
        # Of a batch longer than the queue only its last `size` rows would survive the writes.
        kept = rows[-self.size :]
        first = self.pointer + (total - kept.shape[0])
        slots = (first + torch.arange(kept.shape[0], device=rows.device)) % self.size
        self.features.index_copy_(0, slots, kept)
        self.pointer.copy_((self.pointer + total) % self.size)
        self.count.copy_(torch.clamp(self.count + total, max=self.size))

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"


class _QueueAugmenter(FeatureAugmenter):
    """Looks the batch up in a :class:`SupportQueue`, then (training only) enqueues it."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.queue = SupportQueue(size, dim)

    def forward(self, z, *, partner=None, k=None, generator=None):
        self.queue.check_query(z)
        self.check_samples(k)
        check_generator(generator, z.device)
        query = self.queue.normalise(z.detach())
        with torch.no_grad():
            out = self.augment(query, 1 if k is None else k).to(z.dtype)
        if self.training:
            self.queue.enqueue(z.detach())
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

    def __init__(self, dim: int, size: int = 128000, neighbours: int = 5):
        super().__init__(size, dim)
        self.neighbours = _check_int(neighbours, "neighbours")
        if self.neighbours > size:
            raise ValueError(f"neighbours: expected at most size ({size}), got {neighbours}")

    def augment(self, query, samples):
        rows, filled = self.queue.nearest(query, self.neighbours)
        rows = torch.where(filled.unsqueeze(-1), rows, query.unsqueeze(1))
        mean = rows.float().mean(dim=1, keepdim=True).to(rows.dtype)
        return mean.expand(-1, samples, -1)

    def extra_repr(self) -> str:
        return f"neighbours={self.neighbours}"
