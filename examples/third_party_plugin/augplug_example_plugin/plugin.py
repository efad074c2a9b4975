"""Registers ``views/gaussian_noise`` and ``objective/mse_alignment``.

Install this folder (``pip install examples/third_party_plugin``) and both appear in
``augplug plugins`` and work through ``augplug.create`` - no change to augplug itself.
"""

from __future__ import annotations

import torch

import augplug
from augplug import rng
from augplug.checks import check_batch, check_positive, check_same_batch


class GaussianNoiseViews(augplug.ParametricViewGenerator):
    """Adds N(0, sigma^2) noise with a per-sample sigma drawn from U(0, max_sigma)."""

    continuous_params = ("sigma",)

    def __init__(self, max_sigma: float = 0.1):
        super().__init__()
        self.max_sigma = check_positive(max_sigma, "max_sigma")

    def sample(self, x, generator=None):
        check_batch(x, "x", ndim=(2, 3, 4))
        sigma = rng.uniform((x.shape[0],), 0.0, self.max_sigma, device=x.device, generator=generator)
        noise = rng.normal(x.shape, device=x.device, generator=generator)
        return augplug.Params(sigma=sigma, noise=noise)

    def apply(self, x, params):
        sigma = params["sigma"].reshape(-1, *([1] * (x.ndim - 1)))
        return x + (sigma * params["noise"]).to(x.dtype)


class MSEAlignment(augplug.Objective):
    """Mean squared distance between the two views' L2-normalised embeddings."""

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        check_batch(z1, "z1", ndim=2)
        check_batch(z2, "z2", ndim=2)
        check_same_batch("z1", z1, "z2", z2)
        a = torch.nn.functional.normalize(z1.float(), dim=1)
        b = torch.nn.functional.normalize(z2.float(), dim=1)
        return (a - b).pow(2).sum(1).mean()


@augplug.hookimpl
def augplug_register_views(register):
    register("gaussian_noise", GaussianNoiseViews)


@augplug.hookimpl
def augplug_register_objective(register):
    register("mse_alignment", MSEAlignment)
