"""Argument checks and draws shared by the audio views (no torchaudio needed here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from augplug import rng
from augplug.checks import check_batch

WAVEFORM_LAYOUT = "(B, T) or (B, C, T)"
SPECTROGRAM_LAYOUT = "(B, C, F, T)"


def check_waveform(x: object, name: str = "x") -> torch.Tensor:
    """A floating batch of clips, (B, T) or (B, C, T)."""
    return check_batch(x, name, ndim=(2, 3), layout=WAVEFORM_LAYOUT)


def check_spectrogram(x: object, name: str = "x") -> torch.Tensor:
    """A floating batch of spectrograms, (B, C, F, T) (channels, frequency bins, frames)."""
    return check_batch(x, name, ndim=4, layout=SPECTROGRAM_LAYOUT)


def param(
    params: Mapping[str, torch.Tensor],
    key: str,
    x: torch.Tensor,
    shape: Sequence[int],
    *,
    integer: bool = False,
) -> torch.Tensor:
    """Fetch ``params[key]`` and check its shape, kind and device against the batch ``x``."""
    if key not in params:
        raise KeyError(f"params: missing {key!r}; have {sorted(params)} (draw them with sample(x))")
    value = params[key]
    where = f"params[{key!r}]"
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where}: expected a tensor, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{where}: expected shape {tuple(shape)} for this batch, got {tuple(value.shape)}")
    if integer and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{where}: expected an integer tensor, got dtype {value.dtype}")
    if not integer and not value.is_floating_point():
        raise TypeError(f"{where}: expected a floating tensor, got dtype {value.dtype}")
    if value.device != x.device:
        raise ValueError(f"{where}: expected a tensor on {x.device} (the batch's device), got {value.device}")
    return value


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32 and cast back."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def uniform_in(
    batch: int,
    interval: tuple[float, float],
    *,
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """(batch,) float32 draws from ``U(low, high)``; a point interval (even an infinite one) is exact."""
    low, high = interval
    draws = rng.uniform((batch,), 0.0, 1.0, device=device, generator=generator)
    if low == high:
        # low + (high - low) * u would give nan for an infinite point interval.
        return torch.full_like(draws, low)
    return low + (high - low) * draws


def uniform_int(
    upper: torch.Tensor, *, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """Integers uniform in ``[0, upper]`` (inclusive, per element of the int64 tensor ``upper``)."""
    draws = rng.uniform(tuple(upper.shape), 0.0, 1.0, device=device, generator=generator)
    # u < 1, so floor(u * (upper + 1)) <= upper; the minimum guards float rounding near 1.
    return torch.minimum((draws.double() * (upper + 1).double()).floor().long(), upper)
