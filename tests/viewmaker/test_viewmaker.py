"""The viewmaker view generator: budget, shapes, randomness, gradient reversal, state."""

from __future__ import annotations

import copy

import pytest
import torch
from augplug_viewmaker import Viewmaker, ViewmakerNetwork, viewmaker_parameters
from hypothesis import given
from hypothesis import strategies as st

import augplug

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def small_viewmaker(**kwargs) -> Viewmaker:
    kwargs = {"depth": 2, "width": 4, **kwargs}
    return Viewmaker(**kwargs)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_delta(vm: Viewmaker, x: torch.Tensor, params) -> torch.Tensor:
    """Float64, one example at a time: tanh of the network, scaled to mean |delta| = eps."""
    network = copy.deepcopy(vm.network).double()
    rows = []
    for i in range(x.shape[0]):
        raw = network(
            x[i : i + 1].double(),
            params["input_noise"][i : i + 1].double(),
            params["block_noise"][i : i + 1].double(),
        )
        direction = torch.tanh(raw)
        rows.append(vm.eps * direction / direction.abs().mean())
    return torch.cat(rows)


@given(
    batch=st.integers(1, 3),
    channels=st.sampled_from([1, 2, 3, 5, 52]),  # 52: the sensor spectrograms
    height=st.integers(5, 12),
    width=st.integers(5, 12),
    dtype=st.sampled_from((*DTYPES, torch.float64)),
    eps=st.floats(0.01, 0.3),
    clamp=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_views_keep_shape_meet_the_budget_and_stay_in_range(
    batch, channels, height, width, dtype, eps, clamp, seed
):
    torch.manual_seed(seed)
    vm = small_viewmaker(channels=channels, eps=eps, clamp=clamp)
    shape = (batch, channels, height, width)
    x = (torch.rand(shape) if clamp else 3 * torch.randn(shape)).to(dtype)
    params = vm.sample(x, generator=seeded(seed))
    delta = vm.perturbation(x, params)
    view = vm.apply(x, params)

    assert view.shape == x.shape and view.dtype == x.dtype
    assert delta.shape == x.shape and delta.dtype == torch.float32
    mean_abs = delta.double().abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(mean_abs, torch.full_like(mean_abs, eps), rtol=1e-3, atol=0)
    expected = reference_delta(vm, x.float(), params)
    # float32 network vs float64: instance norm over a 2x2 bottleneck amplifies rounding
    torch.testing.assert_close(delta.double(), expected, rtol=1e-3, atol=1e-4)
    unclamped = x.to(torch.promote_types(dtype, torch.float32)) + delta
    torch.testing.assert_close(view, (unclamped.clamp(0, 1) if clamp else unclamped).to(dtype))
    if clamp:
        assert bool(((view >= 0) & (view <= 1)).all())
    # forward is apply(sample) with the same draws
    assert torch.equal(vm(x, generator=seeded(seed)), view)


def test_noise_channels_follow_the_paper_layout():
    vm = Viewmaker()  # paper defaults
    assert vm.eps == 0.05 and not vm.clamp and vm.gradient_reversal  # the reference as run
    assert 1.0e6 < sum(p.numel() for p in vm.parameters()) < 1.2e6  # "about 1.1M" for C = 3
    assert vm.network.stem.conv.in_channels == 4  # C + one noise channel
    assert [b.first.conv.in_channels for b in vm.network.blocks] == [129, 130, 131]
    assert vm.network.up1.conv.in_channels == 131
    params = vm.sample(torch.rand(2, 3, 9, 14))
    assert params["input_noise"].shape == (2, 1, 9, 14)
    assert (
        params["block_noise"].shape
        == (2, 3, *ViewmakerNetwork.bottleneck_size(9, 14))
        == (2, 3, 3, 4)
    )


def test_calls_differ_equal_generators_repeat_and_the_global_rng_is_untouched():
    vm = small_viewmaker()
    x = torch.rand(4, 3, 8, 8)
    first, second = vm(x), vm(x)
    assert not torch.equal(first, second)
    state = torch.get_rng_state()
    a = vm(x, generator=seeded(3))
    b = vm(x, generator=seeded(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    # every example of a batch gets its own noise
    same = x[:1].expand(4, -1, -1, -1).contiguous()
    views = vm(same, generator=seeded(4))
    assert not torch.equal(views[0], views[1])


def test_gradient_reversal_negates_exactly_the_viewmaker_gradients(contrastive_loss, make_encoder):
    torch.manual_seed(0)
    reversed_vm = small_viewmaker()
    plain_vm = copy.deepcopy(reversed_vm)
    plain_vm.gradient_reversal = False
    encoder = make_encoder()
    plain_encoder = copy.deepcopy(encoder)
    x = torch.rand(6, 3, 9, 11)

    def backward(vm, enc):
        inputs = x.clone().requires_grad_(True)
        g = seeded(11)
        v1, v2 = vm(inputs, generator=g), vm(inputs, generator=g)
        contrastive_loss(enc(v1), enc(v2)).backward()
        return inputs.grad

    x_grad_reversed = backward(reversed_vm, encoder)
    x_grad_plain = backward(plain_vm, plain_encoder)
    for (name, p), q in zip(reversed_vm.named_parameters(), plain_vm.parameters()):
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
        assert torch.equal(p.grad, -q.grad), name
    for p, q in zip(encoder.parameters(), plain_encoder.parameters()):
        assert torch.equal(p.grad, q.grad)
    # the input's gradient (e.g. to an earlier learned stage) is not reversed
    assert torch.equal(x_grad_reversed, x_grad_plain)

    # pass 2 of the reference two-pass schedule (encoder frozen, negated loss) gives the
    # viewmaker the very gradient that the one-pass reversal gives
    second_pass_vm = copy.deepcopy(plain_vm)
    second_pass_vm.zero_grad()
    frozen_encoder = copy.deepcopy(plain_encoder).requires_grad_(False)
    g = seeded(11)
    v1, v2 = second_pass_vm(x, generator=g), second_pass_vm(x, generator=g)
    (-contrastive_loss(frozen_encoder(v1), frozen_encoder(v2))).backward()
    for p, q in zip(reversed_vm.parameters(), second_pass_vm.parameters()):
        assert torch.equal(p.grad, q.grad)


def test_freeze_after_stops_the_gradient_but_not_the_views():
    vm = small_viewmaker(freeze_after=2)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    learning = vm(x, generator=seeded(0))
    vm.step()
    assert not vm.frozen
    vm.step()
    assert vm.frozen and vm.steps == 2
    frozen = vm(x, generator=seeded(0))
    assert torch.equal(learning, frozen)
    frozen.sum().backward()
    assert all(p.grad is None for p in vm.parameters())
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)


def test_state_dict_round_trip_gives_bit_identical_views(contrastive_loss, make_encoder):
    torch.manual_seed(1)
    vm = small_viewmaker(freeze_after=5)
    encoder = make_encoder()
    optimizer = torch.optim.Adam(vm.parameters(), lr=1e-2)
    x = torch.rand(4, 3, 7, 10)
    contrastive_loss(encoder(vm(x)), encoder(vm(x))).backward()
    optimizer.step()
    vm.step()

    torch.manual_seed(2)  # a different initialisation, overwritten by the load
    restored = small_viewmaker(freeze_after=5)
    restored.load_state_dict(vm.state_dict())
    assert restored.steps == 1
    assert torch.equal(restored(x, generator=seeded(9)), vm(x, generator=seeded(9)))
    with pytest.raises(ValueError, match="state_dict: expected extra state"):
        restored.set_extra_state({"steps": -1})
    assert restored.steps == 1


def test_registered_as_views_and_a_parametric_view_generator():
    vm = augplug.create("views", "viewmaker", channels=1, width=4, depth=1, eps=0.1, clamp=False)
    assert isinstance(vm, Viewmaker) and isinstance(vm, augplug.ParametricViewGenerator)
    assert vm.channels == 1 and vm.eps == 0.1 and not vm.clamp
    info = augplug.describe("views", "viewmaker")
    assert info.defaults["eps"] == 0.05 and info.defaults["gradient_reversal"] is True
    with pytest.raises(TypeError, match="unknown argument 'epsilon'"):
        augplug.create("views", "viewmaker", epsilon=0.1)


def test_viewmaker_parameters_are_exactly_the_viewmakers(make_encoder):
    vm = small_viewmaker()
    composed = augplug.ComposedViews([small_viewmaker(), vm])
    holder = torch.nn.ModuleDict({"views": composed, "encoder": make_encoder(), "again": vm})
    found = viewmaker_parameters(holder)
    expected = list(composed.parameters())
    assert len(found) == len(expected) and all(a is b for a, b in zip(found, expected))
    with pytest.raises(TypeError, match="module: expected an nn.Module"):
        viewmaker_parameters([vm])


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.rand(2, 1, 8, 8), "x: expected 3 channels"),
        (torch.rand(3, 8, 8), "x: expected a 4-D tensor"),
        (torch.rand(2, 3, 4, 8), r"x: expected H and W >= 5"),
        (torch.randint(0, 255, (2, 3, 8, 8)), "x: expected dtype"),
        ([[0.0]], "x: expected a torch.Tensor"),
        (torch.full((1, 3, 8, 8), float("nan")), "x: expected finite values"),
    ],
)
def test_bad_input_is_named(x, message):
    vm = small_viewmaker()
    before = copy.deepcopy(vm.state_dict())
    with pytest.raises((TypeError, ValueError), match=message):
        vm(x)
    after = vm.state_dict()
    assert all(
        torch.equal(before[k], after[k]) for k in before if isinstance(before[k], torch.Tensor)
    )


def test_bad_generator_and_params_are_named():
    vm = small_viewmaker()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(TypeError, match="generator: expected a torch.Generator"):
        vm(x, generator=0)
    params = vm.sample(x)
    with pytest.raises(ValueError, match=r"params\['block_noise'\]: expected shape \(2, 2, 2, 2\)"):
        vm.apply(x, {**params, "block_noise": params["block_noise"][:, :1]})
    with pytest.raises(ValueError, match="params: expected the keys"):
        vm.apply(x, {"input_noise": params["input_noise"]})


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"eps": 0}, ValueError, "eps: expected a number > 0"),
        ({"channels": 0}, ValueError, "channels: expected an integer >= 1"),
        ({"depth": -1}, ValueError, "depth: expected an integer >= 0"),
        ({"width": 2.5}, TypeError, "width: expected an integer >= 1"),
        ({"clamp": "yes"}, TypeError, "clamp: expected True or False"),
        ({"freeze_after": -1}, ValueError, "freeze_after: expected an integer >= 0"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        Viewmaker(**kwargs)


@pytest.mark.cuda
def test_cuda_generator_and_autocast_bf16():
    vm = small_viewmaker().cuda()
    x = torch.rand(4, 3, 9, 12, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        params = vm.sample(x, generator=g)
        delta = vm.perturbation(x, params)
        view = vm.apply(x, params)
    assert view.dtype == x.dtype and bool(((view >= 0) & (view <= 1)).all())
    mean_abs = delta.double().abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(mean_abs, torch.full_like(mean_abs, vm.eps), rtol=1e-3, atol=0)
    with pytest.raises(
        ValueError, match="generator: expected a generator on the batch's device type"
    ):
        vm(x, generator=torch.Generator())


def test_examples_are_independent_so_one_call_can_make_both_views():
    vm = small_viewmaker()
    x = torch.rand(3, 3, 7, 9)
    pair = torch.cat((x, x))
    params = vm.sample(pair, generator=seeded(5))
    views = vm.apply(pair, params)
    v1, v2 = views.chunk(2)
    assert not torch.equal(v1, v2)
    # each row depends only on its own input and noise (instance norm, no batch statistics)
    for rows in (slice(0, 1), slice(2, 5)):
        torch.testing.assert_close(vm.apply(pair[rows], params.index(rows)), views[rows])


def test_autocast_bf16_keeps_the_budget_in_float32():
    vm = small_viewmaker(clamp=True)
    x = torch.rand(3, 3, 9, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        params = vm.sample(x, generator=seeded(0))
        delta = vm.perturbation(x, params)
        view = vm.apply(x, params)
    assert delta.dtype == torch.float32 and view.dtype == x.dtype
    mean_abs = delta.double().abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(mean_abs, torch.full_like(mean_abs, vm.eps), rtol=1e-3, atol=0)
    assert bool(((view >= 0) & (view <= 1)).all())
    view.sum().backward()
    assert all(p.grad is not None for p in vm.parameters())
