"""The interfaces every component implements.

All components are ``nn.Module`` s and batch-first, so ``.to()``, ``state_dict``,
DDP and ``torch.compile`` work on them as on any model part.

* :class:`ViewGenerator` - ``forward(x, *, generator=None)`` makes one view of a
  batch, with independent random parameters per sample.
* :class:`ParametricViewGenerator` - a view generator whose randomness is explicit:
  ``sample(x, generator)`` draws :class:`Params` (named per-sample tensors) and
  ``apply(x, params)`` renders the view, differentiably in ``x`` and in every
  continuous parameter. ``apply(x, sample(x))`` is ``forward(x)``.
* :class:`FeatureAugmenter` - augmentation of (B, D) features; ``k=`` asks for k
  samples per feature, (B, k, D).
* :class:`Objective` - a loss; pairwise ones take ``(z1, z2)``, multi-view ones
  ``(z)`` with z of shape (B, V, D). Objectives that need more (an encoder, view
  parameters) name it in their ``forward`` signature; see :mod:`augplug.recipe`.
* :class:`MultiTaskDataset` - what ``dataset`` plugins return: inputs plus one
  target tensor per task.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from augplug.checks import (
    check_batch,
    check_bool,
    check_choice,
    check_generator,
    check_int,
    check_tensor,
)

__all__ = [
    "ComposedViews",
    "FeatureAugmenter",
    "MultiTaskDataset",
    "Objective",
    "ParametricViewGenerator",
    "Params",
    "Task",
    "ViewGenerator",
]


class Params(dict):
    """Named per-sample view parameters: ``{name: tensor with leading batch dim}``.

    A plain ``dict`` (so ``torch.save`` and ``torch.compile`` treat it as one) with
    helpers to move, detach and slice all entries at once.
    """

    def to(self, *args, **kwargs) -> Params:
        """Move/cast every tensor, like ``Tensor.to`` (casts only floating entries)."""
        out = Params()
        for key, value in self.items():
            if not value.is_floating_point():
                # A dtype cast must not turn boolean masks or integer indices into floats.
                device = kwargs.get("device") or next(
                    (a for a in args if isinstance(a, (torch.device, str))), None
                )
                out[key] = value if device is None else value.to(device)
            else:
                out[key] = value.to(*args, **kwargs)
        return out

    def detach(self) -> Params:
        return Params({k: v.detach() for k, v in self.items()})

    def clone(self) -> Params:
        return Params({k: v.clone() for k, v in self.items()})

    def requires_grad_(self, names: Iterable[str] | None = None) -> Params:
        """Turn on gradients for the floating entries named (all floating ones by default)."""
        for key in self.keys() if names is None else names:
            if key not in self:
                raise KeyError(f"names: no parameter {key!r}; have {sorted(self)}")
            if self[key].is_floating_point():
                self[key].requires_grad_(True)
        return self

    def index(self, index: torch.Tensor | slice) -> Params:
        """Rows ``index`` of every entry (e.g. a sub-batch)."""
        return Params({k: v[index] for k, v in self.items()})

    @property
    def batch_size(self) -> int:
        sizes = {v.shape[0] for v in self.values()}
        if len(sizes) != 1:
            raise ValueError(f"params: entries disagree on the batch size: {sorted(sizes)}")
        return sizes.pop()


class ViewGenerator(nn.Module):
    """Makes one random view of a batch; a new draw for every sample and call.

    Subclasses implement ``forward(x, *, generator=None)``. ``generator``, when given,
    is the only source of randomness (the global RNG is untouched).
    """

    #: The tensor layout accepted, used in error messages, e.g. ``"(B, C, H, W)"``.
    input_layout: str = "(B, ...)"

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


class ParametricViewGenerator(ViewGenerator):
    """A view generator whose random parameters can be drawn, stored and replayed.

    ``continuous_params`` names the entries of :class:`Params` that ``apply`` is
    differentiable in (the "alpha" of the invariance regulariser).
    """

    continuous_params: tuple[str, ...] = ()

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, self.sample(x, generator=generator))


class ComposedViews(ParametricViewGenerator):
    """Applies view generators one after another (e.g. Kornia views, then a viewmaker).

    Parametric stages contribute their params under ``"<stage index>.<name>"``; a
    composition is parametric (``sample``/``apply`` replay exactly) only when every
    stage is, otherwise ``sample`` raises and ``forward`` still works.
    """

    def __init__(self, stages: Iterable[ViewGenerator]):
        super().__init__()
        if isinstance(stages, nn.Module) or not isinstance(stages, Iterable):
            raise TypeError(
                f"stages: expected a list of view generators, got {type(stages).__name__}"
            )
        stages = list(stages)
        if len(stages) == 0:
            raise ValueError("stages: expected at least one view generator, got none")
        # Checked before nn.ModuleList sees them: it would reject a non-module with its own message.
        for i, stage in enumerate(stages):
            if not isinstance(stage, ViewGenerator):
                raise TypeError(
                    f"stages[{i}]: expected a ViewGenerator, got {type(stage).__name__}"
                )
        self.stages = nn.ModuleList(stages)
        self.continuous_params = tuple(
            f"{i}.{name}"
            for i, stage in enumerate(self.stages)
            if isinstance(stage, ParametricViewGenerator)
            for name in stage.continuous_params
        )

    @property
    def is_parametric(self) -> bool:
        return all(isinstance(s, ParametricViewGenerator) for s in self.stages)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x, generator=generator)
        return x

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        # Later stages may depend on the shape of earlier outputs (a crop that resizes),
        # so sampling walks the stages and renders along the way.
        if not self.is_parametric:
            kinds = [type(s).__name__ for s in self.stages]
            raise TypeError(f"ComposedViews.sample: every stage must be parametric, got {kinds}")
        params = Params()
        with torch.no_grad():
            for i, stage in enumerate(self.stages):
                stage_params = stage.sample(x, generator=generator)
                params.update({f"{i}.{k}": v for k, v in stage_params.items()})
                if i + 1 < len(self.stages):
                    x = stage.apply(x, stage_params)
        return params

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        for i, stage in enumerate(self.stages):
            prefix = f"{i}."
            stage_params = Params(
                {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
            )
            x = stage.apply(x, stage_params)
        return x


class FeatureAugmenter(nn.Module):
    """Augments features of shape (B, D) (after the encoder or projector).

    ``forward(z, *, partner=None, k=None, generator=None)``:

    * ``partner`` - the other view's features (B, D), for augmenters that mix the two
      views (``needs_partner = True``); ignored by the others.
    * ``k`` - ``None`` returns (B, D); an int returns k independent samples, (B, k, D).

    Stateful augmenters (support queues) keep their state in buffers, so
    ``state_dict`` saves and restores it. Those with ``takes_enqueue = True`` also take
    ``enqueue=`` (M, D): the rows to write to their queue after the lookup (``None``: z).
    """

    needs_partner: bool = False
    #: ``forward`` also takes ``enqueue=``, the rows a queue stores after the lookup.
    takes_enqueue: bool = False

    def forward(
        self,
        z: torch.Tensor,
        *,
        partner: torch.Tensor | None = None,
        k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def check_features(z: torch.Tensor, name: str = "z") -> torch.Tensor:
        return check_batch(z, name, ndim=2, layout="(B, D)")

    @staticmethod
    def check_samples(k: int | None) -> int | None:
        return None if k is None else check_int(k, "k", minimum=1)


class Objective(nn.Module):
    """A training loss that returns a scalar tensor.

    Pairwise objectives implement ``forward(z1, z2)``; multi-view ones ``forward(z)``
    with z of shape (B, V, D). Anything else an objective needs is named in its
    ``forward`` signature and supplied by :class:`augplug.recipe.Pipeline` from the
    names it documents (``x``, ``encoder``, ``view_generator``, ``view_params``, ...).

    Objectives manage their own precision (float32 accumulation for half inputs), so a call
    runs with autocast switched off: under Lightning's ``"bf16-mixed"`` or Accelerate's mixed
    precision a loss gives what it gives outside autocast, instead of running its float32
    matmuls in bf16. An objective that runs the user's networks itself (the invariance
    regulariser calls the encoder) sets ``disable_autocast = False`` to keep their precision.
    """

    disable_autocast: ClassVar[bool] = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        devices = (
            [d for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]
            if self.disable_autocast
            else []
        )
        if not devices:
            return super().__call__(*args, **kwargs)
        with contextlib.ExitStack() as stack:
            for device in devices:
                stack.enter_context(torch.autocast(device, enabled=False))
            return super().__call__(*args, **kwargs)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Task:
    """One downstream task of a multi-task dataset."""

    name: str
    kind: Literal["classification", "regression"]
    #: Number of classes for classification, number of regression targets otherwise.
    size: int

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name: expected a non-empty string, got {self.name!r}")
        check_choice(self.kind, "kind", ("classification", "regression"))
        check_int(self.size, "size", minimum=1)


class MultiTaskDataset(torch.utils.data.Dataset):
    """In-memory inputs with one target tensor per task, as ``dataset`` plugins return.

    ``inputs`` has a leading sample dimension; ``targets[task.name]`` is (N,) int64 class
    labels for classification and (N,) or (N, size) floats for regression. Indexing gives
    ``(input, {task: target})``; :meth:`batches` iterates whole batches without a
    per-sample Python loop.
    """

    def __init__(
        self, inputs: torch.Tensor, targets: Mapping[str, torch.Tensor], tasks: Iterable[Task]
    ):
        self.inputs = check_tensor(inputs, "inputs", dtypes=None)
        self.tasks = tuple(tasks)
        self.targets = dict(targets)
        names = [t.name for t in self.tasks]
        if sorted(names) != sorted(self.targets):
            raise ValueError(
                f"targets: expected one entry per task {names}, got {sorted(self.targets)}"
            )
        for name, target in self.targets.items():
            if target.shape[0] != inputs.shape[0]:
                raise ValueError(
                    f"targets[{name!r}]: expected {inputs.shape[0]} rows (one per input), got {target.shape[0]}"
                )

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index):
        return self.inputs[index], {k: v[index] for k, v in self.targets.items()}

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"task: no task {name!r}; have {[t.name for t in self.tasks]}")

    def to(self, device: torch.device | str) -> MultiTaskDataset:
        return MultiTaskDataset(
            self.inputs.to(device), {k: v.to(device) for k, v in self.targets.items()}, self.tasks
        )

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ):
        """Yield ``(inputs, targets)`` batches; the last one may be smaller."""
        # Checked here, not at the first next(): a generator body runs only when iterated.
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        check_bool(shuffle, "shuffle")
        check_generator(generator, torch.device("cpu"))
        return self._batches(batch_size, shuffle, generator)

    def _batches(self, batch_size: int, shuffle: bool, generator: torch.Generator | None):
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator).to(self.inputs.device)
        else:
            order = torch.arange(n, device=self.inputs.device)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            yield self.inputs[rows], {k: v[rows] for k, v in self.targets.items()}
