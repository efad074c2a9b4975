"""SwAV (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments").

Each crop's L2-normalised embedding is scored against K L2-normalised prototypes. For each
global ("assign") crop, Sinkhorn-Knopp turns the batch's scores into soft codes whose
prototypes are used equally (3 iterations, epsilon 0.05); every *other* crop predicts
those codes with a softmax of its own scores over a temperature (0.1)::

    loss = mean_{a in assign} 1/(V - 1) sum_{v != a} mean_b -sum_k q_a[b, k] log softmax(s_v[b] / T)_k

The codes carry no gradient; the prototypes and the embeddings learn through the
predictions. As in the official code, the prototypes are re-normalised in place at the
start of every training call (not through the gradient), and an optional queue of past
global-crop embeddings (``queue_size``) joins the batch in Sinkhorn only.

Under ``torch.distributed`` the official code runs Sinkhorn with all-reduced sums over
every rank's scores. With ``gather_distributed=True`` this loss gathers every rank's
embeddings (differentiable, any per-rank sizes) and computes the whole batch's loss on
every rank: Sinkhorn over the gathered batch, and the prototypes' gradient is the whole
batch's on every rank, whether or not they sit inside the DDP-wrapped module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from augplug import distributed
from augplug.checks import accumulation_dtype, check_batch, check_bool, check_int, check_positive
from augplug.components import Objective
from augplug.ops import l2_normalize
from augplug.queue import SupportQueue

__all__ = ["SwAV", "sinkhorn_knopp", "stack_crops"]


def stack_crops(z: torch.Tensor | Sequence[torch.Tensor], name: str = "z") -> torch.Tensor:
    """A (B, V, D) tensor from itself or from a list of V crops' (B, D) embeddings."""
    if isinstance(z, torch.Tensor):
        return check_batch(z, name, ndim=3, layout="(B, V, D), or a list of (B, D) crops")
    if not isinstance(z, Sequence) or isinstance(z, str) or not z:
        raise TypeError(
            f"{name}: expected a (B, V, D) tensor or a non-empty list of (B, D) tensors, got {type(z).__name__}"
        )
    for i, crop in enumerate(z):
        check_batch(crop, f"{name}[{i}]", ndim=2, layout="(B, D), one crop's embeddings")
        if crop.shape != z[0].shape or crop.dtype != z[0].dtype or crop.device != z[0].device:
            raise ValueError(
                f"{name}[{i}]: expected shape {tuple(z[0].shape)}, {z[0].dtype} on {z[0].device} "
                f"(as {name}[0]), got {tuple(crop.shape)}, {crop.dtype} on {crop.device}"
            )
    return torch.stack(list(z), dim=1)


@torch.no_grad()
def sinkhorn_knopp(
    scores: torch.Tensor,
    *,
    epsilon: float = 0.05,
    iterations: int = 3,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft codes (..., N, K) for scores (..., N, K): rows sum to 1, prototypes used equally.

    SwAV's Sinkhorn-Knopp (appendix A.1): ``Q = exp(scores / epsilon)``, normalised to sum 1,
    then ``iterations`` rounds of dividing each prototype's row by K times its sum and each
    sample's column by N times its sum; returned times N (each sample's code sums to 1).
    Leading dimensions are independent problems. The exponential is shifted by the maximum
    score (the first normalisation cancels it), so small epsilons cannot overflow, and it is
    computed in float32 (float64 for float64 scores). ``valid`` (..., N) bool leaves samples
    out (unfilled queue slots): they get no mass and N counts only the valid ones.
    """
    dtype = accumulation_dtype(scores.dtype)
    logits = scores.to(dtype) / epsilon
    shift = logits.amax(dim=(-2, -1), keepdim=True)
    q = torch.exp(logits - shift)
    if valid is None:
        samples = torch.full(
            (*scores.shape[:-2], 1, 1), float(scores.shape[-2]), dtype=dtype, device=scores.device
        )
    else:
        q = q * valid.unsqueeze(-1)
        samples = valid.sum(-1, dtype=dtype)[..., None, None]
    prototypes = scores.shape[-1]
    tiny = torch.finfo(dtype).tiny
    q = q / q.sum(dim=(-2, -1), keepdim=True)
    for _ in range(iterations):
        q = q / (q.sum(-2, keepdim=True) * prototypes).clamp_min(tiny)  # each prototype: mass 1/K
        q = q / (q.sum(-1, keepdim=True) * samples).clamp_min(tiny)  # each sample: mass 1/N
    return q * samples


class SwAV(Objective):
    """SwAV's swapped-prediction loss with its own L2-normalised prototypes (Caron et al. 2020).

    ``forward(z)``: the crops' projections as (B, V, D), or a list of V (B, D) tensors
    (multi-crop: global crops first); the first ``assign_views`` crops get codes and every
    other crop predicts them. The loss owns the prototypes (a K x D parameter: give the
    loss's parameters to the optimiser; a recipe Pipeline holds it, so
    ``pipeline.parameters()`` includes them). Returns a float32 scalar (float64 for
    float64 inputs); bf16/fp16 inputs are scored and reduced in float32.

    Args:
        dim: the projection's width D (128 in the paper).
        num_prototypes: K; 3000 (the paper's ImageNet setting).
        temperature: of the predictions' softmax; 0.1.
        epsilon: Sinkhorn's entropy weight; 0.05.
        sinkhorn_iterations: 3.
        assign_views: the leading global crops that get codes; 2 (``crops_for_assign``).
        queue_size: rows of past global-crop embeddings per assign crop that join Sinkhorn
            (the paper's 3840 for batches of 256; 0, the default, for none). The queue is
            filled after the loss in training mode (every rank's rows under DDP) and used
            from the first step; the paper starts it after 15 epochs.
        gather_distributed: under ``torch.distributed``, compute the loss of the whole,
            gathered batch on every rank (Sinkhorn over it); DDP's gradient average then
            gives the single-process gradient. A no-op on one process.

    Examples:
        >>> loss_fn = SwAV(dim=16, num_prototypes=30)
        >>> crops = [torch.randn(8, 16) for _ in range(4)]   # 2 global + 2 local crops
        >>> loss_fn(crops).shape
        torch.Size([])
    """

    #: Small arguments for the conformance kit and the bad-input matrix (augplug.testing).
    example_kwargs: ClassVar[dict[str, int]] = {"dim": 8, "num_prototypes": 6}

    def __init__(
        self,
        dim: int,
        num_prototypes: int = 3000,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        assign_views: int = 2,
        queue_size: int = 0,
        gather_distributed: bool = False,
    ):
        super().__init__()
        self.dim = check_int(dim, "dim", minimum=1)
        self.num_prototypes = check_int(num_prototypes, "num_prototypes", minimum=1)
        self.temperature = check_positive(temperature, "temperature")
        self.epsilon = check_positive(epsilon, "epsilon")
        self.sinkhorn_iterations = check_int(sinkhorn_iterations, "sinkhorn_iterations", minimum=1)
        self.assign_views = check_int(assign_views, "assign_views", minimum=1)
        self.queue_size = check_int(queue_size, "queue_size", minimum=0)
        self.gather_distributed = check_bool(gather_distributed, "gather_distributed")
        # nn.Linear's default initialisation, as the official prototypes layer.
        weight = torch.empty(self.num_prototypes, self.dim)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.prototypes = nn.Parameter(l2_normalize(weight))
        self.queues = nn.ModuleList(
            [SupportQueue(self.queue_size, self.dim) for _ in range(self.assign_views)]
            if self.queue_size
            else []
        )

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Project the prototypes back onto the unit sphere (done at every training call)."""
        self.prototypes.copy_(l2_normalize(self.prototypes))

    def forward(self, z: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        crops = stack_crops(z)
        num_views = crops.shape[1]
        if crops.shape[2] != self.dim:
            raise ValueError(
                f"z: expected {self.dim} features (dim), got shape {tuple(crops.shape)}"
            )
        if num_views < max(2, self.assign_views):
            raise ValueError(
                f"z: expected at least {max(2, self.assign_views)} crops (assign_views={self.assign_views} "
                f"global crops and another to predict them), got {num_views}"
            )
        if crops.device != self.prototypes.device:
            raise ValueError(
                f"z: expected a tensor on {self.prototypes.device} (the prototypes'), got {crops.device}"
            )
        if self.training:
            self.normalize_prototypes()
        dtype = accumulation_dtype(crops.dtype)
        unit = l2_normalize(crops.to(dtype))
        if self.gather_distributed and distributed.is_distributed():
            unit = distributed.all_gather_with_grad(unit)
        prototypes = self.prototypes.to(dtype)
        with torch.no_grad():  # the codes: the assign crops' scores, no gradient
            assign_scores = unit[:, : self.assign_views] @ prototypes.T
            codes = self._codes(assign_scores, prototypes)  # (N, A, K)
        # The temperature folded into the (K, D) prototypes rather than dividing the
        # (N, V, K) scores: one fewer tensor of that size kept for the backward.
        log_p = torch.log_softmax(unit @ (prototypes.T / self.temperature), dim=-1)
        # cross[n, v, a] = -sum_k q_a log p_v, as log_p @ codes^T so that log_p's gradient
        # comes out contiguous (codes @ log_p^T made log-softmax's backward copy it). The
        # crop a itself does not predict its own code.
        cross = -(log_p @ codes.mT)
        own = torch.eye(num_views, self.assign_views, dtype=torch.bool, device=cross.device)
        loss = cross.masked_fill(own, 0.0).sum(1).mean() / (num_views - 1)
        if self.training and self.queue_size:
            for a, queue in enumerate(self.queues):
                queue.enqueue(crops[:, a].detach())
        return loss

    def _codes(self, scores: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """Sinkhorn codes of the assign crops' scores (N, A, K), with the queue if any."""
        assign = scores.transpose(0, 1)  # (A, N, K): one Sinkhorn problem per assign crop
        if not self.queue_size:
            q = sinkhorn_knopp(assign, epsilon=self.epsilon, iterations=self.sinkhorn_iterations)
            return q.transpose(0, 1)
        queued = (
            torch.stack([queue.features.to(prototypes.dtype) for queue in self.queues])
            @ prototypes.T
        )
        slots = torch.arange(self.queue_size, device=scores.device)
        filled = torch.stack([slots < queue.count for queue in self.queues])  # (A, size)
        batch_rows = torch.ones(assign.shape[:2], dtype=torch.bool, device=scores.device)
        q = sinkhorn_knopp(
            torch.cat([queued, assign], dim=1),
            epsilon=self.epsilon,
            iterations=self.sinkhorn_iterations,
            valid=torch.cat([filled, batch_rows], dim=1),
        )
        return q[:, self.queue_size :].transpose(0, 1)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_prototypes={self.num_prototypes}, temperature={self.temperature}, "
            f"epsilon={self.epsilon}, sinkhorn_iterations={self.sinkhorn_iterations}, "
            f"assign_views={self.assign_views}, queue_size={self.queue_size}, "
            f"gather_distributed={self.gather_distributed}"
        )
