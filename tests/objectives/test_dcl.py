"""DCL / DCLW against float64 references written from Yeh et al. 2022, eq. 6, and lightly."""

import hypothesis.strategies as st
import pytest
import torch
from augplug_objectives.dcl import DCL, DCLW, dcl
from hypothesis import given
from test_infonce import _LargestTensor

import augplug


def decoupled_reference(
    views: torch.Tensor, temperature: float, sigma: float | None = None
) -> torch.Tensor:
    """Eq. 6 written with the full (BV, BV) matrix and masks, float64.

    Negatives of an anchor: every embedding of another sample. Positives: the other views of
    its sample, weighted (DCLW) by 2 - exp(cos/sigma) / mean over the batch's ordered pairs.
    """
    batch, num_views, dim = views.shape
    unit = torch.nn.functional.normalize(views.double(), dim=-1).reshape(batch * num_views, dim)
    cos = unit @ unit.T
    sample = torch.arange(batch).repeat_interleave(num_views)
    same = sample[:, None] == sample[None, :]
    positive = same & ~torch.eye(batch * num_views, dtype=torch.bool)
    negative_lse = torch.logsumexp((cos / temperature).masked_fill(same, float("-inf")), dim=1)
    weight = torch.ones_like(cos)
    if sigma is not None:
        vmf = torch.exp(cos / sigma).detach()
        weight = 2 - vmf / vmf[positive].mean()
    positive_term = (weight * cos / temperature).masked_fill(~positive, 0).sum(1) / (num_views - 1)
    return (negative_lse - positive_term).mean()


def _views(seed, batch, num_views, dim, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, num_views, dim, generator=gen, dtype=torch.float64).to(dtype)


def _loss_and_grad(fn, views):
    views = views.detach().requires_grad_(True)
    loss = fn(views)
    return loss.detach(), torch.autograd.grad(loss, views)[0]


shapes = st.tuples(st.integers(2, 7), st.integers(2, 4), st.integers(1, 9))


@given(shape=shapes, seed=st.integers(0, 2**31 - 1), temperature=st.floats(0.05, 2.0), tile=st.integers(1, 20),
       sigma=st.sampled_from([None, 0.5, 0.1, 2.0]))  # fmt: skip
def test_loss_and_gradient_match_float64_reference(shape, seed, temperature, tile, sigma):
    views = _views(seed, *shape)
    loss, grad = _loss_and_grad(
        lambda v: dcl(v, temperature=temperature, sigma=sigma, tile_size=tile), views
    )
    ref, ref_grad = _loss_and_grad(lambda v: decoupled_reference(v, temperature, sigma), views)
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


def test_gradcheck_float64():
    views = _views(1, 3, 3, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: dcl(v, temperature=0.5, tile_size=4), (views,))
    # DCLW's weights carry no gradient (a stop-gradient), so finite differences of it would
    # not match its gradient by design; the reference test covers it.


@given(shape=shapes, seed=st.integers(0, 2**31 - 1), data=st.data())
def test_invariant_to_sample_and_view_order_and_scale(shape, seed, data):
    views = _views(seed, *shape)
    samples = torch.tensor(data.draw(st.permutations(range(shape[0]))))
    order = torch.tensor(data.draw(st.permutations(range(shape[1]))))
    scale = torch.tensor(data.draw(st.floats(1e-3, 1e3)), dtype=torch.float64)
    for sigma in (None, 0.5):
        loss = dcl(views, sigma=sigma, tile_size=3)
        for other in (views[samples], views[:, order], views * scale):
            torch.testing.assert_close(
                dcl(other, sigma=sigma, tile_size=3), loss, rtol=1e-10, atol=1e-10
            )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_float32(dtype):
    views = _views(2, 16, 2, 32, dtype=dtype)
    for sigma in (None, 0.5):
        loss, grad = _loss_and_grad(
            lambda v, s=sigma: dcl(v, temperature=0.05, sigma=s, tile_size=5), views
        )
        assert loss.dtype == torch.float32 and grad.dtype == dtype
        ref, ref_grad = _loss_and_grad(
            lambda v, s=sigma: decoupled_reference(v, 0.05, s), views.double()
        )
        torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            grad.double(), ref_grad, rtol=1e-2, atol=1e-2 * ref_grad.abs().max().item()
        )


def test_memory_is_tiled_like_infonce():
    batch, num_views, dim, tile = 48, 2, 8, 4
    rows = batch * num_views
    views = _views(3, batch, num_views, dim).requires_grad_(True)
    with _LargestTensor() as recorder:
        dcl(views, tile_size=tile).backward()
    assert recorder.largest <= max(tile * rows, rows * dim)


def test_pairwise_form_is_swap_invariant_and_equals_stacked_form():
    views = _views(4, 6, 2, 5)
    z1, z2 = views[:, 0], views[:, 1]
    for loss_fn in (DCL(temperature=0.3), DCLW(temperature=0.3)):
        torch.testing.assert_close(loss_fn(z1, z2), loss_fn(z2, z1), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(loss_fn(z1, z2), loss_fn(views), rtol=1e-12, atol=1e-12)


def test_matches_lightly():
    lightly_dcl = pytest.importorskip("lightly.loss.dcl_loss")
    views = _views(5, 32, 2, 16, dtype=torch.float32)
    z1, z2 = views[:, 0], views[:, 1]
    for ours, theirs in (
        (DCL(temperature=0.2), lightly_dcl.DCLLoss(temperature=0.2)),
        (DCLW(temperature=0.2, sigma=0.5), lightly_dcl.DCLWLoss(temperature=0.2, sigma=0.5)),
    ):
        a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        c, d = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        mine, theirs_value = ours(a, b), theirs(c, d)
        torch.testing.assert_close(mine, theirs_value, rtol=1e-5, atol=1e-5)
        grads = torch.autograd.grad(mine, (a, b))
        lightly_grads = torch.autograd.grad(theirs_value, (c, d))
        for g, h in zip(grads, lightly_grads):
            torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-6)


def test_registered_with_defaults():
    assert isinstance(augplug.create("objective", "dcl"), DCL)
    weighted = augplug.create("objective", "dclw")
    assert isinstance(weighted, DCLW) and weighted.sigma == 0.5 and weighted.temperature == 0.1


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "match"),
    [
        (DCL, {"temperature": 0.0}, ValueError, "temperature"),
        (DCL, {"tile_size": 0}, ValueError, "tile_size"),
        (DCL, {"gather_distributed": 1}, TypeError, "gather_distributed"),
        (DCL, {"local_anchors": True}, ValueError, "local_anchors"),
        (DCLW, {"sigma": -1.0}, ValueError, "sigma"),
    ],
)
def test_bad_options_are_rejected(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


def test_bad_inputs_name_the_argument():
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="z2: expected the same batch size"):
        DCL()(z, z[:3])
    with pytest.raises(ValueError, match="z1: expected at least 2 samples"):
        DCL()(z[:1], z[:1])
    with pytest.raises(ValueError, match="z1: expected finite values"):
        DCLW()(torch.full((4, 8), float("nan")), z)
