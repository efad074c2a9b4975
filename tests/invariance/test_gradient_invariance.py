"""The gradient_invariance objective: both estimators against float64 references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from augplug_datasets.spirograph import FACTOR_RANGES, NUISANCE, SpirographViews, stack_targets
from augplug_objectives.invariance import GradientInvariance
from hypothesis import given
from hypothesis import strategies as st
from invariance_helpers import Brightness, RowOffset, scale_invariant, tiny_encoder

import augplug
from augplug import rng
from augplug.testing import conditional_variance

NO_CLAMP = 1e9


def spirograph_setup(batch=3, seed=0):
    dataset = augplug.create("dataset", "spirograph", size=batch, seed=seed, dtype=torch.float64)
    x = stack_targets(dataset.targets)
    views = SpirographViews()
    params = views.sample(x, generator=torch.Generator().manual_seed(seed + 100))
    return x, views, params, tiny_encoder(3 * 32 * 32)


def normalised(encoder, views, x, params):
    return F.normalize(encoder(views.apply(x, params)), dim=1)


def first_order_variance(encoder, views, x, params, names, means, variances) -> torch.Tensor:
    """mean_b E || J_b (alpha' - alpha_b) ||^2 exactly, from the full Jacobian and the draws' moments."""
    alpha = torch.stack([params[n] for n in names], 1)

    def h_of(a):
        return normalised(
            encoder, views, x, {**params, **{n: a[:, i] for i, n in enumerate(names)}}
        )

    jac = torch.autograd.functional.jacobian(h_of, alpha)  # (B, D, B, k)
    batch = x.shape[0]
    per_sample = []
    for b in range(batch):
        j = jac[b, :, b, :]
        offset = means - alpha[b]
        second_moment = torch.diag(variances) + torch.outer(offset, offset)
        per_sample.append(torch.trace(j @ second_moment @ j.T))
    return torch.stack(per_sample).mean()


def repeated(objective, encoder, views, x, params, count, tiles, seed=0):
    """Mean and standard error of ``count`` calls on the batch tiled ``tiles`` times.

    A tiled batch is the same expectation with ``tiles`` x fewer calls (which dominate
    the cost here) for the same Monte-Carlo error.
    """
    x = x.repeat(tiles, *([1] * (x.ndim - 1)))
    params = {name: value.repeat(tiles) for name, value in params.items()}
    values = torch.stack(
        [
            objective(encoder, views, x, params, generator=torch.Generator().manual_seed(seed + i))
            for i in range(count)
        ]
    ).detach()
    return values.mean(), values.std() / count**0.5


def uniform_moments(names, ranges):
    low = torch.tensor([ranges[n][0] for n in names], dtype=torch.float64)
    high = torch.tensor([ranges[n][1] for n in names], dtype=torch.float64)
    return (low + high) / 2, (high - low) ** 2 / 12


def test_paper_estimator_is_unbiased_for_the_first_order_conditional_variance():
    x, views, params, encoder = spirograph_setup()
    means, variances = uniform_moments(NUISANCE, FACTOR_RANGES)
    exact = first_order_variance(encoder, views, x, params, NUISANCE, means, variances)
    mean, error = repeated(
        GradientInvariance("paper", num_draws=100, clamp=NO_CLAMP),
        encoder,
        views,
        x,
        params,
        30,
        40,
    )
    assert mean.dtype == torch.float64
    assert abs(mean - exact) < 4 * error + 1e-3 * exact, (mean, error, exact)


def test_difference_estimator_is_the_mean_squared_move_for_its_draw():
    # Replaying its single draw by hand: the same generator gives the same alpha'.
    x, views, params, encoder = spirograph_setup(batch=5)
    got = GradientInvariance("difference", clamp=NO_CLAMP)(
        encoder, views, x, params, generator=torch.Generator().manual_seed(8)
    )
    fresh = views.sample(x, generator=torch.Generator().manual_seed(8))
    moved = normalised(encoder, views, x, fresh) - normalised(encoder, views, x, params)
    expected = (moved**2).sum(-1).mean()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    weights = list(encoder.parameters())
    for got_grad, expected_grad in zip(
        torch.autograd.grad(got, weights), torch.autograd.grad(expected, weights)
    ):
        torch.testing.assert_close(got_grad, expected_grad, rtol=1e-10, atol=1e-14)


def test_difference_estimator_is_unbiased_for_the_conditional_variance():
    x, views, params, encoder = spirograph_setup()
    draws = 2000
    with torch.no_grad():
        h_alpha = normalised(encoder, views, x, params)
        fresh = views.sample(x.repeat(draws, 1), generator=torch.Generator().manual_seed(7))
        h_fresh = normalised(encoder, views, x.repeat(draws, 1), fresh).view(draws, *h_alpha.shape)
        moves = ((h_fresh - h_alpha) ** 2).sum(-1)
    exact, exact_error = moves.mean(), moves.std() / moves.numel() ** 0.5
    mean, error = repeated(
        GradientInvariance("difference", clamp=NO_CLAMP), encoder, views, x, params, 20, 100
    )
    assert abs(mean - exact) < 4 * (error**2 + exact_error**2) ** 0.5, (mean, error, exact)


def test_both_estimators_agree_when_the_view_is_locally_linear():
    # A narrow gain range makes the paper's Taylor expansion exact to O(width): both
    # estimators then estimate the same conditional variance.
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    views = Brightness(0.97, 1.03)
    params = views.sample(x, generator=torch.Generator().manual_seed(2))
    encoder = tiny_encoder(48, seed=3)
    paper, paper_error = repeated(
        GradientInvariance("paper", clamp=NO_CLAMP), encoder, views, x, params, 10, 100
    )
    difference, difference_error = repeated(
        GradientInvariance("difference", clamp=NO_CLAMP), encoder, views, x, params, 10, 500
    )
    means, variances = uniform_moments(["gain"], {"gain": (0.97, 1.03)})
    exact = first_order_variance(encoder, views, x, params, ["gain"], means, variances)
    assert exact > 0
    tolerance = 4 * (paper_error**2 + difference_error**2) ** 0.5 + 0.03 * exact
    assert abs(paper - difference) < tolerance, (paper, difference, tolerance)


@pytest.mark.parametrize("estimator", ["paper", "difference"])
def test_an_invariant_encoder_is_not_penalised(estimator):
    x = (
        torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        + 0.1
    )
    views = Brightness()
    params = views.sample(x, generator=torch.Generator().manual_seed(5))
    objective = GradientInvariance(estimator, num_draws=10)
    penalty = objective(
        scale_invariant, views, x, params, generator=torch.Generator().manual_seed(6)
    )
    assert penalty.abs() < 1e-20
    sensitive = objective(
        lambda v: v.mean((2, 3)), views, x, params, generator=torch.Generator().manual_seed(6)
    )
    assert sensitive.abs() < 1e-20  # normalised mean colour is invariant to a gain too ...
    unnormalised = GradientInvariance(estimator, num_draws=10, normalize=False)
    assert (
        unnormalised(lambda v: v.mean((2, 3)), views, x, params) > 1e-6
    )  # ... the raw mean is not


def test_difference_reuses_the_pipelines_view_zero_encoding():
    x, views, params, encoder = spirograph_setup(batch=4)
    objective = GradientInvariance("difference", clamp=NO_CLAMP)
    h0 = encoder(views.apply(x, params))
    h = torch.stack([h0, torch.zeros_like(h0)], 1)  # view 1 must be ignored
    with_h = objective(encoder, views, x, params, h=h, generator=torch.Generator().manual_seed(3))
    without = objective(encoder, views, x, params, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(with_h, without)


@pytest.mark.parametrize("estimator", ["paper", "difference"])
def test_gradients_reach_the_encoder_and_draws_follow_the_generator(estimator):
    x, views, params, encoder = spirograph_setup()
    objective = GradientInvariance(estimator, num_draws=20, clamp=NO_CLAMP)
    state = torch.random.get_rng_state()
    first = objective(encoder, views, x, params, generator=torch.Generator().manual_seed(9))
    again = objective(encoder, views, x, params, generator=torch.Generator().manual_seed(9))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first, again)
    first.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    assert all(p.grad is None for p in params.values())  # view 0's params are left alone


def test_clamp_caps_the_value_and_stops_the_gradient():
    x, views, params, encoder = spirograph_setup()
    penalty = GradientInvariance("difference", clamp=1e-9)(encoder, views, x, params)
    assert penalty.item() == pytest.approx(1e-9)
    penalty.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in encoder.parameters())


@pytest.mark.parametrize("estimator", ["paper", "difference"])
def test_pipeline_passes_view_zero_to_the_objective(estimator):
    x, _, _, encoder = spirograph_setup(batch=4)
    recipe = {
        "views": {"name": "spirograph"},
        "objective": [
            {"name": "gradient_invariance", "weight": 0.01, "estimator": estimator, "clamp": 1000.0}
        ],
    }
    pipeline = augplug.build(recipe)
    out = pipeline(x, encoder, generator=torch.Generator().manual_seed(11))
    # The same draws by hand: two views' params, then the objective's own.
    g = torch.Generator().manual_seed(11)
    views = pipeline.views[0]
    params = views.sample(x, generator=g)
    views.sample(x, generator=g)
    expected = GradientInvariance(estimator, clamp=1000.0)(encoder, views, x, params, generator=g)
    torch.testing.assert_close(out.terms["gradient_invariance"], expected.detach())
    torch.testing.assert_close(out.loss, 0.01 * expected.detach().float())
    out.loss.backward()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("estimator", ["paper", "difference"])
def test_low_precision_encoders_give_a_float32_penalty(dtype, estimator):
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1)).to(dtype)
    views = Brightness()
    params = views.sample(x, generator=torch.Generator().manual_seed(2))
    encoder = tiny_encoder(48, dtype=dtype)
    penalty = GradientInvariance(estimator, num_draws=10)(encoder, views, x, params)
    assert penalty.dtype == torch.float32 and torch.isfinite(penalty)
    penalty.backward()


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="estimator"):
        augplug.create("objective", "gradient_invariance", estimator="jvp")
    with pytest.raises(ValueError, match="num_draws"):
        GradientInvariance(num_draws=0)
    with pytest.raises(ValueError, match="clamp"):
        GradientInvariance(clamp=0.0)
    x, views, params, encoder = spirograph_setup()
    objective = GradientInvariance()
    with pytest.raises(TypeError, match="view_generator: expected a parametric"):
        objective(encoder, RowOffset(), x, params)
    with pytest.raises(ValueError, match="view_params: expected the params of view 0, got None"):
        objective(encoder, views, x, None)
    with pytest.raises(ValueError, match="view_params: missing"):
        objective(encoder, views, x, {k: v for k, v in params.items() if k != "h"})
    with pytest.raises(ValueError, match=r"view_params\['h'\]: expected 3 rows"):
        objective(encoder, views, x, {**params, "h": params["h"][:2]})


@pytest.mark.parametrize("estimator", ["paper", "difference"])
def test_works_with_the_colour_recipe(estimator):
    views = augplug.create("views", "colour")
    # Mid-range images: no channel clips, so standardised luminance is exactly invariant.
    x = (0.35 + 0.2 * torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(3))).double()
    params = views.sample(x, generator=torch.Generator().manual_seed(1))

    def standardised_luminance(v):
        y = (0.299 * v[:, 0] + 0.587 * v[:, 1] + 0.114 * v[:, 2]).flatten(1)
        return y - y.mean(1, keepdim=True)

    objective = GradientInvariance(estimator, num_draws=20)
    generator = torch.Generator().manual_seed(2)
    assert objective(standardised_luminance, views, x, params, generator=generator) < 1e-20
    assert objective(lambda v: v.mean((2, 3)), views, x, params, generator=generator) > 1e-6


def test_difference_estimator_is_twice_the_conditional_variance_over_random_alpha():
    x, views, _, encoder = spirograph_setup()
    tiles = 100
    tiled = x.repeat(tiles, 1)
    objective = GradientInvariance("difference", clamp=NO_CLAMP)
    values = []
    with torch.no_grad():
        for seed in range(10):
            g = torch.Generator().manual_seed(seed)
            values.append(
                objective(encoder, views, tiled, views.sample(tiled, generator=g), generator=g)
            )
        values = torch.stack(values)

        def normalised_encoder(v):
            return F.normalize(encoder(v), dim=1)

        variance = conditional_variance(
            normalised_encoder, views, x, 1000, generator=torch.Generator().manual_seed(99)
        )
    error = values.std() / len(values) ** 0.5
    assert abs(values.mean() - 2 * variance.mean()) < 4 * error + 0.03 * variance.mean(), (
        values.mean(),
        variance,
    )


def test_paper_estimator_replayed_with_an_explicit_jacobian():
    # The same Rademacher vector and alpha' draws (same generator, same order), with
    # g = J^T v from the full Jacobian instead of double backprop: value and weight gradients.
    x, views, params, encoder = spirograph_setup(batch=2)
    draws = 7
    got = GradientInvariance("paper", num_draws=draws, clamp=NO_CLAMP)(
        encoder, views, x, params, generator=torch.Generator().manual_seed(4)
    )
    g = torch.Generator().manual_seed(4)
    alpha = torch.stack([params[n] for n in NUISANCE], 1)

    def h_of(a):
        return normalised(
            encoder, views, x, {**params, **{n: a[:, i] for i, n in enumerate(NUISANCE)}}
        )

    jac = torch.autograd.functional.jacobian(h_of, alpha, create_graph=True)  # (B, D, B, k)
    jac = torch.stack([jac[b, :, b, :] for b in range(2)])  # (B, D, k)
    signs = rng.rademacher(jac.shape[:2], device="cpu", generator=g, dtype=torch.float64)
    fresh = views.sample(x[:1].expand(draws * 2, 4), generator=g)
    delta = torch.stack([fresh[n] for n in NUISANCE], -1).view(draws, 2, -1) - alpha
    slope = torch.einsum("bd,bdk->bk", signs, jac)
    expected = ((slope * delta).sum(-1) ** 2).mean()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=0)
    weights = list(encoder.parameters())
    for got_grad, expected_grad in zip(
        torch.autograd.grad(got, weights), torch.autograd.grad(expected, weights)
    ):
        torch.testing.assert_close(got_grad, expected_grad, rtol=1e-8, atol=1e-12)


@given(
    seed=st.integers(0, 2**31),
    batch=st.integers(1, 4),
    estimator=st.sampled_from(["paper", "difference"]),
)
def test_penalty_is_finite_non_negative_and_at_most_the_clamp(seed, batch, estimator):
    x, views, params, encoder = spirograph_setup(batch=batch, seed=seed % 1000)
    clamp = 0.05
    penalty = GradientInvariance(estimator, num_draws=5, clamp=clamp)(
        encoder, views, x, params, generator=torch.Generator().manual_seed(seed)
    )
    assert penalty.ndim == 0 and torch.isfinite(penalty) and 0 <= penalty <= clamp


@pytest.mark.cuda
@pytest.mark.parametrize("estimator", ["paper", "difference"])
def test_runs_on_cuda_with_a_cuda_generator(estimator):
    x, views, params, encoder = spirograph_setup()
    x, encoder = x.cuda(), encoder.cuda()
    params = {name: value.cuda() for name, value in params.items()}
    penalty = GradientInvariance(estimator)(
        encoder, views, x, params, generator=torch.Generator("cuda").manual_seed(0)
    )
    assert penalty.device.type == "cuda"
    penalty.backward()


@pytest.mark.parametrize("estimator", ["paper", "difference"])
def test_params_restricts_alpha_to_the_named_subset(estimator):
    x, views, params, encoder = spirograph_setup(batch=3)
    subset = ("h", "back_r")

    class SubsetViews(SpirographViews):
        continuous_params = subset

    restricted = GradientInvariance(estimator, num_draws=5, clamp=NO_CLAMP, params=subset)
    reference = GradientInvariance(estimator, num_draws=5, clamp=NO_CLAMP)
    a = restricted(encoder, views, x, params, generator=torch.Generator().manual_seed(8))
    b = reference(encoder, SubsetViews(), x, params, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b)
    full = reference(encoder, views, x, params, generator=torch.Generator().manual_seed(8))
    assert not torch.allclose(a, full)
    composed = augplug.ComposedViews([views])  # names become "0.h", ...: matched by suffix
    c = restricted(encoder, composed, x, composed.sample(x, generator=torch.Generator().manual_seed(100)),
                   generator=torch.Generator().manual_seed(8))  # fmt: skip
    assert torch.isfinite(c)
    with pytest.raises(ValueError, match=r"params: none of \['hue'\]"):
        GradientInvariance(params=["hue"])(encoder, views, x, params)


def test_paper_estimator_in_a_pipeline_encodes_nothing_twice():
    """As the reference: the penalty differentiates the contrastive pass's own encoding of view 0."""
    x, _, _, encoder = spirograph_setup(batch=4)
    calls = []

    def counting(v):
        calls.append(v.shape[0])
        return encoder(v)

    pipeline = augplug.build({
        "views": {"name": "spirograph"},
        "objective": [{"name": "gradient_invariance", "estimator": "paper", "clamp": 1000.0}],
    })  # fmt: skip
    out = pipeline(x, counting, generator=torch.Generator().manual_seed(11))
    assert calls == [2 * x.shape[0]]  # one pass over both views, none for the penalty
    assert out.loss.requires_grad
    out.loss.backward()
    assert all(p.grad is not None for p in encoder.parameters())
