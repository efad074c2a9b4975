"""augplug.pictures: labelled view grids and bar charts (sizes, headers, colour scale, chance line)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from augplug import pictures
from augplug.pictures import ChartPanel, save_bar_chart, save_view_grid, view_grid


def ink(picture: np.ndarray) -> torch.Tensor:
    """Black pixels (text, axes, the chance line) as a float (H, W) mask."""
    return torch.from_numpy((picture < 40).all(-1).astype(np.float32))


def find_text(picture: np.ndarray, text: str, size: int) -> list[tuple[int, int]]:
    """Top-left corners where ``text`` is drawn exactly: the window's ink is the glyphs' ink."""
    mask = pictures._text_mask(text, size).float()
    if mask.shape[0] > picture.shape[0] or mask.shape[1] > picture.shape[1]:
        return []
    image = ink(picture)[None, None]
    hits = torch.nn.functional.conv2d(image, mask[None, None])[0, 0]
    counts = torch.nn.functional.conv2d(image, torch.ones_like(mask)[None, None])[0, 0]
    total = mask.sum()
    where = ((hits == total) & (counts == total)).nonzero().tolist()
    return [tuple(p) for p in where]


def read(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        return np.asarray(image)


def test_font_has_distinct_7x5_glyphs_for_what_the_pictures_write():
    glyphs = pictures._glyphs()
    assert all(g.shape == (7, 5) for g in glyphs.values())
    shapes = [tuple(g.flatten().tolist()) for c, g in glyphs.items()]
    assert len(set(shapes)) == len(shapes)  # no two characters drawn alike
    needed = "abcdefghijklmnopqrstuvwxyz0123456789 |-_.,:;%()^+/'\""
    assert all(c.upper() in glyphs for c in needed)
    assert pictures.text_width("view 1", 2) == pictures._text_mask("view 1", 2).shape[1] == 70


@pytest.fixture
def grid_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32, generator=g)
    views = [torch.rand(8, 3, 32, 32, generator=g), torch.rand(8, 3, 32, 32, generator=g)]
    return x, views, [v - x for v in views]


def test_labelled_grid_has_title_headers_and_colour_scale_around_the_plain_grid(
    tmp_path, grid_inputs
):
    x, views, deltas = grid_inputs
    path = tmp_path / "grid.png"
    title = "viewmaker on digits-on-photos"
    size = save_view_grid(path, x, views, delta=deltas, scale=None, labels=True, title=title)
    picture = read(path)
    assert size == (picture.shape[1], picture.shape[0])
    plain = view_grid(x, views, delta=deltas, scale=4).numpy()
    # 32-px inputs get 128-px cells: five columns and eight rows plus 4-px gaps.
    assert plain.shape == (8 * 128 + 9 * 4, 5 * 128 + 6 * 4, 3)
    assert picture.shape[1] == plain.shape[1]
    # The plain grid is the labelled picture's body, unchanged.
    top = next(r for r in range(picture.shape[0]) if (picture[r : r + 8] == plain[:8]).all())
    np.testing.assert_array_equal(picture[top : top + plain.shape[0]], plain)
    assert find_text(picture[:top], title, 2)
    header_tops = set()
    for column, header in enumerate(["input", "view 1", "view 2", "|delta| 1", "|delta| 2"]):
        (hit,) = find_text(picture[:top], header, 2)
        header_tops.add(hit[0])
        centre = 4 + column * (128 + 4) + 64
        assert abs(hit[1] + pictures.text_width(header, 2) / 2 - centre) <= 1
    assert len(header_tops) == 1  # one header row
    below = picture[top + plain.shape[0] :]
    assert find_text(below, "|delta|", 2)
    top_value = max(d.abs().mean(1).max().item() for d in deltas)
    assert find_text(below, f"{top_value:.3g}", 2)


def test_heat_maps_share_one_scale_per_grid(grid_inputs):
    x, views, _ = grid_inputs
    deltas = [torch.full_like(x, 0.1), torch.full_like(x, 0.1)]
    deltas[1][3] = 0.4  # one sample changes four times as much
    plain = view_grid(x, views, delta=deltas, scale=1).numpy()
    cell = 32

    def heat_pixel(row, column):
        return plain[1 + row * (cell + 1), 1 + column * (cell + 1)]

    np.testing.assert_array_equal(heat_pixel(3, 4), [255, 255, 255])  # the grid's top
    quarter = pictures.heat_map(torch.tensor([[0.25]]))[:, 0, 0]
    expected = (quarter * 255).round().to(torch.uint8).numpy()
    for row in (0, 3):
        np.testing.assert_array_equal(heat_pixel(row, 3), expected)


def test_views_of_another_size_and_no_delta_get_headers_but_no_scale(tmp_path):
    x = torch.rand(4, 1, 64, 64)
    crops = [torch.rand(4, 1, 40, 40)]
    picture = view_grid(x, crops, scale=None, labels=True).numpy()
    assert find_text(picture, "input", 2) and find_text(picture, "view 1", 2)
    assert not find_text(picture, "|delta|", 2)
    with pytest.raises(TypeError, match="^title: expected a str"):
        view_grid(x, crops, title=3)


def test_a_title_wider_than_the_grid_widens_the_picture():
    x = torch.rand(2, 3, 8, 8)
    plain = view_grid(x, [x], scale=2).numpy()
    picture = view_grid(x, [x], scale=2, title="a long title for a small grid").numpy()
    assert picture.shape[1] == pictures.text_width("a long title for a small grid", 2) + 12
    assert find_text(picture, "a long title for a small grid", 2)
    body = picture[-plain.shape[0] :]
    np.testing.assert_array_equal(body[:, : plain.shape[1]], plain)
    assert (body[:, plain.shape[1] :] == 255).all()


def test_a_narrow_column_gets_a_smaller_header():
    x = torch.rand(2, 3, 8, 8)
    picture = view_grid(x, [x], delta=[x], scale=2, labels=True).numpy()
    # 16-px columns: headers at the smallest size, cut to fit.
    assert pictures._shorten("|delta| 1", 16, 1) == "|."
    assert find_text(picture, "|.", 1) and find_text(picture, "i.", 1)


PANELS = [
    ChartPanel("photo (accuracy)", {"simclr": 0.817, "viewmaker": 0.729}, 0.116),
    ChartPanel("radius (R^2)", {"simclr": 0.55, "viewmaker": -0.12}, 0.0, percent=False),
]


def test_bar_chart_writes_percentages_values_and_a_legend(tmp_path):
    path = tmp_path / "scores.png"
    width, height = save_bar_chart(path, PANELS)
    picture = read(path)
    assert (width, height) == (picture.shape[1], picture.shape[0])
    for text in ("81.7%", "72.9%", "0.55", "-0.12", "100%", "simclr", "viewmaker", "chance"):
        assert find_text(picture, text, 2), text
    assert find_text(picture, "photo (accuracy), chance 11.6%", 2)
    assert find_text(picture, "radius (r^2), chance 0.00", 2)
    one_panel = pictures.bar_chart(PANELS[:1])
    assert one_panel.shape[0] == height and one_panel.shape[1] < width


def test_the_chance_line_shows_on_every_panel_even_at_zero():
    picture = pictures.bar_chart([PANELS[1]]).numpy()
    black = (picture < 40).all(-1)
    # The y axis: the column with the most black pixels; the plot spans its longest run.
    axis_column = int(black.sum(0).argmax())
    runs = np.split(np.arange(len(black)), np.flatnonzero(np.diff(black[:, axis_column])) + 1)
    rows = max((r for r in runs if black[r[0], axis_column]), key=len)
    # A window right of both bars, inside the plot: only grid lines, the axis and chance.
    window = black[rows[0] : rows[-1] + 1, axis_column + 200 : axis_column + 240]
    solid = np.flatnonzero(window.all(1))
    dashed = np.flatnonzero((window.mean(1) > 0.3) & (window.mean(1) < 0.8))
    # The zero axis is a 1-px solid line; the chance line at 0 a 3-px dashed one over it.
    assert len(dashed) == 2 and dashed[1] - dashed[0] == 2
    assert len(solid) == 0 or (len(solid) == 1 and solid[0] == dashed[0] + 1)
    assert window[dashed[0] + 1].mean() > 0.3


def test_bar_chart_needs_a_panel():
    with pytest.raises(ValueError, match="^panels: expected at least one"):
        pictures.bar_chart([])


def test_panels_without_a_line_and_a_named_line():
    drops = ChartPanel("digit: drop on views", {"simclr": -0.2, "viewmaker": 0.05})
    picture = pictures.bar_chart([drops]).numpy()
    assert find_text(picture, "-20.0%", 2) and find_text(picture, "5.0%", 2)
    assert not find_text(picture, "chance", 2)  # no line: no legend entry
    share = ChartPanel("|delta| on overlay", {"viewmaker": 0.4}, 0.25, line_name="pixels")
    picture = pictures.bar_chart([drops, share], line_label="chance; overlay pixels").numpy()
    assert find_text(picture, "|delta| on overlay, pixels 25.0%", 2)
    assert find_text(picture, "chance; overlay pixels", 2)
