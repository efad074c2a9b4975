"""InfoNCE: the tiled loss and its custom backward against a float64 reference."""

import hypothesis.strategies as st
import pytest
import torch
from augplug_objectives.infonce import InfoNCE, info_nce, similarity_logsumexp
from hypothesis import given
from objective_references import nt_xent_reference
from torch.utils._python_dispatch import TorchDispatchMode

import augplug


def _views(
    seed: int, batch: int, num_views: int, dim: int, scale: float = 1.0, dtype=torch.float64
):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, num_views, dim, generator=gen, dtype=torch.float64) * scale).to(
        dtype
    )


def _loss_and_grad(loss_fn, views):
    views = views.detach().requires_grad_(True)
    loss = loss_fn(views)
    (grad,) = torch.autograd.grad(loss, views)
    return loss.detach(), grad


shapes = st.tuples(
    st.integers(1, 7),  # batch
    st.integers(2, 4),  # views
    st.integers(1, 9),  # features
)


@given(
    shape=shapes,
    seed=st.integers(0, 2**31 - 1),
    temperature=st.floats(0.05, 2.0),
    tile=st.integers(1, 30),
    scale=st.sampled_from([0.01, 1.0, 50.0]),
)
def test_tiled_loss_and_gradient_match_float64_reference(shape, seed, temperature, tile, scale):
    views = _views(seed, *shape, scale=scale)
    loss, grad = _loss_and_grad(
        lambda v: info_nce(v, temperature=temperature, tile_size=tile), views
    )
    ref_loss, ref_grad = _loss_and_grad(lambda v: nt_xent_reference(v, temperature), views)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


@given(shape=shapes, seed=st.integers(0, 2**31 - 1), tile=st.integers(1, 30))
def test_float32_matches_reference(shape, seed, tile):
    views = _views(seed, *shape)
    loss, grad = _loss_and_grad(
        lambda v: info_nce(v, temperature=0.2, tile_size=tile), views.float()
    )
    ref_loss, ref_grad = _loss_and_grad(lambda v: nt_xent_reference(v, 0.2), views)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-5)


@given(shape=shapes, seed=st.integers(0, 2**31 - 1), data=st.data())
def test_invariant_to_permuting_samples_and_views(shape, seed, data):
    views = _views(seed, *shape)
    batch, num_views, _ = shape
    sample_order = torch.tensor(data.draw(st.permutations(range(batch))))
    view_order = torch.tensor(data.draw(st.permutations(range(num_views))))
    loss = info_nce(views, tile_size=3)
    torch.testing.assert_close(
        info_nce(views[sample_order], tile_size=3), loss, rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        info_nce(views[:, view_order], tile_size=3), loss, rtol=1e-12, atol=1e-12
    )


@given(batch=st.integers(1, 8), dim=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_pairwise_form_is_symmetric_and_equals_two_view_form(batch, dim, seed):
    views = _views(seed, batch, 2, dim)
    z1, z2 = views[:, 0], views[:, 1]
    loss_fn = InfoNCE(temperature=0.3, tile_size=2)
    torch.testing.assert_close(loss_fn(z1, z2), loss_fn(z2, z1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss_fn(z1, z2), loss_fn(views), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        loss_fn(z1, z2), nt_xent_reference(views, 0.3), rtol=1e-10, atol=1e-10
    )


def test_gradcheck_of_tiled_logsumexp_float64():
    gen = torch.Generator().manual_seed(0)
    anchors = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(9, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    # Anchors are keys 2..6 (as this rank's block of gathered keys); tiles of 2 do not divide 5.
    assert torch.autograd.gradcheck(
        lambda a, k: similarity_logsumexp(a, k, scale=1.7, tile_size=2, self_offset=2),
        (anchors, keys),
    )


def test_gradcheck_of_loss_float64():
    views = _views(1, 3, 3, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: info_nce(v, temperature=0.5, tile_size=4), (views,))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_float32_and_stay_finite_at_temperature_001(dtype):
    views = _views(2, 16, 2, 32, dtype=dtype)
    loss, grad = _loss_and_grad(lambda v: info_nce(v, temperature=0.01, tile_size=5), views)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    # Against the float64 reference on the same (already rounded) inputs, the only error left
    # is the loss's own arithmetic, which float32 accumulation keeps small even at T = 0.01.
    ref_loss, ref_grad = _loss_and_grad(lambda v: nt_xent_reference(v, 0.01), views.double())
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-4, atol=1e-4)
    tolerance = 1e-2 * ref_grad.abs().max()  # the gradient is rounded to the input dtype
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-2, atol=tolerance.item())


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.numel())
        return out


@pytest.mark.parametrize("tile", [4, 7])
def test_no_operation_materialises_the_pairwise_matrix(tile):
    batch, num_views, dim = 48, 2, 8
    rows = batch * num_views
    views = _views(3, batch, num_views, dim).requires_grad_(True)
    with _LargestTensor() as recorder:
        info_nce(views, tile_size=tile).backward()
    assert recorder.largest <= max(tile * rows, rows * dim)
    assert recorder.largest < rows * rows // 4


def test_default_tile_covers_small_batches_in_one_tile():
    views = _views(4, 6, 2, 5).requires_grad_(True)
    torch.testing.assert_close(
        info_nce(views), nt_xent_reference(views, 0.1), rtol=1e-10, atol=1e-10
    )


def test_registered_as_objective():
    loss_fn = augplug.create("objective", "infonce", temperature=0.2, tile_size=8)
    assert isinstance(loss_fn, augplug.Objective) and isinstance(loss_fn, InfoNCE)
    assert loss_fn.temperature == 0.2 and InfoNCE().temperature == 0.1
    with pytest.raises(TypeError, match="temprature"):
        augplug.create("objective", "infonce", temprature=0.2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": -1}, ValueError, "temperature"),
        ({"tile_size": 0}, ValueError, "tile_size"),
        ({"tile_size": 2.5}, TypeError, r"tile_size: expected an integer >= 1, got 2.5 \(float\)"),
        (
            {"temperature": "0.1"},
            TypeError,
            r"temperature: expected a number > 0, got '0.1' \(str\)",
        ),
        ({"kernel": "trition"}, ValueError, "did you mean 'triton'"),
        ({"gather_distributed": 1}, TypeError, "gather_distributed"),
        ({"local_anchors": True}, ValueError, "local_anchors"),
    ],
)
def test_bad_options_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        InfoNCE(**kwargs)


def test_bad_inputs_name_the_argument():
    loss_fn = InfoNCE()
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"z1: expected a 3-D tensor"):
        loss_fn(z)
    with pytest.raises(ValueError, match=r"z1: expected at least 2 views"):
        loss_fn(z[:, None])
    with pytest.raises(ValueError, match=r"z2: expected the same batch size"):
        loss_fn(z, z[:3])
    with pytest.raises(ValueError, match=r"z2: expected 8 features"):
        loss_fn(z, z[:, :5])
    with pytest.raises(TypeError, match=r"z2: expected dtype torch.float32"):
        loss_fn(z, z.double())
    with pytest.raises(TypeError, match=r"z1: expected dtype"):
        loss_fn(z.long(), z.long())
    with pytest.raises(ValueError, match=r"z1: expected finite values"):
        loss_fn(torch.full((4, 8), float("nan")), z)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_matches_reference(dtype):
    views = _views(5, 64, 2, 32, dtype=dtype).cuda()
    loss, grad = _loss_and_grad(lambda v: info_nce(v, temperature=0.1, tile_size=24), views)
    ref_loss, ref_grad = _loss_and_grad(lambda v: nt_xent_reference(v, 0.1), views.cpu().double())
    # Half inputs use tensor-core matmuls with float32 results; the probabilities are
    # rounded to the input dtype for the backward matmuls, as flash attention does.
    torch.testing.assert_close(loss.cpu().double(), ref_loss, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(
        grad.cpu().double(), ref_grad, rtol=5e-2, atol=5e-2 * ref_grad.abs().max().item()
    )


@pytest.mark.parametrize("local_anchors", [False, True])
def test_gathering_is_a_no_op_on_one_process(local_anchors):
    views = _views(6, 5, 3, 4)
    gathered = InfoNCE(gather_distributed=True, local_anchors=local_anchors, tile_size=4)
    torch.testing.assert_close(
        gathered(views), nt_xent_reference(views, 0.1), rtol=1e-10, atol=1e-10
    )


# Scales each dtype represents (with room for randn's tails): the loss depends on the
# embeddings' directions only, so at every one of them it must match the float64 reference
# on the same (rounded) inputs. F.normalize overflowed above ~1e19 in float32 and left rows
# below 1e-12 unnormalised.
SCALES = {
    torch.float32: [1e-30, 1e-15, 1.0, 1e15, 1e30],
    torch.bfloat16: [1e-30, 1.0, 1e30],
    torch.float16: [1e-3, 1.0, 1e3],
}


@pytest.mark.parametrize(
    ("dtype", "scale"), [(d, s) for d, scales in SCALES.items() for s in scales]
)
def test_loss_is_scale_invariant_at_extreme_magnitudes(dtype, scale):
    views = (_views(7, 5, 3, 6) * scale).to(dtype)
    loss = info_nce(views, temperature=0.2, tile_size=4)
    reference = nt_xent_reference(views.double() / scale, 0.2)  # the same rounded inputs
    tolerance = 1e-5 if dtype == torch.float32 else 1e-3
    torch.testing.assert_close(loss.double(), reference, rtol=tolerance, atol=tolerance)
    if dtype == torch.float32:
        (grad,) = torch.autograd.grad(info_nce(views.requires_grad_(True), temperature=0.2), views)
        assert torch.isfinite(grad).all()
