"""Random draws on the batch's device with an optional explicit ``torch.Generator``.

Every component draws through these helpers so that passing ``generator=`` gives
reproducible parameters without touching the global RNG, and so that nothing is
drawn on the host and copied over (which would be a sync and a transfer per call).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from augplug.checks import check_generator

__all__ = ["bernoulli", "beta", "normal", "rademacher", "randint", "uniform"]

Shape = Sequence[int]


def uniform(
    shape: Shape,
    low: float | torch.Tensor,
    high: float | torch.Tensor,
    *,
    device: torch.device | str,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``U(low, high)`` of the given shape on ``device``."""
    check_generator(generator, torch.device(device))
    u = torch.rand(tuple(shape), device=device, dtype=dtype, generator=generator)
    return low + (high - low) * u


def normal(
    shape: Shape,
    *,
    device: torch.device | str,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal draws of the given shape on ``device``."""
    check_generator(generator, torch.device(device))
    return torch.randn(tuple(shape), device=device, dtype=dtype, generator=generator)


def bernoulli(
    shape: Shape,
    p: float | torch.Tensor,
    *,
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Boolean tensor that is ``True`` with probability ``p`` (p=0 never, p=1 always)."""
    check_generator(generator, torch.device(device))
    return torch.rand(tuple(shape), device=device, generator=generator) < p


def randint(
    shape: Shape,
    low: int,
    high: int,
    *,
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Integers in ``[low, high)`` of the given shape on ``device``."""
    check_generator(generator, torch.device(device))
    return torch.randint(low, high, tuple(shape), device=device, generator=generator)


def rademacher(
    shape: Shape,
    *,
    device: torch.device | str,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random signs (+1 / -1 with equal probability)."""
    check_generator(generator, torch.device(device))
    bits = torch.randint(0, 2, tuple(shape), device=device, generator=generator)
    return (2 * bits - 1).to(dtype)


def beta(
    shape: Shape,
    a: float,
    b: float | None = None,
    *,
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``Beta(a, b)`` draws (float32; ``b`` defaults to ``a``) as G1 / (G1 + G2) of two Gamma draws.

    ``torch.distributions.Beta`` takes no generator; ``torch._standard_gamma`` does, on CPU
    and CUDA alike, so this is the way to draw Beta variates reproducibly on the device.
    """
    check_generator(generator, torch.device(device))
    b = a if b is None else b
    concentration = torch.tensor([float(a), float(b)], device=device).reshape(2, *([1] * len(shape)))
    gammas = torch._standard_gamma(concentration.expand(2, *shape).contiguous(), generator=generator)
    # For small a, b both Gamma draws can underflow to 0; the clamp keeps the ratio finite.
    return gammas[0] / (gammas[0] + gammas[1]).clamp_min(torch.finfo(torch.float32).tiny)
