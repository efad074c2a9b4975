"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers").

The student's softmax over K output dimensions (temperature 0.1) is trained to match the
teacher's on every other crop: the teacher (an EMA of the student) sees the global crops
only, its outputs are centred by an EMA of their batch mean and sharpened by a low
temperature, and no gradient reaches it (Algorithm 1)::

    p_t = softmax((t - center) / tau_t)   over the teacher's global crops g
    loss = mean over pairs (g, v), v != g, of mean_b -sum_k p_t[g] log softmax(s[v] / tau_s)
    center <- m * center + (1 - m) * mean over the batch and global crops of t    (m = 0.9)

The teacher temperature warms up linearly (``warmup_teacher_temperature`` to
``teacher_temperature`` over ``warmup_steps`` training calls, as the official per-epoch
``linspace``); the centre and the step count are buffers, so ``state_dict`` resumes the
schedule and the centre exactly. Under ``torch.distributed`` the centre's batch mean is
over every rank's teacher outputs (as the official all-reduce), and the loss of each rank
is weighted so that DDP's gradient average is the whole batch's gradient at any per-rank
batch sizes.

:class:`DINOHead` is the paper's projection head (MLP, L2-normalised bottleneck, weight-
normalised prototype layer) for the student and teacher networks.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from augplug import distributed
from augplug.checks import (
    accumulation_dtype,
    check_bool,
    check_int,
    check_positive,
    check_probability,
    check_same_batch,
    check_same_device,
)
from augplug.components import Objective
from augplug.ops import l2_normalize
from augplug_objectives.swav import stack_crops

__all__ = ["DINOHead", "DINOLoss"]


class DINOLoss(Objective):
    """DINO's student/teacher cross-entropy over crops with a centred, sharpened teacher.

    ``forward(z, z_target)``: ``z`` the student head's outputs for all V crops, (B, V, K)
    or a list of (B, K) (global crops first); ``z_target`` the teacher head's outputs for
    the G global crops, (B, G, K) or a list, G <= V (crop g of the teacher is crop g of the
    student, and that pair is skipped). No gradient reaches ``z_target``. In training mode
    each call then updates the centre and advances the temperature schedule one step.
    Returns a float32 scalar (float64 for float64 inputs).

    Args:
        dim: K, the head's output width (65536 in the paper); the centre's size.
        student_temperature: 0.1.
        teacher_temperature: the teacher's temperature after the warm-up; 0.04 (the
            paper raises it to 0.07 for longer runs).
        warmup_teacher_temperature: the teacher's temperature at step 0; 0.04.
        warmup_steps: training calls over which the temperature moves linearly from
            ``warmup_teacher_temperature`` to ``teacher_temperature``; 0 (none). The paper's
            ViT-S/16 recipe: 0.04 -> 0.07 over 30 epochs, i.e. 30 x steps per epoch.
        center_momentum: m of the centre's EMA; 0.9.
        gather_distributed: under ``torch.distributed``, weight this rank's loss by
            world_size / global batch so the ranks' losses average to the whole batch's
            (exact under DDP at any per-rank sizes); the centre is always updated with
            every rank's teacher outputs. A no-op on one process.

    Examples:
        >>> loss_fn = DINOLoss(dim=32)
        >>> student, teacher = torch.randn(8, 6, 32), torch.randn(8, 2, 32)  # 2 global + 4 local
        >>> loss_fn(student, teacher).shape
        torch.Size([])
    """

    #: Small arguments for the conformance kit and the bad-input matrix (augplug.testing).
    example_kwargs: ClassVar[dict[str, int]] = {"dim": 8}

    def __init__(
        self,
        dim: int,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature: float = 0.04,
        warmup_steps: int = 0,
        center_momentum: float = 0.9,
        gather_distributed: bool = False,
    ):
        super().__init__()
        self.dim = check_int(dim, "dim", minimum=1)
        self.student_temperature = check_positive(student_temperature, "student_temperature")
        self.teacher_temperature = check_positive(teacher_temperature, "teacher_temperature")
        self.warmup_teacher_temperature = check_positive(
            warmup_teacher_temperature, "warmup_teacher_temperature"
        )
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", minimum=0)
        self.center_momentum = check_probability(center_momentum, "center_momentum")
        self.gather_distributed = check_bool(gather_distributed, "gather_distributed")
        self.register_buffer("center", torch.zeros(self.dim))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def current_teacher_temperature(self) -> torch.Tensor:
        """The teacher temperature at the current step (a 0-d tensor; no host sync)."""
        start, end = self.warmup_teacher_temperature, self.teacher_temperature
        if self.warmup_steps <= 1:
            fraction = (self.step >= self.warmup_steps).to(self.center.dtype)
        else:
            # linspace(start, end, warmup_steps)[step], then end.
            fraction = (self.step.to(self.center.dtype) / (self.warmup_steps - 1)).clamp(max=1.0)
        return start + (end - start) * fraction

    def forward(
        self,
        z: torch.Tensor | Sequence[torch.Tensor],
        z_target: torch.Tensor | Sequence[torch.Tensor],
    ) -> torch.Tensor:
        student = stack_crops(z, "z")
        teacher = stack_crops(z_target, "z_target")
        check_same_batch("z", student, "z_target", teacher)
        check_same_device("z", student, "z_target", teacher)
        for name, x in (("z", student), ("z_target", teacher)):
            if x.shape[2] != self.dim:
                raise ValueError(
                    f"{name}: expected {self.dim} features (dim), got shape {tuple(x.shape)}"
                )
        check_same_device("the centre", self.center, "z", student)
        globals_, views = teacher.shape[1], student.shape[1]
        if globals_ > views or views < 2:
            raise ValueError(
                f"z_target: expected at most as many crops as z ({views}) and z at least 2, got {globals_}"
            )
        dtype = accumulation_dtype(student.dtype)
        teacher = teacher.detach().to(dtype)
        temperature = self.current_teacher_temperature().to(dtype)
        p_teacher = torch.softmax((teacher - self.center.to(dtype)) / temperature, dim=-1)
        log_p_student = torch.log_softmax(student.to(dtype) / self.student_temperature, dim=-1)
        # cross[b, v, g] = -sum_k p_t[g] log p_s[v], as log_p_s @ p_t^T so that the student's
        # gradient comes out contiguous (no copy in log-softmax's backward).
        cross = -(log_p_student @ p_teacher.mT)
        own = torch.eye(views, globals_, dtype=torch.bool, device=cross.device)
        per_sample = cross.masked_fill(own, 0.0).sum((1, 2)) / (globals_ * views - globals_)

        sizes = [student.shape[0]]
        if distributed.is_distributed():
            sizes = distributed.gather_sizes(student)
        if self.gather_distributed and distributed.is_distributed():
            loss = per_sample.sum() * (distributed.world_size() / sum(sizes))
        else:
            loss = per_sample.mean()
        if self.training:
            self._update(teacher, sizes)
        return loss

    @torch.no_grad()
    def _update(self, teacher: torch.Tensor, sizes: list[int]) -> None:
        """The centre's EMA towards every rank's teacher mean, then one schedule step."""
        rows = distributed.all_gather_no_grad(
            teacher.flatten(0, 1), sizes=[s * teacher.shape[1] for s in sizes]
        )
        batch_center = rows.mean(0).to(self.center.dtype)
        # A non-finite teacher output (a diverged step, unchecked input) must not poison the
        # centre for every later step: such entries keep their old value (no host sync).
        batch_center = torch.where(torch.isfinite(batch_center), batch_center, self.center)
        self.center.lerp_(batch_center, 1.0 - self.center_momentum)
        self.step.add_(1)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, student_temperature={self.student_temperature}, "
            f"teacher_temperature={self.teacher_temperature}, "
            f"warmup_teacher_temperature={self.warmup_teacher_temperature}, warmup_steps={self.warmup_steps}, "
            f"center_momentum={self.center_momentum}, gather_distributed={self.gather_distributed}"
        )


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021, sec. 3.1 and appendix).

    A ``num_layers``-layer MLP (GELU, hidden width 2048) to a 256-d bottleneck, L2
    normalisation, then a weight-normalised linear layer without bias to ``out_dim``
    prototypes. With ``norm_last_layer`` (the default) the weight norm's gain is fixed at 1,
    so every prototype is a unit vector and the output is a cosine; otherwise the gain is
    learnt (initialised at 1). Use one head on the student and its EMA copy on the teacher.

    Args:
        in_dim: the backbone's feature width.
        out_dim: K, 65536 in the paper.
        hidden_dim: 2048. bottleneck_dim: 256. num_layers: 3 (at least 1).
        norm_last_layer: fix the prototypes' norm to 1; True.

    Examples:
        >>> head = DINOHead(in_dim=384, out_dim=1024)
        >>> head(torch.randn(4, 384)).shape
        torch.Size([4, 1024])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        in_dim = check_int(in_dim, "in_dim", minimum=1)
        out_dim = check_int(out_dim, "out_dim", minimum=1)
        hidden_dim = check_int(hidden_dim, "hidden_dim", minimum=1)
        bottleneck_dim = check_int(bottleneck_dim, "bottleneck_dim", minimum=1)
        num_layers = check_int(num_layers, "num_layers", minimum=1)
        check_bool(norm_last_layer, "norm_last_layer")
        widths = [in_dim] + [hidden_dim] * (num_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < num_layers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):  # the paper's truncated-normal initialisation
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.prototypes = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(out_dim, bottleneck_dim), std=0.02)
        )
        self.gain = None if norm_last_layer else nn.Parameter(torch.ones(out_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottleneck = l2_normalize(self.mlp(x))
        weight = l2_normalize(self.prototypes)
        if self.gain is not None:
            weight = weight * self.gain
        return bottleneck @ weight.T
