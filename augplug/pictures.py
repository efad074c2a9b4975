"""Pictures a person can read without the docs, written with no image library.

* :func:`save_view_grid`: one row per sample, columns ``[input, view 1, ..., |delta| 1, ...]``;
  with ``labels=True`` a header over each column, a colour scale under the ``|delta|``
  heat-maps and an optional ``title``.
* :func:`save_bar_chart`: one panel per task, one bar per strategy, values written on the
  bars (percentages for accuracies), a dashed chance line on every panel that has one, a legend.
* :func:`save_png`: any uint8 (H, W, C) image.

PNG encoding is plain ``zlib`` + ``struct`` and text is drawn with a built-in 5 x 7 bitmap
font (capitals, digits and common punctuation; lower case is drawn as capitals), so the
core needs no pillow / matplotlib.

Grid layout (all sizes in output pixels): every cell is the tensor upscaled ``scale`` times
by pixel repetition (``scale=None`` picks the smallest that makes a cell at least 128 px
on its longer side), cells are separated (and surrounded) by ``scale`` pixels of white,
a row is as tall as the tallest column's image and a column as wide as its image;
smaller images sit in the top-left corner of their cell on white. Labels add bands above
(title, headers) and below (colour scale) that body; without them the picture is the body.

Colour mapping:

* 3 channels are RGB, 1 channel is gray, any other count shows its first channel as gray;
* when every value of the input and the views lies in [0, 1] (images) they are shown as
  they are; otherwise (spectrograms, normalised inputs) each row's min..max over the input
  and its views maps to black..white;
* ``|delta|`` is averaged over channels and shown with a black-red-yellow-white heat-map
  whose top is the largest ``|delta|`` in the grid (one scale for every row and column,
  so cells compare; the colour scale states it).
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from augplug.checks import check_tensor

__all__ = [
    "ChartPanel",
    "bar_chart",
    "grid_headers",
    "heat_map",
    "save_bar_chart",
    "save_png",
    "save_view_grid",
    "text_width",
    "view_grid",
    "waveform_cells",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {
    1: 0,
    2: 4,
    3: 2,
    4: 6,
}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)
_WHITE = 255
_BLACK = (0, 0, 0)
_GREY = (110, 110, 110)

# The built-in font: each line is a character and its 7 rows of 5 pixels ("#" is ink).
# Drawn for this module; one pixel of space follows every glyph.
_GLYPH_TABLE = """
A .###. #...# #...# ##### #...# #...# #...#
B ####. #...# #...# ####. #...# #...# ####.
C .###. #...# #.... #.... #.... #...# .###.
D ####. #...# #...# #...# #...# #...# ####.
E ##### #.... #.... ####. #.... #.... #####
F ##### #.... #.... ####. #.... #.... #....
G .###. #...# #.... #.### #...# #...# .####
H #...# #...# #...# ##### #...# #...# #...#
I .###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.
J ..### ...#. ...#. ...#. ...#. #..#. .##..
K #...# #..#. #.#.. ##... #.#.. #..#. #...#
L #.... #.... #.... #.... #.... #.... #####
M #...# ##.## #.#.# #.#.# #...# #...# #...#
N #...# #...# ##..# #.#.# #..## #...# #...#
O .###. #...# #...# #...# #...# #...# .###.
P ####. #...# #...# ####. #.... #.... #....
Q .###. #...# #...# #...# #.#.# #..#. .##.#
R ####. #...# #...# ####. #.#.. #..#. #...#
S .#### #.... #.... .###. ....# ....# ####.
T ##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
U #...# #...# #...# #...# #...# #...# .###.
V #...# #...# #...# #...# #...# .#.#. ..#..
W #...# #...# #...# #.#.# #.#.# #.#.# .#.#.
X #...# #...# .#.#. ..#.. .#.#. #...# #...#
Y #...# #...# .#.#. ..#.. ..#.. ..#.. ..#..
Z ##### ....# ...#. ..#.. .#... #.... #####
0 .###. #...# #..## #.#.# ##..# #...# .###.
1 ..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.
2 .###. #...# ....# ...#. ..#.. .#... #####
3 ##### ...#. ..#.. ...#. ....# #...# .###.
4 ...#. ..##. .#.#. #..#. ##### ...#. ...#.
5 ##### #.... ####. ....# ....# #...# .###.
6 ..##. .#... #.... ####. #...# #...# .###.
7 ##### ....# ...#. ..#.. .#... .#... .#...
8 .###. #...# #...# .###. #...# #...# .###.
9 .###. #...# #...# .#### ....# ...#. .##..
. ..... ..... ..... ..... ..... .##.. .##..
, ..... ..... ..... ..... .##.. ..#.. .#...
: ..... .##.. .##.. ..... .##.. .##.. .....
; ..... .##.. .##.. ..... .##.. ..#.. .#...
" .#.#. .#.#. ..... ..... ..... ..... .....
- ..... ..... ..... ##### ..... ..... .....
_ ..... ..... ..... ..... ..... ..... #####
| ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
% ##... ##..# ...#. ..#.. .#... #..## ...##
( ...#. ..#.. .#... .#... .#... ..#.. ...#.
) .#... ..#.. ...#. ...#. ...#. ..#.. .#...
[ .###. .#... .#... .#... .#... .#... .###.
] .###. ...#. ...#. ...#. ...#. ...#. .###.
/ ..... ....# ...#. ..#.. .#... #.... .....
+ ..... ..#.. ..#.. ##### ..#.. ..#.. .....
= ..... ..... ##### ..... ##### ..... .....
^ ..#.. .#.#. #...# ..... ..... ..... .....
? .###. #...# ....# ...#. ..#.. ..... ..#..
! ..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..
' ..#.. ..#.. .#... ..... ..... ..... .....
< ...#. ..#.. .#... #.... .#... ..#.. ...#.
> .#... ..#.. ...#. ....# ...#. ..#.. .#...
* ..... #.#.# .###. ##### .###. #.#.# .....
# .#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.
"""
_GLYPH_HEIGHT, _GLYPH_WIDTH = 7, 5


@functools.cache
def _glyphs() -> dict[str, torch.Tensor]:
    table = {" ": torch.zeros(_GLYPH_HEIGHT, _GLYPH_WIDTH, dtype=torch.bool)}
    for line in _GLYPH_TABLE.strip().splitlines():
        char, *rows = line.split(" ")
        table[char] = torch.tensor([[c == "#" for c in row] for row in rows], dtype=torch.bool)
    return table


def text_width(text: str, size: int = 1) -> int:
    """Width in pixels of ``text`` drawn by the built-in font at ``size`` (7 * size px tall)."""
    return max(0, (_GLYPH_WIDTH + 1) * len(text) - 1) * size


def _text_mask(text: str, size: int) -> torch.Tensor:
    """(7 * size, text_width) bool ink of ``text``; unknown characters are drawn as ``?``."""
    glyphs = _glyphs()
    columns = []
    for i, char in enumerate(text.upper()):
        if i:
            columns.append(torch.zeros(_GLYPH_HEIGHT, 1, dtype=torch.bool))
        columns.append(glyphs.get(char, glyphs["?"]))
    if not columns:
        return torch.zeros(_GLYPH_HEIGHT * size, 0, dtype=torch.bool)
    mask = torch.cat(columns, dim=1)
    return mask.repeat_interleave(size, dim=0).repeat_interleave(size, dim=1)


def _fill(canvas: torch.Tensor, top: int, left: int, bottom: int, right: int, colour) -> None:
    """Paint the rectangle [top, bottom) x [left, right), clipped to the canvas."""
    top, left = max(0, top), max(0, left)
    bottom, right = min(canvas.shape[0], bottom), min(canvas.shape[1], right)
    if bottom > top and right > left:
        canvas[top:bottom, left:right] = torch.tensor(colour, dtype=torch.uint8)


def _draw_text(
    canvas: torch.Tensor, text: str, top: int, left: int, size: int = 2, colour=_BLACK
) -> None:
    """Draw ``text`` with its top-left corner at (top, left), clipped to the canvas."""
    mask = _text_mask(text, size)
    height = min(mask.shape[0], canvas.shape[0] - top)
    width = min(mask.shape[1], canvas.shape[1] - left)
    if height <= 0 or width <= 0 or top < 0 or left < 0:
        return
    region = canvas[top : top + height, left : left + width]
    region[mask[:height, :width]] = torch.tensor(colour, dtype=torch.uint8)


def _fitting_size(text: str, width: int, largest: int = 2) -> int:
    """The largest font size up to ``largest`` at which ``text`` fits in ``width`` (at least 1)."""
    for size in range(largest, 1, -1):
        if text_width(text, size) <= width:
            return size
    return 1


def _shorten(text: str, width: int, size: int) -> str:
    """``text`` cut (with a trailing ``.``) to fit ``width`` pixels at ``size``."""
    if text_width(text, size) <= width:
        return text
    keep = max(1, (width // size + 1) // (_GLYPH_WIDTH + 1) - 1)
    return text[:keep] + "."


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def _as_bytes(image: torch.Tensor) -> bytes:
    try:  # NumPy (installed with torch almost everywhere) is ~30x faster than a list
        return image.contiguous().numpy().tobytes()
    except (ImportError, RuntimeError):
        return bytes(image.flatten().tolist())


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
    data = zlib.compress(_as_bytes(lines), level=6)
    with open(path, "wb") as f:
        f.write(
            _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
        )


def heat_map(value: torch.Tensor) -> torch.Tensor:
    """Map [0, 1] to a black-red-yellow-white ramp (values outside are clamped),
    (..., H, W) -> (..., 3, H, W) in [0, 1]: the colours of ``|delta|`` and spectrograms."""
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


def grid_headers(views: int, deltas: int) -> list[str]:
    """The column headers of a labelled grid: ``input, view 1, ..., |delta| 1, ...``."""
    return [
        "input",
        *(f"view {i + 1}" for i in range(views)),
        *(f"|delta| {i + 1}" for i in range(deltas)),
    ]


def _auto_scale(x: torch.Tensor) -> int:
    # 128 px cells: a 32-px image becomes 4x, large enough for a 9-character header.
    return max(1, math.ceil(128 / max(x.shape[-2:])))


def _grid_body(
    x: torch.Tensor,
    views: list[torch.Tensor],
    deltas: list[torch.Tensor],
    rows: int,
    scale: int,
) -> tuple[torch.Tensor, list[int], float]:
    """The cells on white: (picture, left edge of each column, the grid's top |delta|)."""
    images = [t[:rows].detach().float().cpu() for t in (x, *views)]
    in_unit_range = all(bool(((t >= 0) & (t <= 1)).all()) for t in images)
    if not in_unit_range:
        low = torch.stack([t.amin(dim=(1, 2, 3)) for t in images]).amin(0).view(-1, 1, 1, 1)
        high = torch.stack([t.amax(dim=(1, 2, 3)) for t in images]).amax(0).view(-1, 1, 1, 1)
        images = [(t - low) / (high - low).clamp_min(1e-12) for t in images]
    cells = [_as_rgb(t) for t in images]
    top = 0.0
    if deltas:
        magnitudes = [d[:rows].detach().float().cpu().abs().mean(dim=1) for d in deltas]
        top = max(float(m.max()) for m in magnitudes)
        cells += [heat_map(m / max(top, 1e-12)) for m in magnitudes]
    cells = [(c * 255.0).round().clamp(0, 255).to(torch.uint8) for c in cells]

    gap = scale
    cell_height = max(c.shape[-2] for c in cells) * scale
    widths = [c.shape[-1] * scale for c in cells]
    height = rows * cell_height + (rows + 1) * gap
    width = sum(widths) + (len(cells) + 1) * gap
    canvas = torch.full((height, width, 3), _WHITE, dtype=torch.uint8)
    lefts = []
    left = gap
    for cell, cell_width in zip(cells, widths):
        big = cell.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
        big = big.permute(0, 2, 3, 1)  # (rows, h, w, 3)
        for r in range(rows):  # a handful of rows of a picture, not a forward path
            top_px = gap + r * (cell_height + gap)
            canvas[top_px : top_px + big.shape[1], left : left + cell_width] = big[r]
        lefts.append(left)
        left += cell_width + gap
    return canvas, lefts, top


def _colour_scale(width: int, top: float) -> torch.Tensor:
    """A band: ``|delta|`` label, ``0``, the heat ramp, the grid's top value."""
    size, pad = 2, 8
    low_text, high_text, label = "0", f"{top:.3g}", "|delta|"
    text_height = _GLYPH_HEIGHT * size
    band = torch.full((text_height + 2 * pad, width, 3), _WHITE, dtype=torch.uint8)
    left = pad
    _draw_text(band, label, pad, left, size)
    left += text_width(label, size) + 3 * pad
    _draw_text(band, low_text, pad, left, size)
    left += text_width(low_text, size) + pad
    ramp_width = max(16, min(256, width - left - text_width(high_text, size) - 2 * pad))
    ramp = heat_map(torch.linspace(0, 1, ramp_width).view(1, -1))  # (3, 1, w)
    ramp = (ramp * 255).round().to(torch.uint8).permute(1, 2, 0).expand(text_height, -1, -1)
    stop = min(width, left + ramp_width)
    band[pad : pad + text_height, left:stop] = ramp[:, : stop - left]
    _draw_text(band, high_text, pad, left + ramp_width + pad, size)
    return band


def view_grid(
    x: torch.Tensor,
    views: Sequence[torch.Tensor],
    *,
    delta: torch.Tensor | Sequence[torch.Tensor] | None = None,
    max_rows: int = 8,
    scale: int | None = 2,
    labels: bool = False,
    title: str | None = None,
    headers: Sequence[str] | None = None,
) -> torch.Tensor:
    """The uint8 (H, W, 3) picture that :func:`save_view_grid` writes (see the module docstring)."""
    x = check_tensor(x, "x", ndim=4, layout="(N, C, H, W)")
    views = _check_columns(x, views, "views")
    deltas = [] if delta is None else _check_columns(x, delta, "delta")
    if scale is None:
        scale = _auto_scale(x)
    for name, value in (("max_rows", max_rows), ("scale", scale)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title: expected a str or None, got {type(title).__name__}")
    if headers is not None:
        headers = [str(h) for h in headers]
        if len(headers) != 1 + len(views) + len(deltas):
            raise ValueError(
                f"headers: expected {1 + len(views) + len(deltas)} (input, views, deltas), "
                f"got {len(headers)}"
            )
    rows = min(x.shape[0], max_rows)
    with torch.no_grad():
        body, lefts, top = _grid_body(x, views, deltas, rows, scale)
    if not labels and title is None and headers is None:
        return body
    pad = 6
    # A title wider than the grid widens the picture (white on the right), up to 1200 px.
    wanted = 0 if title is None else min(1200, text_width(title, 2) + 2 * pad)
    width = max(body.shape[1], wanted)
    body_width = body.shape[1]
    if width > body_width:
        white = torch.full((body.shape[0], width - body_width, 3), _WHITE, dtype=torch.uint8)
        body = torch.cat((body, white), dim=1)
    bands = []
    if title is not None:
        size = _fitting_size(title, width - 2 * pad)
        band = torch.full((_GLYPH_HEIGHT * size + 2 * pad, width, 3), _WHITE, dtype=torch.uint8)
        _draw_text(band, _shorten(title, width - 2 * pad, size), pad, pad, size)
        bands.append(band)
    if labels or headers is not None:
        headers = headers or grid_headers(len(views), len(deltas))
        ends = [*lefts[1:], body_width]
        column_widths = [end - left - scale for left, end in zip(lefts, ends)]
        size = min(_fitting_size(h, w) for h, w in zip(headers, column_widths))
        band = torch.full((_GLYPH_HEIGHT * size + pad, width, 3), _WHITE, dtype=torch.uint8)
        for header, left, column_width in zip(headers, lefts, column_widths):
            header = _shorten(header, column_width, size)
            _draw_text(
                band, header, pad, left + (column_width - text_width(header, size)) // 2, size
            )
        bands.append(band)
    bands.append(body)
    if labels and deltas:
        bands.append(_colour_scale(width, top))
    return torch.cat(bands, dim=0)


def save_view_grid(
    path: str | Path,
    x: torch.Tensor,
    views: Sequence[torch.Tensor],
    *,
    delta: torch.Tensor | Sequence[torch.Tensor] | None = None,
    max_rows: int = 8,
    scale: int | None = 2,
    labels: bool = False,
    title: str | None = None,
    headers: Sequence[str] | None = None,
) -> tuple[int, int]:
    """Write a PNG with one row per sample: the input, each view, then ``|delta|`` heat-maps.

    Args:
        path: the PNG file to write.
        x: the inputs, (N, C, H, W).
        views: a list of (N, C, H', W') tensors (sizes may differ, e.g. after a crop).
        delta: an optional (N, C, H, W) tensor or list of them, e.g. a viewmaker's
            ``perturbation``; shown as ``|delta|`` heat-maps on one scale for the grid.
        max_rows: the first ``max_rows`` samples are shown (default 8).
        scale: each pixel repeated ``scale`` times (default 2); ``None`` makes cells at
            least 128 px on their longer side (4x for 32-px images).
        labels: add column headers (``input``, ``view 1``, ..., ``|delta| 1``, ...) and,
            with ``delta``, a colour scale naming the heat-map's top value.
        title: a line above the grid, e.g. the strategy and data set.
        headers: the column headers in place of the standard ones (implies a header row).

    Returns:
        The picture's (width, height) in pixels.

    Examples:
        >>> x = torch.rand(4, 3, 32, 32)
        >>> save_view_grid("grid.png", x, [x.flip(-1)], labels=True, title="flip", scale=None)
        (268, 590)
    """
    picture = view_grid(
        x,
        views,
        delta=delta,
        max_rows=max_rows,
        scale=scale,
        labels=labels,
        title=title,
        headers=headers,
    )
    save_png(path, picture)
    return picture.shape[1], picture.shape[0]


# ------------------------------------------------------------------------ waveforms
_INK = torch.tensor([0.05, 0.25, 0.6])  # the waveform's colour
_AXIS = torch.tensor([0.8, 0.8, 0.8])  # its zero line


def waveform_cells(
    x: torch.Tensor,
    reference: torch.Tensor | None = None,
    *,
    width: int = 256,
    plot_height: int = 64,
    bins: int = 64,
    dynamic_range_db: float = 80.0,
) -> torch.Tensor:
    """Pictures of clips for :func:`view_grid`: a waveform plot over its spectrogram.

    Each (T,) clip (``x`` is (N, T) or (N, C, T); channels are averaged) becomes an
    RGB cell in [0, 1] of shape (3, plot_height + 2 + bins + 8, width): the min..max envelope
    of the samples in each pixel column on a grey zero line, then the STFT magnitude
    (``2 * bins - 2``-point Hann window, frequencies rising upwards) in decibels on the
    heat ramp. ``reference`` (same N, e.g. the clean clips beside their views) sets both
    scales per sample: the plot's full height is its peak amplitude and the spectrogram
    spans ``dynamic_range_db`` below its loudest bin, so a louder or quieter view shows
    as such. Without it each clip is its own reference. Returns (N, 3, H, width), with
    8 white rows at the bottom that keep one sample's cells apart from the next.
    """
    x = check_tensor(x, "x", layout="(N, T) or (N, C, T)")
    if x.ndim not in (2, 3):
        raise ValueError(
            f"x: expected a (N, T) or (N, C, T) waveform batch, got shape {tuple(x.shape)}"
        )
    reference = x if reference is None else check_tensor(reference, "reference")
    if reference.ndim not in (2, 3) or reference.shape[0] != x.shape[0]:
        raise ValueError(
            f"reference: expected a waveform batch with N = {x.shape[0]}, got shape {tuple(reference.shape)}"
        )
    n_fft = 2 * bins - 2
    if x.shape[-1] < max(width, n_fft):
        raise ValueError(
            f"x: expected clips of at least {max(width, n_fft)} samples, got {x.shape[-1]}"
        )

    def mono(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().float().cpu()
        return t.mean(1) if t.ndim == 3 else t

    def spectrum_db(t: torch.Tensor) -> torch.Tensor:
        hop = max(1, t.shape[-1] // width)
        window = torch.hann_window(n_fft)
        spec = torch.stft(t, n_fft, hop, window=window, center=True, return_complex=True)
        db = 20 * torch.log10(spec.abs().clamp_min(1e-8))
        return torch.nn.functional.interpolate(db[:, None], size=(bins, width), mode="nearest")[
            :, 0
        ]

    with torch.no_grad():
        clips, ref = mono(x), mono(reference)
        peak = ref.abs().amax(1).clamp_min(1e-8).view(-1, 1, 1)
        columns = clips[:, : clips.shape[1] // width * width].reshape(clips.shape[0], width, -1)
        high = (columns.amax(-1)[:, None] / peak).clamp(-1, 1)  # (N, 1, width)
        low = (columns.amin(-1)[:, None] / peak).clamp(-1, 1)
        # Pixel row r covers amplitudes around 1 - 2 (r + 0.5) / plot_height (top is +peak).
        level = 1 - 2 * (torch.arange(plot_height).view(1, -1, 1) + 0.5) / plot_height
        half_pixel = 1.0 / plot_height
        inked = (level <= high + half_pixel) & (level >= low - half_pixel)
        plot = torch.ones(clips.shape[0], 3, plot_height, width)
        plot[:, :, plot_height // 2] = _AXIS.view(1, 3, 1)
        plot = torch.where(inked[:, None], _INK.view(1, 3, 1, 1), plot)
        top_db = spectrum_db(ref).amax(dim=(1, 2)).view(-1, 1, 1)
        spec = (spectrum_db(clips) - top_db) / dynamic_range_db + 1  # [-range, 0] dB -> [0, 1]
        spec = heat_map(spec.flip(-2))
        gap = torch.ones(clips.shape[0], 3, 2, width)
        margin = torch.ones(clips.shape[0], 3, 8, width)  # keeps a row's cells apart
        return torch.cat((plot, gap, spec, margin), dim=2)


# ---------------------------------------------------------------------------- bar charts
# Colour-blind-safe (Okabe-Ito) bar colours; the chance line is drawn in black over them.
_BAR_COLOURS = [
    (0, 114, 178),
    (230, 159, 0),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (213, 94, 0),
    (240, 228, 66),
]


@dataclass(frozen=True)
class ChartPanel:
    """One panel of :func:`bar_chart`: a title, one value per bar and an optional level line.

    Args:
        title: e.g. ``"digit (accuracy)"``.
        values: bar name -> value (``None`` draws no bar, e.g. a skipped run).
        line: a level drawn as a dashed line across the panel (the chance level) and
            stated in the panel's title as ``line_name value``.
        line_name: what the line is (default ``"chance"``).
        percent: the values are fractions shown as percentages (accuracies, default);
            ``False`` writes them with two decimals (R^2).
    """

    title: str
    values: Mapping[str, float | None]
    line: float | None = None
    line_name: str = "chance"
    percent: bool = True

    def format(self, value: float) -> str:
        return f"{100 * value:.1f}%" if self.percent else f"{value:.2f}"


def _axis_range(panel: ChartPanel) -> tuple[float, float]:
    """[low, high] in quarter steps covering 0, 1, the values and the line."""
    points = [0.0, 1.0, *(v for v in panel.values.values() if v is not None)]
    if panel.line is not None:
        points.append(panel.line)
    return math.floor(min(points) * 4) / 4, math.ceil(max(points) * 4) / 4


def bar_chart(
    panels: Sequence[ChartPanel], *, title: str | None = None, line_label: str = "chance"
) -> torch.Tensor:
    """The uint8 (H, W, 3) picture that :func:`save_bar_chart` writes."""
    if not panels:
        raise ValueError("panels: expected at least one ChartPanel, got none")
    names = list(dict.fromkeys(n for p in panels for n in p.values))
    size, pad = 2, 12
    text_h = _GLYPH_HEIGHT * size
    bar_w, slot = 56, 76  # "-20.0%" at size 2 (70 px) fits a slot
    plot_h = 260
    axis_w = text_width("100%", size) + pad
    panel_titles = [
        p.title + ("" if p.line is None else f", {p.line_name} {p.format(p.line)}") for p in panels
    ]
    panel_w = [
        max(pad + slot * len(names), text_width(t, size) - axis_w + pad) for t in panel_titles
    ]
    width = pad + sum(axis_w + w + pad for w in panel_w)
    legend_rows, row_w = [[]], pad
    for name in names:
        item_w = text_h + 6 + text_width(name, size) + 3 * pad
        if row_w + item_w > width and legend_rows[-1]:
            legend_rows.append([])
            row_w = pad
        legend_rows[-1].append(name)
        row_w += item_w
    if any(p.line is not None for p in panels):
        legend_rows.append([None])  # the dashed line and line_label
    title_h = 0 if title is None else text_h + pad
    plot_top = pad + title_h + text_h + 2 * pad + text_h  # title, panel titles, bar values
    height = plot_top + plot_h + pad + len(legend_rows) * (text_h + pad) + pad
    canvas = torch.full((height, width, 3), _WHITE, dtype=torch.uint8)
    if title is not None:
        _draw_text(canvas, title, pad, pad, size)

    left = pad
    for panel, panel_title, inner_w in zip(panels, panel_titles, panel_w):
        low, high = _axis_range(panel)

        def y_of(value: float, low=low, high=high) -> int:
            return plot_top + round((high - value) / (high - low) * plot_h)

        plot_left = left + axis_w
        _draw_text(canvas, panel_title, pad + title_h, left, size)
        tick = low
        while tick <= high + 1e-9:  # quarter ticks with their labels
            y = y_of(tick)
            label = f"{100 * tick:.0f}%" if panel.percent else f"{tick:g}"
            _draw_text(
                canvas, label, y - text_h // 2, plot_left - 6 - text_width(label, size), size
            )
            _fill(canvas, y, plot_left - 4, y + 1, plot_left + inner_w, (225, 225, 225))
            _fill(canvas, y, plot_left - 4, y + 1, plot_left, _BLACK)
            tick += 0.25
        _fill(canvas, plot_top, plot_left - 1, plot_top + plot_h + 1, plot_left, _BLACK)
        zero = y_of(0.0)
        for i, name in enumerate(names):
            value = panel.values.get(name)
            if value is None:
                continue
            x0 = plot_left + pad + i * slot
            y = y_of(value)
            _fill(canvas, min(y, zero), x0, max(y, zero) + 1, x0 + bar_w, _BAR_COLOURS[i % 7])
            text = panel.format(value)
            text_top = y - text_h - 4 if value >= 0 else y + 4
            text_left = x0 + (bar_w - text_width(text, size)) // 2
            _draw_text(canvas, text, text_top, text_left, _fitting_size(text, slot - 4, size))
        _fill(canvas, zero, plot_left, zero + 1, plot_left + inner_w, _BLACK)
        if panel.line is not None:  # over the bars and the axis, so it shows at 0 too
            y = y_of(panel.line)
            for x in range(plot_left, plot_left + inner_w, 12):
                _fill(canvas, y - 1, x, y + 2, min(x + 7, plot_left + inner_w), _BLACK)
        left += axis_w + inner_w + pad

    top = plot_top + plot_h + 2 * pad
    for row in legend_rows:
        x = pad
        for name in row:
            if name is None:
                for dash in range(3):
                    _fill(
                        canvas,
                        top + text_h // 2 - 1,
                        x + 9 * dash,
                        top + text_h // 2 + 2,
                        x + 9 * dash + 6,
                        _BLACK,
                    )
                _draw_text(canvas, line_label, top, x + text_h * 2, size)
                continue
            _fill(canvas, top, x, top + text_h, x + text_h, _BAR_COLOURS[names.index(name) % 7])
            _draw_text(canvas, name, top, x + text_h + 6, size)
            x += text_h + 6 + text_width(name, size) + 3 * pad
        top += text_h + pad
    return canvas


def save_bar_chart(
    path: str | Path,
    panels: Sequence[ChartPanel],
    *,
    title: str | None = None,
    line_label: str = "chance",
) -> tuple[int, int]:
    """Write a bar chart PNG: one panel per :class:`ChartPanel`, one bar per name.

    Values are written over their bars (percentages when ``percent``), the axis runs in
    quarter steps over [0, 1] and any value outside it (a negative R^2 or drop), a panel's
    ``line`` (the chance level) is a thick dashed black line drawn over the bars and the
    axis, so a chance of 0 shows, and is stated in the panel's title; a legend names the
    colours and ``line_label`` says what the dashed lines are. Returns (width, height).
    """
    picture = bar_chart(panels, title=title, line_label=line_label)
    save_png(path, picture)
    return picture.shape[1], picture.shape[0]
