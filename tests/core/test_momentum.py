"""Momentum targets: the EMA update and schedules against their formulas, and exact resumption."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import augplug
from augplug import rng
from augplug.momentum import MomentumTarget, ema_update_, momentum_at


@given(step=st.integers(0, 500), total=st.integers(1, 400), base=st.floats(0.0, 1.0))
def test_cosine_schedule_is_byols_formula(step, total, base):
    k = min(step, total)
    expected = 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2
    assert momentum_at(step, momentum=base, total_steps=total) == pytest.approx(expected, abs=1e-12)


def test_constant_schedule_and_end_points():
    assert momentum_at(123, momentum=0.999, schedule="constant") == 0.999
    assert momentum_at(0, total_steps=10) == pytest.approx(0.996)
    assert momentum_at(10, total_steps=10) == pytest.approx(1.0)
    assert momentum_at(25, total_steps=10) == pytest.approx(1.0)


def test_ema_update_matches_the_formula_in_float64():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4)).double()
    target = copy.deepcopy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
        online[1].running_mean.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    ema_update_(target, online, 0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o, rtol=0, atol=1e-15)
    torch.testing.assert_close(target[1].running_mean, online[1].running_mean)  # buffers copied


def test_target_takes_no_gradient_and_follows_the_schedule():
    online = nn.Linear(3, 2)
    target = MomentumTarget(online, momentum=0.5, total_steps=4)
    assert all(not p.requires_grad for p in target.parameters())
    out = target(torch.randn(2, 3))
    assert not out.requires_grad
    momenta = []
    for _ in range(5):
        momenta.append(target.current_momentum)
        target.update(online)
    assert momenta == pytest.approx([momentum_at(k, momentum=0.5, total_steps=4) for k in range(5)])
    assert target.step == 5
    restored = MomentumTarget(online, momentum=0.5, total_steps=4)
    restored.load_state_dict(target.state_dict())
    assert restored.step == 5


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"momentum": 1.5}, "momentum"),
        ({"schedule": "linear", "total_steps": 3}, "schedule"),
        ({"schedule": "cosine"}, "total_steps"),
        ({"schedule": "constant", "total_steps": 3}, "total_steps"),
    ],
)
def test_bad_options_name_the_argument(options, match):
    with pytest.raises(ValueError, match=f"^{match}:"):
        MomentumTarget(nn.Linear(2, 2), **options)


def test_ddp_wrapper_is_unwrapped():
    class Wrapper(nn.Module):  # stands in for torch.compile's OptimizedModule
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    inner = nn.Linear(2, 2)
    target = MomentumTarget(Wrapper(inner), schedule="constant")
    assert isinstance(target.module, nn.Linear)


class ScaleViews(augplug.ViewGenerator):
    def forward(self, x, *, generator=None):
        return x * rng.uniform((x.shape[0], 1), 0.5, 1.5, device=x.device, generator=generator)


class Plugin:
    @augplug.hookimpl
    def augplug_register_views(self, register):
        register("test_scale", ScaleViews)


def _networks():
    torch.manual_seed(0)
    return (
        nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU()),
        nn.Linear(12, 6),
        nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 6)),
    )


BYOL = {
    "views": {"name": "test_scale"},
    "target": {"momentum": 0.9, "schedule": "cosine", "total_steps": 6},
    "objective": {"name": "byol"},
}


def _step(pipeline, nets, optimizer, x, seed):
    encoder, projector, predictor = nets
    out = pipeline(x, encoder, projector, predictor, generator=torch.Generator().manual_seed(seed))
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
    pipeline.update_target()
    return out.loss.detach()


def test_pipeline_resumes_exactly_from_a_checkpoint():
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    with augplug.registry.isolated() as reg:
        reg.register_plugin(Plugin(), "test-scale")
        nets = _networks()
        params = [p for n in nets for p in n.parameters()]
        optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
        pipeline = augplug.build(BYOL)
        for seed in range(3):
            _step(pipeline, nets, optimizer, x, seed)
        checkpoint = copy.deepcopy(
            {"pipeline": pipeline.state_dict(), "nets": [n.state_dict() for n in nets],
             "optimizer": optimizer.state_dict()}
        )  # fmt: skip
        uninterrupted = [_step(pipeline, nets, optimizer, x, seed) for seed in (3, 4)]

        resumed_nets = _networks()
        for n, state in zip(resumed_nets, checkpoint["nets"]):
            n.load_state_dict(state)
        resumed_opt = torch.optim.SGD(
            [p for n in resumed_nets for p in n.parameters()], lr=0.1, momentum=0.9
        )
        resumed_opt.load_state_dict(checkpoint["optimizer"])
        resumed = augplug.build(BYOL)
        with pytest.raises(RuntimeError, match="init_target"):
            resumed.load_state_dict(checkpoint["pipeline"])
        resumed.init_target(resumed_nets[0], resumed_nets[1])
        resumed.load_state_dict(checkpoint["pipeline"])
        assert resumed.target.step == 3
        again = [_step(resumed, resumed_nets, resumed_opt, x, seed) for seed in (3, 4)]
    assert [float(v) for v in again] == [float(v) for v in uninterrupted]
    for a, b in zip(pipeline.target.parameters(), resumed.target.parameters()):
        assert torch.equal(a, b)


def test_byol_target_is_the_ema_copy_not_the_online_network():
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(2))
    with augplug.registry.isolated() as reg:
        reg.register_plugin(Plugin(), "test-scale")
        encoder, projector, predictor = _networks()
        pipeline = augplug.build({**BYOL, "swap_branches": False})
        pipeline(x, encoder, projector, predictor)  # makes the target
        with torch.no_grad():  # move the online network; the target must not follow until update
            for p in encoder.parameters():
                p.add_(1.0)
        g = torch.Generator().manual_seed(5)
        out = pipeline(x, encoder, projector, predictor, generator=g)
        v1, v2 = out.views
        online = predictor(projector(encoder(torch.cat([v1, v2]))))[: len(x)]
        target = pipeline.target.module(torch.cat([v1, v2]))[len(x) :]
        expected = (2 - 2 * nn.functional.cosine_similarity(online, target, dim=-1)).mean()
        torch.testing.assert_close(out.loss, expected)
        with pytest.raises(RuntimeError, match="no 'target'"):
            augplug.build({**BYOL, "target": None}).init_target(encoder)


def test_schedule_step_is_a_tensor_in_the_state_dict():
    """Safetensors (Accelerate's default checkpoints) stores tensors only."""
    target = MomentumTarget(nn.Linear(2, 2), schedule="constant")
    target.update(nn.Linear(2, 2))
    state = target.state_dict()
    assert isinstance(state["_extra_state"], torch.Tensor) and int(state["_extra_state"]) == 1
