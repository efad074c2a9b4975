"""Spectrogram views: masks cover exactly the drawn bands (naive loop), noise, replay, errors."""

from __future__ import annotations

import math

import pytest
import torch
from augplug_audio.spectrogram import FrequencyMask, SpectrogramNoise, TimeMask
from hypothesis import given
from hypothesis import strategies as st

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@st.composite
def spectrograms(draw):
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    return torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**16))))


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mask_type", [TimeMask, FrequencyMask])
@given(
    x=spectrograms(),
    num_masks=st.integers(0, 4),
    max_width=st.floats(0.0, 1.0),
    value=st.floats(-3.0, 3.0),
    seed=st.integers(0, 100),
)
def test_masks_cover_exactly_the_drawn_bands(mask_type, x, num_masks, max_width, value, seed):
    view = mask_type(num_masks=num_masks, max_width=max_width, mask_value=value)
    params = view.sample(x, generator=generator(seed))
    out = view.apply(x, params)
    axis = 3 if mask_type is TimeMask else 2
    length = x.shape[axis]
    expected = x.clone()
    for row in range(x.shape[0]):
        for start, width in zip(params["start"][row].tolist(), params["width"][row].tolist()):
            assert 0 <= width <= int(max_width * length) and 0 <= start <= length - width
            band = [slice(None)] * 3
            band[axis - 1] = slice(start, start + width)
            expected[row][tuple(band)] = value
    assert torch.equal(out, expected)


@pytest.mark.parametrize("make", [TimeMask, FrequencyMask, SpectrogramNoise])
@pytest.mark.parametrize("dtype", DTYPES)
@given(x=spectrograms(), seed=st.integers(0, 100))
def test_shape_dtype_replay_and_determinism(make, dtype, x, seed):
    view, x = make(), x.to(dtype)
    params = view.sample(x, generator=generator(seed))
    out = view.apply(x, params)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.equal(view.apply(x, params), out)
    assert torch.equal(view(x, generator=generator(seed)), out)


def test_generator_leaves_global_rng_alone():
    x, state = torch.randn(4, 1, 32, 32), torch.get_rng_state()
    for view in (TimeMask(num_masks=3), FrequencyMask(num_masks=2), SpectrogramNoise()):
        assert torch.equal(view(x, generator=generator(1)), view(x, generator=generator(1)))
        assert not torch.equal(view(x, generator=generator(1)), view(x, generator=generator(2)))
    assert torch.equal(torch.get_rng_state(), state)


def test_widths_and_positions_are_spread_per_sample():
    x = torch.zeros(4000, 1, 20, 64)
    params = TimeMask(num_masks=1, max_width=0.25).sample(x, generator=generator())
    width_counts = torch.bincount(params["width"].flatten(), minlength=17)
    assert width_counts.shape[0] == 17  # widths never exceed floor(0.25 * 64) = 16
    assert width_counts.min() > 4000 / 17 * 0.7  # every width in [0, 16] is drawn about equally often
    assert params["start"].min() == 0 and (params["start"] + params["width"]).max() == 64


def test_noise_has_the_stated_std_and_zero_is_identity():
    x = torch.randn(64, 1, 32, 32)
    params = SpectrogramNoise(std=0.25).sample(x, generator=generator())
    assert abs(params["noise"].std().item() - 0.25) < 0.005 and abs(params["noise"].mean().item()) < 0.005
    torch.testing.assert_close(SpectrogramNoise(std=0.25).apply(x, params), x + params["noise"])
    assert torch.equal(SpectrogramNoise(std=0.0)(x, generator=generator()), x)
    assert torch.equal(TimeMask(max_width=0.0)(x, generator=generator()), x)
    assert torch.equal(FrequencyMask(num_masks=0)(x, generator=generator()), x)


def test_noise_is_differentiable():
    view, x = SpectrogramNoise(), torch.randn(2, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    noise = view.sample(x.detach(), generator=generator())["noise"].double().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, n: view.apply(a, {"noise": n}), (x, noise))


@pytest.mark.parametrize(
    ("make", "bad", "error", "match"),
    [
        (lambda: TimeMask(num_masks=-1), None, ValueError, "num_masks"),
        (lambda: FrequencyMask(max_width=1.5), None, ValueError, "max_width"),
        (lambda: TimeMask(mask_value="mean"), None, TypeError, "mask_value"),
        (lambda: SpectrogramNoise(std=-1.0), None, ValueError, "std"),
        (lambda: SpectrogramNoise(std="0.1"), None, TypeError, r"std: expected a number >= 0, got '0.1'"),
        (lambda: TimeMask(num_masks=1.0), None, TypeError, r"num_masks: expected an integer >= 0"),
        (TimeMask, torch.randn(2, 64, 64), ValueError, r"x: expected a 4-D tensor \(B, C, F, T\)"),
        (SpectrogramNoise, torch.full((1, 1, 4, 4), math.inf), ValueError, "finite"),
    ],
)
def test_bad_input_is_named(make, bad, error, match):
    with pytest.raises(error, match=match):
        make()(bad)


def test_bad_params_are_named():
    view, x = FrequencyMask(num_masks=2), torch.randn(3, 1, 16, 16)
    params = view.sample(x)
    with pytest.raises(ValueError, match=r"params\['width'\]: expected shape \(3, 2\)"):
        view.apply(x, {**params, "width": params["width"][:, :1]})
