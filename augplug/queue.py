"""A FIFO queue of past features, shared by the queue-based augmenters and objectives.

NNCLR (Dwibedi et al. 2021) looks up a feature's nearest neighbour in a queue of past
features, MeanShift (Koohpayegani et al. 2021) the mean of its top-k neighbours, and MoCo
(He et al. 2020) scores queries against a queue of past keys. All use :class:`SupportQueue`:

* the queue, its write pointer and fill count are buffers, so ``state_dict`` saves them and
  resuming continues exactly where training stopped;
* rows are stored L2-normalised in the module's dtype (``.to(torch.bfloat16)`` gives a bf16
  queue), so a lookup is one ``addmm`` + ``topk`` with no per-call normalisation of the queue;
* slots not yet filled are pushed out of the top-k by a bias added inside that same
  ``addmm``: no host sync, no boolean indexing;
* under DDP :meth:`SupportQueue.enqueue` writes every rank's rows (gathered without
  gradient), in rank order; a batch that wraps past the end continues at slot 0.
"""

from __future__ import annotations

import torch
from torch import nn

from augplug.checks import check_int, check_same_device, check_tensor
from augplug.distributed import all_gather_no_grad

__all__ = ["SupportQueue"]

# Cosine similarities lie in [-1, 1] (a little beyond in bf16), and an empty slot holds a
# zero row (similarity 0), so this bias ranks every empty slot below every filled one.
_EMPTY_SLOT_BIAS = -4.0


class SupportQueue(nn.Module):
    """FIFO queue of ``size`` L2-normalised ``dim``-dimensional features.

    Buffers: ``features`` (size, dim), ``pointer`` (the next slot to write) and ``count``
    (filled slots, at most ``size``), the latter two 0-d int64 tensors kept on the device
    so that neither a lookup nor a write needs a host sync.

    Args:
        size: rows the queue holds (NNCLR: 65536; MoCo v2: 65536; MeanShift: 128000).
        dim: feature dimension of every row.

    Examples:
        >>> queue = SupportQueue(size=4, dim=2)
        >>> queue.enqueue(torch.tensor([[3.0, 4.0]]))
        >>> queue.features[0], int(queue.count)
        (tensor([0.6000, 0.8000]), 1)
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.size = check_int(size, "size", minimum=1)
        self.dim = check_int(dim, "dim", minimum=1)
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
