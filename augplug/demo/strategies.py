"""What the demo trains: the data sets it knows, their view strategies (recipes), and the small networks.

A strategy is a recipe dict for :func:`augplug.build` (plus a row in the results table);
everything concrete is reached through the registry, so a strategy whose component is not
installed is reported as skipped, never imported directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import augplug

__all__ = [
    "DATASETS", "DataSpec", "Encoder", "Strategy", "default_strategies", "missing_components",
    "projector", "strategies",
]  # fmt: skip

#: InfoNCE temperature of every strategy: SimCLR's small-batch range (0.1-0.5); 0.2 trains
#: fastest at the demo's batch of 128 and a few hundred steps.
TEMPERATURE = 0.2


@dataclass(frozen=True)
class DataSpec:
    """How the demo uses one registered data set."""

    name: str
    modality: str  # "image" or "audio"
    #: Viewmaker budget of the Feature Dropout study for this kind of data.
    viewmaker_eps: float
    #: View generators that render from the stacked targets (Spirograph's factors), not the inputs.
    target_views: tuple[str, ...] = ()

    @property
    def views_from_targets(self) -> bool:
        return bool(self.target_views)


DATASETS: dict[str, DataSpec] = {
    "digits-on-photos": DataSpec("digits-on-photos", "image", 0.05),
    "shapes-on-photos": DataSpec("shapes-on-photos", "image", 0.05),
    "spirograph": DataSpec("spirograph", "image", 0.05, target_views=("spirograph",)),
    "audio-patterns": DataSpec("audio-patterns", "audio", 0.125),
}


@dataclass(frozen=True)
class Strategy:
    """One row of the results table: a recipe, or ``None`` for the untrained baseline."""

    name: str
    description: str
    recipe: dict[str, Any] | None
    #: The view generators' input: "inputs" (the data) or "targets" (Spirograph's factors).
    views_input: str = "inputs"


#: The viewmaker's (width, depth): the paper's network with ``full``, else a narrow one.
#: Measured on the 2-core development VM (docs/demo.md): a training step of batch 128 costs
#: ~3.4 s with the paper's (32, 3) against ~0.5 s with (8, 1), so the two learned strategies
#: at 100 steps would take ~11 minutes instead of ~2, past the demo's 5-minute budget.
VIEWMAKER_SIZE = {"paper": (32, 3), "demo": (8, 1)}


def _viewmaker(spec: DataSpec, channels: int, full: bool) -> dict[str, Any]:
    # The budget is the Feature Dropout paper's; views are unclamped, as the reference ran.
    width, depth = VIEWMAKER_SIZE["paper" if full else "demo"]
    return {
        "name": "viewmaker", "channels": channels, "eps": spec.viewmaker_eps,
        "width": width, "depth": depth,
    }  # fmt: skip


def strategies(spec: DataSpec, channels: int, size: int, full: bool = False) -> dict[str, Strategy]:
    """Every strategy the demo can run on ``spec``'s data, in table order (``full``: paper-size viewmaker)."""
    infonce = {"name": "infonce", "temperature": TEMPERATURE}
    if spec.modality == "audio":
        expert_name, expert = "spectral", {"name": "audio_spectral"}
        expert_text = "expert spectrogram views: time/frequency masks + noise (audio_spectral)"
    elif spec.views_from_targets:
        expert_name, expert = "spirograph", {"name": "spirograph"}
        expert_text = "re-rendered with fresh nuisance factors (Foster et al. 2021)"
    else:
        expert_name, expert = "simclr", {"name": "simclr", "size": size}
        expert_text = "Kornia SimCLR views (crop, flip, colour jitter, grayscale, blur)"
    viewmaker = _viewmaker(spec, channels, full)
    expert_input = "targets" if spec.views_from_targets else "inputs"
    # Foster et al.: lambda 0.1 and clamp 1 on natural images, 0.01 and 1000 on Spirograph.
    weight, clamp = (0.01, 1000.0) if spec.views_from_targets else (0.1, 1.0)
    table = [
        Strategy("untrained", "baseline: the randomly initialised encoder, no training", None),
        Strategy(expert_name, expert_text, {"views": expert, "objective": infonce}, expert_input),
        Strategy(
            "viewmaker",
            f"learned adversarial views, L1 budget {spec.viewmaker_eps} (Tamkin et al. 2021)",
            {"views": viewmaker, "objective": infonce},
        ),
        Strategy(
            "combined",
            f"{expert_name} views, then the viewmaker",
            {"views": [expert, viewmaker], "objective": infonce},
            expert_input,
        ),
        Strategy(
            f"{expert_name}+features",
            f"{expert_name} views, feature masking of the target branch (basic placement)",
            {"views": expert, "features": {"name": "mask", "ratio": 0.25}, "objective": infonce},
            expert_input,
        ),
        Strategy(
            f"{expert_name}+invariance",
            f"{expert_name} views + gradient invariance regulariser, weight {weight} (Foster et al. 2021)"
            + ("; alpha = colour params" if expert_name == "simclr" else ""),
            {
                "views": expert,
                "objective": [
                    infonce,
                    {
                        "name": "gradient_invariance",
                        # One extra encoder pass, not the paper's double backward: ~1.5x
                        # a step instead of ~3x. With crops, alpha is the colour params
                        # only (gradient_invariance's default), as in the paper.
                        "estimator": "difference",
                        "clamp": clamp,
                        "weight": weight,
                    },
                ],
            },
            expert_input,
        ),
    ]
    return {s.name: s for s in table}


def default_strategies(spec: DataSpec) -> list[str]:
    """The runs of a plain ``augplug demo``: baseline, expert views, viewmaker, both combined."""
    return list(strategies(spec, channels=1, size=32))[:4]  # names do not depend on the shapes


def missing_components(recipe: dict[str, Any] | None) -> list[str]:
    """``kind/name`` of every component a recipe names that the registry does not offer."""
    if recipe is None:
        return []
    wanted: list[tuple[str, str]] = []
    views = recipe["views"]
    for spec in views if isinstance(views, list) else [views]:
        wanted.append(("views", spec["name"]))
    if recipe.get("features"):
        wanted.append(("features", recipe["features"]["name"]))
    objective = recipe["objective"]
    for spec in objective if isinstance(objective, list) else [objective]:
        wanted.append(("objective", spec["name"]))
    return [f"{kind}/{name}" for kind, name in wanted if name not in augplug.available(kind)]


class Encoder(nn.Module):
    """A small CIFAR-sized conv net: four 3x3 conv-BN-ReLU stages (16-32-64-64), global pooling.

    Small enough for the demo's minutes on a CPU; the 64-d pooled output is what the
    linear probes read (the pre-projector representation, as in SimCLR's evaluation).
    """

    def __init__(self, channels: int, width: int = 16):
        super().__init__()
        widths = [channels, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(widths[i], widths[i + 1], 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(widths[i + 1]),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def projector(dim: int, out: int = 64) -> nn.Module:
    """SimCLR's two-layer MLP head (dim -> dim -> out)."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, out))
