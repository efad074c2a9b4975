"""augplug.pictures: PNGs written by hand, decoded back with pillow and compared pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from augplug.pictures import save_png, save_view_grid

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@given(
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    channels=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_save_png_round_trips_through_pillow(tmp_path_factory, height, width, channels, seed):
    image = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    path = tmp_path_factory.mktemp("png") / "image.png"
    save_png(path, image)
    with Image.open(path) as decoded:
        decoded.load()
        assert decoded.format == "PNG" and decoded.mode == MODES[channels]
        assert decoded.size == (width, height)
        pixels = np.asarray(decoded)
    np.testing.assert_array_equal(pixels.reshape(height, width, channels), image)


def _heat_reference(value: np.ndarray) -> np.ndarray:
    """Black -> red -> yellow -> white in three equal linear segments."""
    v = np.clip(value, 0, 1) * 3
    return np.stack([np.clip(v, 0, 1), np.clip(v - 1, 0, 1), np.clip(v - 2, 0, 1)], axis=-1)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a * 255), 0, 255).astype(np.uint8)


def _cell(pixels, row, column, widths, cell_height, scale):
    """Top-left corner and size of a cell in the documented layout (gap = scale)."""
    gap = scale
    top = gap + row * (cell_height + gap)
    left = gap + sum(w + gap for w in widths[:column])
    return pixels[top : top + cell_height, left : left + widths[column]]


def _upscale(hwc: np.ndarray, scale: int) -> np.ndarray:
    return hwc.repeat(scale, axis=0).repeat(scale, axis=1)


@pytest.mark.parametrize("scale", [1, 3])
def test_view_grid_layout_and_pixels_match_a_reference(tmp_path, scale):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 6, 7, generator=g)
    views = [
        torch.rand(5, 3, 6, 7, generator=g),
        torch.rand(5, 3, 4, 4, generator=g),
    ]  # a smaller crop
    delta = torch.randn(5, 3, 6, 7, generator=g) * 0.05
    path = tmp_path / "grid.png"
    save_view_grid(path, x, views, delta=delta, max_rows=3, scale=scale)
    with Image.open(path) as decoded:
        assert decoded.mode == "RGB"
        pixels = np.asarray(decoded)

    widths = [7 * scale, 7 * scale, 4 * scale, 7 * scale]
    cell_height = 6 * scale
    assert pixels.shape == (3 * cell_height + 4 * scale, sum(widths) + 5 * scale, 3)
    magnitude = delta.abs().mean(dim=1).numpy()
    for row in range(3):
        for column, tensor in enumerate([x, *views]):
            expected = _upscale(_to_uint8(tensor[row].permute(1, 2, 0).numpy()), scale)
            cell = _cell(pixels, row, column, widths, cell_height, scale)
            np.testing.assert_array_equal(cell[: expected.shape[0]], expected)
            assert (cell[expected.shape[0] :] == 255).all()  # the smaller view sits on white
        # One heat-map scale for the whole grid (the rows shown), so cells compare.
        heat = _to_uint8(_heat_reference(magnitude[row] / magnitude[:3].max()))
        np.testing.assert_array_equal(
            _cell(pixels, row, 3, widths, cell_height, scale), _upscale(heat, scale)
        )
    assert (pixels[:scale] == 255).all() and (pixels[:, :scale] == 255).all()  # white border


@pytest.mark.parametrize("channels", [1, 2, 5])
def test_non_rgb_inputs_show_their_first_channel_as_gray(tmp_path, channels):
    x = torch.rand(2, channels, 5, 6, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "gray.png"
    save_view_grid(path, x, [x.flip(-1)], scale=1)
    pixels = np.asarray(Image.open(path).convert("RGB"))
    for row in range(2):
        for column, tensor in enumerate([x, x.flip(-1)]):
            cell = _cell(pixels, row, column, [6, 6], 5, 1)
            gray = _to_uint8(tensor[row, 0].numpy())
            np.testing.assert_array_equal(cell, np.repeat(gray[..., None], 3, axis=-1))


def test_values_outside_unit_range_share_one_min_max_per_row(tmp_path):
    x = torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(2)) * 4  # a spectrogram
    view = x + 1
    path = tmp_path / "spec.png"
    save_view_grid(path, x, [view], scale=1)
    pixels = np.asarray(Image.open(path).convert("L")).astype(float)
    for row in range(2):
        low = min(x[row].min(), view[row].min()).item()
        high = max(x[row].max(), view[row].max()).item()
        for column, tensor in enumerate([x, view]):
            expected = _to_uint8((tensor[row, 0].numpy() - low) / (high - low))
            np.testing.assert_array_equal(_cell(pixels, row, column, [5, 5], 5, 1), expected)


def test_bad_arguments_are_named(tmp_path):
    x = torch.rand(2, 3, 5, 5)
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=r"views\[0\]: expected the same N and C as x"):
        save_view_grid(path, x, [torch.rand(3, 3, 5, 5)])
    with pytest.raises(ValueError, match="delta"):
        save_view_grid(path, x, [x], delta=torch.rand(2, 5, 5))
    with pytest.raises(ValueError, match="max_rows: expected an int >= 1"):
        save_view_grid(path, x, [x], max_rows=0)
    with pytest.raises(ValueError, match="scale: expected an int >= 1"):
        save_view_grid(path, x, [x], scale=1.5)
    with pytest.raises(TypeError, match="image_uint8_hwc: expected dtype uint8"):
        save_png(path, np.zeros((2, 2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"image_uint8_hwc: expected shape \(H, W, C\)"):
        save_png(path, np.zeros((2, 2, 5), dtype=np.uint8))
    assert not path.exists()
