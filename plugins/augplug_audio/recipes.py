"""The expert audio recipes of the viewmaker paper, and its viewmaker on spectrograms."""

from __future__ import annotations

from collections.abc import Sequence

import augplug
from augplug.checks import check_float, check_int
from augplug.components import ComposedViews, ViewGenerator
from augplug_audio.spectrogram import (
    REFERENCE_MASK_WIDTH,
    FrequencyMask,
    SpectrogramNoise,
    TimeMask,
)
from augplug_audio.waveform import AddNoise, RandomWaveformCrop

__all__ = ["audio_spectral", "audio_waveform", "spectrogram_viewmaker"]


def audio_waveform(
    scale: Sequence[float] = (0.08, 1.0),
    snr_db: Sequence[float] = (10.0, 30.0),
    colour: str = "white",
) -> ComposedViews:
    """Expert waveform views (Tamkin et al. 2021, speech): random crop with zero fill, then noise.

    Crop: segment a uniform fraction ``scale`` of the clip, kept in place (default
    ``(0.08, 1.0)`` as the reference). Noise: ``colour`` noise at a per-clip SNR uniform in
    ``snr_db`` (the reference adds white noise of fixed power; the SNR form is ours). The
    reference shuffles the two per clip; a fixed order (crop, then noise over the whole
    clip) keeps the batch on one code path. Input and output: waveforms (B, T) or (B, C, T);
    follow with ``log_mel`` for spectrograms.
    """
    return ComposedViews([RandomWaveformCrop(scale=scale), AddNoise(snr_db=snr_db, colour=colour)])


def audio_spectral(
    frequency_masks: int = 1,
    time_masks: int = 1,
    max_width: float = REFERENCE_MASK_WIDTH,
    noise_std: float = 0.25,
    mask_value: float = 0.0,
) -> ComposedViews:
    """Expert spectral views (Tamkin et al. 2021, speech): SpecAugment masks, then Gaussian noise.

    One frequency and one time mask, each up to ``max_width = 40/224`` of its axis (the
    reference's mask factor 40 on 224 bins), filled with ``mask_value`` (0, the mean of a
    normalised log-mel), then noise of ``noise_std = 0.25`` data standard deviations (the
    reference). Input and output: normalised log-mels (B, C, F, T), e.g. from ``log_mel``.
    """
    # Checked here so that an error names this function's argument, not the stage's.
    frequency_masks = check_int(frequency_masks, "frequency_masks", minimum=0)
    time_masks = check_int(time_masks, "time_masks", minimum=0)
    noise_std = check_float(noise_std, "noise_std", low=0)
    return ComposedViews(
        [
            FrequencyMask(num_masks=frequency_masks, max_width=max_width, mask_value=mask_value),
            TimeMask(num_masks=time_masks, max_width=max_width, mask_value=mask_value),
            SpectrogramNoise(std=noise_std),
        ]
    )


def spectrogram_viewmaker(eps: float = 0.05) -> ViewGenerator:
    """The viewmaker network on log-mel spectrograms: 1 channel, no clamp, L1 budget ``eps``.

    Tamkin et al. (2021) use ``eps`` 0.05 or 0.1 on 64 x 64 normalised log-mels; Feature
    Dropout (Tamkin et al. 2023) uses 0.125 on its spoken-digits + noise set. Spectrograms are
    unbounded, hence no clamp. Built by the ``viewmaker`` views plugin; input (B, 1, F, T).
    """
    return augplug.create("views", "viewmaker", channels=1, clamp=False, eps=eps)
