"""The log-mel front end: waveforms (B, T) or (B, C, T) -> normalised log-mels (B, C, n_mels, frames).

The only part of the audio plugin that needs torchaudio (its ``MelSpectrogram`` and
``AmplitudeToDB``); the plugin registers it with ``requires=("torchaudio",)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torchaudio

from augplug.checks import check_float, check_generator, check_int, check_positive
from augplug.components import ParametricViewGenerator, Params
from augplug_audio._common import WAVEFORM_LAYOUT, check_waveform

__all__ = ["AUDIO_PATTERNS_MEAN_DB", "AUDIO_PATTERNS_STD_DB", "LogMelSpectrogram"]

#: Mean and standard deviation (dB) of the default log-mels over the ``audio-patterns``
#: training split (seed 0); measured once, see docs/audio.md.
AUDIO_PATTERNS_MEAN_DB = -16.16
AUDIO_PATTERNS_STD_DB = 24.30


class LogMelSpectrogram(ParametricViewGenerator):
    """Power mel spectrogram -> dB (floored ``top_db`` below each clip's peak) -> ``(db - mean) / std``.

    Defaults give 64 x 64 log-mels from the ``audio-patterns`` clips (8 kHz, 8064 samples):
    ``n_fft=512``, ``hop_length=128``, ``n_mels=64``, centred frames (``1 + T // hop_length``
    of them), ``top_db=80``, and ``mean`` / ``std`` the dB statistics of that dataset. The
    64 x 64 single-channel log-mel is the viewmaker paper's audio input (Tamkin et al. 2021).
    For other data pass its sample rate and its own dB statistics.

    Deterministic: a parametric view generator with no params, so it composes after
    waveform views (``ComposedViews([audio_waveform, log_mel])``, or a recipe's list of
    view specs) and the whole chain still replays. Computes in float32 (so
    float64 too) and returns the input dtype. Move it to the batch's device with ``.to()``.
    """

    input_layout = WAVEFORM_LAYOUT

    def __init__(
        self,
        sample_rate: int = 8000,
        n_fft: int = 512,
        hop_length: int = 128,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        mean: float = AUDIO_PATTERNS_MEAN_DB,
        std: float = AUDIO_PATTERNS_STD_DB,
    ):
        super().__init__()
        for name, value in (("sample_rate", sample_rate), ("n_fft", n_fft), ("hop_length", hop_length), ("n_mels", n_mels)):
            check_int(value, name, minimum=1)
        nyquist = sample_rate / 2
        f_min = check_float(f_min, "f_min", low=0.0)
        f_max = nyquist if f_max is None else check_float(f_max, "f_max", low=0.0)
        if not 0.0 <= f_min < f_max <= nyquist:
            raise ValueError(f"f_min, f_max: expected 0 <= f_min < f_max <= {nyquist} (Nyquist), got {f_min}, {f_max}")
        if top_db is not None:
            check_positive(top_db, "top_db")
        self.mean = check_float(mean, "mean")
        self.std = check_positive(std, "std")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
            f_min=f_min, f_max=f_max, power=2.0, center=True,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=top_db)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        x = check_waveform(x)
        check_generator(generator, x.device)
        window = self.mel.spectrogram.window
        if window.device != x.device:
            raise ValueError(
                f"x: expected a tensor on {window.device} (the front end's device), got one on {x.device}; "
                "move the front end with .to(x.device)"
            )
        if x.shape[-1] <= self.n_fft // 2:
            raise ValueError(
                f"x: expected clips longer than n_fft // 2 = {self.n_fft // 2} samples (centred frames are "
                f"reflect-padded by that much), got {x.shape[-1]}"
            )
        # float32 throughout (the filterbank's dtype); half-precision STFTs are not supported on CPU.
        waveform = x.float()
        if waveform.ndim == 2:
            waveform = waveform[:, None, :]
        # (B, C, n_mels, frames); the 4-D input makes the top_db floor per clip, not per batch.
        db = self.to_db(self.mel(waveform))
        return ((db - self.mean) / self.std).to(x.dtype)

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        check_waveform(x)
        return Params()

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.forward(x)
