"""Stateless feature augmenters: Gaussian noise, dimension masking, mixup, positive extrapolation.

Each works on (B, D) features and returns (B, D), or (B, k, D) with ``k=``. Random draws
go through :mod:`augplug.rng` (or :func:`beta` below) in float32 on the features' device,
so a ``generator`` makes the output reproducible and the global RNG is left alone; the
arithmetic runs in float32 and the result is cast back to the input dtype.
"""

from __future__ import annotations

import torch

from augplug import rng
from augplug.checks import (
    check_bool,
    check_float,
    check_generator,
    check_positive,
    check_same_device,
    check_tensor,
)
from augplug.components import FeatureAugmenter

__all__ = ["DimensionMask", "FeatureMixup", "GaussianNoise", "PositiveExtrapolation"]


def _prepare(
    z: torch.Tensor, k: int | None, generator: torch.Generator | None
) -> tuple[torch.Tensor, int]:
    """Check the common arguments; return z as float32 (B, 1, D) and the sample count."""
    FeatureAugmenter.check_features(z)
    FeatureAugmenter.check_samples(k)
    check_generator(generator, z.device)
    return z.float().unsqueeze(1), 1 if k is None else k


def _finish(out: torch.Tensor, k: int | None, dtype: torch.dtype) -> torch.Tensor:
    """(B, k, D) float32 -> the input dtype, squeezed to (B, D) when no k was asked for."""
    out = out.to(dtype)
    return out.squeeze(1) if k is None else out


class GaussianNoise(FeatureAugmenter):
    """Additive Gaussian noise, ``z + std * scale * eps`` with ``eps ~ N(0, I)``.

    ``relative=True`` (default) sets ``scale`` to each feature's root-mean-square,
    ``||z|| / sqrt(D)``, so ``std`` is the noise-to-signal ratio whatever the feature
    norm (the noise norm is about ``std * ||z||``); ``relative=False`` uses ``scale = 1``.
    The scale is treated as a constant (no gradient through it). Default ``std=0.1`` is
    our choice: the seed study (Zhang et al. 2024) lists noise without a value.
    """

    def __init__(self, std: float = 0.1, relative: bool = True):
        super().__init__()
        self.std = check_positive(std, "std", allow_zero=True)
        self.relative = check_bool(relative, "relative")

    def forward(self, z, *, partner=None, k=None, generator=None):
        z32, samples = _prepare(z, k, generator)
        batch, _, dim = z32.shape
        noise = rng.normal((batch, samples, dim), device=z.device, generator=generator)
        scale = self.std
        if self.relative:
            # RMS of z / max|z|, times max|z|: squaring z itself overflows float32 above ~1e19.
            peak = (
                z32.detach().abs().amax(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
            )
            scale = self.std * peak * (z32.detach() / peak).pow(2).mean(-1, keepdim=True).sqrt()
        return _finish(z32 + scale * noise, k, z.dtype)

    def extra_repr(self) -> str:
        return f"std={self.std}, relative={self.relative}"


class DimensionMask(FeatureAugmenter):
    """Zeroes a random ``ratio`` of each feature's dimensions (the seed study's "Mask").

    Every sample drops ``floor(ratio * D)`` dimensions, or one more with probability
    ``frac(ratio * D)``, chosen uniformly without replacement: so each sample keeps
    exactly ``1 - ratio`` of its dimensions in expectation, for any D. ``rescale=True``
    multiplies the kept ones by ``1 / (1 - ratio)`` (inverted dropout). Defaults
    ``ratio=0.25, rescale=False`` are our choice (the study's summary gives no value).
    """

    def __init__(self, ratio: float = 0.25, rescale: bool = False):
        super().__init__()
        # 1 is left out: it would drop every dimension.
        self.ratio = check_float(ratio, "ratio", low=0.0, high=1.0, high_open=True)
        self.rescale = check_bool(rescale, "rescale")

    def forward(self, z, *, partner=None, k=None, generator=None):
        z32, samples = _prepare(z, k, generator)
        batch, _, dim = z32.shape
        shape = (batch, samples)
        dropped_float = self.ratio * dim
        dropped = int(dropped_float) + rng.bernoulli(
            shape, dropped_float - int(dropped_float), device=z.device, generator=generator
        )
        # Ranks of uniform draws are a uniform random permutation per sample (and, unlike a
        # threshold on the draws, never tie), so "rank < count" drops exactly `count` dims.
        ranks = rng.uniform((*shape, dim), 0.0, 1.0, device=z.device, generator=generator)
        ranks = ranks.argsort(dim=-1).argsort(dim=-1)
        keep = ranks >= dropped.unsqueeze(-1)
        gain = 1.0 / (1.0 - self.ratio) if self.rescale else 1.0
        return _finish(torch.where(keep, z32 * gain, 0.0), k, z.dtype)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, rescale={self.rescale}"


class FeatureMixup(FeatureAugmenter):
    """Mixes each feature with a random other one of the batch, ``lam * z + (1 - lam) * z[j]``.

    ``lam ~ Beta(alpha, alpha)`` per sample, folded to ``max(lam, 1 - lam) >= 0.5`` so the
    feature itself dominates (``fold=True``), as in i-Mix (Lee et al. 2021, alpha = 1).
    Each of the k samples draws its own partner permutation and coefficient; a feature can
    be paired with itself (then it is unchanged), as with any random permutation.
    """

    def __init__(self, alpha: float = 1.0, fold: bool = True):
        super().__init__()
        self.alpha = check_positive(alpha, "alpha")
        self.fold = check_bool(fold, "fold")

    def forward(self, z, *, partner=None, k=None, generator=None):
        z32, samples = _prepare(z, k, generator)
        batch = z32.shape[0]
        lam = rng.beta((batch, samples, 1), self.alpha, device=z.device, generator=generator)
        if self.fold:
            lam = torch.maximum(lam, 1.0 - lam)
        # One random permutation of the batch per sample: argsort of uniform draws.
        order = rng.uniform((samples, batch), 0.0, 1.0, device=z.device, generator=generator)
        partner_rows = z32.squeeze(1)[order.argsort(dim=-1).t()]  # (B, k, D)
        return _finish(torch.lerp(partner_rows, z32, lam), k, z.dtype)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, fold={self.fold}"


class PositiveExtrapolation(FeatureAugmenter):
    """Pushes a feature away from its positive partner: ``lam * z + (1 - lam) * partner``.

    ``lam ~ 1 + Beta(alpha, alpha)`` lies in [1, 2]; drawn per dimension
    (``per_dimension=True``, default) or once per sample. This is the positive
    extrapolation of the feature transformation of Zhu et al. (ICCV 2021), alpha = 2.
    ``partner`` is the other view's features (B, D); it is required (``needs_partner``).
    """

    needs_partner = True

    def __init__(self, alpha: float = 2.0, per_dimension: bool = True):
        super().__init__()
        self.alpha = check_positive(alpha, "alpha")
        self.per_dimension = check_bool(per_dimension, "per_dimension")

    def forward(self, z, *, partner=None, k=None, generator=None):
        z32, samples = _prepare(z, k, generator)
        if partner is None:
            raise ValueError(
                "partner: extrapolate needs the other view's features (B, D), got None"
            )
        check_tensor(partner, "partner", ndim=2, shape=tuple(z.shape), layout="(B, D) like z")
        check_same_device("z", z, "partner", partner)
        batch, _, dim = z32.shape
        lam = 1.0 + rng.beta(
            (batch, samples, dim if self.per_dimension else 1),
            self.alpha,
            device=z.device,
            generator=generator,
        )
        return _finish(torch.lerp(partner.float().unsqueeze(1), z32, lam), k, z.dtype)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, per_dimension={self.per_dimension}"
