"""Small view generators and encoders shared by the invariance tests."""

from __future__ import annotations

import torch
from torch import nn

from augplug import rng
from augplug.components import ParametricViewGenerator, Params, ViewGenerator


class Brightness(ParametricViewGenerator):
    """Multiplies each image by a per-sample gain U(low, high): the simplest colour view."""

    continuous_params = ("gain",)

    def __init__(self, low: float = 0.6, high: float = 1.4):
        super().__init__()
        self.low, self.high = low, high

    def sample(self, x, generator=None):
        return Params(
            gain=rng.uniform(
                (x.shape[0],),
                self.low,
                self.high,
                device=x.device,
                generator=generator,
                dtype=x.dtype,
            )
        )

    def apply(self, x, params):
        return x * params["gain"].view(-1, *([1] * (x.ndim - 1)))


class RowOffset(ViewGenerator):
    """Adds one uniform draw per row, drawn in a single call (so split calls concatenate)."""

    def forward(self, x, *, generator=None):
        offset = torch.rand((x.shape[0], *([1] * (x.ndim - 1))), generator=generator, dtype=x.dtype)
        return x + offset


def tiny_encoder(
    in_features: int, dim: int = 4, *, seed: int = 0, dtype=torch.float64
) -> nn.Module:
    """Flatten -> linear -> tanh -> linear: smooth and nonlinear, cheap in float64."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, 6), nn.Tanh(), nn.Linear(6, dim)
        ).to(dtype)


def scale_invariant(x: torch.Tensor) -> torch.Tensor:
    """Pattern of each image divided by its total: invariant to any per-image gain."""
    flat = x.flatten(1)
    return flat / flat.sum(1, keepdim=True)


def mean_colour(x: torch.Tensor) -> torch.Tensor:
    """Mean of each channel: moves with any gain."""
    return x.mean((2, 3))
