"""The demo's data loading, training loop (with :class:`augplug.progress.Progress`) and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TextIO

import torch
from torch import nn

import augplug
from augplug import rng
from augplug.demo.strategies import DataSpec, Encoder, Strategy, projector
from augplug.evaluate import LinearProbes, encode
from augplug.progress import Progress

__all__ = [
    "DemoData", "RunResult", "evaluate", "fit_probes", "initial_encoder",
    "load_data", "load_split", "train", "views_of_test_set",
]  # fmt: skip

#: Adam learning rate of the encoder and projector, and of the viewmaker's own parameter
#: group (the viewmaker paper's Adam lr 1e-3).
ENCODER_LR = 1e-3
VIEWMAKER_LR = 1e-3


@dataclass
class DemoData:
    """Train/test inputs and targets on the run's device."""

    spec: DataSpec
    tasks: tuple[augplug.Task, ...]
    train_inputs: torch.Tensor
    train_targets: dict[str, torch.Tensor]
    test_inputs: torch.Tensor
    test_targets: dict[str, torch.Tensor]

    def views_input(self, kind: str) -> torch.Tensor:
        """What the view generators read: the inputs, or the stacked targets (Spirograph re-renders)."""
        if kind == "inputs":
            return self.train_inputs
        return torch.stack([self.train_targets[t.name] for t in self.tasks], 1).float()

    @property
    def channels(self) -> int:
        return self.train_inputs.shape[1]


def load_split(
    spec: DataSpec, split: str, size: int, seed: int, device: torch.device
) -> tuple[torch.Tensor, dict, tuple]:
    """One split through the registry as (inputs, targets, tasks); audio becomes normalised 64x64 log-mels."""
    dataset = augplug.create("dataset", spec.name, split=split, size=size, seed=seed, device=device)
    inputs = dataset.inputs.float()
    if spec.modality == "audio":
        # The audio plugin's log-mel front end is a deterministic "view": computed once here.
        front_end = augplug.create("views", "log_mel", sample_rate=dataset.sample_rate).to(device)
        with torch.no_grad():
            inputs = torch.cat([front_end(chunk) for chunk in inputs.split(512)])
        if inputs.ndim == 3:
            inputs = inputs[:, None]
    return inputs, dict(dataset.targets), tuple(dataset.tasks)


def load_data(
    spec: DataSpec, train_size: int, test_size: int, seed: int, device: torch.device
) -> DemoData:
    """Both splits of ``spec``'s data set on ``device``."""
    train_x, train_y, tasks = load_split(spec, "train", train_size, seed, device)
    test_x, test_y, _ = load_split(spec, "test", test_size, seed, device)
    return DemoData(spec, tasks, train_x, train_y, test_x, test_y)


@dataclass
class RunResult:
    encoder: nn.Module
    pipeline: augplug.Pipeline | None
    final_loss: float | None = None
    seconds: float = 0.0
    images_per_second: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


def initial_encoder(data: DemoData, seed: int, device: torch.device) -> nn.Module:
    """The untrained encoder every strategy starts from (in eval mode)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return Encoder(data.channels).to(device).eval()


def _models(strategy: Strategy, data: DemoData, seed: int, device: torch.device):
    # Every strategy starts from the same encoder weights (same seed), so the rows differ
    # only by their views/objective; forking keeps the caller's global RNG untouched.
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        encoder = Encoder(data.channels)
        head = projector(encoder.dim)
        pipeline = augplug.build(strategy.recipe) if strategy.recipe is not None else None
    return encoder.to(device), head.to(device), None if pipeline is None else pipeline.to(device)


def train(
    strategy: Strategy,
    data: DemoData,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    stream: TextIO | None = None,
) -> RunResult:
    """Train one strategy's encoder (Adam; the viewmaker in its own parameter group)."""
    encoder, head, pipeline = _models(strategy, data, seed, device)
    if pipeline is None:
        return RunResult(encoder.eval(), None)
    groups = [{"params": [*encoder.parameters(), *head.parameters()], "lr": ENCODER_LR}]
    view_parameters = [p for p in pipeline.parameters() if p.requires_grad]
    if view_parameters:  # learned views (the viewmaker), trained through gradient reversal
        groups.append({"params": view_parameters, "lr": VIEWMAKER_LR})
    optimizer = torch.optim.Adam(groups)
    generator = torch.Generator(device=device).manual_seed(seed)
    source = data.views_input(strategy.views_input)
    progress = Progress(strategy.name, steps, stream, unit="img")
    encoder.train()
    pipeline.train()
    loss_value = float("nan")
    for step in range(1, steps + 1):
        rows = rng.randint((batch_size,), 0, source.shape[0], device=device, generator=generator)
        out = pipeline(source[rows], encoder, head, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        # Reading the loss is a host sync: only for the steps the progress shows (the
        # last one always), a line at least every 10 s of work in a log.
        if progress.due(step):
            loss_value = out.loss.item()
            progress.update(step, items=step * batch_size, loss=loss_value)
    seconds = progress.elapsed
    return RunResult(
        encoder.eval(), pipeline.eval(), loss_value, seconds, steps * batch_size / seconds
    )


def fit_probes(encoder: nn.Module, data: DemoData) -> tuple[LinearProbes, torch.Tensor]:
    """Linear probes fitted on the frozen encoder's clean training features, and its test features."""
    probes = LinearProbes.fit(encode(encoder, data.train_inputs), data.train_targets, data.tasks)
    return probes, encode(encoder, data.test_inputs)


def evaluate(encoder: nn.Module, data: DemoData) -> dict[str, Any]:
    """Linear-probe metrics of the frozen encoder's features on every task."""
    probes, test_features = fit_probes(encoder, data)
    return probes.evaluate(test_features, data.test_targets)


@torch.no_grad()
def views_of_test_set(
    pipeline: augplug.Pipeline, data: DemoData, views_input: str, seed: int, device: torch.device
) -> torch.Tensor:
    """Branch 0's view of every test image, from a seeded generator (the pipeline's own views)."""
    if views_input == "inputs":
        source = data.test_inputs
    else:
        source = torch.stack([data.test_targets[t.name] for t in data.tasks], 1).float()
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    return torch.cat(
        [pipeline.make_views(chunk, generator=generator)[0][0] for chunk in source.split(512)]
    )
