"""Barlow Twins (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction").

Each feature of both branches is standardised over the batch (batch-norm without affine
parameters: mean 0, biased variance 1, eps 1e-5), the D x D cross-correlation of the two
branches is ``C = z1_n^T z2_n / N``, and the loss (eq. 1) pulls its diagonal to 1 and its
off-diagonal to 0::

    loss = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2

Under ``torch.distributed`` the official code standardises with synchronised batch-norm
(statistics over the global batch) and all-reduces C; so does this loss with
``gather_distributed=True``: the per-feature sums, then the sums of squared deviations,
then C are all-reduced (three D- or D x D-sized collectives, no N-sized gather), so every
rank computes the loss of the whole batch, exactly, at any per-rank batch sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from augplug import distributed
from augplug.checks import accumulation_dtype, check_bool, check_positive
from augplug.components import Objective
from augplug_objectives.infonce import check_pair

__all__ = ["BarlowTwins", "barlow_twins"]


def _global_sum(x: torch.Tensor, gather: bool) -> torch.Tensor:
    return distributed.all_reduce_with_grad(x) if gather else x


def barlow_twins(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    lambda_offdiagonal: float = 5.1e-3,
    eps: float = 1e-5,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """Functional form of :class:`BarlowTwins` (same arguments)."""
    check_pair(z1, z2)
    dtype = accumulation_dtype(z1.dtype)
    gather = gather_distributed and distributed.is_distributed()
    if z1.shape[0] < 2 and not gather:
        raise ValueError(
            f"z1: expected at least 2 samples to standardise over, got shape {tuple(z1.shape)}"
        )
    a, b = z1.to(dtype), z2.to(dtype)
    if gather:
        # Global batch statistics (the official SyncBatchNorm), then C all-reduced. Two
        # passes (mean, then squared deviations), as batch-norm: no E[z^2] - E[z]^2
        # cancellation; the two branches' statistics share each collective.
        rows = _global_sum(torch.tensor(float(a.shape[0]), dtype=dtype, device=a.device), gather)
        means = _global_sum(torch.stack([a.sum(0), b.sum(0)]), gather) / rows
        a, b = a - means[0], b - means[1]
        variances = _global_sum(torch.stack([a.square().sum(0), b.square().sum(0)]), gather) / rows
        scales = torch.rsqrt(variances + eps)
        a, b = a * scales[0], b * scales[1]
    else:
        # One process: the official BatchNorm1d's own fused op, which keeps half the
        # (B, D) intermediates of the written-out form alive for the backward.
        rows = a.shape[0]
        a = F.batch_norm(a, None, None, training=True, eps=eps)
        b = F.batch_norm(b, None, None, training=True, eps=eps)
    correlation = _global_sum(a.T @ b, gather) / rows
    diagonal = correlation.diagonal()
    # lambda * sum_{i != j} C_ij^2 as lambda * ||C||_F^2 minus the diagonal's share: the norm is
    # one fused reduction, so no second D x D tensor (C^2) is made. |C_ij| <= 1, so the
    # subtraction loses at most ~D float32 ulps of the loss.
    total = torch.linalg.vector_norm(correlation).square()
    return (
        lambda_offdiagonal * total
        + ((1.0 - diagonal).square() - lambda_offdiagonal * diagonal.square()).sum()
    )


class BarlowTwins(Objective):
    """Barlow Twins' redundancy-reduction loss (Zbontar et al. 2021, eq. 1), DDP-exact.

    ``forward(z1, z2)``: the two branches' projections, (B, D) each (the paper's projector
    is 8192-wide). Returns a float32 scalar (float64 for float64 inputs); bf16/fp16 inputs
    are standardised and correlated in float32. Symmetric in the branches (C becomes C^T).

    Args:
        lambda_offdiagonal: weight of the off-diagonal (redundancy) term; 5.1e-3, the
            official code's value for the 8192-d projector (the paper rounds it to 5e-3).
        eps: added to each feature's batch variance before the square root; 1e-5 (the
            official code's ``BatchNorm1d``).
        gather_distributed: under ``torch.distributed``, standardise with the global
            batch's statistics and all-reduce C (the official synchronised batch-norm and
            ``all_reduce(c)``); every rank gets the whole batch's loss, and DDP's gradient
            average gives the single-process gradient. A no-op on one process.

    Examples:
        >>> loss_fn = BarlowTwins()
        >>> loss_fn(torch.randn(32, 64), torch.randn(32, 64)).shape
        torch.Size([])
    """

    #: L(z1, z2) == L(z2, z1): a recipe Pipeline need not also evaluate the swapped pair.
    swap_invariant = True

    def __init__(
        self,
        lambda_offdiagonal: float = 5.1e-3,
        eps: float = 1e-5,
        gather_distributed: bool = False,
    ):
        super().__init__()
        self.lambda_offdiagonal = check_positive(
            lambda_offdiagonal, "lambda_offdiagonal", allow_zero=True
        )
        self.eps = check_positive(eps, "eps")
        self.gather_distributed = check_bool(gather_distributed, "gather_distributed")

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return barlow_twins(
            z1,
            z2,
            lambda_offdiagonal=self.lambda_offdiagonal,
            eps=self.eps,
            gather_distributed=self.gather_distributed,
        )

    def extra_repr(self) -> str:
        return f"lambda_offdiagonal={self.lambda_offdiagonal}, eps={self.eps}, gather_distributed={self.gather_distributed}"
