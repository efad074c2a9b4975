"""Waveform views: shapes, exact crop/shift ranges, gain and SNR against float64 references, replay."""

from __future__ import annotations

import math

import pytest
import torch
from augplug_audio.waveform import (
    NOISE_COLOURS,
    AddNoise,
    RandomGain,
    RandomTimeShift,
    RandomWaveformCrop,
    coloured_noise,
)
from hypothesis import given
from hypothesis import strategies as st

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
VIEWS = {
    "crop": lambda: RandomWaveformCrop(scale=(0.1, 0.9)),
    "gain": lambda: RandomGain(gain_db=(-12.0, 12.0)),
    "noise": lambda: AddNoise(snr_db=(0.0, 20.0), colour="pink"),
    "shift": lambda: RandomTimeShift(max_shift=0.4),
}


@st.composite
def waveforms(draw, min_length=1):
    batch = draw(st.integers(1, 4))
    length = draw(st.integers(min_length, 300))
    channels = draw(st.one_of(st.none(), st.integers(1, 3)))
    seed = draw(st.integers(0, 2**16))
    shape = (batch, length) if channels is None else (batch, channels, length)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(VIEWS))
@pytest.mark.parametrize("dtype", DTYPES)
@given(x=waveforms(), seed=st.integers(0, 100))
def test_shape_dtype_and_replay(name, dtype, x, seed):
    view = VIEWS[name]()
    x = x.to(dtype)
    params = view.sample(x, generator=generator(seed))
    out = view.apply(x, params)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.isfinite(out.float()).all()
    torch.testing.assert_close(view.apply(x, params), out, rtol=0, atol=0)  # replay is exact
    torch.testing.assert_close(view(x, generator=generator(seed)), out, rtol=0, atol=0)  # forward == apply(sample)


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_generator_determinism_and_global_rng_untouched(name):
    view, x = VIEWS[name](), torch.randn(8, 2, 257)
    state = torch.get_rng_state()
    first, again = view(x, generator=generator(3)), view(x, generator=generator(3))
    other = view(x, generator=generator(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again) and not torch.equal(first, other)


@given(x=waveforms(), seed=st.integers(0, 100))
def test_crop_keeps_exactly_the_drawn_segment(x, seed):
    view = RandomWaveformCrop(scale=(0.05, 1.0))
    params = view.sample(x, generator=generator(seed))
    out = view.apply(x, params)
    expected = torch.zeros_like(x)
    for row, (start, length) in enumerate(zip(params["start"].tolist(), params["length"].tolist())):
        assert 1 <= length <= x.shape[-1] and 0 <= start <= x.shape[-1] - length
        assert length >= math.floor(0.05 * x.shape[-1])
        expected[row, ..., start : start + length] = x[row, ..., start : start + length]
    assert torch.equal(out, expected)


@given(x=waveforms(), seed=st.integers(0, 100))
def test_shift_moves_by_exactly_the_drawn_samples(x, seed):
    view = RandomTimeShift(max_shift=0.5)
    params = view.sample(x, generator=generator(seed))
    out = view.apply(x, params)
    length, expected = x.shape[-1], torch.zeros_like(x)
    for row, shift in enumerate(params["shift"].tolist()):
        assert abs(shift) <= int(0.5 * length)
        if shift >= 0:
            expected[row, ..., shift:] = x[row, ..., : length - shift]
        else:
            expected[row, ..., : length + shift] = x[row, ..., -shift:]
    assert torch.equal(out, expected)


@given(x=waveforms(), seed=st.integers(0, 100))
def test_gain_matches_float64_reference(x, seed):
    view = RandomGain(gain_db=(-20.0, 20.0))
    params = view.sample(x, generator=generator(seed))
    gain = params["gain_db"].double()
    assert ((gain >= -20) & (gain <= 20)).all()
    reference = x.double() * (10.0 ** (gain / 20.0)).reshape(-1, *[1] * (x.ndim - 1))
    torch.testing.assert_close(view.apply(x, params).double(), reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("colour", sorted(NOISE_COLOURS))
@given(x=waveforms(min_length=2), seed=st.integers(0, 100))
def test_noise_has_the_drawn_snr(colour, x, seed):
    view = AddNoise(snr_db=(-10.0, 40.0), colour=colour)
    params = view.sample(x, generator=generator(seed))
    out = view.apply(x, params)
    dims = tuple(range(1, x.ndim))
    measured = 10 * torch.log10(x.double().square().mean(dims) / (out.double() - x.double()).square().mean(dims))
    torch.testing.assert_close(measured, params["snr_db"].double(), rtol=0, atol=0.1)


@pytest.mark.parametrize(("colour", "exponent"), sorted(NOISE_COLOURS.items()))
def test_noise_colour_has_the_stated_spectral_slope(colour, exponent):
    noise = coloured_noise((64, 4096), NOISE_COLOURS[colour], device="cpu", generator=generator(1))
    power = torch.fft.rfft(noise.double(), dim=-1).abs().square().mean(0)[1:]
    frequency = torch.fft.rfftfreq(4096, dtype=torch.float64)[1:]
    design = torch.stack([torch.log(frequency), torch.ones_like(frequency)], 1)
    slope = torch.linalg.lstsq(design, torch.log(power)[:, None]).solution[0, 0]
    assert abs(slope.item() + exponent) < 0.05


def test_zero_strength_is_identity():
    x = torch.randn(4, 2, 500)
    identities = [
        RandomWaveformCrop(scale=(1.0, 1.0)),
        RandomGain(gain_db=(0.0, 0.0)),
        AddNoise(snr_db=(math.inf, math.inf)),
        RandomTimeShift(max_shift=0.0),
    ]
    for view in identities:
        assert torch.equal(view(x, generator=generator()), x), type(view).__name__


def test_silent_clip_stays_silent():
    x = torch.zeros(2, 100)
    assert torch.equal(AddNoise()(x, generator=generator()), x)


def test_continuous_params_are_differentiable():
    view = AddNoise(snr_db=(0.0, 10.0))
    x = torch.randn(3, 40, dtype=torch.float64)
    params = view.sample(x, generator=generator())
    snr, noise = params["snr_db"].double().requires_grad_(), params["noise"].double().requires_grad_()
    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, s, n: view.apply(a, {"snr_db": s, "noise": n}), (xg, snr, noise))
    gain = RandomGain()
    g = gain.sample(x, generator=generator())["gain_db"].double().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, s: gain.apply(a, {"gain_db": s}), (xg, g))


@pytest.mark.parametrize(
    ("make", "bad", "error", "match"),
    [
        (lambda: RandomWaveformCrop(scale=(0.5, 0.2)), None, ValueError, "scale"),
        (lambda: RandomWaveformCrop(scale=(0.0, 1.5)), None, ValueError, r"scale\[1\]"),
        (lambda: AddNoise(colour="purple"), None, ValueError, "colour"),
        (lambda: AddNoise(colour="pinc"), None, ValueError, "did you mean 'pink'"),
        (lambda: AddNoise(snr_db=("10", 30)), None, TypeError, r"snr_db\[0\]: expected a number >= -60.0"),
        (lambda: RandomGain(gain_db=3.0), None, TypeError, r"gain_db: expected a pair \(low, high\)"),
        (lambda: RandomTimeShift(max_shift=2.0), None, ValueError, "max_shift"),
        (RandomGain, torch.randn(2, 3, 4, 5), ValueError, r"x: expected a 2 or 3-D tensor \(B, T\)"),
        (RandomGain, torch.ones(2, 10, dtype=torch.long), TypeError, "x: expected dtype"),
        (RandomGain, torch.full((2, 10), math.nan), ValueError, "finite"),
        (RandomGain, [[0.0]], TypeError, "x: expected a torch.Tensor"),
    ],
)
def test_bad_input_is_named(make, bad, error, match):
    with pytest.raises(error, match=match):
        view = make()
        view(bad)


def test_bad_params_are_named():
    view, x = RandomWaveformCrop(), torch.randn(3, 50)
    params = view.sample(x)
    with pytest.raises(ValueError, match=r"params\['start'\]: expected shape \(3,\)"):
        view.apply(x, {**params, "start": params["start"][:2]})
    with pytest.raises(TypeError, match=r"params\['length'\]: expected an integer tensor"):
        view.apply(x, {**params, "length": params["length"].float()})
    with pytest.raises(KeyError, match="missing 'start'"):
        view.apply(x, {"length": params["length"]})
    with pytest.raises(TypeError, match="generator: expected a torch.Generator"):
        view(x, generator=42)


@pytest.mark.cuda
def test_cuda_matches_shapes_and_replays():
    x = torch.randn(16, 2, 1000, device="cuda")
    for make in VIEWS.values():
        view = make()
        params = view.sample(x, generator=torch.Generator(device="cuda").manual_seed(0))
        out = view.apply(x, params)
        assert out.device == x.device and out.shape == x.shape
        assert torch.equal(view.apply(x, params), out)
