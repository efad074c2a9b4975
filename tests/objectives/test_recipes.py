"""Every recipe under examples/recipes builds and trains: a few CPU steps lower its loss.

Each recipe runs with a small convolutional encoder on a fixed batch of 32 px images. The
loss is measured in eval mode on the same views after the first step (targets exist,
queues hold a batch) and after five more training steps (and target updates), both times
with the objectives' and augmenters' state (queues, DINO's centre) as at the first
measurement, so the comparison sees only what the networks learnt: it must be finite and
lower. DINO's head is narrowed from the paper's 65536 outputs to 1024 for CPU time.
"""

from pathlib import Path

import pytest
import torch
from augplug_objectives.dino import DINOHead

import augplug

RECIPES = sorted((Path(__file__).parents[2] / "examples" / "recipes").glob("*.toml"))
NEEDS_PREDICTOR = {"byol", "simsiam", "nnclr", "moco_v3"}
HIDDEN = 32


def _networks(stem, recipe):
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),  # any crop size
        torch.nn.Flatten(),
        torch.nn.Linear(16, HIDDEN),
    )
    objective = recipe["objective"]
    width = objective.get("dim") or recipe.get("features", {}).get("dim") or 64
    if stem == "dino":
        projector = DINOHead(HIDDEN, out_dim=width, hidden_dim=64, bottleneck_dim=32)
    else:
        projector = torch.nn.Sequential(
            torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, width)
        )
    predictor = torch.nn.Linear(width, width) if stem in NEEDS_PREDICTOR else None
    return encoder, projector, predictor


def _loss_state(pipeline):
    """The objectives' and the feature augmenter's buffers (queues, centres, schedules)."""
    return {
        name: value.clone()
        for name, value in pipeline.named_buffers()
        if name.startswith(("terms.", "features."))
    }


def _loss(pipeline, x, networks):
    return pipeline(x, *networks, generator=torch.Generator().manual_seed(1)).loss


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_trains_with_a_finite_falling_loss(path):
    recipe = augplug.load_recipe(path)
    if path.stem == "dino":  # the paper's 65536 outputs cost seconds per CPU step
        recipe["objective"]["dim"] = 1024
    pipeline = augplug.build(recipe)
    networks = _networks(path.stem, recipe)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    parameters = [p for net in (*networks, pipeline) if net is not None for p in net.parameters()]
    optimiser = torch.optim.SGD(parameters, lr=0.05)
    for step in range(6):
        if step == 1:  # after one step: targets exist and the queues hold a batch
            state = _loss_state(pipeline)
            with torch.no_grad():
                before = _loss(pipeline.eval(), x, networks)
            pipeline.train()
        loss = _loss(pipeline, x, networks)
        assert torch.isfinite(loss), f"step {step}: {loss}"
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        if recipe.get("target"):
            pipeline.update_target()
    trained = _loss_state(pipeline)
    pipeline.load_state_dict(state, strict=False)
    with torch.no_grad():
        after = _loss(pipeline.eval(), x, networks)
    pipeline.load_state_dict(trained, strict=False)
    assert torch.isfinite(after) and after < before, f"{path.stem}: {before} -> {after}"


@pytest.mark.parametrize(
    "objective",
    [
        {"name": "dcl"},
        {"name": "dclw"},
        {"name": "barlow_twins"},
        {"name": "vicreg"},
        {"name": "moco", "queue_size": 0},
    ],
    ids=lambda spec: spec["name"],
)
@pytest.mark.parametrize("placement", ["basic", "parallel"])
def test_pairwise_objectives_take_feature_augmentation(objective, placement):
    # Two masked copies of the target per direction, summed (the "free loss"): one step
    # trains the encoder through the online branch with a finite loss.
    recipe = {
        "views": {"name": "simclr", "size": 32},
        "features": {"name": "mask", "placement": placement, "samples": 2, "reduction": "sum"},
        "objective": dict(objective),
    }
    pipeline = augplug.build(recipe)
    encoder, projector, _ = _networks("fa", {"objective": {}})
    predictor = torch.nn.Linear(64, 64) if placement == "parallel" else None
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    loss = _loss(pipeline, x, (encoder, projector, predictor))
    loss.backward()
    assert torch.isfinite(loss)
    assert encoder[0].weight.grad is not None and encoder[0].weight.grad.abs().sum() > 0
