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
  gradient; ranks may pass different numbers of rows), in rank order; a batch that wraps
  past the end continues at slot 0;
* a row that is not finite (NaN/inf in the input, or a norm that is) is never stored, with
  or without :func:`augplug.checks.validation`: the finite rows are compacted on the device
  (a stable sort of fixed size), only they advance the pointer, and the ``dropped`` buffer
  counts the rows left out, so a bad batch cannot poison later lookups and nothing waits
  for the host.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from augplug.checks import check_int, check_same_device, check_tensor
from augplug.distributed import all_gather_no_grad
from augplug.ops import l2_normalize

__all__ = ["SupportQueue"]

# Cosine similarities lie in [-1, 1] (a little beyond in bf16), and an empty slot holds a
# zero row (similarity 0), so this bias ranks every empty slot below every filled one.
_EMPTY_SLOT_BIAS = -4.0


def _physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


class SupportQueue(nn.Module):
    """FIFO queue of ``size`` L2-normalised ``dim``-dimensional features.

    Buffers: ``features`` (size, dim), ``pointer`` (the next slot to write), ``count``
    (filled slots, at most ``size``) and ``dropped`` (non-finite rows refused so far, summed
    over the ranks under DDP), the last three 0-d int64 tensors kept on the device so that
    neither a lookup nor a write needs a host sync.

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
        # A size typed with too many zeros would otherwise surface as an allocator error
        # (or, with memory overcommit, a machine that starts swapping).
        needed, memory = 4 * self.size * self.dim, _physical_memory()
        if memory is not None and needed > memory:
            raise ValueError(
                f"size: expected a queue that fits in memory, got size={self.size} x dim={self.dim} "
                f"float32 rows = {needed / 2**30:.3g} GiB, more than this machine's "
                f"{memory / 2**30:.3g} GiB"
            )
        self.register_buffer("features", torch.zeros(self.size, self.dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("dropped", torch.zeros((), dtype=torch.long))

    def check_query(self, z: object, name: str = "z") -> torch.Tensor:
        """A (B, dim) floating batch on the queue's device (checked before any state changes)."""
        check_tensor(
            z, name, ndim=2, shape=(None, self.dim), layout=f"(B, {self.dim}) for this queue"
        )
        check_same_device("the queue", self.features, name, z)
        return z

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        """Unit rows in the queue's dtype (normalised in float32, at any magnitude)."""
        return l2_normalize(z.float()).to(self.features.dtype)

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
        """Write every rank's finite unit rows of ``z`` after the newest, overwriting the oldest.

        Rows that are not finite are left out (counted in ``dropped``); the others keep
        their order. Under DDP every rank receives the same rows, so every rank's queue
        stays identical.
        """
        rows = all_gather_no_grad(self.normalise(z))
        finite = torch.isfinite(rows).all(dim=-1)
        good = finite.sum()
        # Finite rows first, in their order: a stable sort of a fixed-size key, instead of
        # boolean indexing (whose output size would have to be read on the host).
        rows = rows[torch.sort((~finite).to(torch.uint8), stable=True).indices]
        # Only the last `size` finite rows can survive the writes: keep a window of `size`
        # rows ending at the last finite one (its start read on the device, not the host).
        first = torch.clamp(good - self.size, min=0)
        if rows.shape[0] > self.size:
            rows = rows[first + torch.arange(self.size, device=rows.device)]
        position = torch.arange(rows.shape[0], device=rows.device)
        slots = (self.pointer + first + position) % self.size
        # Positions past the finite rows write their slot's current row back: the slots
        # of the window are distinct (at most `size` of them), so nothing else moves.
        written = (position < good - first).unsqueeze(-1)
        self.features.index_copy_(0, slots, torch.where(written, rows, self.features[slots]))
        self.pointer.copy_((self.pointer + good) % self.size)
        self.count.copy_(torch.clamp(self.count + good, max=self.size))
        self.dropped.add_(finite.numel() - good)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the `dropped` counter existed load with it at 0.
        state_dict.setdefault(prefix + "dropped", torch.zeros((), dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
