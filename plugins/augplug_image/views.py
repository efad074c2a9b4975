"""Image view generators: one small class per op, and the fused pipeline that chains them.

Every op is an :class:`ImageOp`, itself a :class:`augplug.ParametricViewGenerator` usable
alone: it says how many U(0, 1) numbers it draws per sample (``num_draws``), turns them into
its named per-sample params (``params_from``), renders them with the batched ops of
:mod:`augplug_image.functional` (``render``; differentiable in ``x`` and in its
``continuous_params``), and checks its inputs. :class:`ImageViews` chains ops into one view:
one RNG call for all of their draws (a launch per parameter would cost more than the whole view
at CIFAR size) and, where a flip directly follows a crop, one warp for both. The recipes
(``simclr``, ``byol``, ``colour``) are :class:`ImageViews` with fixed ops. Adding an op means
adding one :class:`ImageOp` subclass.

The ops and their params (all (B,) unless noted):

* :class:`RandomResizedCrop` - ``crop_box`` (B, 4): ``(x0, y0, x1, y1)`` in input pixels,
  corners inclusive;
* :class:`HorizontalFlip` - ``flip_applied``;
* :class:`RandomAffine` - ``affine_angle`` (degrees), ``affine_translate`` (B, 2) pixels,
  ``affine_scale``, ``affine_applied``;
* :class:`ColourJitter` - ``brightness``, ``contrast``, ``saturation`` (factors), ``hue``
  (turns), ``jitter_applied``;
* :class:`Grayscale` - ``grayscale_applied``;
* :class:`GaussianBlur` - ``blur_sigma`` (pixels), ``blur_applied``;
* :class:`Solarize` - ``solarize_applied``;
* :class:`Posterize` - ``posterize_bits`` (int64), ``posterize_applied``;
* :class:`RandomErasing` - ``erase_box`` (B, 4): ``(x0, y0, width, height)`` whole pixels,
  ``erase_applied``.

``*_applied`` entries are bool. Inputs: (B, C, H, W) float32 / bfloat16 / float16 / float64
with values in [0, 1]; uint8 is converted by ``x / 255`` to a float32 view. Colour ops need
C = 3 and clamp to [0, 1]; the others take any channel count. The output keeps the input's
dtype (float32 for uint8) and memory format (channels_last stays channels_last);
half-precision inputs are computed in float32 and rounded once at the end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from augplug import rng
from augplug.checks import (
    FLOAT_DTYPES,
    check_choice,
    check_float,
    check_int,
    check_interval,
    check_positive,
    check_probability,
    check_tensor,
)
from augplug.components import ParametricViewGenerator, Params
from augplug_image import functional

__all__ = [
    "BYOLViews",
    "ColourJitter",
    "ColourViews",
    "GaussianBlur",
    "Grayscale",
    "HorizontalFlip",
    "ImageOp",
    "ImageViews",
    "Posterize",
    "RandomAffine",
    "RandomErasing",
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


def _size(value: object, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, Sequence)
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)
    ):
        raise ValueError(
            f"{name}: expected None, an int >= 1 or a pair (height, width), got {value!r}"
        )
    return int(pair[0]), int(pair[1])


def _odd_kernel(length: int) -> int:
    # SimCLR: a kernel 10% of the image side, odd so it has a centre tap, at least 3 taps.
    size = int(0.1 * length)
    return max(3, size if size % 2 else size + 1)


def _kernel_size(value: object, name: str) -> int | None:
    if value is not None and (check_int(value, name, minimum=1) % 2 == 0):
        raise ValueError(f"{name}: expected None or an odd int >= 1, got {value!r}")
    return value


def _probabilities(**named: object) -> None:
    # A recipe's own argument names in its errors (flip_p, not the op's p).
    for name, value in named.items():
        check_probability(value, name)


def _applied(u: torch.Tensor, p: float) -> torch.Tensor:
    return u < p


def _to_working(x: torch.Tensor) -> torch.Tensor:
    """The float batch the ops compute on: uint8 as ``x / 255``, half precision as float32."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.to(torch.float32)  # one rounding at the end instead of one per step
    return x


def _from_working(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out`` in the input's dtype (float32 for uint8) and memory format."""
    out = out.to(torch.float32 if x.dtype == torch.uint8 else x.dtype)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class _CheckedParams:
    """Read access to ``params`` that names a missing entry or a wrong batch size clearly."""

    def __init__(self, params: Mapping[str, torch.Tensor], batch: int):
        self.params, self.batch = params, batch

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.params:
            raise ValueError(
                f"params: missing {name!r}; expected the entries of sample(), got {sorted(self.params)}"
            )
        value = self.params[name]
        if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.shape[0] != self.batch:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"params[{name!r}]: expected a tensor with batch size {self.batch}, got {got}"
            )
        return value


class ImageOp(ParametricViewGenerator):
    """One image op: its draws, its params and its rendering; a view generator on its own.

    Subclasses set ``num_draws`` (U(0, 1) numbers per sample), ``continuous_params`` and
    ``needs_rgb``, and implement :meth:`params_from` and :meth:`render`; ``sample``,
    ``apply``, input checks and dtype / layout handling are shared.
    """

    input_layout = "(B, C, H, W)"
    num_draws: int = 1
    needs_rgb: bool = False

    def params_from(self, draws: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Params from ``draws`` (B, ``num_draws``) of U(0, 1) for the batch ``x``."""
        raise NotImplementedError

    def render(self, x: torch.Tensor, params: _CheckedParams) -> torch.Tensor:
        """The op on a float batch (float32 or float64) with the given params."""
        raise NotImplementedError

    def _check_input(self, x: object) -> torch.Tensor:
        x = check_tensor(
            x, "x", ndim=4, dtypes=(*FLOAT_DTYPES, torch.uint8), layout=self.input_layout
        )
        if self.needs_rgb and x.shape[1] != 3:
            raise ValueError(
                f"x: expected 3 (RGB) channels for colour jitter / grayscale, got shape {tuple(x.shape)}"
            )
        return x

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """Draw the per-sample params on ``x``'s device (float32 values, bool masks), one RNG call."""
        x = self._check_input(x)
        draws = rng.uniform(
            (x.shape[0], self.num_draws), 0.0, 1.0, device=x.device, generator=generator
        )
        return Params(self.params_from(draws, x))

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Render the view given by ``params`` (from :meth:`sample`); differentiable in ``x`` and the floats."""
        x = self._check_input(x)
        return _from_working(self.render(_to_working(x), _CheckedParams(params, x.shape[0])), x)


class RandomResizedCrop(ImageOp):
    """RandomResizedCrop: area fraction ``scale``, log-uniform aspect ``ratio``, resized to ``size``.

    torchvision's / Kornia's rule (up to :data:`CROP_ATTEMPTS` tries, then the whole image at the
    nearest allowed ratio; see :func:`sample_crop_boxes`), bilinear with ``align_corners=True``
    as ``kornia.geometry.transform.crop_and_resize``. The box stays continuous, so the view is
    differentiable in ``crop_box``.

    Args:
        size: output (height, width) or one int; ``None`` keeps the input's size.
        scale: area range; ``None`` is (0.2, 1) for outputs of at most 32 px on the short side
            and (0.08, 1) otherwise (SimCLR).
        ratio: aspect-ratio range, default (3/4, 4/3).
    """

    num_draws = CROP_DRAWS
    continuous_params = ("crop_box",)

    def __init__(
        self,
        size: Size | None = None,
        scale: tuple[float, float] | None = None,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ):
        super().__init__()
        self.size = _size(size, "size")
        self.scale = None if scale is None else check_interval(scale, "scale", low=1e-6, high=1.0)
        self.ratio = check_interval(ratio, "ratio", low=1e-3, high=1e3)

    def output_size(self, x: torch.Tensor) -> tuple[int, int]:
        return self.size if self.size is not None else (x.shape[-2], x.shape[-1])

    def scale_for(self, output_size: tuple[int, int]) -> tuple[float, float]:
        if self.scale is not None:
            return self.scale
        return (0.2, 1.0) if min(output_size) <= SMALL_IMAGE else (0.08, 1.0)

    def params_from(self, draws, x):
        height, width = x.shape[-2:]
        scale = self.scale_for(self.output_size(x))
        return {"crop_box": sample_crop_boxes(draws, height, width, scale, self.ratio)}

    def render(self, x, params, flip: torch.Tensor | None = None):
        """``flip`` (B,) bool mirrors the crop in the same warp (see :class:`ImageViews`)."""
        return functional.resized_crop(x, params["crop_box"], self.output_size(x), flip)


class HorizontalFlip(ImageOp):
    """Horizontal flip with probability ``p`` (default 0.5); right after a crop it costs nothing."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_probability(p, "p")

    def params_from(self, draws, x):
        return {"flip_applied": _applied(draws[:, 0], self.p)}

    def render(self, x, params):
        return functional.horizontal_flip(x, params["flip_applied"])


class RandomAffine(ImageOp):
    """Small random rotation / scale / shift with probability ``p``, zeros outside the image.

    ``kornia.augmentation.RandomAffine``'s sampling and geometry without shear: angle
    U(-degrees, degrees), shift U(-t W, t W) x U(-t H, t H) pixels for ``translate=(t_x, t_y)``,
    isotropic scale U(scale); bilinear, ``align_corners=False``, rendered with four gathers
    (differentiable twice) by :func:`functional.affine`. Continuous in all three parameters.

    Args:
        degrees: largest rotation in degrees (default 10: the small angles SSL recipes use).
        translate: largest shift as a fraction of (width, height); default (0, 0).
        scale: isotropic scale range; default (1, 1).
        p: probability (default 0.5).
    """

    num_draws = 5
    continuous_params = ("affine_angle", "affine_translate", "affine_scale")

    def __init__(
        self,
        degrees: float = 10.0,
        translate: tuple[float, float] = (0.0, 0.0),
        scale: tuple[float, float] = (1.0, 1.0),
        p: float = 0.5,
    ):
        super().__init__()
        self.degrees = check_float(degrees, "degrees", low=0.0, high=180.0)
        if isinstance(translate, str) or not isinstance(translate, Sequence) or len(translate) != 2:
            raise ValueError(
                f"translate: expected a pair (fraction of width, of height), got {translate!r}"
            )
        self.translate = tuple(
            check_float(t, f"translate[{i}]", low=0.0, high=1.0) for i, t in enumerate(translate)
        )
        self.scale = check_interval(scale, "scale", low=1e-3, high=1e3)
        self.p = check_probability(p, "p")

    def params_from(self, draws, x):
        height, width = x.shape[-2:]
        # Python-float limits: no small host-to-device copy per call.
        shift_x = (self.translate[0] * width) * (2 * draws[:, 1] - 1)
        shift_y = (self.translate[1] * height) * (2 * draws[:, 2] - 1)
        return {
            "affine_angle": self.degrees * (2 * draws[:, 0] - 1),
            "affine_translate": torch.stack((shift_x, shift_y), -1),
            "affine_scale": self.scale[0] + (self.scale[1] - self.scale[0]) * draws[:, 3],
            "affine_applied": _applied(draws[:, 4], self.p),
        }

    def render(self, x, params):
        warped = functional.affine(
            x, params["affine_angle"], params["affine_translate"], params["affine_scale"]
        )
        return torch.where(params["affine_applied"].reshape(-1, 1, 1, 1), warped, x)


class ColourJitter(ImageOp):
    """Colour jitter with probability ``p``: brightness, contrast, saturation, then hue (fixed order).

    Factors U(1 - s, 1 + s) (floored at 0), hue U(-hue, hue) turns, the steps of
    ``kornia.augmentation.ColorJitter(order=(0, 1, 2, 3))``. ``hue_space`` "hsv" is Kornia's
    (and torchvision's) hue shift, "yiq" a rotation of the chroma plane that is smooth in the
    parameter (the invariance regulariser's reference). Defaults: SimCLR's 0.4/0.4/0.4/0.1, p 0.8.
    """

    num_draws = 5
    needs_rgb = True
    continuous_params = ("brightness", "contrast", "saturation", "hue")

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        p: float = 0.8,
        hue_space: str = "hsv",
    ):
        super().__init__()
        self.brightness = check_positive(brightness, "brightness", allow_zero=True)
        self.contrast = check_positive(contrast, "contrast", allow_zero=True)
        self.saturation = check_positive(saturation, "saturation", allow_zero=True)
        self.hue = check_float(hue, "hue", low=0.0, high=0.5)
        self.p = check_probability(p, "p")
        self.hue_space = check_choice(hue_space, "hue_space", _HUE_SPACES)

    def ranges(self) -> dict[str, tuple[float, float]]:
        factors = {n: getattr(self, n) for n in ("brightness", "contrast", "saturation")}
        ranges = {n: (max(0.0, 1.0 - s), 1.0 + s) for n, s in factors.items()}
        ranges["hue"] = (-self.hue, self.hue)
        return ranges

    def params_from(self, draws, x):
        params = {
            name: low + (high - low) * draws[:, i]
            for i, (name, (low, high)) in enumerate(self.ranges().items())
        }
        params["jitter_applied"] = _applied(draws[:, 4], self.p)
        return params

    def render(self, x, params):
        return functional.colour_jitter(
            x,
            params["brightness"],
            params["contrast"],
            params["saturation"],
            params["hue"],
            hue_space=self.hue_space,
            applied=params["jitter_applied"],
        )


class Grayscale(ImageOp):
    """Grayscale (BT.601 luma on all three channels) with probability ``p`` (default 0.2)."""

    needs_rgb = True

    def __init__(self, p: float = 0.2):
        super().__init__()
        self.p = check_probability(p, "p")

    def params_from(self, draws, x):
        return {"grayscale_applied": _applied(draws[:, 0], self.p)}

    def render(self, x, params):
        return functional.grayscale(x, params["grayscale_applied"])


class GaussianBlur(ImageOp):
    """Gaussian blur, sigma U(``sigma``) pixels (default 0.1-2) with probability ``p`` (0.5).

    ``kernel_size=None`` is 10% of each side (odd, >= 3) as SimCLR; reflect borders as
    ``kornia.filters.gaussian_blur2d``. Continuous in ``blur_sigma``.
    """

    num_draws = 2
    continuous_params = ("blur_sigma",)

    def __init__(
        self,
        sigma: tuple[float, float] = (0.1, 2.0),
        p: float = 0.5,
        kernel_size: int | None = None,
    ):
        super().__init__()
        self.sigma = check_interval(sigma, "sigma", low=1e-3, high=1e3)
        self.p = check_probability(p, "p")
        self.kernel_size = _kernel_size(kernel_size, "kernel_size")

    def kernel_for(self, height: int, width: int) -> tuple[int, int]:
        if self.kernel_size is not None:
            return self.kernel_size, self.kernel_size
        return _odd_kernel(height), _odd_kernel(width)

    def params_from(self, draws, x):
        low, high = self.sigma
        return {
            "blur_sigma": low + (high - low) * draws[:, 0],
            "blur_applied": _applied(draws[:, 1], self.p),
        }

    def render(self, x, params):
        height, width = x.shape[-2:]
        kernel = self.kernel_for(height, width)
        if kernel[0] // 2 >= height or kernel[1] // 2 >= width:
            raise ValueError(
                f"x: a {kernel[0]}x{kernel[1]} blur kernel needs images larger than half of it "
                f"(reflect padding), got {height}x{width}"
            )
        return functional.gaussian_blur(x, params["blur_sigma"], kernel, params["blur_applied"])


class Solarize(ImageOp):
    """Solarisation (invert values >= ``threshold``, default 0.5) with probability ``p`` (0.2, BYOL)."""

    def __init__(self, p: float = 0.2, threshold: float = 0.5):
        super().__init__()
        self.p = check_probability(p, "p")
        self.threshold = check_probability(threshold, "threshold")

    def params_from(self, draws, x):
        return {"solarize_applied": _applied(draws[:, 0], self.p)}

    def render(self, x, params):
        return functional.solarize(x, params["solarize_applied"], self.threshold)


class Posterize(ImageOp):
    """Keep the top ``bits`` of each 8-bit value, with probability ``p`` (default 0.5).

    ``kornia.augmentation.RandomPosterize``'s sampling and rendering: bits ``int(U(low, high))``
    for ``bits=(low, high)``, an int ``b`` meaning (b, 8) (default 3, so 3 to 7 bits kept), and
    ``kornia.enhance.posterize`` (see :func:`functional.posterize`). A step function: no
    continuous params.
    """

    num_draws = 2

    def __init__(self, bits: int | tuple[int, int] = 3, p: float = 0.5):
        super().__init__()
        if isinstance(bits, Sequence):
            self.bits = check_interval(bits, "bits", low=0, high=8)
        else:
            self.bits = (float(check_int(bits, "bits", minimum=0, maximum=8)), 8.0)
        self.p = check_probability(p, "p")

    def params_from(self, draws, x):
        low, high = self.bits
        return {
            "posterize_bits": (low + (high - low) * draws[:, 0]).to(torch.int64),
            "posterize_applied": _applied(draws[:, 1], self.p),
        }

    def render(self, x, params):
        return functional.posterize(x, params["posterize_bits"], params["posterize_applied"])


class RandomErasing(ImageOp):
    """Random erasing (cutout) of one rectangle, filled with ``value``, with probability ``p``.

    ``kornia.augmentation.RandomErasing``'s sampling: area U(``scale``) of the image, aspect
    ratio (height / width) U(ratio_low, 1) or U(1, ratio_high) with equal odds when the range
    spans 1 (else U(ratio)), sides rounded and clipped to the image, the corner uniform over the
    positions that keep the box inside. Defaults: Kornia's / torchvision's scale (0.02, 0.33),
    ratio (0.3, 3.3), value 0, p 0.5. A hard mask: no continuous params.
    """

    num_draws = 6

    def __init__(
        self,
        scale: tuple[float, float] = (0.02, 0.33),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: float = 0.0,
        p: float = 0.5,
    ):
        super().__init__()
        self.scale = check_interval(scale, "scale", low=0.0, high=1.0)
        self.ratio = check_interval(ratio, "ratio", low=1e-3, high=1e3)
        self.value = check_float(value, "value")
        self.p = check_probability(p, "p")

    def params_from(self, draws, x):
        height, width = x.shape[-2:]
        area = (self.scale[0] + (self.scale[1] - self.scale[0]) * draws[:, 0]) * (height * width)
        low, high = self.ratio
        if low < 1.0 < high:  # as Kornia: below and above 1 equally often, whatever the range
            below = low + (1.0 - low) * draws[:, 2]
            above = 1.0 + (high - 1.0) * draws[:, 2]
            aspect = torch.where(draws[:, 1] < 0.5, below, above)
        else:
            aspect = low + (high - low) * draws[:, 2]
        box_h = torch.round(torch.sqrt(area * aspect)).clamp(1.0, height)
        box_w = torch.round(torch.sqrt(area / aspect)).clamp(1.0, width)
        x0 = torch.floor(draws[:, 3] * (width - box_w + 1)).clamp(max=width - box_w)
        y0 = torch.floor(draws[:, 4] * (height - box_h + 1)).clamp(max=height - box_h)
        return {
            "erase_box": torch.stack((x0, y0, box_w, box_h), -1),
            "erase_applied": _applied(draws[:, 5], self.p),
        }

    def render(self, x, params):
        return functional.erase(x, params["erase_box"], params["erase_applied"], self.value)


class ImageViews(ImageOp):
    """Random image views made of the given ops, in the given order, fused.

    One RNG call draws every op's numbers; a :class:`HorizontalFlip` right after a
    :class:`RandomResizedCrop` is rendered by the crop's warp (mirroring a crop is sampling its
    box from right to left, so it costs nothing). Params are the union of the ops' params, so
    each op type may appear once. The recipes below are this class with fixed ops.

    Args:
        ops: the :class:`ImageOp` s, e.g. ``[RandomResizedCrop(32), HorizontalFlip(),
            RandomAffine(10), ColourJitter(), Grayscale(), RandomErasing()]``.
    """

    def __init__(self, ops: Sequence[ImageOp]):
        super().__init__()
        if isinstance(ops, ImageOp) or not isinstance(ops, Sequence) or len(ops) == 0:
            raise TypeError(f"ops: expected a non-empty list of ImageOp, got {ops!r}")
        seen: set[type] = set()
        for i, op in enumerate(ops):
            if not isinstance(op, ImageOp) or isinstance(op, ImageViews):
                raise TypeError(
                    f"ops[{i}]: expected an ImageOp such as RandomResizedCrop(), got {op!r}"
                )
            if type(op) in seen:
                raise ValueError(
                    f"ops[{i}]: {type(op).__name__} appears twice; its params would collide"
                )
            seen.add(type(op))
        self.ops = nn.ModuleList(ops)
        self.num_draws = sum(op.num_draws for op in ops)
        self.needs_rgb = any(op.needs_rgb for op in ops)
        self.continuous_params = tuple(name for op in ops for name in op.continuous_params)

    def params_from(self, draws, x):
        params: dict[str, torch.Tensor] = {}
        start = 0
        for op in self.ops:
            params.update(op.params_from(draws[:, start : start + op.num_draws], x))
            start += op.num_draws
        return params

    def render(self, x, params):
        ops = list(self.ops)
        index = 0
        while index < len(ops):
            op = ops[index]
            following = ops[index + 1] if index + 1 < len(ops) else None
            if isinstance(op, RandomResizedCrop) and isinstance(following, HorizontalFlip):
                x = op.render(x, params, flip=params["flip_applied"])
                index += 2
            else:
                x = op.render(x, params)
                index += 1
        return x


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
        _probabilities(flip_p=flip_p, jitter_p=jitter_p, grayscale_p=grayscale_p, blur_p=blur_p)
        check_interval(blur_sigma, "blur_sigma", low=1e-3, high=1e3)
        _kernel_size(blur_kernel_size, "blur_kernel_size")
        super().__init__(
            [
                RandomResizedCrop(size, scale, ratio),
                HorizontalFlip(flip_p),
                ColourJitter(brightness, contrast, saturation, hue, jitter_p),
                Grayscale(grayscale_p),
                GaussianBlur(blur_sigma, blur_p, blur_kernel_size),
            ]
        )


class BYOLViews(ImageViews):
    """BYOL's asymmetric augmentation pair (Grill et al. 2020, table 6); ``branch`` picks 0 or 1.

    Both branches: RandomResizedCrop (as :class:`SimCLRViews`), flip p 0.5, colour jitter
    0.4/0.4/0.2/0.1 with p 0.8 (fixed order), grayscale p 0.2, Gaussian blur sigma 0.1-2
    (kernel 10% of the side). Branch 0: blur p 1.0, no solarisation; branch 1: blur p 0.1,
    solarize (threshold 0.5) p 0.2.
    """

    #: A small instance for the conformance kit (``augplug.testing``): ``branch`` has no default.
    example_kwargs: ClassVar[dict[str, int]] = {"branch": 0}

    def __init__(
        self,
        branch: int,
        size: Size | None = None,
        scale: tuple[float, float] | None = None,
    ):
        if isinstance(branch, bool) or not isinstance(branch, int) or branch not in (0, 1):
            raise ValueError(f"branch: expected 0 or 1, got {branch!r}")
        super().__init__(
            [
                RandomResizedCrop(size, scale),
                HorizontalFlip(0.5),
                ColourJitter(0.4, 0.4, 0.2, 0.1, 0.8),
                Grayscale(0.2),
                GaussianBlur((0.1, 2.0), (1.0, 0.1)[branch]),
                Solarize((0.0, 0.2)[branch]),
            ]
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
        s = check_float(strength, "strength", low=0.0, high=1.25)  # keeps factors >= 0
        _probabilities(jitter_p=jitter_p, grayscale_p=grayscale_p)
        super().__init__(
            [
                ColourJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, jitter_p, "yiq"),
                Grayscale(grayscale_p),
            ]
        )
