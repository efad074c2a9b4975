"""Momentum (EMA) target networks: BYOL's and MoCo's targets, DINO's teacher.

A target is a copy of an online module whose weights follow the online ones by an
exponential moving average, ``target <- m * target + (1 - m) * online``, and that never
receives a gradient. Two momentum schedules are used in practice:

* ``"cosine"`` (BYOL, Grill et al. 2020, section 3.2; DINO's teacher): the momentum rises
  from ``momentum`` (0.996) to ``final_momentum`` (1.0) over ``total_steps`` as
  ``m_k = final - (final - base) * (cos(pi * k / K) + 1) / 2``;
* ``"constant"`` (MoCo, He et al. 2020: 0.999).

The update is one in-place ``torch._foreach_lerp_`` over all floating parameters (no
per-parameter Python arithmetic on the device); buffers (batch-norm running statistics)
are copied from the online module, as BYOL's and MoCo's reference code do. The step
counter is a Python int saved in ``state_dict`` as extra state, so computing the
momentum never reads the device and a resumed run continues the schedule exactly.

Under DDP, wrap only the online networks: the target's parameters do not require a
gradient, so DDP neither reduces nor broadcasts them, and since every rank applies the
same update to the same (already synchronised) online weights, the targets stay
identical on every rank.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from augplug.checks import check_choice, check_float, check_int

__all__ = ["SCHEDULES", "MomentumTarget", "ema_update_", "momentum_at", "unwrap"]

SCHEDULES = ("cosine", "constant")


def momentum_at(
    step: int,
    *,
    momentum: float = 0.996,
    schedule: str = "cosine",
    total_steps: int | None = None,
    final_momentum: float = 1.0,
) -> float:
    """The EMA momentum to use at optimisation ``step`` (0-based) under ``schedule``.

    The cosine schedule reaches ``final_momentum`` at ``step == total_steps`` and stays there.

    Examples:
        >>> momentum_at(0, total_steps=100)
        0.996
        >>> momentum_at(100, total_steps=100)
        1.0
    """
    if schedule == "constant":
        return momentum
    progress = min(step, total_steps) / total_steps
    return final_momentum - (final_momentum - momentum) * (math.cos(math.pi * progress) + 1.0) / 2.0


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online``, in place, for every parameter.

    Floating buffers (running statistics) and integer buffers are copied from ``online``.
    The two modules must have the same structure (``target`` a copy of ``online``).
    """
    target_params = [p for p in target.parameters()]
    online_params = [p.detach() for p in online.parameters()]
    if len(target_params) != len(online_params):
        raise ValueError(
            f"online: expected a module with the target's {len(target_params)} parameters, "
            f"got {len(online_params)}"
        )
    if target_params:
        # lerp_(end, w) computes self + w * (end - self) = (1 - w) * self + w * end.
        torch._foreach_lerp_(target_params, online_params, 1.0 - momentum)
    target_buffers = list(target.buffers())
    online_buffers = [b.detach() for b in online.buffers()]
    if target_buffers:
        torch._foreach_copy_(target_buffers, online_buffers)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP / DataParallel / ``torch.compile`` wrapper (or ``module`` itself)."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


def _check_options(momentum, schedule, total_steps, final_momentum) -> None:
    check_float(momentum, "momentum", low=0.0, high=1.0)
    check_float(final_momentum, "final_momentum", low=0.0, high=1.0)
    check_choice(schedule, "schedule", SCHEDULES)
    if schedule == "cosine":
        if total_steps is None:
            raise ValueError(
                "total_steps: the cosine schedule needs the number of training steps, got None"
            )
        check_int(total_steps, "total_steps", minimum=1)
    elif total_steps is not None:
        raise ValueError(f"total_steps: only with schedule 'cosine', got {total_steps!r}")


class MomentumTarget(nn.Module):
    """An EMA copy of ``online`` that follows it by :meth:`update` and never takes a gradient.

    Call the target like the module it copies (``target(x)``; no autograd graph is built).
    Call :meth:`update` once per training step, **after** ``optimizer.step()``.

    Args:
        online: the module to copy (a DDP or ``torch.compile`` wrapper is unwrapped).
        momentum: the EMA momentum at step 0: 0.996 (BYOL) by default, 0.99/0.999 for MoCo.
        schedule: ``"cosine"`` (BYOL, DINO: rise to ``final_momentum`` over
            ``total_steps``) or ``"constant"`` (MoCo).
        total_steps: the number of training steps; required by ``"cosine"``.
        final_momentum: where the cosine schedule ends (1.0).

    Examples:
        >>> online = torch.nn.Linear(4, 2)
        >>> target = MomentumTarget(online, momentum=0.99, schedule="constant")
        >>> with torch.no_grad():
        ...     _ = online.weight.add_(1.0)
        >>> target.update(online)
        >>> target.step
        1
    """

    def __init__(
        self,
        online: nn.Module,
        momentum: float = 0.996,
        schedule: str = "cosine",
        total_steps: int | None = None,
        final_momentum: float = 1.0,
    ):
        super().__init__()
        if not isinstance(online, nn.Module):
            raise TypeError(f"online: expected an nn.Module to copy, got {type(online).__name__}")
        _check_options(momentum, schedule, total_steps, final_momentum)
        self.momentum = float(momentum)
        self.schedule = schedule
        self.total_steps = total_steps
        self.final_momentum = float(final_momentum)
        self.step = 0
        self.module = copy.deepcopy(unwrap(online))
        self.module.requires_grad_(False)

    @property
    def current_momentum(self) -> float:
        """The momentum the next :meth:`update` will use."""
        return momentum_at(
            self.step,
            momentum=self.momentum,
            schedule=self.schedule,
            total_steps=self.total_steps,
            final_momentum=self.final_momentum,
        )

    @torch.no_grad()
    def update(self, online: nn.Module) -> None:
        """One EMA step towards ``online`` at :attr:`current_momentum`; advances the schedule."""
        ema_update_(self.module, unwrap(online), self.current_momentum)
        self.step += 1

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def get_extra_state(self) -> torch.Tensor:
        # A CPU tensor, not a dict: safetensors (Accelerate's default checkpoint format)
        # stores tensors only. Kept off the device so reading it back is no device sync.
        return torch.tensor(self.step, dtype=torch.int64)

    def set_extra_state(self, state: torch.Tensor | dict[str, int]) -> None:
        self.step = int(state["step"] if isinstance(state, dict) else state)

    def extra_repr(self) -> str:
        total = f", total_steps={self.total_steps}" if self.schedule == "cosine" else ""
        return f"momentum={self.momentum}, schedule={self.schedule!r}{total}, step={self.step}"
