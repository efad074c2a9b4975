"""BYOL and SimSiam negative-cosine losses against a float64 reference."""

import hypothesis.strategies as st
import pytest
import torch
from augplug_objectives.cosine import BYOLLoss, SimSiamLoss
from hypothesis import given
from objective_references import negative_cosine_reference

import augplug

LOSSES = {
    "byol": (BYOLLoss, lambda cos: (2 - 2 * cos).mean()),
    "simsiam": (SimSiamLoss, lambda cos: -cos.mean()),
}


def _pair(seed, batch, dim, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    z1 = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    z2 = torch.randn(batch, dim, generator=gen, dtype=torch.float64) * 3.0
    return z1.to(dtype).requires_grad_(True), z2.to(dtype).requires_grad_(True)


@pytest.mark.parametrize("name", sorted(LOSSES))
@given(batch=st.integers(1, 9), dim=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_loss_and_online_gradient_match_reference_and_target_gets_none(name, batch, dim, seed):
    cls, from_cosine = LOSSES[name]
    z1, z2 = _pair(seed, batch, dim)
    loss = cls()(z1, z2)
    loss.backward()
    ref_z1 = z1.detach().clone().requires_grad_(True)
    ref = from_cosine(negative_cosine_reference(ref_z1, z2.detach()))
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z1.grad, ref_z1.grad, rtol=1e-10, atol=1e-12)
    assert z2.grad is None  # the stop-gradient on the target


@pytest.mark.parametrize("name", sorted(LOSSES))
@given(batch=st.integers(1, 9), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_invariant_to_permuting_the_batch(name, batch, seed, data):
    z1, z2 = _pair(seed, batch, 5)
    order = torch.tensor(data.draw(st.permutations(range(batch))))
    loss_fn = LOSSES[name][0]()
    torch.testing.assert_close(
        loss_fn(z1[order], z2[order]), loss_fn(z1, z2), rtol=1e-12, atol=1e-12
    )


def test_bounds_at_aligned_and_opposite_targets():
    z = torch.randn(6, 4, dtype=torch.float64)
    for cls, aligned, opposite in ((BYOLLoss, 0.0, 4.0), (SimSiamLoss, -1.0, 1.0)):
        torch.testing.assert_close(cls()(z, 2.5 * z), torch.tensor(aligned, dtype=torch.float64))
        torch.testing.assert_close(cls()(z, -z), torch.tensor(opposite, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_half_inputs_give_float32_losses_close_to_reference(name, dtype):
    cls, from_cosine = LOSSES[name]
    z1, z2 = _pair(7, 32, 64, dtype)
    loss = cls()(z1, z2)
    loss.backward()
    assert loss.dtype == torch.float32 and z1.grad.dtype == dtype and torch.isfinite(z1.grad).all()
    ref = from_cosine(negative_cosine_reference(z1.detach(), z2.detach()))
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-5)


def test_gradcheck_float64():
    z1, z2 = _pair(3, 4, 3)
    assert torch.autograd.gradcheck(lambda a: BYOLLoss()(a, z2.detach()), (z1,))
    assert torch.autograd.gradcheck(lambda a: SimSiamLoss()(a, z2.detach()), (z1,))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_registered_and_inputs_checked(name):
    loss_fn = augplug.create("objective", name)
    assert isinstance(loss_fn, augplug.Objective) and isinstance(loss_fn, LOSSES[name][0])
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="z2: expected the same batch size"):
        loss_fn(z, z[:2])
    with pytest.raises(ValueError, match="z2: expected 8 features"):
        loss_fn(z, z[:, :3])
    with pytest.raises(ValueError, match="z1: expected a 2-D tensor"):
        loss_fn(z[None], z)
    with pytest.raises(TypeError, match="z2: expected a torch.Tensor"):
        loss_fn(z, None)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(torch.float32, s) for s in (1e-30, 1e-15, 1.0, 1e15, 1e30)]
    + [(torch.bfloat16, s) for s in (1e-30, 1e30)]
    + [(torch.float16, s) for s in (1e-3, 1e3)],
)
def test_loss_is_scale_invariant_at_extreme_magnitudes(name, dtype, scale):
    """The cosine ignores the rows' scale; F.normalize overflowed at 1e30 (float32)."""
    cls, from_cosine = LOSSES[name]
    z1, z2 = (z.detach() * scale for z in _pair(3, 6, 5))
    z1, z2 = z1.to(dtype), z2.to(dtype)
    loss = cls()(z1, z2)
    reference = from_cosine(negative_cosine_reference(z1.double() / scale, z2.double() / scale))
    tolerance = 1e-5 if dtype == torch.float32 else 1e-3
    torch.testing.assert_close(loss.double(), reference, rtol=tolerance, atol=tolerance)
