"""MoCo: InfoNCE of online queries against momentum-encoder keys.

* **v2, with a queue** (He et al. 2020, "Momentum Contrast for Unsupervised Visual
  Representation Learning", Algorithm 1; Chen et al. 2020, "Improved Baselines with Momentum
  Contrastive Learning"): the logits of query q are ``[q.k+, q.queue] / T`` with k+ its own
  key, the negatives a FIFO queue of past keys (65536), temperature 0.2, and the batch's keys
  are enqueued *after* the loss (every rank's keys under DDP). The queue is the core's
  :class:`augplug.queue.SupportQueue`; slots not filled yet are left out of the softmax.
* **v3, in-batch** (Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised
  Vision Transformers", Algorithm 1), ``queue_size=0``: the logits of q_i are
  ``q_i . k_j / T`` over the batch's keys (every rank's with ``gather_distributed``), the
  positive its own key, temperature 0.2. The paper's loss sums the two directions
  ``ctr(q1, k2) + ctr(q2, k1)`` and scales each by 2T; a recipe Pipeline averages the two
  directions (swap_branches), which is half the sum, and the 2T factor is left to the
  learning rate.

Queries and keys are L2-normalised in float32; no gradient reaches the keys.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from augplug import distributed
from augplug.checks import accumulation_dtype, check_bool, check_int, check_positive
from augplug.components import Objective
from augplug.ops import l2_normalize
from augplug.queue import SupportQueue
from augplug_objectives.infonce import _check_views, similarity_logsumexp

__all__ = ["MoCo"]


class MoCo(Objective):
    """MoCo's contrastive loss: v2 with a queue of momentum keys, or v3 in-batch (``queue_size=0``).

    ``forward(z1, z2)``: ``z1`` the online queries (the predictor's output in v3), ``z2``
    the momentum encoder's keys of the other view, (B, D) each; ``z2`` is detached. In
    training mode the v2 queue is filled with the keys after the loss, so call it once per
    step (``swap_branches = false`` in a recipe: MoCo v2's asymmetric form; with both
    directions the second would meet the first's keys of the same images as negatives).
    Returns a float32 scalar (float64 for float64 inputs).

    Args:
        dim: D, the keys' width; needed for the queue (``queue_size > 0``), else unused.
        queue_size: negatives kept from past batches; 65536 (MoCo v2). 0: MoCo v3's
            in-batch negatives.
        temperature: 0.2 (MoCo v2, and MoCo v3's ViT setting; v3 uses 1.0 for ResNets).
        gather_distributed: under ``torch.distributed``, v3 scores queries against every
            rank's keys (labels offset by the rank's rows), and both forms weight this
            rank's loss by world_size / global batch so that DDP's gradient average is the
            whole batch's gradient at any per-rank sizes. The v2 queue is always filled
            with every rank's keys. A no-op on one process.

    Examples:
        >>> loss_fn = MoCo(dim=16, queue_size=64)
        >>> loss_fn(torch.randn(8, 16), torch.randn(8, 16)).shape
        torch.Size([])
    """

    #: Small arguments for the conformance kit and the bad-input matrix (augplug.testing).
    example_kwargs: ClassVar[dict[str, int]] = {"dim": 8, "queue_size": 16}

    def __init__(
        self,
        dim: int | None = None,
        queue_size: int = 65536,
        temperature: float = 0.2,
        gather_distributed: bool = False,
    ):
        super().__init__()
        self.queue_size = check_int(queue_size, "queue_size", minimum=0)
        if dim is None and self.queue_size:
            raise ValueError(
                "dim: expected the keys' width for the queue (queue_size > 0), got None"
            )
        self.dim = None if dim is None else check_int(dim, "dim", minimum=1)
        self.temperature = check_positive(temperature, "temperature")
        self.gather_distributed = check_bool(gather_distributed, "gather_distributed")
        self.queue = SupportQueue(self.queue_size, self.dim) if self.queue_size else None

    @property
    def once_per_step(self) -> bool:
        """With a queue every call enqueues its keys: a recipe must call this loss once per step."""
        return self.queue is not None

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        pair = _check_views(z1, z2)
        if self.queue is not None:
            self.queue.check_query(z1, "z1")
        dtype = accumulation_dtype(pair.dtype)
        query = l2_normalize(pair[:, 0].to(dtype))
        key = l2_normalize(pair[:, 1].detach().to(dtype))
        distributed_loss = self.gather_distributed and distributed.is_distributed()
        sizes = distributed.gather_sizes(key) if distributed_loss else [key.shape[0]]
        if self.queue is None:
            keys, offset = key, 0
            if distributed_loss:
                keys = distributed.all_gather_no_grad(key, sizes=sizes)
                offset = sum(sizes[: distributed.rank()])
            logits = query @ keys.T / self.temperature
            positive = logits.diagonal(offset=offset)
            denominator = torch.logsumexp(logits, dim=1)
        else:
            positive = (query * key).sum(-1) / self.temperature
            slots = torch.arange(self.queue_size, device=query.device)
            # Empty slots hold no key: the lowest finite score keeps them out of the softmax
            # without a host sync (-inf would make an all-empty queue's gradient 0 * NaN).
            empty = (slots >= self.queue.count).to(dtype) * torch.finfo(dtype).min
            # InfoNCE's tiled log-sum-exp over the queue: O(B d + tile x queue) memory, never
            # the (B, queue) logits. A copy of the queue (as the official code's clone()):
            # the enqueue below overwrites it in place, and the backward reads these rows.
            negatives = similarity_logsumexp(
                query,
                self.queue.features.to(dtype, copy=True),
                scale=1.0 / self.temperature,
                exclude_block=0,
                key_bias=empty,
            )
            denominator = torch.logaddexp(positive, negatives)
        per_query = denominator - positive
        if distributed_loss:
            loss = per_query.sum() * (distributed.world_size() / sum(sizes))
        else:
            loss = per_query.mean()
        if self.training and self.queue is not None:
            self.queue.enqueue(key)
        return loss

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, queue_size={self.queue_size}, temperature={self.temperature}, "
            f"gather_distributed={self.gather_distributed}"
        )
