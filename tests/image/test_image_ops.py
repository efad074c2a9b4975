"""Each op against Kornia's functional op on the same parameters, per dtype.

The view generators upcast half-precision inputs to float32 and round once at the end, so
the reference is Kornia in float64 on the same (rounded) input, and the tolerance is a few
units in the last place of the dtype.
"""

import math

import kornia
import pytest
import torch
from augplug_image import functional
from hypothesis import given
from hypothesis import strategies as st

import augplug

# Max abs error allowed against the float64 reference, for outputs in [0, 1].
TOLERANCE = {torch.float64: 1e-6, torch.float32: 2e-5, torch.bfloat16: 8e-3, torch.float16: 1e-3}
DTYPES = list(TOLERANCE)

shapes = st.tuples(st.integers(1, 3), st.integers(6, 13), st.integers(6, 13))
seeds = st.integers(0, 2**31 - 1)


def batch(shape, seed, dtype, channels=3):
    b, h, w = shape
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, channels, h, w, generator=g, dtype=torch.float64).to(dtype)


def masked(mask, changed, x):
    return torch.where(mask.reshape(-1, 1, 1, 1), changed, x)


def assert_close_to(out, reference, dtype):
    assert out.dtype == dtype
    err = (out.double() - reference).abs().max().item()
    assert err <= TOLERANCE[dtype], f"{dtype}: max error {err}"


def sample_and_apply(name, x, seed, **kwargs):
    view = augplug.create("views", name, **kwargs)
    params = view.sample(x, torch.Generator().manual_seed(seed))
    return params, view.apply(x, params)


def box_corners(box):
    x0, y0, x1, y1 = box.double().unbind(-1)
    return torch.stack(
        (
            torch.stack((x0, y0), -1),
            torch.stack((x1, y0), -1),
            torch.stack((x1, y1), -1),
            torch.stack((x0, y1), -1),
        ),
        1,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=shapes, seed=seeds, out=st.tuples(st.integers(2, 9), st.integers(2, 9)))
def test_random_resized_crop_matches_kornia_crop_and_resize(dtype, shape, seed, out):
    x = batch(shape, seed, dtype)
    params, view = sample_and_apply("random_resized_crop", x, seed, size=out)
    reference = kornia.geometry.transform.crop_and_resize(
        x.double(), box_corners(params["crop_box"]), out, align_corners=True
    )
    assert_close_to(view, reference, dtype)


@given(shape=shapes, seed=seeds)
def test_simclr_crop_and_flip_in_one_warp_matches_crop_then_hflip(shape, seed):
    x = batch(shape, seed, torch.float64)
    view = augplug.create(
        "views", "simclr", size=(5, 7), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, flip_p=0.5
    )
    params = view.sample(x, torch.Generator().manual_seed(seed))
    crop = kornia.geometry.transform.crop_and_resize(
        x, box_corners(params["crop_box"]), (5, 7), align_corners=True
    )
    reference = masked(params["flip_applied"], kornia.geometry.transform.hflip(crop), crop)
    assert_close_to(view.apply(x, params), reference, torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=shapes, seed=seeds)
def test_horizontal_flip_matches_kornia_hflip(dtype, shape, seed):
    x = batch(shape, seed, dtype)
    params, view = sample_and_apply("horizontal_flip", x, seed)
    reference = masked(
        params["flip_applied"], kornia.geometry.transform.hflip(x.double()), x.double()
    )
    assert_close_to(view, reference, dtype)


def kornia_jitter(x, params):
    out = kornia.enhance.adjust_brightness_accumulative(
        x.clamp(0, 1), params["brightness"].double()
    )
    out = kornia.enhance.adjust_contrast_with_mean_subtraction(out, params["contrast"].double())
    out = kornia.enhance.adjust_saturation_with_gray_subtraction(out, params["saturation"].double())
    out = kornia.enhance.adjust_hue(out, params["hue"].double() * 2 * math.pi).clamp(0, 1)
    return masked(params["jitter_applied"], out, x)


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=shapes, seed=seeds)
def test_colour_jitter_matches_kornia_enhance_in_fixed_order(dtype, shape, seed):
    x = batch(shape, seed, dtype)
    params, view = sample_and_apply("colour_jitter", x, seed, brightness=0.8, hue=0.5, p=0.7)
    # Kornia's HSV conversion adds eps=1e-8 to the saturation divisor: ~1e-8 difference.
    assert_close_to(view, kornia_jitter(x.double(), params), dtype)


def test_colour_jitter_matches_kornia_colorjitter_module():
    """The fixed-order kornia.augmentation.ColorJitter module, fed our factors, agrees too."""
    x = batch((4, 9, 11), 3, torch.float64)
    params, view = sample_and_apply("colour_jitter", x, 3, p=1.0)
    module = kornia.augmentation.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0, order=(0, 1, 2, 3))
    kornia_params = module.forward_parameters(x.shape)
    for name in ("brightness", "contrast", "saturation", "hue"):
        kornia_params[f"{name}_factor"] = params[name].double()
    assert_close_to(view, module(x, params=kornia_params), torch.float64)


def naive_yiq_hue(x, hue):
    """Per-sample, per-pixel float64 reference: RGB -> YIQ, rotate (I, Q), back, clamp."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        dtype=torch.float64,
    )
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        angle = float(hue[i]) * 2 * math.pi
        rotation = torch.tensor(
            [
                [1, 0, 0],
                [0, math.cos(angle), -math.sin(angle)],
                [0, math.sin(angle), math.cos(angle)],
            ],
            dtype=torch.float64,
        )
        pixels = x[i].reshape(3, -1)
        out[i] = torch.linalg.solve(to_yiq, rotation @ (to_yiq @ pixels)).reshape(x[i].shape)
    return out.clamp(0, 1)


@given(shape=shapes, seed=seeds)
def test_yiq_hue_rotation_matches_naive_reference(shape, seed):
    x = batch(shape, seed, torch.float64)
    hue = (
        torch.rand(shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        - 0.5
    )
    assert_close_to(functional.hue_rotate_yiq(x, hue), naive_yiq_hue(x, hue), torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=shapes, seed=seeds)
def test_grayscale_matches_kornia_rgb_to_grayscale(dtype, shape, seed):
    x = batch(shape, seed, dtype)
    params, view = sample_and_apply("grayscale", x, seed, p=0.5)
    gray = kornia.color.rgb_to_grayscale(x.double()).expand_as(x)
    assert_close_to(view, masked(params["grayscale_applied"], gray, x.double()), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=shapes, seed=seeds, kernel=st.sampled_from([None, 3, 5]))
def test_gaussian_blur_matches_kornia_gaussian_blur2d(dtype, shape, seed, kernel):
    x = batch(shape, seed, dtype, channels=2)  # blur takes any channel count
    params, view = sample_and_apply("gaussian_blur", x, seed, kernel_size=kernel)
    size = (3, 3) if kernel is None else (kernel, kernel)  # 10% of <= 13 px rounds up to 3
    sigma = params["blur_sigma"].double()[:, None].expand(-1, 2)
    blurred = kornia.filters.gaussian_blur2d(x.double(), size, sigma, border_type="reflect")
    assert_close_to(view, masked(params["blur_applied"], blurred, x.double()), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=shapes, seed=seeds)
def test_solarize_matches_kornia_solarize(dtype, shape, seed):
    x = batch(shape, seed, dtype)
    params, view = sample_and_apply("solarize", x, seed, p=0.5)
    solarized = kornia.enhance.solarize(x.double(), 0.5)
    assert_close_to(view, masked(params["solarize_applied"], solarized, x.double()), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_simclr_recipe_matches_kornia_functional_chain(dtype):
    x = batch((6, 12, 10), 11, dtype)
    params, view = sample_and_apply("simclr", x, 11, size=(9, 8))
    x64 = x.double()
    out = kornia.geometry.transform.crop_and_resize(
        x64, box_corners(params["crop_box"]), (9, 8), align_corners=True
    )
    out = masked(params["flip_applied"], kornia.geometry.transform.hflip(out), out)
    out = kornia_jitter(out, params)
    out = masked(
        params["grayscale_applied"], kornia.color.rgb_to_grayscale(out).expand_as(out), out
    )
    sigma = params["blur_sigma"].double()[:, None].expand(-1, 2)
    out = masked(params["blur_applied"], kornia.filters.gaussian_blur2d(out, (3, 3), sigma), out)
    assert_close_to(view, out, dtype)
