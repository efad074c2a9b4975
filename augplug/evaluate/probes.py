"""Multi-task linear probes on frozen features.

The standard linear evaluation of self-supervised representations (a linear map on
frozen encoder features; e.g. Chen et al. 2020, Tamkin et al. 2021), for several tasks
of a :class:`augplug.MultiTaskDataset` at once:

* classification tasks get a softmax-regression head trained full-batch with Adam
  (``steps=300``, ``lr=0.05``, L2 penalty ``weight_decay=1e-4``) from zero weights;
  reported as ``accuracy`` and ``cross_entropy`` (mean, nats);
* regression tasks get a ridge-regression head solved in closed form in float64
  (``ridge=1e-3`` times N on the standardised features); reported as ``mse`` (mean over
  targets), ``mse_per_target`` and ``r2`` (mean coefficient of determination).

Features are standardised with the training set's mean and standard deviation. There
is no randomness at all (zero initialisation, full batches), so a probe is
deterministic wherever the matrix products are, and it runs on the features' device.
:func:`encode` turns inputs into features in batches, optionally averaging each
input's features over several random views (test-time feature averaging, via
:func:`augplug.evaluate.average_features`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from augplug.checks import check_batch, check_positive, check_same_batch, check_tensor
from augplug.components import Task
from augplug.evaluate.averaging import average_features

__all__ = ["LinearProbes", "encode", "probe_tasks"]


def _check_targets(
    targets: Mapping[str, torch.Tensor], tasks: Sequence[Task], features: torch.Tensor, name: str
) -> None:
    for task in tasks:
        if task.name not in targets:
            raise ValueError(
                f"{name}: expected a target for task {task.name!r}, got {sorted(targets)}"
            )
        target = targets[task.name]
        what = f"{name}[{task.name!r}]"
        if task.kind == "classification":
            check_tensor(target, what, ndim=1, dtypes=(torch.int64,), layout="(N,) class indices")
        else:
            check_tensor(target, what, ndim=(1, 2), layout="(N,) or (N, size) regression targets")
            if target.reshape(target.shape[0], -1).shape[1] != task.size:
                raise ValueError(
                    f"{what}: expected {task.size} regression target(s) per row, got {tuple(target.shape)}"
                )
        check_same_batch("features", features, what, target)
        if target.device != features.device:
            raise ValueError(
                f"{what}: expected a tensor on {features.device} (the features' device), got {target.device}"
            )


class LinearProbes(nn.Module):
    """One linear head per task on standardised frozen features; see the module docstring.

    Build with :meth:`fit`; ``forward(features)`` gives ``{task: logits or predictions}``
    and :meth:`evaluate` the metrics.
    """

    def __init__(self, dim: int, tasks: Sequence[Task]):
        super().__init__()
        self.tasks = tuple(tasks)
        if not self.tasks:
            raise ValueError("tasks: expected at least one Task, got none")
        self.heads = nn.ModuleDict({t.name: nn.Linear(dim, t.size) for t in self.tasks})
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @classmethod
    def fit(
        cls,
        features: torch.Tensor,
        targets: Mapping[str, torch.Tensor],
        tasks: Sequence[Task],
        *,
        steps: int = 300,
        lr: float = 0.05,
        weight_decay: float = 1e-4,
        ridge: float = 1e-3,
    ) -> LinearProbes:
        """Fit every task's head on (N, D) ``features`` and ``targets[task.name]``."""
        features = check_batch(features, "features", ndim=2, layout="(N, D)")
        tasks = tuple(tasks)
        _check_targets(targets, tasks, features, "targets")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
        check_positive(lr, "lr")
        check_positive(weight_decay, "weight_decay", allow_zero=True)
        check_positive(ridge, "ridge", allow_zero=True)
        probes = cls(features.shape[1], tasks).to(features.device)
        with torch.no_grad():
            x = features.float()
            probes.mean.copy_(x.mean(0))
            probes.scale.copy_(x.std(0, unbiased=False).clamp_min(1e-6))
            x = probes.standardise(x)
            for task in tasks:
                if task.kind == "regression":
                    probes._fit_ridge(task, x, targets[task.name], ridge)
        classifiers = [t for t in tasks if t.kind == "classification"]
        if classifiers:
            with torch.enable_grad():  # also when called under no_grad, as evaluation code often is
                probes._fit_softmax(classifiers, x, targets, steps, lr, weight_decay)
        return probes.requires_grad_(False).eval()  # frozen: a probe is a measurement

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.mean) / self.scale

    def _fit_ridge(self, task: Task, x: torch.Tensor, target: torch.Tensor, ridge: float) -> None:
        # Closed form with a bias column, in float64: exact, deterministic, no learning rate.
        y = target.reshape(target.shape[0], -1).double()
        design = torch.cat([x.double(), torch.ones_like(x[:, :1], dtype=torch.float64)], 1)
        gram = design.T @ design
        penalty = (
            ridge * x.shape[0] * torch.eye(gram.shape[0], dtype=torch.float64, device=x.device)
        )
        penalty[-1, -1] = 0.0  # the bias is not penalised
        solution = torch.linalg.solve(gram + penalty, design.T @ y)
        head = self.heads[task.name]
        head.weight.copy_(solution[:-1].T)
        head.bias.copy_(solution[-1])

    def _fit_softmax(self, tasks, x, targets, steps, lr, weight_decay) -> None:
        heads = [self.heads[t.name] for t in tasks]
        for head in heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        parameters = [p for head in heads for p in head.parameters()]
        optimizer = torch.optim.Adam(parameters, lr=lr)
        for _ in range(steps):
            loss = sum(F.cross_entropy(head(x), targets[t.name]) for t, head in zip(tasks, heads))
            loss = loss + weight_decay * sum(head.weight.square().sum() for head in heads)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        features = check_batch(features, "features", ndim=2, layout="(N, D)")
        if features.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"features: expected {self.mean.shape[0]} features per row, got {features.shape[1]}"
            )
        x = self.standardise(features)
        return {name: head(x) for name, head in self.heads.items()}

    @torch.no_grad()
    def evaluate(
        self, features: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> dict[str, dict[str, float | list[float]]]:
        """Per-task metrics: ``accuracy``/``cross_entropy``, or ``mse``/``mse_per_target``/``r2``."""
        outputs = self(features)
        _check_targets(targets, self.tasks, features, "targets")
        metrics: dict[str, dict[str, float | list[float]]] = {}
        for task in self.tasks:
            out, target = outputs[task.name], targets[task.name]
            if task.kind == "classification":
                metrics[task.name] = {
                    "accuracy": (out.argmax(1) == target).float().mean().item(),
                    "cross_entropy": F.cross_entropy(out, target).item(),
                }
            else:
                target = target.reshape(out.shape).double()
                per_target = (out.double() - target).square().mean(0)
                # R^2 against the test targets' own variance: 0 = predicting the mean, 1 = exact.
                r2 = 1.0 - per_target / target.var(0, unbiased=False).clamp_min(1e-12)
                metrics[task.name] = {
                    "mse": per_target.mean().item(),
                    "mse_per_target": per_target.tolist(),
                    "r2": r2.mean().item(),
                }
        return metrics


def probe_tasks(
    train_features: torch.Tensor,
    train_targets: Mapping[str, torch.Tensor],
    test_features: torch.Tensor,
    test_targets: Mapping[str, torch.Tensor],
    tasks: Sequence[Task],
    **fit_options: float,
) -> dict[str, dict[str, float | list[float]]]:
    """Fit :class:`LinearProbes` on the training features and report the test metrics per task."""
    probes = LinearProbes.fit(train_features, train_targets, tasks, **fit_options)
    return probes.evaluate(test_features, test_targets)


@torch.no_grad()
def encode(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    batch_size: int = 512,
    views: Callable[..., torch.Tensor] | None = None,
    samples: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Features of ``x`` as (N, D) float32, ``batch_size`` inputs at a time, without gradients.

    With ``views`` and ``samples`` = m, each input's features are averaged over m random
    views (test-time feature averaging, Foster et al. 2021) through
    :func:`augplug.evaluate.average_features`.
    """
    check_tensor(x, "x", dtypes=None)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    if (views is None) != (samples is None):
        raise ValueError("views, samples: give both (test-time feature averaging) or neither")
    if views is None:
        return torch.cat([encoder(chunk).flatten(1).float() for chunk in x.split(batch_size)])
    return torch.cat(
        [
            average_features(encoder, views, chunk, samples, generator=generator).flatten(1).float()
            for chunk in x.split(batch_size)
        ]
    )
