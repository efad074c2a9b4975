"""Stateless feature augmenters: shapes, dtypes, determinism, coefficient laws, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import augplug
from augplug.components import FeatureAugmenter

NAMES = ("noise", "mask", "mixup", "extrapolate", "nearest_neighbour", "neighbour_mean")
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def make(name: str, dim: int) -> FeatureAugmenter:
    if name in ("nearest_neighbour", "neighbour_mean"):
        return augplug.create("features", name, dim=dim, size=8)
    return augplug.create("features", name)


@given(
    name=st.sampled_from(NAMES),
    batch=st.integers(1, 6),
    dim=st.integers(1, 12),
    k=st.one_of(st.none(), st.integers(1, 4)),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_shape_dtype_and_generator_determinism(name, batch, dim, k, dtype, seed):
    inputs = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, dim, generator=inputs).to(dtype)
    partner = torch.randn(batch, dim, generator=inputs).to(dtype)
    first, second = make(name, dim), make(name, dim)
    rng_state = torch.get_rng_state()
    outs = [
        aug(z, partner=partner, k=k, generator=torch.Generator().manual_seed(seed))
        for aug in (first, second)
    ]
    assert torch.equal(torch.get_rng_state(), rng_state), (
        "an explicit generator must leave the global RNG alone"
    )
    expected = (batch, dim) if k is None else (batch, k, dim)
    for out in outs:
        assert out.shape == expected
        assert out.dtype == dtype
        assert torch.isfinite(out.float()).all()
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("name", ["noise", "mask", "mixup", "extrapolate"])
def test_different_generators_give_different_draws(name):
    z, partner = torch.randn(16, 32), torch.randn(16, 32)
    aug = make(name, 32)
    a = aug(z, partner=partner, generator=torch.Generator().manual_seed(0))
    b = aug(z, partner=partner, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_a_clear_error(name):
    aug = make(name, 4)
    with pytest.raises(ValueError, match="z: expected a 2-D tensor"):
        aug(torch.randn(2, 3, 4), partner=torch.randn(2, 4))
    with pytest.raises(TypeError, match="z: expected dtype"):
        aug(torch.ones(2, 4, dtype=torch.long), partner=torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"k: expected an integer >= 1, got 0 \(int\)"):
        aug(torch.randn(2, 4), partner=torch.randn(2, 4), k=0)
    with pytest.raises(ValueError, match="z: expected finite values"):
        aug(torch.tensor([[0.0, math.nan, 1.0, 2.0]]), partner=torch.randn(1, 4))
    with pytest.raises(TypeError, match="generator"):
        aug(torch.randn(2, 4), partner=torch.randn(2, 4), generator=0)


def test_extrapolate_needs_a_matching_partner():
    aug = make("extrapolate", 4)
    assert aug.needs_partner
    with pytest.raises(ValueError, match="partner: .*got None"):
        aug(torch.randn(2, 4))
    with pytest.raises(ValueError, match="partner: expected shape"):
        aug(torch.randn(2, 4), partner=torch.randn(3, 4))


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("noise", {"std": -1.0}, "std"),
        ("mask", {"ratio": 1.0}, "ratio"),
        ("mask", {"ratio": -0.1}, "ratio"),
        ("mixup", {"alpha": 0.0}, "alpha"),
        ("extrapolate", {"alpha": -2.0}, "alpha"),
        ("nearest_neighbour", {"dim": 0}, "dim"),
        ("neighbour_mean", {"dim": 4, "size": 3, "neighbours": 5}, "neighbours"),
    ],
)
def test_bad_hyper_parameters(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        augplug.create("features", name, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("noise", {"std": "0.1"}, r"^std: expected a number >= 0, got '0.1' \(str\)$"),
        ("noise", {"relative": 1}, r"^relative: expected True or False, got 1 \(int\)$"),
        ("mask", {"ratio": "0.5"}, r"^ratio: expected a number in \[0.0, 1.0\), got '0.5'"),
        ("mask", {"rescale": "no"}, r"^rescale: expected True or False"),
        ("mixup", {"alpha": None}, r"^alpha: expected a number > 0, got None \(NoneType\)$"),
        ("mixup", {"fold": 0}, r"^fold: expected True or False"),
        ("extrapolate", {"per_dimension": "yes"}, r"^per_dimension: expected True or False"),
        ("nearest_neighbour", {"dim": 4, "size": "10"}, r"^size: expected an integer >= 1"),
        ("neighbour_mean", {"dim": 4, "neighbours": 2.0}, r"^neighbours: expected an integer"),
    ],
)
def test_wrongly_typed_hyper_parameters_name_the_argument(name, kwargs, match):
    with pytest.raises(TypeError, match=match):
        augplug.create("features", name, **kwargs)


def identity_mixup(fold: bool, batch: int = 128, k: int = 8, seed: int = 0) -> torch.Tensor:
    """Mixup of the one-hot batch: row b of sample s is lam * e_b + (1 - lam) * e_partner."""
    aug = augplug.create("features", "mixup", alpha=1.0, fold=fold)
    return aug(torch.eye(batch), k=k, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fold", [True, False])
def test_mixup_is_a_convex_pair_with_beta_coefficient(fold):
    out = identity_mixup(fold).double()
    batch = out.shape[0]
    torch.testing.assert_close(out.sum(-1), torch.ones(out.shape[:2], dtype=torch.float64))
    assert (out >= 0).all()
    assert ((out > 0).sum(-1) <= 2).all(), "each mixed feature combines itself and one partner"
    own = out[torch.arange(batch), :, torch.arange(batch)]  # (B, k): the weight on itself
    mixed = own[own < 1.0]  # own == 1 where the permutation paired a feature with itself
    assert mixed.numel() > 0.9 * own.numel()
    if fold:
        assert (mixed >= 0.5).all()
        cdf = lambda x: 2.0 * stats.beta(1.0, 1.0).cdf(x) - 1.0  # noqa: E731
    else:
        cdf = stats.beta(1.0, 1.0).cdf
    assert stats.kstest(mixed.numpy(), cdf).pvalue > 1e-3


def test_mixup_partners_are_a_permutation():
    out = identity_mixup(fold=True, batch=32, k=4)
    partner = torch.where(out > 0, out, 2.0).argmin(-1)  # the smaller weight is the partner's
    own = out[torch.arange(32), :, torch.arange(32)]
    partner = torch.where(own == 1.0, torch.arange(32)[:, None], partner)
    for sample in range(4):
        assert sorted(partner[:, sample].tolist()) == list(range(32))


@pytest.mark.parametrize("per_dimension", [True, False])
@pytest.mark.parametrize("alpha", [2.0, 0.5])
def test_extrapolation_coefficient_is_one_plus_beta(per_dimension, alpha):
    aug = augplug.create("features", "extrapolate", alpha=alpha, per_dimension=per_dimension)
    z, partner = torch.ones(64, 16), torch.zeros(64, 16)
    lam = aug(z, partner=partner, k=4, generator=torch.Generator().manual_seed(0)).double()
    assert ((lam >= 1.0) & (lam <= 2.0)).all()
    if not per_dimension:
        assert (lam == lam[..., :1]).all()
        lam = lam[..., 0]
    assert stats.kstest(lam.flatten().numpy() - 1.0, stats.beta(alpha, alpha).cdf).pvalue > 1e-3


@given(
    z=st.integers(0, 2**16).map(
        lambda s: torch.randn(5, 7, generator=torch.Generator().manual_seed(s))
    ),
    partner_seed=st.integers(0, 2**16),
)
def test_extrapolation_moves_away_from_the_partner(z, partner_seed):
    partner = torch.randn(5, 7, generator=torch.Generator().manual_seed(2**17 + partner_seed))
    aug = augplug.create("features", "extrapolate", per_dimension=False)
    out = aug(z, partner=partner, generator=torch.Generator().manual_seed(partner_seed)).double()
    # Per sample: out - partner = lam * (z - partner) with lam in [1, 2].
    step, base = (out - partner.double()), (z - partner).double()
    lam = (step * base).sum(-1) / base.pow(2).sum(-1)
    assert ((lam >= 1 - 1e-6) & (lam <= 2 + 1e-6)).all()
    torch.testing.assert_close(step, lam[:, None] * base, rtol=1e-5, atol=1e-5)


@given(
    ratio=st.floats(0.0, 0.95),
    dim=st.integers(1, 40),
    rescale=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_mask_drops_floor_or_ceil_of_the_ratio(ratio, dim, rescale, seed):
    aug = augplug.create("features", "mask", ratio=ratio, rescale=rescale)
    out = aug(torch.ones(8, dim), k=3, generator=torch.Generator().manual_seed(seed)).double()
    gain = 1.0 / (1.0 - ratio) if rescale else 1.0
    kept = out != 0
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], gain))
    dropped = (~kept).sum(-1)
    assert ((dropped == math.floor(ratio * dim)) | (dropped == math.ceil(ratio * dim))).all()


@pytest.mark.parametrize(("ratio", "dim"), [(0.25, 10), (0.3, 16), (0.5, 7)])
def test_mask_keeps_the_stated_fraction_in_expectation(ratio, dim):
    aug = augplug.create("features", "mask", ratio=ratio)
    out = aug(torch.ones(500, dim), k=8, generator=torch.Generator().manual_seed(0))
    kept = (out != 0).double()
    draws = kept.shape[0] * kept.shape[1]
    # Per-sample kept fraction: mean 1 - ratio, spread at most 1 / (2 dim) per draw.
    tolerance = 5 * (0.5 / dim) / math.sqrt(draws)
    assert abs(kept.mean(-1).mean().item() - (1 - ratio)) < tolerance
    # Every dimension is equally likely to be kept (no position bias).
    per_dim = kept.mean((0, 1))
    assert (per_dim - (1 - ratio)).abs().max() < 5 * math.sqrt(ratio * (1 - ratio) / draws)


@pytest.mark.parametrize("relative", [True, False])
def test_noise_scale(relative):
    aug = augplug.create("features", "noise", std=0.3, relative=relative)
    z = torch.randn(64, 32) * torch.linspace(0.1, 10.0, 64)[:, None]
    out = aug(z, k=8, generator=torch.Generator().manual_seed(0)).double()
    noise = out - z.double()[:, None]
    if relative:
        noise = noise / z.double().pow(2).mean(-1).sqrt()[:, None, None]
    assert abs(noise.std().item() - 0.3) < 0.3 * 0.03
    assert abs(noise.mean().item()) < 0.3 * 0.03


def test_gradients_flow_through_stateless_augmenters():
    z, partner = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    for name in ("noise", "mask", "mixup", "extrapolate"):
        z.grad = partner.grad = None
        make(name, 6)(
            z, partner=partner, k=2, generator=torch.Generator().manual_seed(0)
        ).sum().backward()
        assert z.grad is not None and torch.isfinite(z.grad).all()


@given(alpha=st.floats(0.05, 20.0), fold=st.booleans(), seed=st.integers(0, 2**16))
def test_mixup_coefficient_range_for_any_alpha(alpha, fold, seed):
    aug = augplug.create("features", "mixup", alpha=alpha, fold=fold)
    out = aug(torch.eye(6), k=5, generator=torch.Generator().manual_seed(seed)).double()
    own = out[torch.arange(6), :, torch.arange(6)]
    assert ((own >= (0.5 if fold else 0.0)) & (own <= 1.0)).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(6, 5, dtype=torch.float64))


@given(alpha=st.floats(0.05, 20.0), per_dimension=st.booleans(), seed=st.integers(0, 2**16))
def test_extrapolation_coefficient_range_for_any_alpha(alpha, per_dimension, seed):
    aug = augplug.create("features", "extrapolate", alpha=alpha, per_dimension=per_dimension)
    lam = aug(
        torch.ones(4, 9),
        partner=torch.zeros(4, 9),
        k=3,
        generator=torch.Generator().manual_seed(seed),
    )
    assert ((lam >= 1.0) & (lam <= 2.0)).all()


@pytest.mark.cuda
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_forward_has_no_host_sync(name, dtype):
    from augplug.checks import validation

    aug = make(name, 16).cuda()
    z = torch.randn(32, 16, device="cuda", dtype=dtype)
    gen = torch.Generator(device="cuda").manual_seed(0)
    aug(z, partner=z.flip(0), k=2, generator=gen)  # first call: any lazy set-up
    torch.cuda.synchronize()
    with validation(False):  # the finiteness check is the one documented sync
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = aug(z, partner=z.flip(0), k=2, generator=gen)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert out.shape == (32, 2, 16) and out.dtype == dtype
