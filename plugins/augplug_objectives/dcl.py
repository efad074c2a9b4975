"""Decoupled contrastive loss (DCL) and its weighted form (DCLW), tiled like InfoNCE.

Yeh et al. 2022, "Decoupled Contrastive Learning" (ECCV), eq. 6: InfoNCE with the
positive taken out of the denominator, which removes the negative-positive coupling that
makes InfoNCE's gradient shrink at small batches. For anchor i with positives P(i) (the
other views of its sample) and negatives N(i) (every embedding of every other sample)::

    loss_i = logsumexp_{k in N(i)} s_ik - mean_{p in P(i)} w_ip s_ip,     s = cos / temperature

DCL has w = 1. DCLW weighs each positive pair by the negative von Mises-Fisher weight
``w = 2 - exp(cos / sigma) / E[exp(cos / sigma)]`` (the expectation over the batch's
positive pairs, no gradient through w; sigma 0.5 in the paper), which stresses the hard
(dissimilar) positive pairs.

The log-sum-exp runs through :func:`augplug_objectives.infonce.similarity_logsumexp` with
``exclude_block`` = views, so it has InfoNCE's O(N d + tile N) memory, its recomputing
backward and its DDP behaviour; nothing N x N is materialised.
"""

from __future__ import annotations

import torch

from augplug import distributed
from augplug.checks import accumulation_dtype, check_positive
from augplug.components import Objective
from augplug.ops import l2_normalize
from augplug_objectives.infonce import (
    _check_options,
    _check_views,
    _keeps_half_storage,
    _positive_similarity,
    similarity_logsumexp,
)

__all__ = ["DCL", "DCLW", "dcl"]


def _pair_weights(
    pair_cos: torch.Tensor, every_pair_cos: torch.Tensor, sigma: float
) -> torch.Tensor:
    """DCLW's ``2 - exp(cos / sigma) / mean_pairs exp(cos / sigma)`` for (B, V, V) pair cosines.

    ``every_pair_cos`` holds the pairs the mean runs over (the whole, gathered batch); the
    diagonal (a view with itself) is no pair and is left out. Computed as a softmax
    (log-sum-exp shift) so a small sigma cannot overflow.
    """
    views = pair_cos.shape[-1]
    off_diagonal = ~torch.eye(views, dtype=torch.bool, device=pair_cos.device)
    scaled = every_pair_cos / sigma
    pairs = every_pair_cos.shape[0] * views * (views - 1)
    log_mean = torch.logsumexp(scaled.masked_fill(~off_diagonal, float("-inf")).flatten(), 0)
    log_mean = log_mean - torch.log(
        torch.tensor(float(pairs), dtype=scaled.dtype, device=scaled.device)
    )
    return (2.0 - torch.exp(pair_cos / sigma - log_mean)) * off_diagonal


def dcl(
    z1: torch.Tensor,
    z2: torch.Tensor | None = None,
    *,
    temperature: float = 0.1,
    sigma: float | None = None,
    tile_size: int | None = None,
    gather_distributed: bool = False,
    local_anchors: bool = False,
) -> torch.Tensor:
    """Functional form of :class:`DCL` (``sigma=None``) and :class:`DCLW` (``sigma`` set)."""
    temperature = _check_options(temperature, tile_size, gather_distributed, local_anchors, "torch")
    if sigma is not None:
        sigma = check_positive(sigma, "sigma")
    views = _check_views(z1, z2)
    num_views, dim = views.shape[1], views.shape[2]
    dtype = accumulation_dtype(views.dtype)
    unit = l2_normalize(views.to(dtype))
    storage = unit.to(views.dtype) if _keeps_half_storage(views) else unit

    anchors, keys, self_offset, local_weight = storage, storage, 0, None
    sizes = [views.shape[0]]
    if gather_distributed and distributed.is_distributed():
        sizes = distributed.gather_sizes(unit)
        keys = distributed.all_gather_with_grad(storage, sizes=sizes)
        if local_anchors:
            self_offset = sum(sizes[: distributed.rank()]) * num_views
            # The ranks' losses then average to the whole batch's loss at any per-rank sizes.
            local_weight = distributed.world_size() / (sum(sizes) * num_views)
        else:
            anchors = keys
    if sum(sizes) < 2:
        raise ValueError(
            f"z1: expected at least 2 samples in the (global) batch for negatives, got {sum(sizes)}"
        )

    lse = similarity_logsumexp(
        anchors.reshape(-1, dim),
        keys.reshape(-1, dim),
        scale=1.0 / temperature,
        tile_size=tile_size,
        self_offset=self_offset,
        exclude_block=num_views,
    )
    anchors = anchors.to(dtype)
    if sigma is None:
        positive = _positive_similarity(anchors)
    else:
        pair_cos = torch.einsum("bvd,bwd->bvw", anchors, anchors)
        every_pair = pair_cos.detach()
        if local_anchors:  # the expectation runs over the whole batch's pairs
            every_pair = distributed.all_gather_no_grad(every_pair, sizes=sizes)
        weights = _pair_weights(pair_cos.detach(), every_pair, sigma)
        positive = (weights * pair_cos).sum(-1) / (num_views - 1)
    per_anchor = lse - positive.reshape(-1) / temperature
    if local_weight is not None:
        return per_anchor.sum() * local_weight
    return per_anchor.mean()


class DCL(Objective):
    """Decoupled contrastive loss (Yeh et al. 2022, eq. 6): InfoNCE without the positive in the denominator.

    ``forward(z1, z2=None)``: two views as (B, D) each, or all views as z1 of shape
    (B, V, D); every other view of a sample is a positive and is left out of the anchor's
    log-sum-exp, as is the anchor itself. Every embedding is an anchor; the loss is the
    mean over all B * V anchors (lightly's ``DCLLoss`` for V = 2). Symmetric in the views.
    Memory O(N d + tile N), as :class:`~augplug_objectives.infonce.InfoNCE`. Returns a
    float32 scalar (float64 for float64 inputs); bf16/fp16 are accumulated in float32.

    Args:
        temperature: divides the cosine similarities; 0.1 (the paper's SimCLR setting
            and lightly's default).
        tile_size: anchor rows per tile (``None``: about 32M similarities per tile).
        gather_distributed: under ``torch.distributed``, every rank's embeddings are
            negatives (differentiable all-gather; ranks may hold different batch sizes);
            the loss equals the single-process loss on the concatenated batch. No-op on
            one process.
        local_anchors: with ``gather_distributed``, only this rank's embeddings are
            anchors (each rank computes its share; DDP's average gives the whole loss).

    Examples:
        >>> loss_fn = DCL(temperature=0.1)
        >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss_fn(z1, z2).shape
        torch.Size([])
    """

    #: L(z1, z2) == L(z2, z1): a recipe Pipeline need not also evaluate the swapped pair.
    swap_invariant = True
    _sigma: float | None = None

    def __init__(
        self,
        temperature: float = 0.1,
        tile_size: int | None = None,
        gather_distributed: bool = False,
        local_anchors: bool = False,
    ):
        super().__init__()
        self.temperature = _check_options(
            temperature, tile_size, gather_distributed, local_anchors, "torch"
        )
        self.tile_size = tile_size
        self.gather_distributed = gather_distributed
        self.local_anchors = local_anchors

    def forward(self, z1: torch.Tensor, z2: torch.Tensor | None = None) -> torch.Tensor:
        return dcl(
            z1,
            z2,
            temperature=self.temperature,
            sigma=self._sigma,
            tile_size=self.tile_size,
            gather_distributed=self.gather_distributed,
            local_anchors=self.local_anchors,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, tile_size={self.tile_size}, "
            f"gather_distributed={self.gather_distributed}, local_anchors={self.local_anchors}"
        )


class DCLW(DCL):
    """Weighted decoupled contrastive loss (DCLW, Yeh et al. 2022, eq. 6 with the vMF weight).

    :class:`DCL` with each positive pair's similarity weighted by
    ``w = 2 - exp(cos / sigma) / E[exp(cos / sigma)]`` (no gradient through w; the mean
    runs over every positive pair of the whole, gathered batch). Same inputs and output
    as :class:`DCL`; for V = 2 it is lightly's ``DCLWLoss``.

    Args:
        temperature: divides the cosine similarities; 0.1.
        sigma: the weight's concentration; 0.5 (the paper's default).
        tile_size, gather_distributed, local_anchors: as :class:`DCL`.

    Examples:
        >>> loss_fn = DCLW(temperature=0.1, sigma=0.5)
        >>> loss_fn(torch.randn(8, 3, 16)).shape
        torch.Size([])
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sigma: float = 0.5,
        tile_size: int | None = None,
        gather_distributed: bool = False,
        local_anchors: bool = False,
    ):
        super().__init__(temperature, tile_size, gather_distributed, local_anchors)
        self._sigma = check_positive(sigma, "sigma")

    @property
    def sigma(self) -> float:
        return self._sigma

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma={self.sigma}"
