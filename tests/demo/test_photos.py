"""digits-on-photos / shapes-on-photos: determinism, splits, label independence, shape geometry."""

import math

import pytest
import torch
from augplug_datasets import photos
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chi2_contingency

import augplug

NAMES = {"digits-on-photos": "digit", "shapes-on-photos": "shape"}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_layout_and_determinism(name):
    a = augplug.create("dataset", name, split="train", size=64, seed=3)
    b = augplug.create("dataset", name, split="train", size=64, seed=3)
    c = augplug.create("dataset", name, split="train", size=64, seed=4)
    assert isinstance(a, augplug.MultiTaskDataset)
    assert a.inputs.shape == (64, 3, 32, 32) and a.inputs.dtype == torch.float32
    assert a.inputs.min() >= 0.0 and a.inputs.max() <= 1.0
    assert [t.name for t in a.tasks] == ["photo", NAMES[name]]
    assert torch.equal(a.inputs, b.inputs)
    assert all(torch.equal(a.targets[k], b.targets[k]) for k in a.targets)
    assert not torch.equal(a.inputs, c.inputs)
    test = augplug.create("dataset", name, split="test", size=64, seed=3)
    assert not torch.equal(a.inputs, test.inputs)  # the splits draw from different streams


@pytest.mark.parametrize("name", sorted(NAMES))
def test_labels_cover_all_classes_and_are_independent(name):
    data = augplug.create("dataset", name, size=3000, seed=0)
    photo = data.targets["photo"]
    other = data.targets[NAMES[name]]
    size = data.task(NAMES[name]).size
    table = torch.zeros(10, size, dtype=torch.long)
    table.index_put_((photo, other), torch.ones_like(photo), accumulate=True)
    assert (table.sum(1) > 0).all() and (table.sum(0) > 0).all()
    # Independence: chi-square test; with a fixed seed the outcome is fixed, and under
    # independence a p-value below 1e-3 would happen for 1 seed in 1000.
    assert chi2_contingency(table.numpy()).pvalue > 1e-3


def test_splits_share_no_digit_sample_and_no_photo_block():
    train_glyphs, _ = photos._split_digits("train")
    test_glyphs, _ = photos._split_digits("test")
    all_glyphs, _ = photos._digits()
    assert train_glyphs.shape[0] + test_glyphs.shape[0] == all_glyphs.shape[0]
    flat_train, flat_test = train_glyphs.flatten(1), test_glyphs.flatten(1)
    # No test glyph equals a training glyph (load_digits has no exact duplicates across the split).
    assert torch.cdist(flat_test, flat_train).min() > 0
    train_blocks = {tuple(b.tolist()) for b in photos._split_blocks("train")}
    test_blocks = {tuple(b.tolist()) for b in photos._split_blocks("test")}
    assert not train_blocks & test_blocks
    assert len(train_blocks | test_blocks) == photos._BLOCKS**2


@pytest.mark.parametrize("split", ["train", "test"])
def test_crops_stay_inside_their_split_blocks_and_photo(monkeypatch, split):
    # A coded atlas: channel 0 is the block's checkerboard colour, channel 1 the photo index.
    side, block = photos._PHOTO_SIDE, photos._BLOCK
    rows = torch.arange(side) // block
    parity = ((rows[:, None] + rows[None, :]) % 2).float()
    coded = torch.stack(
        [
            torch.stack([parity, torch.full_like(parity, p / 10), torch.zeros_like(parity)])
            for p in range(10)
        ]
    )
    monkeypatch.setattr(photos, "_photos", lambda: coded)
    data = photos.shapes_on_photos(split=split, size=500, seed=1, alpha=0.0)
    images = data.inputs
    expected_parity = photos._SPLITS.index(split)
    # Bilinear weights sum to 1 up to rounding; one pixel of another block would be off by >= 1/64.
    torch.testing.assert_close(
        images[:, 0], torch.full_like(images[:, 0], float(expected_parity)), atol=1e-5, rtol=0
    )
    photo = data.targets["photo"].float()[:, None, None] / 10
    torch.testing.assert_close(images[:, 1], photo.expand_as(images[:, 1]))


@pytest.mark.parametrize("split", ["train", "test"])
def test_digits_are_four_copies_of_a_split_glyph_with_its_label(monkeypatch, split):
    # On black photos the image is the white ink itself: alpha in every channel.
    monkeypatch.setattr(
        photos, "_photos", lambda: torch.zeros(10, 3, photos._PHOTO_SIDE, photos._PHOTO_SIDE)
    )
    data = photos.digits_on_photos(split=split, size=32, seed=5)
    glyphs, labels = photos._split_digits(split)
    ink = data.inputs[:, 0]
    assert torch.equal(ink, data.inputs[:, 2])
    first = ink[:, 3:13, 3:13]
    canvas = torch.zeros_like(ink)
    for top in photos._GLYPH_OFFSETS:
        for left in photos._GLYPH_OFFSETS:
            assert torch.equal(ink[:, top : top + 10, left : left + 10], first)
            canvas[:, top : top + 10, left : left + 10] = first
    assert torch.equal(canvas, ink)  # nothing outside the four slots
    match = torch.cdist(first.flatten(1), glyphs.flatten(1)).argmin(1)
    torch.testing.assert_close(glyphs[match, 0], first)
    assert torch.equal(labels[match], data.targets["digit"])


@given(
    shape=st.sampled_from([0, 1, 2]),
    cy=st.floats(12.0, 20.0),
    cx=st.floats(12.0, 20.0),
    radius=st.floats(5.0, 9.0),
    aspect=st.floats(0.7, 1.4),
)
def test_shape_coverage_area_matches_geometry(shape, cy, cx, radius, aspect):
    coverage = photos._shape_coverage(
        torch.tensor([shape]),
        torch.tensor([[cy, cx]]),
        torch.tensor([[radius]]),
        torch.tensor([[aspect]]),
    )
    a, b = radius * aspect, radius / aspect
    area, perimeter = {
        0: ((2 * radius) ** 2, 8 * radius),
        1: (3 * math.sqrt(3) / 4 * radius**2, 3 * math.sqrt(3) * radius),
        2: (math.pi * a * b, 2 * math.pi * max(a, b)),
    }[shape]
    # Soft edges are one pixel wide: the covered area is exact up to a fraction of the perimeter.
    assert abs(coverage.sum().item() - area) < 0.3 * perimeter
    assert coverage.min() >= 0 and coverage.max() <= 1


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"split": "val"}, ValueError, "split"),
        ({"size": 0}, ValueError, "size"),
        ({"seed": -1}, ValueError, "seed"),
        ({"size": 2.5}, TypeError, "size"),
        ({"device": "nope"}, ValueError, "device"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}: expected"):
        photos.digits_on_photos(**kwargs)


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(NAMES))
def test_generation_on_cuda_is_deterministic_and_labelled_alike(name):
    a = augplug.create("dataset", name, size=256, seed=2, device="cuda")
    b = augplug.create("dataset", name, size=256, seed=2, device="cuda")
    assert a.inputs.is_cuda and torch.equal(a.inputs, b.inputs)
    assert a.inputs.min().item() >= 0.0 and a.inputs.max().item() <= 1.0
