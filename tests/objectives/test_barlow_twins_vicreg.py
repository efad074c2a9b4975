"""Barlow Twins and VICReg against float64 references from the papers' formulas, and lightly."""

import hypothesis.strategies as st
import pytest
import torch
from augplug_objectives.barlow_twins import BarlowTwins, barlow_twins
from augplug_objectives.vicreg import VICReg, vicreg
from hypothesis import given
from ssl_references import barlow_twins_reference, loss_and_grads, vicreg_reference, views

import augplug

LOSSES = [
    ("barlow_twins", BarlowTwins, barlow_twins, barlow_twins_reference),
    ("vicreg", VICReg, vicreg, vicreg_reference),
]
shapes = st.tuples(st.integers(2, 9), st.integers(1, 12))


@pytest.mark.parametrize(("name", "cls", "fn", "reference"), LOSSES)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.1, 1.0, 30.0]))
def test_loss_and_gradients_match_float64_reference(name, cls, fn, reference, shape, seed, scale):
    z = views(seed, shape[0], 2, shape[1], scale=scale)
    loss, grads = loss_and_grads(fn, z[:, 0], z[:, 1])
    ref, ref_grads = loss_and_grads(reference, z[:, 0], z[:, 1])
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("name", "cls", "fn", "reference"), LOSSES)
def test_gradcheck_float64(name, cls, fn, reference):
    z = views(1, 5, 2, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: fn(v[:, 0], v[:, 1]), (z,))


@pytest.mark.parametrize(("name", "cls", "fn", "reference"), LOSSES)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), data=st.data())
def test_swap_and_batch_permutation_invariance(name, cls, fn, reference, shape, seed, data):
    z = views(seed, shape[0], 2, shape[1])
    order = torch.tensor(data.draw(st.permutations(range(shape[0]))))
    loss = fn(z[:, 0], z[:, 1])
    assert cls.swap_invariant
    torch.testing.assert_close(fn(z[:, 1], z[:, 0]), loss, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fn(z[order, 0], z[order, 1]), loss, rtol=1e-10, atol=1e-10)


def test_barlow_twins_is_invariant_to_per_feature_affine_maps():
    # Standardisation removes any per-feature shift and positive scale (up to eps).
    z = views(2, 64, 2, 6)
    shift, scale = views(3, 6), views(4, 6).abs() + 0.5
    loss = barlow_twins(z[:, 0], z[:, 1], eps=1e-14)
    moved = barlow_twins(z[:, 0] * scale + shift, z[:, 1] * scale - shift, eps=1e-14)
    torch.testing.assert_close(moved, loss, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("name", "cls", "fn", "reference"), LOSSES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_float32(name, cls, fn, reference, dtype):
    z = views(5, 32, 2, 16, dtype=dtype)
    loss, grads = loss_and_grads(fn, z[:, 0], z[:, 1])
    assert loss.dtype == torch.float32 and grads[0].dtype == dtype
    ref, ref_grads = loss_and_grads(reference, z[:, 0].double(), z[:, 1].double())
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g.double(), r, rtol=1e-2, atol=1e-2 * r.abs().max().item())


def test_barlow_twins_matches_lightly():
    lightly_loss = pytest.importorskip("lightly.loss")
    z = views(6, 32, 2, 24, dtype=torch.float32)
    ours, theirs = (
        BarlowTwins(lambda_offdiagonal=5e-3),
        lightly_loss.BarlowTwinsLoss(lambda_param=5e-3),
    )
    loss, grads = loss_and_grads(ours, z[:, 0], z[:, 1])
    ref, ref_grads = loss_and_grads(theirs, z[:, 0], z[:, 1])
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_vicreg_matches_lightly():
    lightly_loss = pytest.importorskip("lightly.loss")
    z = views(7, 32, 2, 24, dtype=torch.float32)
    loss, grads = loss_and_grads(VICReg(), z[:, 0], z[:, 1])
    ref, ref_grads = loss_and_grads(lightly_loss.VICRegLoss(), z[:, 0], z[:, 1])
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_registered_with_the_papers_defaults():
    bt = augplug.create("objective", "barlow_twins")
    assert isinstance(bt, BarlowTwins) and bt.lambda_offdiagonal == 5.1e-3 and bt.eps == 1e-5
    vr = augplug.create("objective", "vicreg")
    assert isinstance(vr, VICReg)
    assert (vr.invariance_weight, vr.variance_weight, vr.covariance_weight, vr.eps) == (
        25.0,
        25.0,
        1.0,
        1e-4,
    )


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "match"),
    [
        (BarlowTwins, {"lambda_offdiagonal": -1.0}, ValueError, "lambda_offdiagonal"),
        (BarlowTwins, {"eps": 0.0}, ValueError, "eps"),
        (BarlowTwins, {"gather_distributed": "yes"}, TypeError, "gather_distributed"),
        (VICReg, {"variance_weight": "25"}, TypeError, "variance_weight"),
        (VICReg, {"variance_target": 0.0}, ValueError, "variance_target"),
    ],
)
def test_bad_options_are_rejected(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [BarlowTwins, VICReg])
def test_bad_inputs_name_the_argument(cls):
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="z1: expected at least 2 samples"):
        cls()(z[:1], z[:1])
    with pytest.raises(ValueError, match="z2: expected 8 features"):
        cls()(z, z[:, :5])
    with pytest.raises(ValueError, match="z1: expected a 2-D tensor"):
        cls()(z[None], z)
