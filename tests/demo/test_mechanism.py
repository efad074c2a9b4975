"""The demo's mechanism measurements: label destruction, the overlay's share of |delta|, the overlay mask."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import augplug
from augplug.demo import main
from augplug.demo.mechanism import destruction, overlay_coverage, overlay_share
from augplug.evaluate import LinearProbes

TINY = ["--steps", "2", "--batch-size", "8", "--train-size", "48", "--test-size", "24", "--threads", "1"]  # fmt: skip


@pytest.mark.parametrize("name", ["digits-on-photos", "shapes-on-photos"])
def test_overlay_mask_is_the_one_the_data_set_pasted(name):
    photos = pytest.importorskip("augplug_datasets.photos")
    from augplug import rng

    size, seed, device = 64, 3, torch.device("cpu")
    dataset = augplug.create("dataset", name, split="test", size=size, seed=seed)
    opacity = overlay_coverage(name, "test", size, seed, device)
    assert opacity.shape == (size, 1, 32, 32) and opacity.min() >= 0 and opacity.max() <= 1
    # Composite by hand from the same stream: background, then the overlay at that opacity.
    g = photos._generator(seed, "test", device)
    photo = rng.randint((size,), 0, len(photos.PHOTO_NAMES), device=device, generator=g)
    if name == "digits-on-photos":
        rng.randint((size,), 0, 1, device=device, generator=g)  # the glyph pick
        background = photos._photo_crops(photo, "test", g, device)
        ink = torch.ones_like(background)
    else:
        rng.randint((size,), 0, 3, device=device, generator=g)  # the shape
        background = photos._photo_crops(photo, "test", g, device)
        ink = rng.uniform((size, 3, 1, 1), 0.0, 1.0, device=device, generator=g).expand_as(
            background
        )
    assert torch.equal(photo, dataset.targets["photo"])
    torch.testing.assert_close(
        torch.lerp(background, ink, opacity), dataset.inputs, rtol=0, atol=1e-6
    )
    assert overlay_coverage("spirograph", "test", size, seed, device) is None


class FixedPerturbation(nn.Module):
    """A stand-in viewmaker: its perturbation is a given tensor."""

    eps = 0.05

    def __init__(self, delta):
        super().__init__()
        self.delta = delta

    def sample(self, x, generator=None):
        return {}

    def perturbation(self, x, params):
        return self.delta


def test_overlay_share_is_the_opacity_weighted_share_of_abs_delta():
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    opacity = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64)
    share = overlay_share(
        nn.Sequential(FixedPerturbation(delta)), torch.zeros(3, 2, 4, 4), opacity, g
    )
    on = sum(abs(float(delta[n, c, i, j])) * float(opacity[n, 0, i, j])
             for n in range(3) for c in range(2) for i in range(4) for j in range(4))  # fmt: skip
    total = float(delta.abs().sum())
    assert share["delta_share"] == pytest.approx(on / total, rel=1e-12)
    assert share["pixel_share"] == pytest.approx(float(opacity.mean()), rel=1e-12)
    assert share["ratio"] == pytest.approx(on / total / float(opacity.mean()), rel=1e-12)
    assert overlay_share(nn.Linear(2, 2), torch.zeros(3, 2, 4, 4), opacity, g) is None


def test_views_equal_to_the_inputs_destroy_nothing_and_noise_destroys_the_label():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 2, (200,), generator=g)
    x = torch.randn(200, 3, generator=g, dtype=torch.float64)
    x[:, 0] += 4 * labels
    task = augplug.Task("t", "classification", 2)
    encoder = nn.Identity()
    probes = LinearProbes.fit(x, {"t": labels}, [task])
    same = destruction(probes, encoder, x, x.clone(), {"t": labels})
    assert same["t"]["drop"] == 0.0 and same["t"]["clean"] > 0.9
    scrambled = x.clone()
    scrambled[:, 0] = torch.randn(200, generator=g, dtype=torch.float64) * 3
    lost = destruction(probes, encoder, x, scrambled, {"t": labels})
    assert lost["t"]["drop"] > 0.3 and lost["t"]["views"] < 0.7


def test_demo_results_carry_the_mechanism(tmp_path):
    assert main([*TINY, "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["strategies"]
    assert "label_destruction" not in runs["untrained"]
    for name in ("simclr", "viewmaker", "combined"):
        for encoder in ("own encoder", "untrained encoder"):
            for task in ("photo", "digit"):
                cell = runs[name]["label_destruction"][encoder][task]
                assert cell["drop"] == pytest.approx(cell["clean"] - cell["views"])
    assert "overlay" not in runs["simclr"]
    for name in ("viewmaker", "combined"):
        share = runs[name]["overlay"]
        assert 0 < share["delta_share"] < 1 and 0 < share["pixel_share"] < 1
    assert results["config"]["viewmaker_size"] == {"width": 8, "depth": 1}
    report_text = (tmp_path / "report.md").read_text()
    assert "## The mechanism" in report_text and "digit drop (own encoder)" in report_text


def test_full_runs_the_papers_viewmaker(tmp_path):
    args = ["--steps", "1", "--batch-size", "4", "--train-size", "16", "--test-size", "8"]
    assert (
        main(
            [*args, "--threads", "1", "--full", "--strategies", "viewmaker", "--out", str(tmp_path)]
        )
        == 0
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["viewmaker_size"] == {"width": 32, "depth": 3}
    views = results["strategies"]["viewmaker"]["recipe"]["views"]
    assert (views["width"], views["depth"]) == (32, 3) and "clamp" not in views  # unclamped
