"""Image view generators: the SimCLR / BYOL / colour recipes and the single ops they are made of.

Each is an :class:`augplug.ParametricViewGenerator`: ``sample(x, generator)`` draws per-sample
:class:`augplug.Params` on the batch's device, ``apply(x, params)`` renders them with the
batched ops of :mod:`augplug_image.functional` (differentiable in ``x`` and in every
continuous parameter), and ``forward(x, generator=...)`` is ``apply(x, sample(x))``.

Stages run in a fixed order: crop (+ flip, one warp) -> flip -> colour jitter -> grayscale
-> blur -> solarize. A generator holds only the stages its recipe names, and its params hold
one entry per parameter of those stages:

* ``crop_box`` (B, 4): ``(x0, y0, x1, y1)`` in input pixels, corners inclusive;
* ``brightness``, ``contrast``, ``saturation`` (B,): factors; ``hue`` (B,): shift in turns;
* ``blur_sigma`` (B,): Gaussian standard deviation in pixels;
* ``flip_applied``, ``jitter_applied``, ``grayscale_applied``, ``blur_applied``,
  ``solarize_applied`` (B,) bool: whether the stage acts on the sample.

Inputs: (B, C, H, W) float32 / bfloat16 / float16 / float64 with values in [0, 1]; uint8 is
converted by ``x / 255`` to a float32 view. Colour stages need C = 3 and clamp to [0, 1];
the geometric stages, blur and solarize take any channel count. The output keeps the input's
dtype (float32 for uint8) and memory format (channels_last stays channels_last);
half-precision inputs are computed in float32 and rounded once at the end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from augplug import rng
from augplug.checks import (
    FLOAT_DTYPES,
    check_in_range,
    check_positive,
    check_probability,
    check_tensor,
)
from augplug.components import ParametricViewGenerator, Params
from augplug_image import functional

__all__ = [
    "BYOLViews",
    "BlurStage",
    "ColourJitter",
    "ColourViews",
    "CropStage",
    "GaussianBlur",
    "Grayscale",
    "HorizontalFlip",
    "ImageViews",
    "JitterStage",
    "RandomResizedCrop",
    "SimCLRViews",
    "Solarize",
    "sample_crop_boxes",
]

Size = int | Sequence[int]

#: Rejection-sampling attempts per crop before the fallback, as torchvision and Kornia do.
CROP_ATTEMPTS = 10
#: U(0, 1) draws per crop: an area and a ratio per attempt, and the position.
CROP_DRAWS = 2 * CROP_ATTEMPTS + 2
#: Crops of outputs this small default to scale (0.2, 1): 8% of a 32 px image is a ~9 px patch.
SMALL_IMAGE = 32
_HUE_SPACES = ("hsv", "yiq")


def _pair(value: object, name: str, *, low: float, high: float) -> tuple[float, float]:
    if not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name}: expected a pair (low, high), got {value!r}")
    first = check_in_range(value[0], f"{name}[0]", low, high)
    second = check_in_range(value[1], f"{name}[1]", low, high)
    if first > second:
        raise ValueError(f"{name}: expected low <= high, got {value!r}")
    return first, second


def _size(value: object, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, Sequence)
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)
    ):
        raise ValueError(f"{name}: expected None, an int >= 1 or a pair (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def _odd_kernel(length: int) -> int:
    # SimCLR: a kernel 10% of the image side, odd so it has a centre tap, at least 3 taps.
    size = int(0.1 * length)
    return max(3, size if size % 2 else size + 1)


@dataclass(frozen=True)
class CropStage:
    """RandomResizedCrop: area fraction ``scale``, aspect ratio ``ratio`` (log-uniform), output ``size``.

    ``size=None`` keeps the input's size; ``scale=None`` is (0.2, 1) for outputs of at most
    32 px on the short side and (0.08, 1) otherwise.
    """

    size: tuple[int, int] | None = None
    scale: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self):
        object.__setattr__(self, "size", _size(self.size, "size"))
        if self.scale is not None:
            object.__setattr__(self, "scale", _pair(self.scale, "scale", low=1e-6, high=1.0))
        object.__setattr__(self, "ratio", _pair(self.ratio, "ratio", low=1e-3, high=1e3))

    def output_size(self, x: torch.Tensor) -> tuple[int, int]:
        return self.size if self.size is not None else (x.shape[-2], x.shape[-1])

    def scale_for(self, output_size: tuple[int, int]) -> tuple[float, float]:
        if self.scale is not None:
            return self.scale
        return (0.2, 1.0) if min(output_size) <= SMALL_IMAGE else (0.08, 1.0)


@dataclass(frozen=True)
class JitterStage:
    """Colour jitter: factors U(1 - s, 1 + s) (floored at 0), hue U(-hue, hue) turns, with probability ``p``."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    p: float = 0.8
    hue_space: str = "hsv"

    def __post_init__(self):
        for name in ("brightness", "contrast", "saturation"):
            check_positive(getattr(self, name), name, allow_zero=True)
        check_in_range(self.hue, "hue", 0.0, 0.5)
        check_probability(self.p, "p")
        if self.hue_space not in _HUE_SPACES:
            raise ValueError(f"hue_space: expected one of {list(_HUE_SPACES)}, got {self.hue_space!r}")

    def ranges(self) -> dict[str, tuple[float, float]]:
        factors = {n: getattr(self, n) for n in ("brightness", "contrast", "saturation")}
        ranges = {n: (max(0.0, 1.0 - s), 1.0 + s) for n, s in factors.items()}
        ranges["hue"] = (-self.hue, self.hue)
        return ranges


@dataclass(frozen=True)
class BlurStage:
    """Gaussian blur with sigma U(sigma) pixels, probability ``p``; ``kernel_size=None`` is 10% of the side (odd, >= 3)."""

    sigma: tuple[float, float] = (0.1, 2.0)
    p: float = 0.5
    kernel_size: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "sigma", _pair(self.sigma, "sigma", low=1e-3, high=1e3))
        check_probability(self.p, "p")
        k = self.kernel_size
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0):
            raise ValueError(f"kernel_size: expected None or an odd int >= 1, got {k!r}")

    def kernel_for(self, height: int, width: int) -> tuple[int, int]:
        if self.kernel_size is not None:
            return self.kernel_size, self.kernel_size
        return _odd_kernel(height), _odd_kernel(width)


def sample_crop_boxes(
    uniforms: torch.Tensor,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> torch.Tensor:
    """RandomResizedCrop boxes (B, 4) ``(x0, y0, x1, y1)``, corners inclusive, without a host sync.

    ``uniforms`` is (B, :data:`CROP_DRAWS`) of U(0, 1) draws. torchvision's rule, batched: up
    to :data:`CROP_ATTEMPTS` draws of an area fraction U(scale) and a log-uniform aspect
    ratio; the first that fits is kept; if none fits, the whole image cropped to the nearest
    allowed ratio. The position is uniform. Sizes stay continuous (not rounded to pixels), so
    the box is differentiable.
    """
    area_u, ratio_u, position_u = uniforms.split((CROP_ATTEMPTS, CROP_ATTEMPTS, 2), dim=1)
    area = (scale[0] + (scale[1] - scale[0]) * area_u) * (height * width)
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * ratio_u)
    crop_w = torch.sqrt(area * aspect)
    crop_h = torch.sqrt(area / aspect)
    fits = (crop_w <= width) & (crop_h <= height)
    first = fits.to(torch.int32).argmax(1, keepdim=True)  # first fitting attempt (0 if none)
    found = fits.any(1)
    image_ratio = width / height
    if image_ratio < ratio[0]:
        fallback_w, fallback_h = width, width / ratio[0]
    elif image_ratio > ratio[1]:
        fallback_w, fallback_h = height * ratio[1], height
    else:
        fallback_w, fallback_h = width, height
    crop_w = torch.where(found, crop_w.gather(1, first).squeeze(1), fallback_w).clamp(min=1.0)
    crop_h = torch.where(found, crop_h.gather(1, first).squeeze(1), fallback_h).clamp(min=1.0)
    x0 = position_u[:, 0] * (width - crop_w)
    y0 = position_u[:, 1] * (height - crop_h)
    return torch.stack((x0, y0, x0 + crop_w - 1, y0 + crop_h - 1), -1)


class ImageViews(ParametricViewGenerator):
    """Random image views made of the stages given (``None`` leaves a stage out).

    The recipes and single ops below are this class with fixed stages; build one directly to
    combine stages in a single fused pass (e.g. crop + flip in one warp).
    """

    input_layout = "(B, C, H, W)"

    def __init__(
        self,
        *,
        crop: CropStage | None = None,
        flip_p: float | None = None,
        jitter: JitterStage | None = None,
        grayscale_p: float | None = None,
        blur: BlurStage | None = None,
        solarize_p: float | None = None,
        solarize_threshold: float = 0.5,
    ):
        super().__init__()
        self.crop = crop
        self.flip_p = None if flip_p is None else check_probability(flip_p, "flip_p")
        self.jitter = jitter
        self.grayscale_p = None if grayscale_p is None else check_probability(grayscale_p, "grayscale_p")
        self.blur = blur
        self.solarize_p = None if solarize_p is None else check_probability(solarize_p, "solarize_p")
        self.solarize_threshold = check_probability(solarize_threshold, "solarize_threshold")
        continuous = []
        if crop is not None:
            continuous.append("crop_box")
        if jitter is not None:
            continuous += ["brightness", "contrast", "saturation", "hue"]
        if blur is not None:
            continuous.append("blur_sigma")
        self.continuous_params = tuple(continuous)

    @property
    def needs_rgb(self) -> bool:
        return self.jitter is not None or self.grayscale_p is not None

    def _check_input(self, x: object) -> torch.Tensor:
        x = check_tensor(x, "x", ndim=4, dtypes=(*FLOAT_DTYPES, torch.uint8), layout=self.input_layout)
        if self.needs_rgb and x.shape[1] != 3:
            raise ValueError(
                f"x: expected 3 (RGB) channels for colour jitter / grayscale, got shape {tuple(x.shape)}"
            )
        return x

    @property
    def num_draws(self) -> int:
        """U(0, 1) numbers drawn per sample: one per parameter (and :data:`CROP_DRAWS` per crop)."""
        return (
            (CROP_DRAWS if self.crop is not None else 0)
            + (self.flip_p is not None)
            + (5 if self.jitter is not None else 0)
            + (self.grayscale_p is not None)
            + (2 if self.blur is not None else 0)
            + (self.solarize_p is not None)
        )

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """Draw every stage's per-sample parameters on ``x``'s device (float32 values, bool masks)."""
        x = self._check_input(x)
        # One RNG call for every parameter of every stage: a launch per parameter would cost
        # more than the whole view at CIFAR size.
        draws = rng.uniform((x.shape[0], self.num_draws), 0.0, 1.0, device=x.device, generator=generator)
        cursor = 0

        def take(count: int = 1) -> torch.Tensor:
            nonlocal cursor
            cursor += count
            return draws[:, cursor - 1] if count == 1 else draws[:, cursor - count : cursor]

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * take()

        params = Params()
        if self.crop is not None:
            height, width = x.shape[-2:]
            scale = self.crop.scale_for(self.crop.output_size(x))
            params["crop_box"] = sample_crop_boxes(take(CROP_DRAWS), height, width, scale, self.crop.ratio)
        if self.flip_p is not None:
            params["flip_applied"] = take() < self.flip_p
        if self.jitter is not None:
            for name, (low, high) in self.jitter.ranges().items():
                params[name] = uniform(low, high)
            params["jitter_applied"] = take() < self.jitter.p
        if self.grayscale_p is not None:
            params["grayscale_applied"] = take() < self.grayscale_p
        if self.blur is not None:
            params["blur_sigma"] = uniform(*self.blur.sigma)
            params["blur_applied"] = take() < self.blur.p
        if self.solarize_p is not None:
            params["solarize_applied"] = take() < self.solarize_p
        return params

    def _param(self, params: Mapping[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
        if name not in params:
            raise ValueError(f"params: missing {name!r}; expected the entries of sample(), got {sorted(params)}")
        value = params[name]
        if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.shape[0] != x.shape[0]:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"params[{name!r}]: expected a tensor with batch size {x.shape[0]}, got {got}")
        return value

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Render the view given by ``params`` (from :meth:`sample`); differentiable in ``x`` and the floats."""
        x = self._check_input(x)
        out_dtype = torch.float32 if x.dtype == torch.uint8 else x.dtype
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if x.dtype == torch.uint8:
            out = x.to(torch.float32) / 255
        elif x.dtype in (torch.float16, torch.bfloat16):
            out = x.to(torch.float32)  # one rounding at the end instead of one per step
        else:
            out = x

        def param(name: str) -> torch.Tensor:
            return self._param(params, name, x)

        flip = param("flip_applied") if self.flip_p is not None else None
        if self.crop is not None:
            out = functional.resized_crop(out, param("crop_box"), self.crop.output_size(x), flip)
        elif flip is not None:
            out = functional.horizontal_flip(out, flip)
        if self.jitter is not None:
            jittered = functional.colour_jitter(
                out,
                param("brightness"),
                param("contrast"),
                param("saturation"),
                param("hue"),
                hue_space=self.jitter.hue_space,
            )
            out = torch.where(param("jitter_applied").reshape(-1, 1, 1, 1), jittered, out)
        if self.grayscale_p is not None:
            out = functional.grayscale(out, param("grayscale_applied"))
        if self.blur is not None:
            height, width = out.shape[-2:]
            kernel = self.blur.kernel_for(height, width)
            if kernel[0] // 2 >= height or kernel[1] // 2 >= width:
                raise ValueError(
                    f"x: a {kernel[0]}x{kernel[1]} blur kernel needs images larger than half of it "
                    f"(reflect padding), got {height}x{width}"
                )
            blurred = functional.gaussian_blur(out, param("blur_sigma"), kernel)
            out = torch.where(param("blur_applied").reshape(-1, 1, 1, 1), blurred, out)
        if self.solarize_p is not None:
            out = functional.solarize(out, param("solarize_applied"), self.solarize_threshold)
        out = out.to(out_dtype)
        if channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out


class SimCLRViews(ImageViews):
    """SimCLR augmentation (Chen et al. 2020, appendix A), per sample on the batch's device.

    RandomResizedCrop to ``size`` (``None``: the input's size) with area ``scale``
    (default (0.08, 1), or (0.2, 1) for outputs of at most 32 px) and ratio 3/4-4/3;
    horizontal flip p 0.5; colour jitter 0.4/0.4/0.4/0.1 (brightness, contrast, saturation,
    hue) with p 0.8 in the fixed order brightness -> contrast -> saturation -> hue; grayscale
    p 0.2; Gaussian blur sigma 0.1-2 with p 0.5 and a kernel 10% of the output side.
    """

    def __init__(
        self,
        size: Size | None = None,
        scale: tuple[float, float] | None = None,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_p: float = 0.5,
        blur_kernel_size: int | None = None,
    ):
        super().__init__(
            crop=CropStage(size, scale, ratio),
            flip_p=flip_p,
            jitter=JitterStage(brightness, contrast, saturation, hue, jitter_p),
            grayscale_p=grayscale_p,
            blur=BlurStage(blur_sigma, blur_p, blur_kernel_size),
        )


class BYOLViews(ImageViews):
    """BYOL's asymmetric augmentation pair (Grill et al. 2020, table 6); ``branch`` picks 0 or 1.

    Both branches: RandomResizedCrop (as :class:`SimCLRViews`), flip p 0.5, colour jitter
    0.4/0.4/0.2/0.1 with p 0.8 (fixed order), grayscale p 0.2, Gaussian blur sigma 0.1-2
    (kernel 10% of the side). Branch 0: blur p 1.0, no solarisation; branch 1: blur p 0.1,
    solarize (threshold 0.5) p 0.2.
    """

    def __init__(
        self,
        branch: int,
        size: Size | None = None,
        scale: tuple[float, float] | None = None,
    ):
        if isinstance(branch, bool) or not isinstance(branch, int) or branch not in (0, 1):
            raise ValueError(f"branch: expected 0 or 1, got {branch!r}")
        super().__init__(
            crop=CropStage(size, scale),
            flip_p=0.5,
            jitter=JitterStage(0.4, 0.4, 0.2, 0.1, 0.8),
            grayscale_p=0.2,
            blur=BlurStage((0.1, 2.0), (1.0, 0.1)[branch]),
            solarize_p=(0.0, 0.2)[branch],
        )
        self.branch = branch


class ColourViews(ImageViews):
    """Colour-only views for the invariance regulariser (Foster et al. 2021, "colour distortion").

    With ``strength`` s (default 0.5): brightness, contrast and saturation factors
    U(1 - 0.8 s, 1 + 0.8 s) = U(0.6, 1.4), hue U(-0.2 s, 0.2 s) = U(-0.1, 0.1) turns as a
    rotation in YIQ space (smooth in the parameter), fixed order brightness -> contrast ->
    saturation -> hue, jitter p 0.8, grayscale p 0.2. ``continuous_params`` are the four
    factors, the "alpha" the regulariser differentiates.
    """

    def __init__(self, strength: float = 0.5, jitter_p: float = 0.8, grayscale_p: float = 0.2):
        strength = check_in_range(strength, "strength", 0.0, 1.25)  # keeps factors >= 0
        super().__init__(
            jitter=JitterStage(0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength, jitter_p, "yiq"),
            grayscale_p=grayscale_p,
        )


class RandomResizedCrop(ImageViews):
    """RandomResizedCrop alone: ``size`` (``None``: input size), ``scale`` (default as SimCLR), ``ratio`` 3/4-4/3."""

    def __init__(
        self,
        size: Size | None = None,
        scale: tuple[float, float] | None = None,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ):
        super().__init__(crop=CropStage(size, scale, ratio))


class HorizontalFlip(ImageViews):
    """Horizontal flip with probability ``p`` (default 0.5)."""

    def __init__(self, p: float = 0.5):
        super().__init__(flip_p=p)


class ColourJitter(ImageViews):
    """Colour jitter alone (defaults: SimCLR's 0.4/0.4/0.4/0.1, p 0.8; ``hue_space`` "hsv" as Kornia, or "yiq")."""

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        p: float = 0.8,
        hue_space: str = "hsv",
    ):
        super().__init__(jitter=JitterStage(brightness, contrast, saturation, hue, p, hue_space))


class Grayscale(ImageViews):
    """Grayscale (BT.601 luma on all three channels) with probability ``p`` (default 0.2)."""

    def __init__(self, p: float = 0.2):
        super().__init__(grayscale_p=p)


class GaussianBlur(ImageViews):
    """Gaussian blur, sigma U(``sigma``) (default 0.1-2), probability ``p`` (0.5), kernel 10% of the side unless given."""

    def __init__(
        self,
        sigma: tuple[float, float] = (0.1, 2.0),
        p: float = 0.5,
        kernel_size: int | None = None,
    ):
        super().__init__(blur=BlurStage(sigma, p, kernel_size))


class Solarize(ImageViews):
    """Solarisation (invert values >= ``threshold``, default 0.5) with probability ``p`` (0.2, BYOL)."""

    def __init__(self, p: float = 0.2, threshold: float = 0.5):
        super().__init__(solarize_p=p, solarize_threshold=threshold)
