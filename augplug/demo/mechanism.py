"""The Feature Dropout mechanism, measured instead of narrated (Tamkin et al., NeurIPS 2023).

The paper's claim about learned views on photo + overlay data: the viewmaker spends its
budget on the overlay (digits, shapes), so its views stochastically *destroy* the
overlay task's label, and that is what stops the photo features from suppressing the
overlay features. Two measurements per strategy test that claim:

* **label destruction** - a linear probe fitted on *clean* training features is evaluated
  on the features of the strategy's views of the test images (branch 0's view, one draw
  per image) and on the clean test features; the drop (clean - views, in accuracy or
  R^2) is how much of each task's label the views remove. Measured twice: through the
  strategy's own trained encoder, and through the fixed untrained encoder that every
  strategy starts from (the same random features for every row, so the rows compare the
  views, not what each encoder learned to ignore).
* **where the budget falls** - for strategies with a learned viewmaker: on clean test
  images, the share of ``sum |delta|`` that lands on the overlay, beside the overlay's
  share of the pixels, both weighted by the overlay's opacity per pixel (its alpha: ink
  intensity for digits, 0.7 x coverage for shapes), so no threshold is chosen. A ratio
  above 1 means the viewmaker concentrates on the overlay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from augplug import rng
from augplug.evaluate import LinearProbes, encode

__all__ = ["destruction", "overlay_coverage", "overlay_share", "task_score"]


def task_score(metrics: Mapping[str, Any], kind: str) -> float:
    """Accuracy for classification, R^2 for regression (higher is better for both)."""
    return metrics["accuracy"] if kind == "classification" else metrics["r2"]


def destruction(
    probes: LinearProbes,
    encoder: nn.Module,
    clean_test_features: torch.Tensor,
    view_test_inputs: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
) -> dict[str, dict[str, float]]:
    """``{task: {"clean", "views", "drop"}}``: a clean-trained probe on clean vs view features."""
    clean = probes.evaluate(clean_test_features, targets)
    views = probes.evaluate(encode(encoder, view_test_inputs), targets)
    out = {}
    for task in probes.tasks:
        a, b = task_score(clean[task.name], task.kind), task_score(views[task.name], task.kind)
        out[task.name] = {"clean": a, "views": b, "drop": a - b}
    return out


def _viewmakers(module: nn.Module) -> list[nn.Module]:
    # Found by what they do (a budgeted perturbation), so the demo imports no plugin.
    return [m for m in module.modules() if hasattr(m, "perturbation") and hasattr(m, "eps")]


@torch.no_grad()
def overlay_share(
    pipeline: nn.Module, inputs: torch.Tensor, overlay: torch.Tensor, generator: torch.Generator
) -> dict[str, float] | None:
    """Share of the viewmaker's ``sum |delta|`` on the overlay vs the overlay's pixel share.

    ``inputs`` (N, C, H, W) clean images, ``overlay`` (N, 1, H, W) opacity in [0, 1]. ``None`` when the
    pipeline holds no viewmaker. ``delta`` is the viewmaker's perturbation of the clean
    image (before any clamp), one draw per image.
    """
    makers = _viewmakers(pipeline)
    if not makers:
        return None
    maker = makers[-1]
    delta = maker.perturbation(inputs, maker.sample(inputs, generator=generator)).abs()
    mask = overlay.to(delta.dtype).expand_as(delta)
    delta_share = (delta * mask).sum() / delta.sum()
    pixel_share = mask.mean()
    return {
        "delta_share": delta_share.item(),
        "pixel_share": pixel_share.item(),
        "ratio": (delta_share / pixel_share).item(),
    }


def overlay_coverage(
    name: str, split: str, size: int, seed: int, device: torch.device
) -> torch.Tensor | None:
    """(N, 1, 32, 32) opacity in [0, 1] of the pasted digits / shapes of a photo data set, else None.

    The data sets return only images and labels, so the mask is rebuilt from the same
    seeded draws as ``augplug_datasets.photos`` (a test composites background and overlay
    from the same draws and gets the data set's images exactly).
    """
    if name not in ("digits-on-photos", "shapes-on-photos"):
        return None
    try:
        from augplug_datasets import photos
    except ImportError:  # the data set's plugin is not installed: nothing to measure
        return None
    generator = photos._generator(seed, split, device)
    photo = rng.randint((size,), 0, len(photos.PHOTO_NAMES), device=device, generator=generator)
    side = photos.IMAGE_SIZE
    if name == "digits-on-photos":
        glyphs, labels = (t.to(device) for t in photos._split_digits(split))
        pick = rng.randint((size,), 0, labels.shape[0], device=device, generator=generator)
        alpha = torch.zeros(size, 1, side, side, device=device)
        for top in photos._GLYPH_OFFSETS:
            for left in photos._GLYPH_OFFSETS:
                alpha[:, :, top : top + photos._GLYPH, left : left + photos._GLYPH] = glyphs[pick]
        return alpha
    shape = rng.randint((size,), 0, len(photos.SHAPE_NAMES), device=device, generator=generator)
    photos._photo_crops(photo, split, generator, device)  # advances the stream as the data set does
    rng.uniform((size, 3, 1, 1), 0.0, 1.0, device=device, generator=generator)  # colour
    centre = rng.uniform((size, 2), 10.0, 22.0, device=device, generator=generator)
    radius = rng.uniform((size, 1), 5.0, 9.0, device=device, generator=generator)
    aspect = rng.uniform((size, 1), 0.7, 1.4, device=device, generator=generator)
    return photos._SHAPE_ALPHA * photos._shape_coverage(shape, centre, radius, aspect)
