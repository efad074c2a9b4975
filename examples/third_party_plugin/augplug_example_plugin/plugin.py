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
    #: What augplug.testing feeds it (it takes (B, D) and (B, C, T) batches too).
    input_kind = "image"

    def __init__(self, max_sigma: float = 0.1):
        super().__init__()
        self.max_sigma = check_positive(max_sigma, "max_sigma")

    def sample(self, x, generator=None):
        check_batch(x, "x", ndim=(2, 3, 4))
        sigma = rng.uniform(
            (x.shape[0],), 0.0, self.max_sigma, device=x.device, generator=generator
        )
        noise = rng.normal(x.shape, device=x.device, generator=generator)
        return augplug.Params(sigma=sigma, noise=noise)

    def apply(self, x, params):
        check_batch(x, "x", ndim=(2, 3, 4))
        shapes = {"sigma": (x.shape[0],), "noise": tuple(x.shape)}
        got = {k: tuple(params[k].shape) if k in params else None for k in shapes}
        if got != shapes:
            raise ValueError(
                f"params: expected shapes {shapes} for this x (from sample(x)), got {got}"
            )
        sigma = params["sigma"].reshape(-1, *([1] * (x.ndim - 1)))
        return x + (sigma * params["noise"]).to(x.dtype)


class MSEAlignment(augplug.Objective):
    """Mean squared distance between the two views' L2-normalised embeddings."""

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        check_batch(z1, "z1", ndim=2)
        check_batch(z2, "z2", ndim=2)
        check_same_batch("z1", z1, "z2", z2)
        if z1.shape[1] != z2.shape[1]:
            raise ValueError(f"z2: expected {z1.shape[1]} features (as z1), got {z2.shape[1]}")
        return (_unit(z1) - _unit(z2)).pow(2).sum(1).mean()


def _unit(z: torch.Tensor) -> torch.Tensor:
    """L2-normalised float32 rows; divided by the row's max |z| first, so 1e30 does not overflow."""
    z = z.float()
    z = z / z.abs().amax(1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return torch.nn.functional.normalize(z, dim=1)


@augplug.hookimpl
def augplug_register_views(register):
    register("gaussian_noise", GaussianNoiseViews)


@augplug.hookimpl
def augplug_register_objective(register):
    register("mse_alignment", MSEAlignment)
