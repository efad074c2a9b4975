"""Sampled parameters follow the configured distributions.

Each check is a two-sided test at level ALPHA = 1e-4 (Kolmogorov-Smirnov against the
configured uniform law, exact binomial test for a probability), so a correct sampler fails
one check with probability 1e-4 over random seeds and the whole file with < 5e-3. The seeds
are fixed, so the outcome is reproducible; a wrong range, law or probability (e.g. p 0.5
instead of 0.8, U(0.6, 1.4) instead of U(0.8, 1.2)) gives p-values far below ALPHA at n = 4000.
"""

import math

import pytest
import torch
from scipy import stats

import augplug

ALPHA = 1e-4
N = 4000


def draw(name, seed=0, shape=(N, 3, 8, 8), **kwargs):
    view = augplug.create("views", name, **kwargs)
    return view.sample(torch.zeros(shape), torch.Generator().manual_seed(seed))


def assert_uniform(values, low, high):
    values = values.double().numpy()
    assert values.min() >= low and values.max() <= high
    assert stats.kstest(values, stats.uniform(low, high - low).cdf).pvalue > ALPHA


def assert_frequency(mask, p):
    assert mask.dtype == torch.bool
    hits = int(mask.sum())
    if p in (0.0, 1.0):
        assert hits == round(p * mask.numel())
    else:
        assert stats.binomtest(hits, mask.numel(), p).pvalue > ALPHA


def test_simclr_parameters_follow_the_recipe():
    params = draw("simclr", size=8)
    for name in ("brightness", "contrast", "saturation"):
        assert_uniform(params[name], 0.6, 1.4)
    assert_uniform(params["hue"], -0.1, 0.1)
    assert_uniform(params["blur_sigma"], 0.1, 2.0)
    for name, p in [
        ("flip_applied", 0.5),
        ("jitter_applied", 0.8),
        ("grayscale_applied", 0.2),
        ("blur_applied", 0.5),
    ]:
        assert_frequency(params[name], p)


@pytest.mark.parametrize(("branch", "blur_p", "solarize_p"), [(0, 1.0, 0.0), (1, 0.1, 0.2)])
def test_byol_branches_are_asymmetric(branch, blur_p, solarize_p):
    params = draw("byol", seed=branch, branch=branch)
    assert_uniform(params["saturation"], 0.8, 1.2)
    assert_frequency(params["blur_applied"], blur_p)
    assert_frequency(params["solarize_applied"], solarize_p)


def test_colour_recipe_follows_the_invariance_reference():
    params = draw("colour")
    assert set(params) == {
        "brightness",
        "contrast",
        "saturation",
        "hue",
        "jitter_applied",
        "grayscale_applied",
    }
    for name in ("brightness", "contrast", "saturation"):
        assert_uniform(params[name], 0.6, 1.4)
    assert_uniform(params["hue"], -0.1, 0.1)
    assert_frequency(params["jitter_applied"], 0.8)
    assert_frequency(params["grayscale_applied"], 0.2)


def crop_sizes(box):
    x0, y0, x1, y1 = box.double().unbind(-1)
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def test_crop_area_ratio_and_position_are_uniform_when_every_draw_fits():
    # scale * ratio <= 0.3 * 4/3 < 1 on a square image: the first attempt always fits.
    height = width = 40
    params = draw("random_resized_crop", shape=(N, 1, height, width), scale=(0.05, 0.3))
    x0, y0, w, h = crop_sizes(params["crop_box"])
    assert_uniform(w * h / (height * width), 0.05, 0.3)
    assert_uniform(torch.log(w / h), math.log(3 / 4), math.log(4 / 3))
    assert_uniform(x0 / (width - w), 0.0, 1.0)
    assert_uniform(y0 / (height - h), 0.0, 1.0)


@pytest.mark.parametrize(("size", "smallest"), [(32, 0.2), (64, 0.08)])
def test_default_scale_is_0_2_for_small_outputs_else_0_08(size, smallest):
    params = draw("simclr", shape=(N, 3, 64, 48), size=size)
    x0, y0, w, h = crop_sizes(params["crop_box"])
    fraction = w * h / (64 * 48)
    assert fraction.min() >= smallest - 1e-6 and fraction.max() <= 1 + 1e-6
    assert fraction.min() < smallest + 0.01  # the lower end is reached
    assert (
        (x0 >= 0).all()
        and (y0 >= 0).all()
        and (x0 + w <= 48 + 1e-4).all()
        and (y0 + h <= 64 + 1e-4).all()
    )
    ratio = w / h
    fits = (ratio >= 3 / 4 - 1e-4) & (ratio <= 4 / 3 + 1e-4)
    assert fits.all()  # a 4:3 image always has an allowed ratio, so even fallbacks satisfy it


def test_crops_that_never_fit_fall_back_to_the_whole_image_at_the_nearest_ratio():
    params = draw("random_resized_crop", shape=(64, 1, 30, 30), scale=(0.9, 1.0), ratio=(3.0, 4.0))
    _, _, w, h = crop_sizes(params["crop_box"])
    torch.testing.assert_close(w, torch.full_like(w, 30.0))
    torch.testing.assert_close(h, torch.full_like(h, 10.0))
