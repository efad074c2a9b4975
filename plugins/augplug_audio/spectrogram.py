"""Per-sample spectrogram views, batched: SpecAugment time / frequency masks and additive noise.

Input spectrograms are (B, C, F, T) (channels, frequency bins, frames), e.g. the output of
the ``log_mel`` front end; every view keeps the shape and dtype. Parametric
(``sample`` / ``apply``) with per-sample tensors as params. Pure torch: no torchaudio needed.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from augplug import rng
from augplug.checks import check_float, check_in_range, check_int, check_positive
from augplug.components import ParametricViewGenerator, Params
from augplug_audio._common import (
    SPECTROGRAM_LAYOUT,
    check_spectrogram,
    compute_dtype,
    param,
    uniform_int,
)

__all__ = ["FrequencyMask", "SpectrogramMask", "SpectrogramNoise", "TimeMask"]

#: The viewmaker reference's SpecAugment mask factor, 40 bins of its 224 x 224 log-mels,
#: as a fraction of the axis so the same default serves 64 x 64 inputs.
REFERENCE_MASK_WIDTH = 40 / 224


class SpectrogramMask(ParametricViewGenerator):
    """``num_masks`` bands along one axis set to ``mask_value``; widths and positions per sample.

    SpecAugment masking (Park et al., Interspeech 2019): each mask's width is uniform in
    ``[0, floor(max_width * L)]`` bins (``max_width`` a fraction of the axis length L) and
    its start uniform over the positions where it fits; masks may overlap. Default
    ``max_width = 40/224`` follows the viewmaker reference, ``mask_value = 0.0`` is the mean
    of a normalised log-mel (SpecAugment's choice). Params: ``start``, ``width`` (int64,
    (B, num_masks)). Use :class:`TimeMask` / :class:`FrequencyMask`.
    """

    input_layout = SPECTROGRAM_LAYOUT
    #: The masked dimension of a (B, C, F, T) batch.
    dim: int = -1

    def __init__(self, num_masks: int = 1, max_width: float = REFERENCE_MASK_WIDTH, mask_value: float = 0.0):
        super().__init__()
        self.num_masks = check_int(num_masks, "num_masks", minimum=0)
        self.max_width = check_in_range(max_width, "max_width", 0.0, 1.0)
        self.mask_value = check_float(mask_value, "mask_value")

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        x = check_spectrogram(x)
        length = x.shape[self.dim]
        shape = (x.shape[0], self.num_masks)
        widest = torch.full(shape, int(self.max_width * length), dtype=torch.long, device=x.device)
        width = uniform_int(widest, device=x.device, generator=generator)
        start = uniform_int(length - width, device=x.device, generator=generator)
        return Params(start=start, width=width)

    def masked(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, L) boolean: which positions along the axis any mask covers."""
        shape = (x.shape[0], self.num_masks)
        start = param(params, "start", x, shape, integer=True)
        width = param(params, "width", x, shape, integer=True)
        position = torch.arange(x.shape[self.dim], device=x.device)
        inside = (position >= start[..., None]) & (position < (start + width)[..., None])
        return inside.any(dim=1)

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = check_spectrogram(x)
        covered = self.masked(x, params)
        covered = covered[:, None, :, None] if self.dim == -2 else covered[:, None, None, :]
        # A Python scalar: no host-to-device copy, and it takes x's dtype.
        return torch.where(covered, self.mask_value, x)


class TimeMask(SpectrogramMask):
    """SpecAugment time masks: bands of frames (last dim of (B, C, F, T)); see :class:`SpectrogramMask`."""

    dim = -1


class FrequencyMask(SpectrogramMask):
    """SpecAugment frequency masks: bands of bins (dim F of (B, C, F, T)); see :class:`SpectrogramMask`."""

    dim = -2


class SpectrogramNoise(ParametricViewGenerator):
    """Adds i.i.d. Gaussian noise of standard deviation ``std`` to every bin of a log spectrogram.

    ``std`` is in the input's units: dB for a dB spectrogram, data standard deviations for a
    normalised one. Default 0.25 follows the viewmaker reference (noise of 0.25 x the
    dataset's dB standard deviation, added before normalising, i.e. 0.25 after it).
    Params: ``noise`` (float32, the input's shape), differentiable.
    """

    input_layout = SPECTROGRAM_LAYOUT
    continuous_params = ("noise",)

    def __init__(self, std: float = 0.25):
        super().__init__()
        self.std = check_positive(std, "std", allow_zero=True)

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        x = check_spectrogram(x)
        return Params(noise=self.std * rng.normal(x.shape, device=x.device, generator=generator))

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = check_spectrogram(x)
        dtype = compute_dtype(x)
        noise = param(params, "noise", x, tuple(x.shape))
        return (x.to(dtype) + noise.to(dtype)).to(x.dtype)
