"""Photo-background multi-task image sets: ``digits-on-photos`` and ``shapes-on-photos``.

The photo + digits / photo + shapes sets of the Feature Dropout study (Tamkin et al.,
NeurIPS 2023), built only from data that ships inside installed packages, so nothing is
downloaded:

* backgrounds are crops of the ten colour photos bundled with scikit-learn
  (``china``, ``flower``) and scikit-image (``astronaut``, ``chelsea``, ``coffee``,
  ``hubble_deep_field``, ``immunohistochemistry``, ``retina``, ``rocket`` and the left
  ``stereo_motorcycle`` frame); the photo is the first task's class (10 classes);
* ``digits-on-photos`` pastes one handwritten digit from scikit-learn's ``load_digits``
  (8x8, resized to 10x10, its dark background transparent) four times in a 2x2 grid,
  as in the study; the digit is the second task (10 classes);
* ``shapes-on-photos`` draws one square, triangle or ellipse in a random colour at
  opacity 0.7; the shape is the second task (3 classes).

The two labels are drawn independently. Train and test never share a digit sample
(every fourth ``load_digits`` sample is test-only) nor a photo region (each photo is cut
into a 4x4 grid of blocks, coloured like a checkerboard: crops stay inside one block of
their split's colour). Images are 32x32 RGB floats in [0, 1]; the same seed, split, size
and device type give the same set. All of it is generated in batched tensor ops.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

import augplug
from augplug import rng
from augplug.checks import check_choice, check_device, check_in_range, check_int

__all__ = ["PHOTO_NAMES", "digits_on_photos", "shapes_on_photos"]

PHOTO_NAMES = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
    "retina", "immunohistochemistry", "stereo_motorcycle", "china", "flower",
)  # fmt: skip
SHAPE_NAMES = ("square", "triangle", "ellipse")

IMAGE_SIZE = 32
_PHOTO_SIDE = 256  # photos are centre-cropped square and resized to this many pixels
_BLOCKS = 4  # per side: a photo is cut into 4x4 blocks of 64 px
_BLOCK = _PHOTO_SIDE // _BLOCKS
_CROP_RANGE = (32.0, 64.0)  # crop side in photo pixels: 1x to 2x downsampling to 32 px
_GLYPH = 10  # digits are pasted at 10x10, as in the study
_GLYPH_OFFSETS = (3, 19)  # the 2x2 grid of digit copies on the 32x32 canvas
_SHAPE_ALPHA = 0.7
_SPLITS = ("train", "test")


@functools.lru_cache(maxsize=1)
def _photos() -> torch.Tensor:
    """The ten bundled photos as (10, 3, 256, 256) float32 in [0, 1] (CPU, cached)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    bundled = dict(zip(("china", "flower"), load_sample_images().images))
    out = []
    for name in PHOTO_NAMES:
        if name in bundled:
            image = bundled[name]
        elif name == "stereo_motorcycle":
            image = skimage.data.stereo_motorcycle()[0]
        else:
            image = getattr(skimage.data, name)()
        photo = torch.from_numpy(image[..., :3].copy()).permute(2, 0, 1).float().div(255.0)
        side = min(photo.shape[1:])
        top, left = (photo.shape[1] - side) // 2, (photo.shape[2] - side) // 2
        square = photo[None, :, top : top + side, left : left + side]
        out.append(
            F.interpolate(
                square, size=_PHOTO_SIDE, mode="bilinear", antialias=True, align_corners=False
            )
        )
    return torch.cat(out).clamp_(0.0, 1.0)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """``load_digits`` as 10x10 alpha glyphs (1797, 1, 10, 10) in [0, 1] and labels (CPU, cached)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = (
        torch.from_numpy(digits.images).float().div(16.0)[:, None]
    )  # ink 16 = opaque, 0 = transparent
    glyphs = F.interpolate(ink, size=_GLYPH, mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return glyphs, torch.from_numpy(digits.target).long()


def _split_digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    glyphs, labels = _digits()
    is_test = torch.arange(len(labels)) % 4 == 0
    keep = is_test if split == "test" else ~is_test
    return glyphs[keep], labels[keep]


def _split_blocks(split: str) -> torch.Tensor:
    """(row, col) of the photo blocks of one split: the two colours of a checkerboard."""
    rows, cols = torch.meshgrid(torch.arange(_BLOCKS), torch.arange(_BLOCKS), indexing="ij")
    blocks = torch.stack([rows.flatten(), cols.flatten()], 1)
    parity = blocks.sum(1) % 2
    return blocks[parity == _SPLITS.index(split)]


def _check_args(split: str, size: int, seed: int, device: object) -> torch.device:
    check_choice(split, "split", _SPLITS)
    check_int(size, "size", minimum=1)
    check_int(seed, "seed", minimum=0)
    return check_device(device)


def _generator(seed: int, split: str, device: torch.device) -> torch.Generator:
    # Train and test draw from different streams even with the same seed.
    return torch.Generator(device=device).manual_seed(2 * seed + _SPLITS.index(split))


def _photo_crops(
    photo: torch.Tensor, split: str, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """One random 32x32 crop per row of ``photo`` (class indices), inside a block of ``split``.

    The photos are stacked into one tall atlas so every crop is one ``grid_sample`` over a
    single image: no per-sample loop and no per-sample copy of a full photo.
    """
    n = photo.shape[0]
    atlas = _photos().to(device)
    num_photos = atlas.shape[0]
    atlas = atlas.permute(1, 0, 2, 3).reshape(1, 3, num_photos * _PHOTO_SIDE, _PHOTO_SIDE)
    blocks = _split_blocks(split).to(device)
    block = blocks[rng.randint((n,), 0, blocks.shape[0], device=device, generator=generator)]
    side = rng.uniform((n, 1), *_CROP_RANGE, device=device, generator=generator)
    offset = rng.uniform((n, 2), 0.0, 1.0, device=device, generator=generator) * (_BLOCK - side)
    top = photo[:, None] * _PHOTO_SIDE + block[:, :1] * _BLOCK + offset[:, :1]  # (n, 1) atlas rows
    left = block[:, 1:] * _BLOCK + offset[:, 1:]
    steps = (torch.arange(IMAGE_SIZE, device=device, dtype=torch.float32) + 0.5) / IMAGE_SIZE
    ys = (top + steps * side) / (num_photos * _PHOTO_SIDE) * 2 - 1  # (n, 32) normalised centres
    xs = (left + steps * side) / _PHOTO_SIDE * 2 - 1
    grid = torch.stack(
        torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), -1
    )  # (n, 32, 32, 2)
    crops = F.grid_sample(
        atlas, grid.reshape(1, n * IMAGE_SIZE, IMAGE_SIZE, 2), mode="bilinear", align_corners=False
    )
    return crops.reshape(3, n, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 1).contiguous()


def _tasks(second: str, classes: int) -> tuple[augplug.Task, augplug.Task]:
    return (
        augplug.Task("photo", "classification", len(PHOTO_NAMES)),
        augplug.Task(second, "classification", classes),
    )


def digits_on_photos(
    split: str = "train", size: int = 2000, seed: int = 0, device: str | torch.device = "cpu"
) -> augplug.MultiTaskDataset:
    """Handwritten digits pasted 4 times (2x2 grid, 10x10 each) on 32x32 photo crops.

    Tasks ``photo`` (10 classes) and ``digit`` (10 classes), drawn independently.
    ``size`` images of ``split`` (``"train"`` or ``"test"``: disjoint digit samples and
    photo regions), deterministic per ``seed`` on a given device type.
    """
    device = _check_args(split, size, seed, device)
    generator = _generator(seed, split, device)
    glyphs, labels = (t.to(device) for t in _split_digits(split))
    photo = rng.randint((size,), 0, len(PHOTO_NAMES), device=device, generator=generator)
    pick = rng.randint((size,), 0, labels.shape[0], device=device, generator=generator)
    background = _photo_crops(photo, split, generator, device)
    alpha = torch.zeros(size, 1, IMAGE_SIZE, IMAGE_SIZE, device=device)
    for top in _GLYPH_OFFSETS:  # four fixed slots, each a whole-batch slice
        for left in _GLYPH_OFFSETS:
            alpha[:, :, top : top + _GLYPH, left : left + _GLYPH] = glyphs[pick]
    images = torch.lerp(background, torch.ones_like(background), alpha)  # white ink over the photo
    return augplug.MultiTaskDataset(
        images, {"photo": photo, "digit": labels[pick]}, _tasks("digit", 10)
    )


def _shape_coverage(
    shape: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor, aspect: torch.Tensor
) -> torch.Tensor:
    """Anti-aliased coverage (n, 1, 32, 32) of each row's shape, from signed distances in pixels."""
    device = centre.device
    pixels = torch.arange(IMAGE_SIZE, device=device, dtype=torch.float32) + 0.5
    dy = pixels[None, :, None] - centre[:, 0, None, None]
    dx = pixels[None, None, :] - centre[:, 1, None, None]
    r = radius[:, :, None]
    square = torch.maximum(dx.abs(), dy.abs()) - r
    # Equilateral triangle, apex up: outward edge normals at 90, 210 and 330 degrees (y down); inradius r/2.
    angles = torch.tensor([math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6], device=device)
    edges = dx[..., None] * torch.cos(angles) + dy[..., None] * torch.sin(angles)
    triangle = edges.amax(-1) - r / 2
    a, b = r * aspect[:, :, None], r / aspect[:, :, None]
    ellipse = (torch.sqrt((dx / a) ** 2 + (dy / b) ** 2) - 1) * torch.minimum(a, b)
    distance = torch.stack([square, triangle, ellipse], 1).gather(
        1, shape[:, None, None, None].expand(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    )
    return (0.5 - distance).clamp(0.0, 1.0)


def shapes_on_photos(
    split: str = "train", size: int = 2000, seed: int = 0, device: str | torch.device = "cpu",
    alpha: float = _SHAPE_ALPHA,
) -> augplug.MultiTaskDataset:  # fmt: skip
    """One square, triangle or ellipse (random colour, opacity ``alpha`` = 0.7) on a 32x32 photo crop.

    Tasks ``photo`` (10 classes) and ``shape`` (3 classes: square, triangle, ellipse),
    drawn independently. Splits and determinism as :func:`digits_on_photos`.
    """
    device = _check_args(split, size, seed, device)
    check_in_range(alpha, "alpha", 0.0, 1.0)
    generator = _generator(seed, split, device)
    photo = rng.randint((size,), 0, len(PHOTO_NAMES), device=device, generator=generator)
    shape = rng.randint((size,), 0, len(SHAPE_NAMES), device=device, generator=generator)
    background = _photo_crops(photo, split, generator, device)
    colour = rng.uniform((size, 3, 1, 1), 0.0, 1.0, device=device, generator=generator)
    centre = rng.uniform((size, 2), 10.0, 22.0, device=device, generator=generator)
    radius = rng.uniform((size, 1), 5.0, 9.0, device=device, generator=generator)
    aspect = rng.uniform((size, 1), 0.7, 1.4, device=device, generator=generator)
    coverage = alpha * _shape_coverage(shape, centre, radius, aspect)
    images = torch.lerp(background, colour.expand_as(background), coverage)
    return augplug.MultiTaskDataset(
        images, {"photo": photo, "shape": shape}, _tasks("shape", len(SHAPE_NAMES))
    )
