"""Per-sample waveform views, batched on the clips' device: crop, gain, noise at an SNR, shift.

Input clips are (B, T) or (B, C, T); every view keeps the input's shape and dtype. All
are parametric (``sample`` / ``apply``): the params are per-sample tensors, so a view can
be stored and replayed exactly. Arithmetic runs in float32 (float64 stays float64) and
the result is cast back to the input dtype. Pure torch: these views need no torchaudio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from augplug import rng
from augplug.checks import check_choice, check_in_range, check_interval
from augplug.components import ParametricViewGenerator, Params
from augplug_audio._common import (
    WAVEFORM_LAYOUT,
    check_waveform,
    compute_dtype,
    param,
    uniform_in,
    uniform_int,
)

__all__ = ["NOISE_COLOURS", "AddNoise", "RandomGain", "RandomTimeShift", "RandomWaveformCrop", "coloured_noise"]

#: Exponent beta of each noise colour: power spectral density proportional to 1 / f**beta.
NOISE_COLOURS: dict[str, float] = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1) or (B, 1, 1), to broadcast over a (B, T) or (B, C, T) batch."""
    return values.reshape(values.shape[0], *([1] * (x.ndim - 1)))


def _over_channels(per_time: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (B, T) mask or index -> (B, 1, T) when x has channels, to broadcast or expand over them."""
    return per_time if x.ndim == 2 else per_time[:, None, :]


class RandomWaveformCrop(ParametricViewGenerator):
    """Keeps one random segment of each clip in place and zero-fills the rest (length unchanged).

    The expert waveform crop of the viewmaker paper's speech experiments (Tamkin et al.,
    ICLR 2021): segment length a uniform fraction ``scale`` of the clip, default
    ``(0.08, 1.0)`` as there, position uniform. Channels share the segment.
    Params: ``start``, ``length`` (int64, (B,), in samples).
    """

    input_layout = WAVEFORM_LAYOUT

    def __init__(self, scale: Sequence[float] = (0.08, 1.0)):
        super().__init__()
        self.scale = check_interval(scale, "scale", low=0.0, high=1.0)

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        x = check_waveform(x)
        batch, frames = x.shape[0], x.shape[-1]
        fraction = uniform_in(batch, self.scale, device=x.device, generator=generator)
        # At least one sample survives, so a crop never silences a clip entirely.
        length = (fraction.double() * frames).floor().long().clamp(1, frames)
        start = uniform_int(frames - length, device=x.device, generator=generator)
        return Params(start=start, length=length)

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = check_waveform(x)
        batch, frames = x.shape[0], x.shape[-1]
        start = param(params, "start", x, (batch,), integer=True)
        length = param(params, "length", x, (batch,), integer=True)
        time = torch.arange(frames, device=x.device)
        keep = (time >= start[:, None]) & (time < (start + length)[:, None])
        return torch.where(_over_channels(keep, x), x, 0.0)


class RandomGain(ParametricViewGenerator):
    """Scales each clip by a random gain, uniform in decibels over ``gain_db``.

    Default ``(-6.0, 6.0)`` dB: loudness factors 0.5-2, the range of the loudness views in
    the viewmaker reference's optional waveform set. Params: ``gain_db`` (float32, (B,)),
    differentiable.
    """

    input_layout = WAVEFORM_LAYOUT
    continuous_params = ("gain_db",)

    def __init__(self, gain_db: Sequence[float] = (-6.0, 6.0)):
        super().__init__()
        self.gain_db = check_interval(gain_db, "gain_db", low=-120.0, high=120.0)

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        x = check_waveform(x)
        return Params(gain_db=uniform_in(x.shape[0], self.gain_db, device=x.device, generator=generator))

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = check_waveform(x)
        dtype = compute_dtype(x)
        gain_db = param(params, "gain_db", x, (x.shape[0],)).to(dtype)
        factor = torch.pow(10.0, gain_db / 20.0)
        return (x.to(dtype) * _per_sample(factor, x)).to(x.dtype)


def coloured_noise(
    shape: Sequence[int],
    exponent: float,
    *,
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gaussian noise (float32) with power spectrum ``1 / f**exponent`` along the last dim.

    Shaped in the frequency domain (one rFFT pair; none for white noise). The DC bin gets
    the gain of the lowest non-zero frequency instead of an infinite one. The level is
    arbitrary: :class:`AddNoise` scales the noise to the drawn SNR by its measured power.
    """
    noise = rng.normal(tuple(shape), device=device, generator=generator)
    if exponent == 0.0:
        return noise
    frames = noise.shape[-1]
    spectrum = torch.fft.rfft(noise, dim=-1)
    frequency = torch.fft.rfftfreq(frames, device=noise.device).clamp_min(1.0 / frames)
    return torch.fft.irfft(spectrum * frequency.pow(-exponent / 2.0), n=frames, dim=-1)


class AddNoise(ParametricViewGenerator):
    """Adds white or coloured Gaussian noise at a per-sample signal-to-noise ratio.

    ``snr_db`` is drawn uniformly per clip; the noise is scaled so that
    ``10 log10(mean(x**2) / mean(noise**2)) == snr_db`` exactly (means over channels and
    time), so loud and quiet clips are perturbed alike. ``colour``: ``"white"`` (default),
    ``"pink"`` (1/f) or ``"brown"`` (1/f**2). The viewmaker reference adds white noise of a
    fixed power instead; the SNR range ``(10, 30)`` dB is our choice. ``snr_db=(inf, inf)``
    adds nothing; a silent clip stays silent. Params: ``snr_db`` (float32, (B,)) and
    ``noise`` (float32, the input's shape, any level: ``apply`` scales it by its measured
    power), both differentiable.
    """

    input_layout = WAVEFORM_LAYOUT
    continuous_params = ("snr_db", "noise")

    def __init__(self, snr_db: Sequence[float] = (10.0, 30.0), colour: str = "white"):
        super().__init__()
        self.snr_db = check_interval(snr_db, "snr_db", low=-60.0, finite=False)
        self.colour = check_choice(colour, "colour", sorted(NOISE_COLOURS))

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        x = check_waveform(x)
        snr_db = uniform_in(x.shape[0], self.snr_db, device=x.device, generator=generator)
        noise = coloured_noise(x.shape, NOISE_COLOURS[self.colour], device=x.device, generator=generator)
        return Params(snr_db=snr_db, noise=noise)

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = check_waveform(x)
        dtype = compute_dtype(x)
        snr_db = param(params, "snr_db", x, (x.shape[0],)).to(dtype)
        noise = param(params, "noise", x, tuple(x.shape)).to(dtype)
        signal = x.to(dtype)
        dims, count = tuple(range(1, x.ndim)), x[0].numel()
        # Norms reduce in one pass without materialising squares.
        signal_power = torch.linalg.vector_norm(signal, dim=dims).square() / count
        noise_power = torch.linalg.vector_norm(noise, dim=dims).square() / count
        # The drawn noise has no set level: measuring its power here costs one read, where
        # normalising it in sample() would cost a read and a write.
        scale = torch.sqrt(signal_power * torch.pow(10.0, -snr_db / 10.0) / noise_power.clamp_min(1e-30))
        return torch.addcmul(signal, noise, _per_sample(scale, x)).to(x.dtype)


class RandomTimeShift(ParametricViewGenerator):
    """Delays or advances each clip by a random whole number of samples, zero-filling the gap.

    The shift is uniform in ``[-m, m]`` with ``m = floor(max_shift * T)``; ``max_shift``
    (default 0.1, our choice) is a fraction of the clip length. Zero fill rather than
    wrap-around, because wrapping splices the clip's end onto its start, a discontinuity
    real recordings never have. Params: ``shift`` (int64, (B,), positive = later).
    """

    input_layout = WAVEFORM_LAYOUT

    def __init__(self, max_shift: float = 0.1):
        super().__init__()
        self.max_shift = check_in_range(max_shift, "max_shift", 0.0, 1.0)

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        x = check_waveform(x)
        limit = int(self.max_shift * x.shape[-1])
        span = torch.full((x.shape[0],), 2 * limit, dtype=torch.long, device=x.device)
        return Params(shift=uniform_int(span, device=x.device, generator=generator) - limit)

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = check_waveform(x)
        batch, frames = x.shape[0], x.shape[-1]
        shift = param(params, "shift", x, (batch,), integer=True)
        source = torch.arange(frames, device=x.device) - shift[:, None]
        inside = (source >= 0) & (source < frames)
        index = _over_channels(source.clamp(0, frames - 1), x).expand(x.shape)
        moved = x.gather(-1, index)
        return torch.where(_over_channels(inside, x), moved, 0.0)
