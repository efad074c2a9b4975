"""Spirograph: the renderer against a per-pixel float64 reference, the dataset, the views."""

from __future__ import annotations

import math

import pytest
import torch
from augplug_datasets.spirograph import (
    FACTOR_RANGES,
    NUISANCE,
    TARGETS,
    SpirographViews,
    render_spirograph,
    stack_targets,
)
from hypothesis import given
from hypothesis import strategies as st

import augplug


def draw_factors(batch: int, seed: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        name: low + (high - low) * torch.rand(batch, generator=g, dtype=dtype)
        for name, (low, high) in FACTOR_RANGES.items()
    }


def naive_render(f: dict[str, float], normalisation: str) -> list[list[list[float]]]:
    """One pixel and one point at a time in Python floats; rows follow x, columns y (reference)."""
    m, b, h, sigma = f["m"], f["b"], f["h"], f["sigma"]
    ts = [2 * math.pi * j / 39 for j in range(40)]
    xs = [(m - h) * math.cos(t) + h * math.cos((m - h) * t / b) for t in ts]
    ys = [(m - h) * math.sin(t) - h * math.sin((m - h) * t / b) for t in ts]
    grid = [-6 + 12 * k / 31 for k in range(32)]
    intensity = [
        [
            sum(math.exp(-((u - x) ** 2 + (v - y) ** 2) / sigma) for x, y in zip(xs, ys)) / 40
            for v in grid
        ]
        for u in grid
    ]
    if normalisation == "global":
        peaks = [max(max(row) for row in intensity) + 1e-8] * 32
    else:
        peaks = [max(row) + 1e-8 for row in intensity]
    fore = (f["fore_r"], f["fore_g"], f["fore_b"])
    back = (f["back_r"], f["back_g"], f["back_b"])
    return [
        [
            [i / peak * fore[c] + (1 - i / peak) * back[c] for i in row]
            for row, peak in zip(intensity, peaks)
        ]
        for c in range(3)
    ]


def invclr_formula(f: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference code's tensor formula (ae-foster/invclr, data/spirograph.py) in float64."""
    a = f["m"] + f["b"] - f["h"]  # the reference's parametrisation: a - b == m - h
    b, h = f["b"], f["h"]
    t = torch.linspace(0, 2 * math.pi, 40, dtype=torch.float64)[:, None]
    x = (a - b) * torch.cos(t) + h * torch.cos(t * (a - b) / b)  # (40, B)
    y = (a - b) * torch.sin(t) - h * torch.sin(t * (a - b) / b)
    axis = torch.linspace(-6, 6, 32, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), 0)  # (2, 32, 32)
    centres = torch.stack([x, y], -1)[..., None, None]  # (40, B, 2, 1, 1)
    v = torch.exp(-((grid - centres) ** 2).sum(2) / f["sigma"][:, None, None]).mean(0)
    v = v / (v.max(dim=-1, keepdim=True)[0].max(dim=-1, keepdim=True)[0] + 1e-8)
    fore = torch.stack([f["fore_r"], f["fore_g"], f["fore_b"]], -1)[..., None, None]
    back = torch.stack([f["back_r"], f["back_g"], f["back_b"]], -1)[..., None, None]
    return v[:, None] * fore + (1 - v[:, None]) * back


@pytest.mark.parametrize("normalisation", ["reference", "global"])
def test_renderer_matches_per_pixel_reference(normalisation):
    factors = draw_factors(2, seed=3)
    images = render_spirograph(factors, normalisation)
    for n in range(2):
        expected = torch.tensor(
            naive_render({k: float(v[n]) for k, v in factors.items()}, normalisation),
            dtype=torch.float64,
        )
        # The splat's exponent cap moves pixels by < 1e-9 (rows far from the curve).
        torch.testing.assert_close(images[n], expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_normalisation_is_the_reference_codes_output(seed):
    factors = draw_factors(16, seed=seed)
    expected = invclr_formula(factors)
    torch.testing.assert_close(render_spirograph(factors), expected, rtol=0, atol=1e-9)
    # Rows that the curve passes near reach the foreground colour: each row has its own max.
    fore = torch.stack([factors["fore_r"], factors["fore_g"], factors["fore_b"]], 1)[
        ..., None, None
    ]
    back = torch.stack([factors["back_r"], factors["back_g"], factors["back_b"]], 1)[
        ..., None, None
    ]
    row_peak = ((render_spirograph(factors) - back) / (fore - back)).amax(-1)
    assert (row_peak > 1 - 1e-6).sum() > (row_peak > 1 - 1e-6).numel() // 2


def test_global_normalisation_differs_and_is_selectable_everywhere():
    factors = draw_factors(3, seed=5)
    assert not torch.allclose(render_spirograph(factors, "global"), render_spirograph(factors))
    views = augplug.create("views", "spirograph", normalisation="global")
    x = torch.stack([factors[n] for n in TARGETS], 1)
    params = {n: factors[n] for n in NUISANCE}
    torch.testing.assert_close(views.apply(x, params), render_spirograph(factors, "global"))
    with pytest.raises(ValueError, match="normalisation: expected one of 'reference', 'global'"):
        augplug.create("views", "spirograph", normalisation="max")
    with pytest.raises(ValueError, match="normalisation"):
        augplug.create("dataset", "spirograph", size=2, normalisation="row")
    reference = augplug.create("dataset", "spirograph", size=2, seed=1)
    paper_text = augplug.create("dataset", "spirograph", size=2, seed=1, normalisation="global")
    assert torch.equal(reference.targets["m"], paper_text.targets["m"])
    assert not torch.allclose(reference.inputs, paper_text.inputs)


@given(seed=st.integers(0, 2**31), batch=st.integers(1, 6))
def test_brightest_pixel_has_the_foreground_colour_and_all_pixels_lie_between(seed, batch):
    factors = draw_factors(batch, seed, dtype=torch.float32)
    images = render_spirograph(factors)
    assert images.shape == (batch, 3, 32, 32) and images.dtype == torch.float32
    fore = torch.stack([factors["fore_r"], factors["fore_g"], factors["fore_b"]], 1)
    back = torch.stack([factors["back_r"], factors["back_g"], factors["back_b"]], 1)
    low, high = torch.minimum(fore, back)[..., None], torch.maximum(fore, back)[..., None]
    flat = images.flatten(2)
    assert (flat >= low - 1e-6).all() and (flat <= high + 1e-6).all()
    # Where the splat peaks (intensity 1 after max-normalisation) the pixel is the foreground.
    distance_to_back = (flat - back[..., None]).abs().sum(1)
    peak = distance_to_back.argmax(1)
    torch.testing.assert_close(flat[torch.arange(batch), :, peak], fore, atol=1e-5, rtol=0)


def test_dataset_is_deterministic_with_independent_splits_and_targets_in_range():
    train = augplug.create("dataset", "spirograph", split="train", size=40, seed=1)
    again = augplug.create("dataset", "spirograph", split="train", size=40, seed=1)
    test = augplug.create("dataset", "spirograph", split="test", size=40, seed=1)
    other = augplug.create("dataset", "spirograph", split="train", size=40, seed=2)
    assert isinstance(train, augplug.MultiTaskDataset)
    assert train.inputs.shape == (40, 3, 32, 32)
    assert [t.name for t in train.tasks] == list(TARGETS) and all(
        t.kind == "regression" for t in train.tasks
    )
    assert torch.equal(train.inputs, again.inputs)
    assert not torch.equal(train.inputs, test.inputs) and not torch.equal(
        train.inputs, other.inputs
    )
    for name in TARGETS:
        low, high = FACTOR_RANGES[name]
        assert train.targets[name].shape == (40,)
        assert ((train.targets[name] >= low) & (train.targets[name] <= high)).all()
    # A prefix of a larger draw is the smaller draw (one stream per seed and split).
    bigger = augplug.create("dataset", "spirograph", split="train", size=50, seed=1)
    torch.testing.assert_close(bigger.inputs[:40], train.inputs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "val"}, "split"),
        ({"size": 0}, "size"),
        ({"seed": -1}, "seed"),
        ({"dtype": torch.float16}, "dtype"),
    ],
)
def test_dataset_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        augplug.create("dataset", "spirograph", **kwargs)


def test_views_keep_targets_redraw_nuisance_and_replay():
    views = augplug.create("views", "spirograph")
    assert isinstance(views, SpirographViews) and views.continuous_params == NUISANCE
    dataset = augplug.create("dataset", "spirograph", size=16, seed=4)
    x = stack_targets(dataset.targets)
    g = torch.Generator().manual_seed(0)
    params = views.sample(x, generator=g)
    for name in NUISANCE:
        low, high = FACTOR_RANGES[name]
        assert (
            params[name].shape == (16,) and ((params[name] >= low) & (params[name] <= high)).all()
        )
    torch.testing.assert_close(views.apply(x, params), views.apply(x, params), rtol=0, atol=0)
    # forward is apply(sample) and uses only the generator given.
    state = torch.random.get_rng_state()
    first = views(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(first, views.apply(x, params))
    # A view is the image the full factor set renders: targets from x, nuisance from params.
    factors = {**{name: x[:, i] for i, name in enumerate(TARGETS)}, **params}
    torch.testing.assert_close(first, render_spirograph(factors))


def test_views_are_differentiable_in_the_nuisance():
    x = stack_targets(draw_factors(1, seed=5))
    views = SpirographViews()
    params = views.sample(x, generator=torch.Generator().manual_seed(1))
    names = list(NUISANCE)

    def render(*values):
        return views.apply(x, dict(zip(names, values)))[..., ::4, ::4]

    inputs = tuple(params[n].clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(render, inputs, fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_views_accept_low_precision_targets(dtype):
    x = stack_targets(draw_factors(4, seed=6, dtype=torch.float32))
    views = SpirographViews()
    params = views.sample(x, generator=torch.Generator().manual_seed(2))
    low = views.apply(x.to(dtype), params)
    assert low.dtype == dtype
    reference = views.apply(x.to(dtype).float(), params)
    torch.testing.assert_close(low.float(), reference, atol=1e-2, rtol=0)


def test_views_reject_bad_input():
    views = SpirographViews()
    with pytest.raises(ValueError, match=r"x: expected shape \(\*, 4\)"):
        views(torch.rand(3, 5))
    x = torch.rand(3, 4)
    params = views.sample(x)
    with pytest.raises(ValueError, match="params: missing"):
        views.apply(x, {k: v for k, v in params.items() if k != "h"})
    with pytest.raises(ValueError, match=r"params\['h'\]"):
        views.apply(x, {**params, "h": params["h"][:2]})


@pytest.mark.cuda
def test_dataset_is_identical_on_cuda():
    cpu = augplug.create("dataset", "spirograph", size=32, seed=7)
    gpu = augplug.create("dataset", "spirograph", size=32, seed=7, device="cuda")
    torch.testing.assert_close(gpu.inputs.cpu(), cpu.inputs, atol=1e-5, rtol=0)
    views = SpirographViews()
    x = stack_targets(gpu.targets)
    assert views(x, generator=torch.Generator(device="cuda").manual_seed(0)).device.type == "cuda"
