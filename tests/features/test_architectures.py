"""The feature-augmentation architectures of augplug.recipe with every augmenter, on CPU.

Each architecture (placement x options) is built from a recipe dict and trained a few
steps with both an instance-discrimination (``infonce``) and an instance-similarity
(``byol``) objective. The views come from a tiny additive-noise generator registered
here, so these tests depend only on the core and the features plugin.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import augplug
from augplug import rng
from augplug.registry import get_registry

DIM_IN, DIM_HIDDEN, DIM_OUT, BATCH = 8, 16, 8, 32


class AdditiveNoiseViews(augplug.ViewGenerator):
    """x + std * N(0, I): the smallest view generator that makes two views differ."""

    def __init__(self, std: float = 1.0):
        super().__init__()
        self.std = std

    def forward(self, x, *, generator=None):
        return x + self.std * rng.normal(x.shape, device=x.device, generator=generator)


class NoiseViewsPlugin:
    @augplug.hookimpl
    def augplug_register_views(self, register):
        register("test_additive_noise", AdditiveNoiseViews)


@pytest.fixture(scope="module", autouse=True)
def noise_views():
    name = "tests.features.noise_views"
    augplug.register_plugin(NoiseViewsPlugin(), name)
    yield
    get_registry().unregister_plugin(name)


@pytest.fixture(scope="module", autouse=True)
def objectives_registered():
    missing = {"infonce", "byol"} - set(augplug.available("objective"))
    assert not missing, f"the objectives plugin must register {sorted(missing)}"


def networks(seed: int = 0) -> tuple[nn.Module, nn.Module, nn.Module]:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(DIM_IN, DIM_HIDDEN), nn.ReLU())
    projector = nn.Linear(DIM_HIDDEN, DIM_OUT)
    predictor = nn.Sequential(
        nn.Linear(DIM_OUT, DIM_HIDDEN), nn.ReLU(), nn.Linear(DIM_HIDDEN, DIM_OUT)
    )
    return encoder, projector, predictor


def feature_spec(name: str) -> dict:
    if name in ("nearest_neighbour", "neighbour_mean"):
        return {"name": name, "dim": DIM_OUT, "size": 64}
    return {"name": name}


def recipe(objective: str, augmenter: str, **options) -> dict:
    return {
        "views": {"name": "test_additive_noise"},
        "features": {**feature_spec(augmenter), **options},
        "objective": {"name": objective},
    }


def train(pipeline: augplug.Pipeline, use_predictor: bool, steps: int = 15) -> list[float]:
    encoder, projector, predictor = networks()
    params = [*encoder.parameters(), *projector.parameters()]
    params += [*predictor.parameters()] if use_predictor else []
    x = torch.randn(BATCH, DIM_IN, generator=torch.Generator().manual_seed(1)) * 2
    losses = []
    for step in range(steps):
        out = pipeline(
            x, encoder, projector, predictor if use_predictor else None,
            generator=torch.Generator().manual_seed(step),
        )  # fmt: skip
        gradients = torch.autograd.grad(out.loss, params)
        with torch.no_grad():  # plain SGD (torch.optim would import torch._dynamo: seconds)
            torch._foreach_add_(params, gradients, alpha=-0.2)
        losses.append(out.loss.item())
    return losses


def assert_trains(losses: list[float]) -> None:
    assert all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-3:]) < sum(losses[:3]), f"loss did not decrease: {losses}"


# Every placement with both objectives; the augmenters rotate so that each is trained.
ARCHITECTURES = [
    ("basic", "noise"),
    ("basic", "nearest_neighbour"),
    ("parallel", "mask"),
    ("parallel", "nearest_neighbour"),
    ("pre_predictor", "mixup"),
    ("pre_predictor", "neighbour_mean"),
    ("post_predictor", "extrapolate"),
    ("post_predictor", "noise"),
]


@pytest.mark.parametrize("objective", ["infonce", "byol"])
@pytest.mark.parametrize(("placement", "augmenter"), ARCHITECTURES)
def test_architecture_trains(objective, placement, augmenter):
    pipeline = augplug.build(recipe(objective, augmenter, placement=placement))
    assert pipeline.placement == placement
    assert_trains(train(pipeline, use_predictor=placement != "basic"))


@pytest.mark.parametrize("objective", ["infonce", "byol"])
@pytest.mark.parametrize(
    "options",
    [
        {"samples": 4, "reduction": "mean"},
        {"samples": 4, "reduction": "sum"},  # the "free loss"
        {"stop_gradient": False},
        {"keep_original": False},
    ],
    ids=["k4-mean", "k4-free-loss", "no-stop-gradient", "no-original"],
)
def test_feature_options_train(objective, options):
    pipeline = augplug.build(recipe(objective, "mask", placement="parallel", **options))
    assert_trains(train(pipeline, use_predictor=True))


def test_free_loss_is_k_times_the_mean():
    losses = {}
    for reduction in ("mean", "sum"):
        spec = recipe(
            "infonce",
            "noise",
            placement="basic",
            samples=3,
            reduction=reduction,
            keep_original=False,
        )
        pipeline = augplug.build(spec)
        encoder, projector, _ = networks()
        x = torch.randn(BATCH, DIM_IN, generator=torch.Generator().manual_seed(1))
        losses[reduction] = pipeline(
            x, encoder, projector, generator=torch.Generator().manual_seed(0)
        ).loss
    torch.testing.assert_close(losses["sum"], 3 * losses["mean"])


@pytest.mark.parametrize("objective", ["infonce", "byol"])
def test_asymmetric_branch_views_train(objective):
    spec = {
        "branch_views": [
            {"name": "test_additive_noise", "std": 0.1},
            {"name": "test_additive_noise", "std": 0.6},
        ],
        "features": {**feature_spec("nearest_neighbour"), "placement": "parallel"},
        "objective": {"name": objective},
        "swap_branches": False,
    }
    assert_trains(train(augplug.build(spec), use_predictor=True))


class RecordingEncoder(nn.Module):
    """Wraps an encoder and keeps its output's gradient (rows: view 0, then view 1)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.output: torch.Tensor | None = None

    def forward(self, x):
        output = self.encoder(x)
        if output.requires_grad:  # not in a momentum target's copy, which runs without autograd
            self.output = output
            output.retain_grad()
        return output


# FA always consumes the target branch (view 1 with one direction), in every placement.
CONSUMED_VIEW = {"basic": 1, "parallel": 1, "pre_predictor": 1, "post_predictor": 1}


@pytest.mark.parametrize("augmenter", ["noise", "mask", "extrapolate"])
@pytest.mark.parametrize("placement", list(CONSUMED_VIEW))
@pytest.mark.parametrize("stop_gradient", [True, False])
def test_stop_gradient_blocks_the_branch_fa_consumes(placement, stop_gradient, augmenter):
    spec = recipe(
        "infonce", augmenter, placement=placement, stop_gradient=stop_gradient,
        keep_original=False, samples=2,
    )  # fmt: skip
    spec["swap_branches"] = False  # one direction, so exactly one branch is consumed by FA
    pipeline = augplug.build(spec)
    encoder, projector, predictor = networks()
    recorder = RecordingEncoder(encoder)
    x = torch.randn(BATCH, DIM_IN, generator=torch.Generator().manual_seed(1))
    out = pipeline(
        x, recorder, projector, None if placement == "basic" else predictor,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    out.loss.backward()
    consumed = recorder.output.grad.split(BATCH)[CONSUMED_VIEW[placement]]
    other = recorder.output.grad.split(BATCH)[1 - CONSUMED_VIEW[placement]]
    if stop_gradient:
        assert torch.equal(consumed, torch.zeros_like(consumed))
    else:
        assert consumed.abs().sum() > 0
    assert other.abs().sum() > 0


@pytest.mark.parametrize("name", ["nearest_neighbour", "neighbour_mean"])
def test_pipeline_state_dict_holds_the_queue(name):
    pipeline = augplug.build(recipe("infonce", name, placement="basic"))
    encoder, projector, _ = networks()
    x = torch.randn(BATCH, DIM_IN, generator=torch.Generator().manual_seed(1))
    pipeline(x, encoder, projector, generator=torch.Generator().manual_seed(0))
    saved = pipeline.state_dict()
    assert int(saved["features.queue.count"]) > 0
    resumed = augplug.build(recipe("infonce", name, placement="basic"))
    resumed.load_state_dict(saved)
    with torch.no_grad():
        a = pipeline(x, encoder, projector, generator=torch.Generator().manual_seed(1)).loss
        b = resumed(x, encoder, projector, generator=torch.Generator().manual_seed(1)).loss
    assert torch.equal(a, b)


def test_symmetric_lookup_never_returns_the_same_steps_features():
    pipeline = augplug.build(recipe("infonce", "nearest_neighbour", placement="basic"))
    encoder, projector, _ = networks()
    x = torch.randn(BATCH, DIM_IN, generator=torch.Generator().manual_seed(1))
    pipeline(x, encoder, projector, generator=torch.Generator().manual_seed(0))  # fills the queue
    calls = []
    pipeline.features.register_forward_hook(
        lambda module, args, output: calls.append((args[0], output))
    )
    pipeline(x, encoder, projector, generator=torch.Generator().manual_seed(1))
    assert len(calls) == 1  # both directions looked up before anything is enqueued
    step_input, step_output = calls[0]
    this_step = nn.functional.normalize(step_input.float(), dim=-1)
    leaked = (step_output[:, :, None] == this_step[None, None]).all(-1).any(-1)  # (2B, k)
    assert not leaked.any(), f"{int(leaked.sum())} neighbours are this step's own features"


@pytest.mark.parametrize("momentum", [False, True], ids=["online-target", "momentum-target"])
@pytest.mark.parametrize("objective", ["infonce", "byol", "simsiam"])
@pytest.mark.parametrize("placement", list(CONSUMED_VIEW))
def test_augmented_term_trains_the_encoder_and_never_the_target(placement, objective, momentum):
    """The study's rule: the augmented copy is a target; the encoder learns through the online path."""
    spec = recipe(objective, "noise", placement=placement, keep_original=False)
    spec["swap_branches"] = False  # one direction: view 0 online, view 1 target
    if momentum:
        spec["target"] = {"momentum": 0.99, "schedule": "constant"}
    pipeline = augplug.build(spec)
    encoder, projector, predictor = networks()
    recorder = RecordingEncoder(encoder)
    x = torch.randn(BATCH, DIM_IN, generator=torch.Generator().manual_seed(1))
    out = pipeline(
        x, recorder, projector, None if placement == "basic" else predictor,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    out.loss.backward()
    encoder_grad = sum(p.grad.abs().sum() for p in encoder.parameters())
    assert encoder_grad > 0, "the augmented term sent no gradient into the encoder"
    online_rows, target_rows = recorder.output.grad.split(BATCH)
    assert online_rows.abs().sum() > 0
    assert torch.equal(target_rows, torch.zeros_like(target_rows)), (
        "gradient reached the target view"
    )
    if momentum:
        assert all(not p.requires_grad and p.grad is None for p in pipeline.target.parameters())


def test_queue_is_filled_with_one_view_by_default():
    pipeline = augplug.build(recipe("infonce", "nearest_neighbour", placement="basic"))
    encoder, projector, _ = networks()
    x = torch.randn(BATCH, DIM_IN, generator=torch.Generator().manual_seed(1))
    pipeline(x, encoder, projector, generator=torch.Generator().manual_seed(0))
    assert int(pipeline.features.queue.count) == BATCH  # NNCLR: B rows per step
    both = augplug.build(
        recipe("infonce", "nearest_neighbour", placement="basic", enqueue="both_views")
    )
    both(x, encoder, projector, generator=torch.Generator().manual_seed(0))
    assert int(both.features.queue.count) == 2 * BATCH
