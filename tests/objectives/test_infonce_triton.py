"""kernel="triton": the fused log-sum-exp kernels against float64 references.

On a GPU the kernels are compiled and run on CUDA tensors. Without one they run in Triton's
CPU interpreter (conftest sets TRITON_INTERPRET=1 before Triton is imported), which executes
the same kernel source block by block with NumPy, so masking, the online log-sum-exp and both
backward kernels are checked on every machine.
"""

import hypothesis.strategies as st
import pytest
import torch
from augplug_objectives.infonce import InfoNCE, info_nce, similarity_logsumexp
from hypothesis import HealthCheck, given, settings
from objective_references import nt_xent_reference

triton = pytest.importorskip("triton", reason="Triton ships with torch's Linux wheels")
interpreter = pytest.importorskip("triton.runtime.interpreter")


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def triton_interpreter(monkeypatch):
    """Where kernels run in Triton's CPU interpreter, make it work with this NumPy."""
    if DEVICE == "cuda":
        return
    # Triton 3.6's interpreter turns scalars into 1-element arrays and int()s them, which
    # NumPy >= 2.3 refuses; take the element explicitly. Only the interpreter is touched.
    original = interpreter._patch_lang_tensor

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.item()))

    monkeypatch.setattr(interpreter, "_patch_lang_tensor", patch_lang_tensor)


def _dense_logsumexp(anchors, keys, scale, self_offset):
    """Float64 reference: the whole similarity matrix, the own key masked out."""
    scores = scale * anchors.double() @ keys.double().T
    own = torch.arange(anchors.shape[0]) + self_offset
    scores[torch.arange(anchors.shape[0]), own] = float("-inf")
    return torch.logsumexp(scores, dim=1)


def _values_and_grads(fn, anchors, keys, weights, device="cpu"):
    """lse, d(weights . lse)/d anchors and d/d keys, computed on ``device``, in float64 on the CPU."""
    anchors = anchors.detach().to(device).requires_grad_(True)
    keys = keys.detach().to(device).requires_grad_(True)
    lse = fn(anchors, keys)
    (lse.double() * weights.to(device)).sum().backward()
    return tuple(t.detach().double().cpu() for t in (lse, anchors.grad, keys.grad))


# The fixture only sets the interpreter up; it holds no per-example state. A lone anchor
# with a lone key has an empty sum: log2(0) = -inf is intended (NumPy warns, CUDA does not).
@pytest.mark.filterwarnings("ignore:divide by zero encountered in log2:RuntimeWarning")
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    num_anchors=st.integers(1, 40),
    extra_keys=st.integers(0, 40),
    features=st.integers(1, 40),
    scale=st.floats(0.5, 20.0),
    blocks=st.tuples(st.sampled_from([16, 32]), st.sampled_from([16, 32])),
    data=st.data(),
)
def test_fused_logsumexp_and_gradients_match_float64(
    triton_interpreter, num_anchors, extra_keys, features, scale, blocks, data
):
    from augplug_objectives.fused_lse import fused_similarity_logsumexp

    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    num_keys = num_anchors + extra_keys
    self_offset = data.draw(st.integers(0, extra_keys), label="self_offset")
    gen = torch.Generator().manual_seed(seed)
    # Unit rows, as InfoNCE feeds them: scale then bounds every score by |scale|.
    anchors = torch.nn.functional.normalize(torch.randn(num_anchors, features, generator=gen, dtype=torch.float64), dim=1)
    keys = torch.nn.functional.normalize(torch.randn(num_keys, features, generator=gen, dtype=torch.float64), dim=1)
    keys[self_offset : self_offset + num_anchors] = anchors  # anchor i is key i + self_offset
    weights = torch.randn(num_anchors, generator=gen, dtype=torch.float64)

    block_anchors, block_keys = blocks
    fused = _values_and_grads(
        lambda a, k: fused_similarity_logsumexp(
            a, k, scale=scale, self_offset=self_offset, block_anchors=block_anchors, block_keys=block_keys
        ),
        anchors.float(),
        keys.float(),
        weights,
        DEVICE,
    )
    reference = _values_and_grads(
        lambda a, k: _dense_logsumexp(a, k, scale, self_offset), anchors, keys, weights
    )
    for got, want in zip(fused, reference):
        # A single anchor with a single key has nothing to sum: lse = -inf on both sides.
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)


def test_loss_with_several_views_matches_reference(triton_interpreter):
    gen = torch.Generator().manual_seed(0)
    views = torch.randn(13, 3, 100, generator=gen, dtype=torch.float64)  # default blocks, 8 warps
    fused_views = views.float().to(DEVICE).requires_grad_(True)
    loss = info_nce(fused_views, temperature=0.1, kernel="triton")
    loss.backward()
    loss, grad = loss.detach().cpu(), fused_views.grad.cpu()
    reference_views = views.clone().requires_grad_(True)
    reference = nt_xent_reference(reference_views, 0.1)
    reference.backward()
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.double(), reference_views.grad, rtol=1e-4, atol=1e-6)


def test_float16_gradients_survive_a_mean_over_a_large_batch(triton_interpreter):
    # With a mean over 512 anchors each upstream weight is ~2e-3 / 512 * 10, which as a
    # float16 factor of the probabilities would go subnormal; the kernel takes relative weights.
    from augplug_objectives.fused_lse import fused_similarity_logsumexp

    gen = torch.Generator().manual_seed(1)
    unit = torch.nn.functional.normalize(torch.randn(512, 32, generator=gen, dtype=torch.float64), dim=1)
    weights = torch.full((512,), 1.0 / 512, dtype=torch.float64)
    fused = _values_and_grads(
        lambda a, k: fused_similarity_logsumexp(a, k, scale=10.0, block_anchors=64, block_keys=64),
        unit.half(),
        unit.half(),
        weights,
        DEVICE,
    )
    reference = _values_and_grads(lambda a, k: _dense_logsumexp(a, k, 10.0, 0), unit.half().double(), unit.half().double(), weights)
    for got, want in zip(fused, reference):
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2 * want.abs().max().item())


def test_module_and_registry_accept_the_kernel_option(triton_interpreter):
    import augplug

    loss_fn = augplug.create("objective", "infonce", temperature=0.5, kernel="triton")
    assert "kernel='triton'" in repr(loss_fn)
    z1, z2 = torch.randn(6, 8, device=DEVICE), torch.randn(6, 8, device=DEVICE)
    torch.testing.assert_close(loss_fn(z1, z2), InfoNCE(temperature=0.5)(z1, z2), rtol=1e-5, atol=1e-6)


def test_rejects_what_the_kernels_do_not_take(triton_interpreter, monkeypatch):
    unit = torch.randn(4, 8, device=DEVICE)
    with pytest.raises(TypeError, match="anchors: kernel='triton' takes float32, bfloat16 or float16, got torch.float64"):
        similarity_logsumexp(unit.double(), unit.double(), scale=1.0, kernel="triton")
    with pytest.raises(ValueError, match="anchors: kernel='triton' takes at most 256 features, got 300"):
        similarity_logsumexp(unit.new_ones(4, 300), unit.new_ones(4, 300), scale=1.0, kernel="triton")
    with pytest.raises(ValueError, match=r"keys: expected 8 features, torch.float32 .* \(as anchors\), got shape \(4, 8\), torch.float16"):
        similarity_logsumexp(unit, unit.half(), scale=1.0, kernel="triton")
    with pytest.raises(ValueError, match="tile_size: only used with kernel='torch'"):
        InfoNCE(kernel="triton", tile_size=64)
    with pytest.raises(ValueError, match=r"kernel: expected one of 'torch', 'triton', got 'cuda' \(str\)"):
        InfoNCE(kernel="cuda")
    with pytest.raises(ValueError, match="block_keys: expected None or a power of two >= 16, got 24"):
        from augplug_objectives.fused_lse import fused_similarity_logsumexp

        fused_similarity_logsumexp(unit, unit, scale=1.0, block_keys=24)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="anchors: kernel='triton' needs CUDA tensors"):
        info_nce(unit.cpu(), unit.cpu().flip(0), kernel="triton")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batch", [4096, 1000])
def test_compiled_kernels_match_the_torch_path_on_cuda(dtype, batch):
    gen = torch.Generator(device="cuda").manual_seed(0)
    views = torch.randn(batch, 2, 128, device="cuda", generator=gen).to(dtype)
    results = []
    for kernel in ("torch", "triton"):
        leaf = views.detach().requires_grad_(True)
        loss = info_nce(leaf, temperature=0.1, kernel=kernel)
        loss.backward()
        results.append((loss.detach().double(), leaf.grad.double()))
    (torch_loss, torch_grad), (fused_loss, fused_grad) = results
    torch.testing.assert_close(fused_loss, torch_loss, rtol=1e-3, atol=1e-3)
    tolerance = 2e-2 * torch_grad.abs().max().item()
    torch.testing.assert_close(fused_grad, torch_grad, rtol=2e-2, atol=tolerance)
