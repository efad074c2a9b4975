"""Viewmaker after expert views ("combined" views) through ComposedViews and a recipe list."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from augplug_viewmaker import Viewmaker, viewmaker_parameters

import augplug
from augplug import rng
from augplug.registry import get_registry


class StandInFlip(augplug.ParametricViewGenerator):
    """Stands in for the Kornia recipe: a per-sample horizontal flip with probability 1/2."""

    input_layout = "(B, C, H, W)"

    def __init__(self, size: int = 8):
        super().__init__()
        self.size = size

    def sample(self, x, generator=None):
        return augplug.Params(
            flip=rng.bernoulli((x.shape[0],), 0.5, device=x.device, generator=generator)
        )

    def apply(self, x, params):
        x = x[..., : self.size, : self.size]
        return torch.where(params["flip"].view(-1, 1, 1, 1), x.flip(-1), x)


def _own_conftest():
    # "from conftest import ..." finds whichever folder's conftest pytest imported last
    # (several test folders have one), so this folder's is loaded by its path.
    spec = importlib.util.spec_from_file_location(
        "viewmaker_conftest", Path(__file__).with_name("conftest.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_NT_XENT = _own_conftest().nt_xent


class StandInLoss(augplug.Objective):
    def __init__(self, temperature: float = 0.5):
        super().__init__()
        self.temperature = temperature

    def forward(self, z1, z2):
        return _NT_XENT(z1, z2, self.temperature)


class _TestPlugin:
    @augplug.hookimpl
    def augplug_register_views(self, register):
        register("test-standin-flip", StandInFlip)

    @augplug.hookimpl
    def augplug_register_objective(self, register):
        register("test-standin-ntxent", StandInLoss)


@pytest.fixture(scope="module")
def standin_plugin():
    augplug.register_plugin(_TestPlugin(), "viewmaker-tests")
    yield
    get_registry().unregister_plugin("viewmaker-tests")


def test_viewmaker_after_expert_views_replays_and_trains(standin_plugin, make_encoder):
    views = augplug.ComposedViews(
        [augplug.create("views", "test-standin-flip", size=9), Viewmaker(width=4, depth=1)]
    )
    assert views.is_parametric  # both stages parametric: the pair replays exactly
    x = torch.rand(5, 3, 12, 13)
    generator = torch.Generator().manual_seed(0)
    forward = views(x, generator=generator)
    params = views.sample(x, generator=torch.Generator().manual_seed(0))
    assert sorted(params) == ["0.flip", "1.block_noise", "1.input_noise"]
    assert forward.shape == (5, 3, 9, 9)
    assert torch.equal(views.apply(x, params), forward)


def test_recipe_list_builds_combined_views_with_viewmaker_gradients(standin_plugin, make_encoder):
    pipeline = augplug.build(
        {
            "views": [
                {"name": "test-standin-flip", "size": 8},
                {"name": "viewmaker", "width": 4, "depth": 1},
            ],
            "objective": {"name": "test-standin-ntxent"},
        }
    )
    combined = pipeline.views[0]
    assert isinstance(combined, augplug.ComposedViews) and isinstance(combined.stages[1], Viewmaker)
    encoder = make_encoder()
    out = pipeline(torch.rand(6, 3, 10, 10), encoder, generator=torch.Generator().manual_seed(2))
    out.loss.backward()
    vm_params = viewmaker_parameters(pipeline)
    assert vm_params and all(p.grad is not None for p in vm_params)
    assert all(p.grad is not None for p in encoder.parameters())
    # separate optimizers as in the paper: no parameter in both groups
    encoder_ids = {id(p) for p in encoder.parameters()}
    assert not any(id(p) in encoder_ids for p in vm_params)


def test_the_issue_recipe_simclr_then_viewmaker(standin_plugin, make_encoder):
    pipeline = augplug.build(
        {
            "views": [{"name": "simclr", "size": 8}, {"name": "viewmaker", "width": 4, "depth": 1}],
            "objective": {"name": "test-standin-ntxent"},
        }
    )
    combined = pipeline.views[0]
    x = torch.rand(4, 3, 12, 12)
    params = combined.sample(x, generator=torch.Generator().manual_seed(3))
    view = combined.apply(x, params)
    assert view.shape == (4, 3, 8, 8)  # unclamped by default, as the reference ran
    assert torch.equal(view, combined(x, generator=torch.Generator().manual_seed(3)))
    out = pipeline(x, make_encoder(), generator=torch.Generator().manual_seed(4))
    out.loss.backward()
    assert all(p.grad is not None for p in viewmaker_parameters(pipeline))
