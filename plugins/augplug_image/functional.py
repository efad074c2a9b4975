"""Batched, differentiable image ops with per-sample parameters (Kornia's semantics, fused).

Every op takes a batch ``x`` of shape (B, C, H, W) and per-sample parameters with a leading
batch dimension, runs without a per-sample loop or a host sync, and is differentiable in
``x`` and in every floating parameter. The formulas follow the Kornia functional ops named
in each docstring (the tests compare them on the same parameters); the implementation is
written for the bandwidth floor: crop, flip and resize are one separable bilinear warp (a
gather and a blend per axis), the colour jitter is a handful of elementwise passes, the blur
is one pair of grouped 1-D convolutions with a kernel per sample.

Colour ops expect RGB values in [0, 1] and clamp their result to [0, 1], as Kornia does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "affine",
    "colour_jitter",
    "erase",
    "gaussian_blur",
    "gaussian_kernel1d",
    "grayscale",
    "horizontal_flip",
    "hue_rotate_yiq",
    "hue_shift_hsv",
    "luma",
    "posterize",
    "resized_crop",
    "solarize",
]

# ITU-R BT.601 luma weights, as kornia.color.rgb_to_grayscale and torchvision use.
_LUMA = (0.299, 0.587, 0.114)

# RGB -> YIQ (NTSC); hue rotation in YIQ turns the (I, Q) chroma plane and keeps luma Y.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)


def _yiq_rotation_terms() -> tuple[list[list[float]], list[list[float]], list[list[float]]]:
    """``inv(T) @ R(angle) @ T = FIXED + cos(angle) * COS + sin(angle) * SIN`` as Python floats.

    Plain floats, so building a per-sample matrix on the GPU needs no host-to-device copy.
    """
    inverse = torch.linalg.inv(_RGB_TO_YIQ)
    keep, cos_part, sin_part = (torch.zeros(3, 3, dtype=torch.float64) for _ in range(3))
    keep[0, 0] = 1.0
    cos_part[1, 1] = cos_part[2, 2] = 1.0
    sin_part[1, 2], sin_part[2, 1] = -1.0, 1.0
    return tuple((inverse @ m @ _RGB_TO_YIQ).tolist() for m in (keep, cos_part, sin_part))


_YIQ_FIXED, _YIQ_COS, _YIQ_SIN = _yiq_rotation_terms()


def _per_sample(value: torch.Tensor, ndim: int = 4) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1) so a per-sample value broadcasts over an image batch."""
    return value.reshape(value.shape[0], *([1] * (ndim - 1)))


def _axis_interpolation(
    start: torch.Tensor, end: torch.Tensor, in_len: int, out_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis: source indices (B, 2 * out_len), low taps then high taps,
    and the weight of the high tap (B, out_len), for ``out_len`` points from ``start`` to ``end``."""
    if out_len > 1:
        steps = torch.linspace(0.0, 1.0, out_len, device=start.device, dtype=start.dtype)
    else:  # one output pixel samples the middle of the box
        steps = torch.full((1,), 0.5, device=start.device, dtype=start.dtype)
    # Clamping the position to the image repeats the border pixel outside it.
    position = (start.unsqueeze(-1) + (end - start).unsqueeze(-1) * steps).clamp(0, in_len - 1)
    low = position.detach().floor().clamp(max=max(in_len - 2, 0))
    weight = position - low  # d weight / d position = 1: the box gets the bilinear gradient
    low = low.long()
    return torch.cat((low, (low + 1).clamp(max=in_len - 1)), -1), weight


def resized_crop(
    x: torch.Tensor,
    box: torch.Tensor,
    size: tuple[int, int],
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop ``box`` out of every image, resize it to ``size`` and optionally mirror it, in one warp.

    ``box`` is (B, 4) ``(x0, y0, x1, y1)`` in input pixel coordinates with pixel centres on
    integers and both corners inclusive (a crop ``w`` pixels wide has ``x1 = x0 + w - 1``),
    the convention of ``kornia.geometry.transform.crop_and_resize`` (bilinear,
    ``align_corners=True``). ``flip`` (B,) bool mirrors the crop horizontally, which is the
    same as sampling the box from ``x1`` to ``x0``, so it costs nothing extra. Coordinates
    that fall outside the image repeat the border pixel.

    An axis-aligned bilinear warp is separable: per axis, one gather of both neighbours of
    every output pixel and one blend. Unlike ``grid_sample`` (no second derivative in
    PyTorch) this is differentiable twice, which double backprop through the crop box needs.

    ``box`` may hold ``k`` boxes per image (``k * B`` rows, copy-major: row ``j`` crops image
    ``j % B``); the multi-crop views use this to cut all crops of one size in one warp without
    copying the batch ``k`` times.
    """
    images, channels, height, width = x.shape
    batch = box.shape[0]
    out_h, out_w = size
    x0, y0, x1, y1 = box.to(x.dtype).unbind(-1)
    if flip is not None:
        x0, x1 = torch.where(flip, x1, x0), torch.where(flip, x0, x1)
    columns, column_weight = _axis_interpolation(x0, x1, width, out_w)
    rows, row_weight = _axis_interpolation(y0, y1, height, out_h)
    if batch == images:
        index = columns[:, None, None, :].expand(batch, channels, height, 2 * out_w)
        out = _with_backward(
            _GatherLerp, _gather_lerp, x, index, column_weight[:, None, None, :], -1
        )
    else:  # k crops per image: gather from x broadcast k times (a stride-0 view, no copy)
        copies = batch // images
        source = x.unsqueeze(0).expand(copies, *x.shape)
        index = columns.reshape(copies, images, 1, 1, 2 * out_w)
        index = index.expand(copies, images, channels, height, 2 * out_w)
        weight = column_weight.reshape(copies, images, 1, 1, out_w)
        out = _with_backward(_GatherLerp, _gather_lerp, source, index, weight, -1)
        out = out.reshape(batch, channels, height, out_w)
    index = rows[:, None, :, None].expand(batch, channels, 2 * out_h, out_w)
    return _with_backward(_GatherLerp, _gather_lerp, out, index, row_weight[:, None, :, None], -2)


def _gather_lerp(source: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, dim: int):
    """Both bilinear taps along ``dim`` (``index``: low taps, then high taps) and their blend."""
    taps = source.gather(dim, index)
    half = taps.shape[dim] // 2
    return torch.lerp(taps.narrow(dim, 0, half), taps.narrow(dim, half, half), weight)


class _GatherLerp(torch.autograd.Function):
    """:func:`_gather_lerp` with a backward written out: both taps' gradients scatter-added into
    one zero tensor (autograd fills a zero tensor per slice of the taps, adds them, and fills
    another for the gather); double backprop differentiates the plain ops again."""

    @staticmethod
    def forward(ctx, source, index, weight, dim):
        taps = source.gather(dim, index)
        half = taps.shape[dim] // 2
        low, high = taps.narrow(dim, 0, half), taps.narrow(dim, half, half)
        ctx.dim = dim
        ctx.save_for_backward(source, index, weight, taps if ctx.needs_input_grad[2] else None)
        return torch.lerp(low, high, weight)

    @staticmethod
    def backward(ctx, grad):
        source, index, weight, taps = ctx.saved_tensors
        dim = ctx.dim
        if torch.is_grad_enabled():
            inputs = (source, index, weight, dim)
            return _differentiate_again(_gather_lerp, inputs, ctx.needs_input_grad, grad)
        half = index.shape[dim] // 2
        grad_source = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_source = torch.zeros(source.shape, dtype=grad.dtype, device=grad.device)
            grad_source.scatter_add_(dim, index.narrow(dim, 0, half), grad * (1 - weight))
            grad_source.scatter_add_(dim, index.narrow(dim, half, half), grad * weight)
        if ctx.needs_input_grad[2]:
            spread = taps.narrow(dim, half, half) - taps.narrow(dim, 0, half)
            grad_weight = (grad * spread).sum_to_size(weight.shape)
        return grad_source, None, grad_weight, None


def horizontal_flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the samples where ``flip`` (B,) is true (``kornia.geometry.transform.hflip``)."""
    return torch.where(_per_sample(flip), x.flip(-1), x)


def luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 grayscale of an RGB batch, (B, 1, H, W) (``kornia.color.rgb_to_grayscale``)."""
    r, g, b = x.unbind(-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


def grayscale(x: torch.Tensor, applied: torch.Tensor) -> torch.Tensor:
    """Replace the samples where ``applied`` (B,) is true by their luma on all three channels."""
    return torch.where(_per_sample(applied), luma(x).expand_as(x), x)


def hue_shift_hsv(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Shift the HSV hue of an RGB batch by ``hue`` (B,) turns (``kornia.enhance.adjust_hue``).

    Closed form of RGB -> HSV -> shift -> RGB without materialising HSV: with
    ``M = max(r, g, b)``, ``m = min``, hue ``h`` in sextants, channel ``n`` (5, 3, 1 for R, G, B) is
    ``M - (M - m) * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + h + 6 * hue) mod 6``.
    """
    return _hue_shift_hsv(x, hue.to(x.dtype))


def _hue_shift_hsv(x: torch.Tensor, hue: torch.Tensor, saved: list | None = None) -> torch.Tensor:
    """:func:`hue_shift_hsv`; ``saved`` collects the intermediates its backward reuses."""
    r, g, b = x.unbind(-3)
    high = x.amax(-3, keepdim=True)
    low = x.amin(-3, keepdim=True)
    chroma = high - low
    # Grey pixels have no hue; any value works because chroma is 0, so avoid 0 / 0.
    safe = torch.where(chroma == 0, 1.0, chroma)
    # Sextant of the first maximal channel, the same tie-breaking as kornia.color.rgb_to_hsv.
    red_max = ((r >= g) & (r >= b)).unsqueeze(-3)
    green_first = (g >= b).unsqueeze(-3)
    quotients = [(u - v).unsqueeze(-3) / safe for u, v in ((g, b), (b, r), (r, g))]
    sextant = torch.where(
        red_max, quotients[0], torch.where(green_first, quotients[1] + 2.0, quotients[2] + 4.0)
    )
    shifted = sextant + 6.0 * _per_sample(hue)
    # n = 5, 3, 1 for R, G, B: made on the device (arange), not copied from the host.
    offsets = torch.arange(5, 0, -2, device=x.device, dtype=x.dtype).reshape(3, 1, 1)
    k = torch.remainder(shifted + offsets, 6.0)
    mirror = 4.0 - k
    nearest = torch.minimum(k, mirror)
    step = nearest.clamp(0.0, 1.0)
    if saved is not None:  # the selected quotient, for the backward
        quotient = torch.where(red_max, quotients[0], torch.where(green_first, *quotients[1:]))
        saved += [high, low, chroma, safe, quotient, red_max, green_first, k, mirror, nearest, step]
    return high - chroma * step


def hue_rotate_yiq(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma of an RGB batch in YIQ space by ``hue`` (B,) turns.

    The hue transform of the invariance regulariser's reference colour distortion (Foster
    et al. 2021): linear in the image and smooth in ``hue``, so its Taylor expansion in the
    parameters is accurate. Luma is kept; the result is clamped to [0, 1].
    """
    angle = hue.to(x.dtype) * (2 * math.pi)
    cos, sin = _per_sample(torch.cos(angle), 3), _per_sample(torch.sin(angle), 3)
    rgb = x.unbind(-3)
    # Three weighted sums per output channel: elementwise, so any memory format is kept.
    channels = [
        sum(
            (_YIQ_FIXED[i][j] + _YIQ_COS[i][j] * cos + _YIQ_SIN[i][j] * sin) * rgb[j]
            for j in range(3)
        )
        for i in range(3)
    ]
    return torch.stack(channels, -3).clamp(0.0, 1.0)


def colour_jitter(
    x: torch.Tensor,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    saturation: torch.Tensor,
    hue: torch.Tensor,
    *,
    hue_space: str = "hsv",
    applied: torch.Tensor | None = None,
) -> torch.Tensor:
    """Brightness, contrast, saturation, then hue, each with a per-sample factor (B,).

    The steps of ``kornia.augmentation.ColorJitter`` with ``order=(0, 1, 2, 3)`` (the
    torchvision formulas): multiply by ``brightness``; blend with the image's mean luma by
    ``contrast``; blend with the pixel's luma by ``saturation``; shift the hue by ``hue``
    turns (``hue_space="hsv"``, Kornia/torchvision) or rotate it in YIQ (``"yiq"``, the
    invariance regulariser's reference). Input and every step are clamped to [0, 1].
    ``applied`` (B,) bool: samples where it is false are returned unchanged.

    The HSV chain is one autograd node (:class:`_HSVColourJitter`): the same forward ops, and
    a backward written out with fewer passes over the batch than autograd's op-by-op backward
    (a clamp's backward is four passes there, three here; benchmarks/count_kernels.py counts
    the whole view's). The gradient follows autograd's conventions (a clamp passes its
    bounds, ties of max / min share the gradient); double backprop differentiates the plain
    ops again.
    """
    factors = [f.to(x.dtype) for f in (brightness, contrast, saturation, hue)]
    if hue_space == "hsv":
        return _with_backward(_HSVColourJitter, _hsv_jitter_applied, x, *factors, applied)
    out = _adjust_brightness_contrast_saturation(x, *factors[:3])
    out = hue_rotate_yiq(out, factors[3])
    return out if applied is None else torch.where(_per_sample(applied), out, x)


def _with_backward(function, plain, *inputs):
    """``function.apply(*inputs)`` when an eager gradient is wanted, else ``plain(*inputs)``.

    Without a gradient the plain ops give the same values without holding the tensors the
    backward would need. Under ``torch.compile`` the plain ops too: inductor fuses their
    autograd backward into fewer kernels than a hand-written one (which only saves eager passes).
    """
    wanted = any(isinstance(t, torch.Tensor) and t.requires_grad for t in inputs)
    if wanted and torch.is_grad_enabled() and not torch.compiler.is_compiling():
        return function.apply(*inputs)
    return plain(*inputs)


def _differentiate_again(plain, inputs, needed, grad):
    """Double backprop (``create_graph``) through a node with a hand-written backward: the
    gradients of its plain ops, recomputed with a graph."""
    wanted = [t for t, need in zip(inputs, needed) if need]
    with torch.enable_grad():
        grads = iter(torch.autograd.grad(plain(*inputs), wanted, grad, create_graph=True))
    return tuple(next(grads) if need else None for need in needed)


def _adjust_brightness_contrast_saturation(
    x: torch.Tensor,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    saturation: torch.Tensor,
    saved: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The first three jitter steps. ``saved`` collects what the backward needs: the mean luma
    and each step before its clamp (left out otherwise: holding them slowed inference at
    256x3x32x32 by 10-25%, benchmarks/results/image_views.md)."""
    brightness, contrast, saturation = (_per_sample(f) for f in (brightness, contrast, saturation))
    scaled = x.clamp(0.0, 1.0) * brightness
    out = scaled.clamp(0.0, 1.0)
    # lerp(a, b, w) = a + w (b - a) = w b + (1 - w) a: the blend in one op, extrapolating for w > 1.
    mean = luma(out).mean((-2, -1), keepdim=True)
    contrasted = torch.lerp(mean, out, contrast)
    out = contrasted.clamp(0.0, 1.0)
    saturated = torch.lerp(luma(out), out, saturation)
    if saved is not None:
        saved += [mean, scaled, contrasted, saturated]
    return saturated.clamp(0.0, 1.0)


def _hsv_jitter_applied(x, brightness, contrast, saturation, hue, applied, saved=None):
    out = _adjust_brightness_contrast_saturation(x, brightness, contrast, saturation, saved)
    if saved is not None:
        saved.append(out)
    shifted = _hue_shift_hsv(out, hue, saved)
    if saved is not None:
        saved.append(shifted)
    out = shifted.clamp(0.0, 1.0)
    return out if applied is None else torch.where(_per_sample(applied), out, x)


def _inside_unit(v: torch.Tensor, clamped: torch.Tensor) -> torch.Tensor:
    """1 where ``clamped = clamp(v, 0, 1)`` passes the gradient, else 0.

    ``clamp(v) == v`` exactly on [0, 1], bounds included as autograd's clamp (and false for
    NaN): one comparison instead of autograd's two and their ``and``.
    """
    return _indicator(clamped, v)


def _indicator(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1.0 where ``a == b``, else 0.0, in ``a``'s dtype: the comparison writes the floats
    directly (a bool mask, its cast and the product with it took 1.8x as long as this and the
    product, 256x3x32x32 float32, one thread)."""
    out = torch.empty(torch.broadcast_shapes(a.shape, b.shape), dtype=a.dtype, device=a.device)
    return torch.eq(a, b, out=out)


def _spread_over_channels(grad: torch.Tensor, weights: tuple[float, float, float]) -> torch.Tensor:
    """The gradient of ``sum_c weights[c] * x_c`` for an upstream ``grad`` (B, 1, H, W)."""
    return torch.cat([w * grad for w in weights], -3)


class _HSVColourJitter(torch.autograd.Function):
    """:func:`colour_jitter` with the HSV hue: forward as the plain ops, backward by hand."""

    @staticmethod
    def forward(ctx, x, brightness, contrast, saturation, hue, applied):
        saved = [x, brightness, contrast, saturation, hue, applied]
        out = _hsv_jitter_applied(*saved, saved=saved)
        ctx.save_for_backward(*saved)
        return out

    @staticmethod
    def backward(ctx, grad):
        saved = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _differentiate_again(_hsv_jitter_applied, saved[:6], ctx.needs_input_grad, grad)
        applied = saved[5]
        if applied is None:
            return (*_hsv_jitter_backward(grad, *saved[:5], *saved[6:]), None)
        # The select: the jitter's gradient where applied, the input's own elsewhere.
        kept = _per_sample(applied).to(grad.dtype)
        grads = _hsv_jitter_backward(grad * kept, *saved[:5], *saved[6:])
        return grads[0] + grad * (1.0 - kept), *grads[1:], None


def _hsv_jitter_backward(
    grad, x, brightness, contrast, saturation, hue, mean, scaled, contrasted, saturated, rgb,
    high, low, chroma, safe, quotient, red_max, green_first, k, mirror, nearest, step, shifted,
):  # fmt: skip
    """Gradients of :func:`_hsv_jitter_applied` (applied everywhere) for ``grad`` on its output,
    step by step backwards, from the intermediates its forward saved."""
    per_image = (-3, -2, -1)
    # Hue: out_n = high - chroma * step_n, step_n = clamp(min(k_n, 4 - k_n), 0, 1).
    grad = grad * _inside_unit(shifted, shifted.clamp(0.0, 1.0))
    grad_high = grad.sum(-3, keepdim=True)
    grad_chroma = -(grad * step).sum(-3, keepdim=True)
    # minimum() sends the gradient to the smaller side, half to each on a tie: sign() is 0 there.
    grad_k = -grad * chroma * _inside_unit(nearest, step) * torch.sign(mirror - k)
    grad_sextant = grad_k.sum(-3, keepdim=True)
    grad_hue = 6.0 * grad_sextant.sum(per_image)
    grad_numerator = grad_sextant / safe
    grad_chroma = grad_chroma - grad_numerator * quotient * (chroma != 0)
    grad_high, grad_low = grad_high + grad_chroma, -grad_chroma
    is_high, is_low = _indicator(rgb, high), _indicator(rgb, low)
    green_max = ~red_max & green_first
    blue_max = (~(red_max | green_max)).to(x.dtype)
    red_max, green_max = red_max.to(x.dtype), green_max.to(x.dtype)
    grad_rgb = (
        is_high * (grad_high / is_high.sum(-3, keepdim=True))
        + is_low * (grad_low / is_low.sum(-3, keepdim=True))
        + torch.cat((blue_max - green_max, red_max - blue_max, green_max - red_max), -3)
        * grad_numerator
    )
    # Saturation: lerp(luma, out, s) before its clamp.
    brightness_, contrast_, saturation_ = (
        _per_sample(f) for f in (brightness, contrast, saturation)
    )
    out = contrasted.clamp(0.0, 1.0)
    grad = grad_rgb * _inside_unit(saturated, rgb)
    grad_saturation = (grad * (out - luma(out))).sum(per_image)
    grad_luma = ((1.0 - saturation_) * grad).sum(-3, keepdim=True)
    grad = grad * saturation_ + _spread_over_channels(grad_luma, _LUMA)
    # Contrast: lerp(mean luma, out, c) before its clamp.
    grad = grad * _inside_unit(contrasted, out)
    out = scaled.clamp(0.0, 1.0)
    grad_contrast = (grad * (out - mean)).sum(per_image)
    grad_mean = ((1.0 - contrast_) * grad).sum(per_image, keepdim=True)
    height, width = x.shape[-2:]
    grad = grad * contrast_ + _spread_over_channels(grad_mean / (height * width), _LUMA)
    # Brightness, then the input clamp.
    grad = grad * _inside_unit(scaled, out)
    clamped = x.clamp(0.0, 1.0)
    grad_brightness = (grad * clamped).sum(per_image)
    grad_x = grad * brightness_ * _inside_unit(x, clamped)
    return grad_x, grad_brightness, grad_contrast, grad_saturation, grad_hue


def gaussian_kernel1d(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised Gaussian weights (B, size) centred on the middle tap (``kornia.filters.gaussian``)."""
    offsets = torch.arange(size, device=sigma.device, dtype=sigma.dtype) - size // 2
    weights = torch.exp(-(offsets**2) / (2 * sigma.unsqueeze(-1) ** 2))
    weights = weights / weights.sum(-1, keepdim=True)
    # A tap below tiny / eps times any pixel above eps is a denormal number: it cannot change a
    # sum that holds one normal-sized term, but every product with it takes a slow microcode
    # path on x86 (measured: the 23-tap blur of 32x3x224x224 ran 1.9x slower with such taps).
    info = torch.finfo(weights.dtype)
    return torch.where(weights < info.tiny / info.eps, 0.0, weights)


def gaussian_blur(
    x: torch.Tensor,
    sigma: torch.Tensor,
    kernel_size: tuple[int, int],
    applied: torch.Tensor | None = None,
) -> torch.Tensor:
    """Blur every sample with its own isotropic Gaussian ``sigma`` (B,), reflect borders.

    Matches ``kornia.filters.gaussian_blur2d(x, kernel_size, sigma[:, None].expand(-1, 2))``
    (separable, ``border_type="reflect"``). The whole batch is one pair of grouped 1-D
    convolutions: samples are folded into the channel axis, one group (and one kernel) per
    sample and channel. ``applied`` (B,) bool: samples where it is false get the one-tap
    identity kernel, so they come out unchanged (``1 * v`` plus exact zeros) with no separate
    select pass over the batch. (A sum of K shifted slices per pass keeps channels_last
    without a copy and fuses under ``torch.compile``, but costs 2K passes over the batch in
    eager mode: 46 at 224 px.)
    """
    batch, channels = x.shape[:2]
    k_h, k_w = kernel_size
    sigma = sigma.to(x.dtype)
    groups = batch * channels

    def taps(size: int) -> torch.Tensor:
        kernel = gaussian_kernel1d(sigma, size)
        if applied is not None:
            offsets = torch.arange(size, device=x.device) - size // 2
            identity = (offsets == 0).to(kernel.dtype)
            kernel = torch.where(applied.unsqueeze(-1), kernel, identity)
        return kernel.repeat_interleave(channels, 0)

    column = taps(k_h)
    row = column if k_w == k_h else taps(k_w)
    column, row = column.reshape(groups, 1, k_h, 1), row.reshape(groups, 1, 1, k_w)
    # Planar before padding: reflect-padding a channels_last batch and then folding it into
    # groups costs two copies; a planar batch folds as a view (the fused views are planar here).
    x = x.contiguous()
    if column.requires_grad or row.requires_grad:  # d/d sigma: autograd's convolution backward
        return _blur_planar(x, column, row)
    return _with_backward(_FixedKernelBlur, _blur_planar, x, column, row)


def _blur_planar(x: torch.Tensor, column: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """Reflect-pad the planar batch ``x``, then the column and the row convolution, per group."""
    batch, channels, height, width = x.shape
    pad_h, pad_w = column.shape[-2] // 2, row.shape[-1] // 2
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    folded = padded.reshape(1, batch * channels, height + 2 * pad_h, width + 2 * pad_w)
    out = F.conv2d(F.conv2d(folded, column, groups=column.shape[0]), row, groups=row.shape[0])
    return out.reshape(batch, channels, height, width)


def _unreflect(grad: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """The gradient of a reflect padding by ``pad`` along ``dim`` (the transpose of the padding)."""
    length = grad.shape[dim] - 2 * pad
    out = grad.narrow(dim, pad, length).clone()
    if pad:
        # Padded index pad - i mirrors input index i, and pad + length - 1 + i mirrors length - 1 - i.
        out.narrow(dim, 1, pad).add_(grad.narrow(dim, 0, pad).flip(dim))
        out.narrow(dim, length - 1 - pad, pad).add_(grad.narrow(dim, pad + length, pad).flip(dim))
    return out


class _FixedKernelBlur(torch.autograd.Function):
    """:func:`_blur_planar` for kernels that need no gradient, with a backward written out.

    The gradient of a convolution with a fixed kernel is the full correlation with the mirrored
    kernel: two more grouped convolutions, then the padding's transpose. On one CPU thread this
    was 1.6 ms per convolution against 11 ms for the generic depthwise ``convolution_backward``
    and 7.6 ms for ``reflection_pad2d_backward`` (256x3x32x32, 3 taps).
    """

    @staticmethod
    def forward(ctx, x, column, row):
        ctx.save_for_backward(column, row)
        return _blur_planar(x, column, row)

    @staticmethod
    def backward(ctx, grad):
        column, row = ctx.saved_tensors
        batch, channels, height, width = grad.shape
        pad_h, pad_w = column.shape[-2] // 2, row.shape[-1] // 2
        groups = column.shape[0]
        # A valid correlation's transpose: zero-pad by (taps - 1) on each side, mirrored kernel.
        grad = F.pad(grad.reshape(1, groups, height, width), (2 * pad_w, 2 * pad_w, 0, 0))
        grad = F.conv2d(grad, row.flip(-1), groups=groups)
        grad = F.pad(grad, (0, 0, 2 * pad_h, 2 * pad_h))
        grad = F.conv2d(grad, column.flip(-2), groups=groups)
        grad = _unreflect(_unreflect(grad, pad_h, -2), pad_w, -1)
        return grad.reshape(batch, channels, height, width), None, None


def solarize(x: torch.Tensor, applied: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert pixels at or above ``threshold`` where ``applied`` (B,) is true (``kornia.enhance.solarize``)."""
    return torch.where(_per_sample(applied) & (x >= threshold), 1.0 - x, x)


def _bilinear_zeros(
    x: torch.Tensor, source_x: torch.Tensor, source_y: torch.Tensor
) -> torch.Tensor:
    """Bilinear samples of ``x`` at (B, H', W') source pixel coordinates, zero outside the image.

    ``grid_sample(align_corners=False, padding_mode="zeros")`` in pixel units, written as four
    gathers and a weighted sum so that it is differentiable twice (``grid_sample`` has no
    second derivative, which double backprop through the warp's parameters needs).
    """
    batch, channels, height, width = x.shape
    left, top = source_x.detach().floor(), source_y.detach().floor()
    right_weight, bottom_weight = source_x - left, source_y - top
    flat = x.reshape(batch, channels, height * width)
    out = None
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        column, row = left + dx, top + dy
        weight = (right_weight if dx else 1 - right_weight) * (
            bottom_weight if dy else 1 - bottom_weight
        )
        inside = (column >= 0) & (column <= width - 1) & (row >= 0) & (row <= height - 1)
        index = (row.clamp(0, height - 1) * width + column.clamp(0, width - 1)).long()
        taps = flat.gather(-1, index.reshape(batch, 1, -1).expand(batch, channels, -1))
        term = taps.reshape(batch, channels, *source_x.shape[1:]) * (weight * inside).unsqueeze(1)
        out = term if out is None else out + term
    return out


def affine(
    x: torch.Tensor, angle: torch.Tensor, translate: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Rotate by ``angle`` (B,) degrees and scale by ``scale`` (B,) about the image centre, then
    shift by ``translate`` (B, 2) pixels (x, y); bilinear, zeros outside the image.

    The geometry of ``kornia.augmentation.RandomAffine`` (no shear, ``align_corners=False``):
    the pixel-space matrix ``p_out = A (p_in - c) + c + t`` with ``A = s R(angle)``,
    ``c = ((W - 1) / 2, (H - 1) / 2)`` on pixel centres, sampled as
    ``kornia.geometry.warp_affine`` does. The inverse map is written in closed form per output
    row and column, so there is no matrix inverse and no per-sample loop.
    """
    height, width = x.shape[-2:]
    dtype = x.dtype
    radians = angle.to(dtype) * (math.pi / 180)
    scale = scale.to(dtype)
    cos, sin = (
        (torch.cos(radians) / scale).reshape(-1, 1, 1),
        (torch.sin(radians) / scale).reshape(-1, 1, 1),
    )
    translate = translate.to(dtype)
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    columns = torch.arange(width, device=x.device, dtype=dtype)
    rows = torch.arange(height, device=x.device, dtype=dtype)
    dx = (columns - centre_x - translate[:, :1]).unsqueeze(1)  # (B, 1, W)
    dy = (rows - centre_y - translate[:, 1:]).unsqueeze(2)  # (B, H, 1)
    # p_in = A^-1 (p_out - c - t) + c with A^-1 = R(-angle) / s.
    source_x = cos * dx + sin * dy + centre_x
    source_y = cos * dy - sin * dx + centre_y
    return _bilinear_zeros(x, source_x, source_y)


def erase(
    x: torch.Tensor, box: torch.Tensor, applied: torch.Tensor, value: float = 0.0
) -> torch.Tensor:
    """Fill ``box`` (B, 4) ``(x0, y0, width, height)`` (whole pixels) with ``value`` where ``applied``.

    ``kornia.augmentation.RandomErasing``'s rendering: columns ``x0 <= j < x0 + width`` and rows
    ``y0 <= i < y0 + height``, on every channel; a comparison mask, so no host sync.
    """
    height, width = x.shape[-2:]
    x0, y0, box_w, box_h = (_per_sample(v, 3) for v in box.to(x.dtype).unbind(-1))
    columns = torch.arange(width, device=x.device, dtype=x.dtype)
    rows = torch.arange(height, device=x.device, dtype=x.dtype).unsqueeze(-1)
    inside = (columns >= x0) & (columns < x0 + box_w) & (rows >= y0) & (rows < y0 + box_h)
    return torch.where((inside & _per_sample(applied, 3)).unsqueeze(1), value, x)


def posterize(x: torch.Tensor, bits: torch.Tensor, applied: torch.Tensor) -> torch.Tensor:
    """Keep the top ``bits`` (B,) of the 8-bit value where ``applied`` (``kornia.enhance.posterize``).

    The value is truncated to 8 bits (``(x * 255)`` to uint8), its low ``8 - bits`` bits cleared
    and divided by 255; ``bits = 8`` leaves the input unchanged and ``bits = 0`` gives 0.
    """
    shift = _per_sample((8 - bits).to(torch.int32))
    # Truncated to 8 bits as uint8 does, shifted in int32 so that a shift by 8 is defined (0).
    levels = (x * 255).to(torch.uint8).to(torch.int32)
    kept = (
        torch.bitwise_left_shift(torch.bitwise_right_shift(levels, shift), shift).to(x.dtype) / 255
    )
    kept = torch.where(_per_sample(bits) == 8, x, kept)
    return torch.where(_per_sample(applied), kept, x)
