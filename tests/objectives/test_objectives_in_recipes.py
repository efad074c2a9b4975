"""The registered objectives inside a recipe Pipeline, against direct calls."""

import augplug_objectives.plugin
import pytest
import torch
from augplug_objectives.cosine import BYOLLoss, SimSiamLoss
from augplug_objectives.infonce import InfoNCE

import augplug
from augplug import registry, rng


class RandomScale(augplug.ViewGenerator):
    """A stand-in view: each sample scaled by a factor in [0.5, 1.5)."""

    def forward(self, x, *, generator=None):
        factor = rng.uniform((x.shape[0],), 0.5, 1.5, device=x.device, generator=generator)
        return x * factor[:, None].to(x.dtype)


class StandInViews:
    @augplug.hookimpl
    def augplug_register_views(self, register):
        register("random_scale", RandomScale)


@pytest.fixture(autouse=True)
def objectives_only():
    with registry.isolated(autoload=False) as fresh:
        fresh.register_plugin(augplug_objectives.plugin, "objectives")
        fresh.register_plugin(StandInViews(), "stand-in-views")
        yield


def _views_and_networks(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    encoder = torch.nn.Linear(5, 4, dtype=torch.float64)
    predictor = torch.nn.Linear(4, 4, dtype=torch.float64)
    return x, encoder, predictor


def _same_views(x, seed):
    """The two views the pipeline draws from ``generator`` seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    view = RandomScale()
    return view(x, generator=gen), view(x, generator=gen)


def test_infonce_recipe_equals_direct_call():
    x, encoder, _ = _views_and_networks()
    pipe = augplug.build({"views": {"name": "random_scale"}, "objective": {"name": "infonce", "temperature": 0.3}})
    out = pipe(x, encoder, generator=torch.Generator().manual_seed(5))
    v1, v2 = _same_views(x, 5)
    expected = InfoNCE(temperature=0.3)(encoder(v1), encoder(v2))
    torch.testing.assert_close(out.loss.double(), expected)


@pytest.mark.parametrize(("name", "cls"), [("byol", BYOLLoss), ("simsiam", SimSiamLoss)])
def test_cosine_recipes_average_both_directions_and_stop_the_target_gradient(name, cls):
    x, encoder, predictor = _views_and_networks(1)
    pipe = augplug.build({"views": {"name": "random_scale"}, "objective": {"name": name}})
    out = pipe(x, encoder, predictor=predictor, generator=torch.Generator().manual_seed(7))
    (grad,) = torch.autograd.grad(out.loss, encoder.weight)

    v1, v2 = _same_views(x, 7)
    z1, z2 = encoder(v1), encoder(v2)
    loss = cls()
    expected = (loss(predictor(z1), z2) + loss(predictor(z2), z1)) / 2
    torch.testing.assert_close(out.loss.double(), expected)
    # Through the online (predictor) side only: the targets are constants.
    online_only = (loss(predictor(z1), z2.detach()) + loss(predictor(z2), z1.detach())) / 2
    torch.testing.assert_close(grad, torch.autograd.grad(online_only, encoder.weight)[0])
