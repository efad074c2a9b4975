"""Structural performance properties of the fused views: no denormal work, no wasted passes.

Timings cannot be asserted on a shared CI machine; these pin the properties that the
measurements in ``benchmarks/results/image_views.md`` rest on.
"""

import pytest
import torch
from augplug_image import functional


def test_blur_kernel_has_no_denormal_taps():
    # With 23 taps, exp(-d^2 / (2 sigma^2)) lands in float32's denormal range for some offset d
    # at many sigma in 0.1-2, and every product with such a tap takes a slow path on x86.
    for dtype in (torch.float32, torch.float64):
        sigma = torch.linspace(0.1, 2.0, 40, dtype=dtype)
        kernel = functional.gaussian_kernel1d(sigma, 23)
        tiny = torch.finfo(dtype).tiny
        assert not ((kernel > 0) & (kernel < tiny)).any()
        torch.testing.assert_close(kernel.sum(-1), torch.ones(40, dtype=dtype))


def test_blur_leaves_samples_that_are_not_applied_bit_for_bit_unchanged():
    x = torch.rand(6, 3, 20, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = torch.linspace(0.1, 2.0, 6, dtype=torch.float64)
    applied = torch.tensor([True, False, True, False, False, True])
    out = functional.gaussian_blur(x, sigma, (7, 5), applied)
    assert torch.equal(out[~applied], x[~applied])
    assert torch.equal(out[applied], functional.gaussian_blur(x, sigma, (7, 5))[applied])


def _plain_hsv_jitter(x, brightness, contrast, saturation, hue):
    """The jitter as plain autograd ops (the formulas of ``colour_jitter``'s docstring)."""
    b, c, s = (v.reshape(-1, 1, 1, 1) for v in (brightness, contrast, saturation))
    out = (x.clamp(0, 1) * b).clamp(0, 1)
    mean = functional.luma(out).mean((-2, -1), keepdim=True)
    out = torch.lerp(mean, out, c).clamp(0, 1)
    out = torch.lerp(functional.luma(out), out, s).clamp(0, 1)
    return functional.hue_shift_hsv(out, hue).clamp(0, 1)


@pytest.mark.parametrize("seed", range(4))
def test_hand_written_jitter_backward_equals_autograd_of_the_plain_ops(seed):
    """Including the kinks: values on and beyond the clamps, grey pixels, tied channels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(5, 3, 6, 7, generator=gen, dtype=torch.float64) * 1.4 - 0.2
    x[:, :, 0] = x[:, :1, 0]  # grey row: max = min, chroma 0
    x[:, 1, 1] = x[:, 0, 1]  # red and green tied
    x[:, :, 2, :3] = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)  # on the bounds
    factors = [(0.4 + 1.2 * torch.rand(5, generator=gen, dtype=torch.float64)) for _ in range(3)]
    factors.append(0.2 * torch.rand(5, generator=gen, dtype=torch.float64) - 0.1)
    upstream = torch.randn(5, 3, 6, 7, generator=gen, dtype=torch.float64)

    def gradients(fn):
        inputs = [t.clone().requires_grad_() for t in (x, *factors)]
        out = fn(*inputs)
        return out, torch.autograd.grad(out, inputs, upstream)

    applied = torch.tensor([True, False, True, True, False])

    def plain_where_applied(x, *factors):
        return torch.where(applied.reshape(-1, 1, 1, 1), _plain_hsv_jitter(x, *factors), x)

    out, grads = gradients(lambda *a: functional.colour_jitter(*a, applied=applied))
    expected_out, expected = gradients(plain_where_applied)
    assert torch.equal(out, expected_out)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    out, grads = gradients(functional.colour_jitter)
    expected_out, expected = gradients(_plain_hsv_jitter)
    assert torch.equal(out, expected_out)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "kernel"), [((2, 3, 9, 11), (5, 7)), ((3, 1, 4, 6), (3, 3))])
def test_fixed_kernel_blur_gradient_equals_autograd_of_pad_and_convolutions(shape, kernel):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    sigma = 0.3 + 2 * torch.rand(shape[0], generator=gen, dtype=torch.float64)
    applied = torch.arange(shape[0]) % 2 == 0
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64)
    leaf = x.clone().requires_grad_()
    (got,) = torch.autograd.grad(
        functional.gaussian_blur(leaf, sigma, kernel, applied), leaf, upstream
    )
    # Reference: the same blur with sigma requiring a gradient takes autograd's own backward.
    leaf, sigma = x.clone().requires_grad_(), sigma.clone().requires_grad_()
    out = functional.gaussian_blur(leaf, sigma, kernel, applied)
    (want,) = torch.autograd.grad(out, leaf, upstream)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradgradcheck(
        lambda v: functional.gaussian_blur(v, sigma.detach(), kernel, applied),
        [x.clone().requires_grad_()],
    )


def _plain_resized_crop(x, box, size):
    """The separable warp as plain autograd ops: gather both taps per axis, slice, blend."""
    out_h, out_w = size
    height, width = x.shape[-2:]

    def taps(start, end, length, count):
        steps = torch.linspace(0, 1, count, dtype=x.dtype)
        position = (start[:, None] + (end - start)[:, None] * steps).clamp(0, length - 1)
        low = position.detach().floor().clamp(max=length - 2)
        return low.long(), (low + 1).long().clamp(max=length - 1), position - low

    x0, y0, x1, y1 = box.unbind(-1)
    left, right, wx = taps(x0, x1, width, out_w)
    top, bottom, wy = taps(y0, y1, height, out_h)
    copies = box.shape[0] // x.shape[0]
    source = x.repeat(copies, 1, 1, 1)
    b, c = source.shape[:2]

    def along_w(index):
        return source.gather(-1, index[:, None, None, :].expand(b, c, height, out_w))

    cols = torch.lerp(along_w(left), along_w(right), wx[:, None, None, :])

    def along_h(index):
        return cols.gather(-2, index[:, None, :, None].expand(b, c, out_h, out_w))

    return torch.lerp(along_h(top), along_h(bottom), wy[:, None, :, None])


@pytest.mark.parametrize("copies", [1, 3])
def test_hand_written_crop_backward_equals_autograd_of_the_plain_ops(copies):
    gen = torch.Generator().manual_seed(copies)
    x = torch.rand(2, 3, 9, 11, generator=gen, dtype=torch.float64)
    start = torch.rand(2 * copies, 2, generator=gen, dtype=torch.float64) * 4
    box = torch.cat((start, start + 2 + 4 * torch.rand(2 * copies, 2, generator=gen)), -1)
    upstream = torch.randn(2 * copies, 3, 5, 4, generator=gen, dtype=torch.float64)

    def gradients(fn):
        leaf, box_leaf = x.clone().requires_grad_(), box.clone().requires_grad_()
        out = fn(leaf, box_leaf, (5, 4))
        return out, torch.autograd.grad(out, (leaf, box_leaf), upstream)

    out, grads = gradients(functional.resized_crop)
    want_out, want = gradients(_plain_resized_crop)
    assert torch.equal(out, want_out)
    for got, expected in zip(grads, want):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
