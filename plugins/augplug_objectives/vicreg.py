"""VICReg (Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization").

For the two branches' embeddings Z, Z' (N x D), eq. 6 of the paper::

    loss = 25 * s(Z, Z') + 25 * (v(Z) + v(Z')) / 2 + 1 * (c(Z) + c(Z'))
    s = mean squared distance (invariance)
    v(Z) = mean_j relu(1 - sqrt(Var(Z_:j) + eps))            (unbiased variance, eps 1e-4)
    c(Z) = sum_{i != j} Cov(Z)_ij^2 / D,  Cov = (Z - mean)^T (Z - mean) / (N - 1)

The variance term is halved over the two branches as in the official code (the paper's
eq. 6 writes the sum; the code's weights 25/25/1 go with the halved form). Under
``torch.distributed`` the official code gathers every rank's embeddings
(``FullGatherLayer``) for the variance and covariance; with ``gather_distributed=True``
this loss gathers them (differentiably, any per-rank sizes) for all three terms, so every
rank computes the loss of the concatenated batch exactly (the official code's invariance
term is a per-rank mean, equal only for equal per-rank sizes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from augplug import distributed
from augplug.checks import accumulation_dtype, check_bool, check_positive, validation_enabled
from augplug.components import Objective
from augplug_objectives.infonce import check_pair

__all__ = ["VICReg", "vicreg"]


def vicreg(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    variance_target: float = 1.0,
    eps: float = 1e-4,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """Functional form of :class:`VICReg` (same arguments)."""
    check_pair(z1, z2)
    dtype = accumulation_dtype(z1.dtype)
    # Each branch as its own contiguous (N, D) tensor: the strided halves of a stacked
    # (N, 2, D) tensor slowed the D x D products and kept extra copies alive.
    a, b = z1.to(dtype), z2.to(dtype)
    if gather_distributed and distributed.is_distributed():
        sizes = distributed.gather_sizes(a)
        a = distributed.all_gather_with_grad(a, sizes=sizes)
        b = distributed.all_gather_with_grad(b, sizes=sizes)
    rows, dim = a.shape
    if rows < 2:
        raise ValueError(
            f"z1: expected at least 2 samples (an unbiased variance), got shape {tuple(z1.shape)}"
        )
    invariance = F.mse_loss(a, b)
    variance = a.new_zeros(())
    off = a.new_zeros(())
    for z in (a, b):
        variance = variance + torch.relu(variance_target - torch.sqrt(z.var(0) + eps)).mean() / 2
        centred = z - z.mean(0)
        covariance = centred.T @ centred / (rows - 1)
        # sum_{i != j} Cov_ij^2 as ||Cov||_F^2 minus the diagonal's: one fused reduction,
        # no second D x D tensor (Cov^2).
        diagonal = covariance.diagonal()
        off = off + torch.linalg.vector_norm(covariance).square() - diagonal.square().sum()
    loss = (
        invariance_weight * invariance + variance_weight * variance + covariance_weight * off / dim
    )
    # VICReg is not scale-invariant: its squared terms grow as |z|^4 and overflow the
    # accumulation dtype for huge embeddings (|z| ~ 1e30 gives ~1e61). Checking reads the
    # value (a host sync), so only while validation is on, as for non-finite inputs.
    if validation_enabled() and not bool(torch.isfinite(loss)):
        largest = max(float(z1.detach().abs().amax()), float(z2.detach().abs().amax()))
        raise ValueError(
            f"z1: expected embeddings small enough for VICReg's squared terms in {dtype} "
            f"(the loss overflows; largest |value| of z1, z2 is {largest:.3g})"
        )
    return loss


class VICReg(Objective):
    """VICReg's variance-invariance-covariance loss (Bardes et al. 2022), DDP-exact.

    ``forward(z1, z2)``: the two branches' embeddings (the expander's outputs), (B, D)
    each, B >= 2. Returns a float32 scalar (float64 for float64 inputs); bf16/fp16 inputs
    are reduced in float32. Symmetric in the branches.

    Args:
        invariance_weight: lambda, weight of the mean squared distance; 25.
        variance_weight: mu, weight of the hinge on each feature's standard deviation; 25.
        covariance_weight: nu, weight of the off-diagonal covariance penalty; 1.
        variance_target: gamma, the standard deviation the hinge asks for; 1.
        eps: added to the variance before the square root; 1e-4.
        gather_distributed: under ``torch.distributed``, compute every term over all
            ranks' embeddings (differentiable all-gather; ranks may hold different batch
            sizes), so each rank's loss is the whole batch's; DDP's gradient average then
            gives the single-process gradient. A no-op on one process.

    Examples:
        >>> loss_fn = VICReg()
        >>> loss_fn(torch.randn(32, 64), torch.randn(32, 64)).shape
        torch.Size([])
    """

    #: L(z1, z2) == L(z2, z1): a recipe Pipeline need not also evaluate the swapped pair.
    swap_invariant = True

    def __init__(
        self,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        variance_target: float = 1.0,
        eps: float = 1e-4,
        gather_distributed: bool = False,
    ):
        super().__init__()
        self.invariance_weight = check_positive(
            invariance_weight, "invariance_weight", allow_zero=True
        )
        self.variance_weight = check_positive(variance_weight, "variance_weight", allow_zero=True)
        self.covariance_weight = check_positive(
            covariance_weight, "covariance_weight", allow_zero=True
        )
        self.variance_target = check_positive(variance_target, "variance_target")
        self.eps = check_positive(eps, "eps")
        self.gather_distributed = check_bool(gather_distributed, "gather_distributed")

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return vicreg(
            z1,
            z2,
            invariance_weight=self.invariance_weight,
            variance_weight=self.variance_weight,
            covariance_weight=self.covariance_weight,
            variance_target=self.variance_target,
            eps=self.eps,
            gather_distributed=self.gather_distributed,
        )

    def extra_repr(self) -> str:
        return (
            f"invariance_weight={self.invariance_weight}, variance_weight={self.variance_weight}, "
            f"covariance_weight={self.covariance_weight}, variance_target={self.variance_target}, "
            f"eps={self.eps}, gather_distributed={self.gather_distributed}"
        )
