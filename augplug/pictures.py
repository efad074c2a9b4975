"""Pictures of views: a PNG grid of (input, views..., |delta| heat-maps), written with no image library.

``save_view_grid`` lays samples out as rows and ``[input, view 1, ..., |delta| 1, ...]`` as
columns; ``save_png`` writes any uint8 (H, W, C) image. PNG encoding is plain ``zlib`` +
``struct``, so the core needs no pillow / matplotlib.

Layout (all sizes in output pixels): every cell is the tensor upscaled ``scale`` times by
pixel repetition, cells are separated (and surrounded) by ``scale`` pixels of white, a row
is as tall as the tallest column's image and a column as wide as its image; smaller
images sit in the top-left corner of their cell on white.

Colour mapping per row (sample), so an input and its views share one scale:

* 3 channels are RGB, 1 channel is gray, any other count shows its first channel as gray;
* when every value of the input and the views lies in [0, 1] (images) they are shown as
  they are; otherwise (spectrograms, normalised inputs) the row's min..max maps to black..white;
* ``|delta|`` is averaged over channels and shown with a black-red-yellow-white heat-map
  whose top is the row's largest ``|delta|`` over all delta columns.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch

from augplug.checks import check_tensor

__all__ = ["save_png", "save_view_grid", "view_grid"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {
    1: 0,
    2: 4,
    3: 2,
    4: 6,
}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)
_WHITE = 255


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def save_png(path: str | Path, image_uint8_hwc) -> None:
    """Write a uint8 image of shape (H, W, C), C in 1..4 (gray, gray+alpha, RGB, RGBA), as a PNG.

    ``image_uint8_hwc`` is a ``torch.Tensor`` or anything ``torch.as_tensor`` accepts
    (a NumPy array); a 2-D array is taken as gray. 8 bits per channel, no interlacing,
    filter type 0 on every scan line.
    """
    image = torch.as_tensor(image_uint8_hwc)
    if image.ndim == 2:
        image = image.unsqueeze(-1)
    if image.dtype != torch.uint8:
        raise TypeError(f"image_uint8_hwc: expected dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[-1] not in _COLOUR_TYPES or min(image.shape[:2]) < 1:
        raise ValueError(
            f"image_uint8_hwc: expected shape (H, W, C) with H, W >= 1 and C in 1..4, got {tuple(image.shape)}"
        )
    height, width, channels = image.shape
    rows = image.detach().cpu().reshape(height, width * channels)
    # Each scan line starts with its filter-type byte (0 = none).
    lines = torch.cat((torch.zeros(height, 1, dtype=torch.uint8), rows), dim=1)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    data = zlib.compress(bytes(lines.flatten().tolist()), level=6)
    with open(path, "wb") as f:
        f.write(
            _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
        )


def _heat(value: torch.Tensor) -> torch.Tensor:
    """Map [0, 1] to a black-red-yellow-white ramp, (..., H, W) -> (..., 3, H, W)."""
    value = value.clamp(0.0, 1.0) * 3.0
    red = value.clamp(0.0, 1.0)
    green = (value - 1.0).clamp(0.0, 1.0)
    blue = (value - 2.0).clamp(0.0, 1.0)
    return torch.stack((red, green, blue), dim=-3)


def _as_rgb(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 3, H, W): RGB as is, otherwise the first channel as gray."""
    if x.shape[1] == 3:
        return x
    return x[:, :1].expand(-1, 3, -1, -1)


def _check_columns(
    x: torch.Tensor, tensors: Sequence[torch.Tensor], name: str
) -> list[torch.Tensor]:
    if isinstance(tensors, torch.Tensor):
        tensors = [tensors]
    if not isinstance(tensors, Sequence):
        raise TypeError(
            f"{name}: expected a list of (N, C, H, W) tensors, got {type(tensors).__name__}"
        )
    checked = []
    for i, t in enumerate(tensors):
        t = check_tensor(t, f"{name}[{i}]", ndim=4, layout="(N, C, H, W)")
        if t.shape[:2] != x.shape[:2]:
            raise ValueError(
                f"{name}[{i}]: expected the same N and C as x {tuple(x.shape[:2])}, got shape {tuple(t.shape)}"
            )
        checked.append(t)
    return checked


def view_grid(
    x: torch.Tensor,
    views: Sequence[torch.Tensor],
    *,
    delta: torch.Tensor | Sequence[torch.Tensor] | None = None,
    max_rows: int = 8,
    scale: int = 2,
) -> torch.Tensor:
    """The uint8 (H, W, 3) picture that :func:`save_view_grid` writes (see the module docstring)."""
    x = check_tensor(x, "x", ndim=4, layout="(N, C, H, W)")
    views = _check_columns(x, views, "views")
    deltas = [] if delta is None else _check_columns(x, delta, "delta")
    for name, value in (("max_rows", max_rows), ("scale", scale)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    rows = min(x.shape[0], max_rows)
    with torch.no_grad():
        images = [t[:rows].detach().float().cpu() for t in (x, *views)]
        in_unit_range = all(bool(((t >= 0) & (t <= 1)).all()) for t in images)
        if not in_unit_range:
            low = torch.stack([t.amin(dim=(1, 2, 3)) for t in images]).amin(0).view(-1, 1, 1, 1)
            high = torch.stack([t.amax(dim=(1, 2, 3)) for t in images]).amax(0).view(-1, 1, 1, 1)
            images = [(t - low) / (high - low).clamp_min(1e-12) for t in images]
        cells = [_as_rgb(t) for t in images]
        if deltas:
            magnitudes = [d[:rows].detach().float().cpu().abs().mean(dim=1) for d in deltas]
            top = torch.stack([m.amax(dim=(1, 2)) for m in magnitudes]).amax(0).view(-1, 1, 1)
            cells += [_heat(m / top.clamp_min(1e-12)) for m in magnitudes]
        cells = [(c * 255.0).round().clamp(0, 255).to(torch.uint8) for c in cells]

        gap = scale
        cell_height = max(c.shape[-2] for c in cells) * scale
        widths = [c.shape[-1] * scale for c in cells]
        height = rows * cell_height + (rows + 1) * gap
        width = sum(widths) + (len(cells) + 1) * gap
        canvas = torch.full((height, width, 3), _WHITE, dtype=torch.uint8)
        left = gap
        for cell, cell_width in zip(cells, widths):
            big = cell.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
            big = big.permute(0, 2, 3, 1)  # (rows, h, w, 3)
            for r in range(rows):  # a handful of rows of a picture, not a forward path
                top_px = gap + r * (cell_height + gap)
                canvas[top_px : top_px + big.shape[1], left : left + cell_width] = big[r]
            left += cell_width + gap
    return canvas


def save_view_grid(
    path: str | Path,
    x: torch.Tensor,
    views: Sequence[torch.Tensor],
    *,
    delta: torch.Tensor | Sequence[torch.Tensor] | None = None,
    max_rows: int = 8,
    scale: int = 2,
) -> None:
    """Write a PNG with one row per sample: the input, each view, then ``|delta|`` heat-maps.

    ``x`` is (N, C, H, W); ``views`` a list of (N, C, H', W') tensors (sizes may differ,
    e.g. after a crop); ``delta`` an optional (N, C, H, W) tensor or list of them, e.g.
    a viewmaker's ``perturbation``. Shows the first ``max_rows`` samples, each pixel
    repeated ``scale`` times. See the module docstring for layout and colours.
    """
    save_png(path, view_grid(x, views, delta=delta, max_rows=max_rows, scale=scale))
