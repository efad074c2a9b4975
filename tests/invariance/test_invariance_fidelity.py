"""gradient_invariance as the paper runs it: colour-only alpha with crops, no extra pass, no BN bias."""

from __future__ import annotations

import pytest
import torch
from augplug_objectives.invariance import COLOUR_PARAMS, GradientInvariance
from invariance_helpers import Brightness, tiny_encoder
from torch import nn

import augplug
from augplug.components import ParametricViewGenerator, Params


class CountingEncoder(nn.Module):
    """Wraps an encoder and counts the images it encodes."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.images = inner, 0

    def forward(self, x):
        self.images += x.shape[0]
        return self.inner(x)


def bn_encoder(in_channels: int = 3) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
        ).double()  # fmt: skip


def test_cropping_views_default_to_the_colour_params():
    simclr = augplug.create("views", "simclr", size=32)
    assert "crop_box" in simclr.continuous_params
    assert GradientInvariance().alpha_names(simclr) == COLOUR_PARAMS
    spirograph = augplug.create("views", "spirograph")  # no crop: every nuisance factor
    assert GradientInvariance().alpha_names(spirograph) == tuple(spirograph.continuous_params)
    explicit = GradientInvariance(params=["crop_box", "hue"]).alpha_names(simclr)
    assert explicit == ("crop_box", "hue")


def test_cropping_views_without_colour_params_ask_for_params():
    class CropOnly(ParametricViewGenerator):
        continuous_params = ("crop_box",)

        def sample(self, x, generator=None):
            return Params(crop_box=torch.zeros(x.shape[0], 4))

        def apply(self, x, params):
            return x

    with pytest.raises(ValueError, match=r"params: CropOnly crops .* name the params to perturb"):
        GradientInvariance().alpha_names(CropOnly())


def test_a_wrongly_shaped_x_is_named():
    views = Brightness()
    x = torch.rand(4, 3, 4, 4, dtype=torch.float64)
    params = views.sample(x)
    with pytest.raises(ValueError, match=r"^x: expected 4 rows"):
        GradientInvariance("difference")(tiny_encoder(48), views, x[:2], params)


def test_a_non_callable_encoder_is_named():
    views = Brightness()
    x = torch.rand(4, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^encoder: expected a callable"):
        GradientInvariance("difference")(3, views, x, views.sample(x))


def test_difference_with_batch_norm_has_no_bias_from_the_statistics():
    # alpha' == alpha (a gain range of one value): the true penalty is exactly 0. Reusing
    # the pipeline's view-0 encoding, normalised with view 1 in the batch, would not be.
    x = torch.rand(8, 3, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    views = Brightness(1.0, 1.0)
    params = views.sample(x)
    encoder = bn_encoder().train()
    other_view = torch.rand(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    h = encoder(torch.cat([views.apply(x, params), other_view])).view(2, 8, -1).transpose(0, 1)
    penalty = GradientInvariance("difference")(encoder, views, x, params, h=h)
    assert penalty.abs() < 1e-24
    mismatched = torch.nn.functional.normalize(
        encoder(views.apply(x, params)), dim=1
    ) - torch.nn.functional.normalize(h[:, 0], dim=1)
    assert mismatched.square().sum(-1).mean() > 1e-6  # what reuse would have added
    encoder.eval()  # running statistics: per-sample again, so h is reused and exact
    h = encoder(torch.cat([views.apply(x, params), other_view])).view(2, 8, -1).transpose(0, 1)
    assert GradientInvariance("difference")(encoder, views, x, params, h=h).abs() < 1e-24


def test_paper_estimator_differentiates_the_given_encoding_without_a_pass():
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    views = Brightness()
    params = views.sample(x, generator=torch.Generator().manual_seed(2))
    encoder = CountingEncoder(tiny_encoder(48))
    objective = GradientInvariance("paper", num_draws=7, clamp=1e9)
    expected = objective(encoder, views, x, params, generator=torch.Generator().manual_seed(3))
    assert encoder.images == 5  # without a differentiable h: one more pass over view 0
    alpha = Params({n: p.detach().requires_grad_(True) for n, p in params.items()})
    h = torch.stack([encoder(views.apply(x, alpha)), torch.zeros(5, 4, dtype=torch.float64)], 1)
    encoder.images = 0
    got = objective(encoder, views, x, alpha, h=h, generator=torch.Generator().manual_seed(3))
    assert encoder.images == 0
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    weights = list(encoder.parameters())
    for a, b in zip(torch.autograd.grad(got, weights), torch.autograd.grad(expected, weights)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
