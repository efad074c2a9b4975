"""Structural performance properties of the fused views: no denormal work, no wasted passes.

Timings cannot be asserted on a shared CI machine; these pin the properties that the
measurements in ``benchmarks/results/image_views.md`` rest on.
"""

import torch
from augplug_image import functional


def test_blur_kernel_has_no_denormal_taps():
    # sigma 0.1 with 23 taps: exp(-d^2 / 0.02) lands in float32's denormal range for some d,
    # and every product with such a tap takes a slow path on x86.
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
