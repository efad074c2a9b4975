"""Whole set-ups from a plain dict (or a TOML / JSON file): views, feature augmentation, objectives.

A recipe::

    {
        "views": {"name": "simclr", "size": 32},           # every branch, or
        # "branch_views": [{"name": "byol", "branch": 0}, {"name": "byol", "branch": 1}],
        "num_views": 2,                                     # with "views"; default 2
        "features": {                                       # optional feature augmentation
            "name": "nearest_neighbour", "dim": 128,        # the augmenter and its arguments
            "placement": "basic",                           # see below
            "stop_gradient": True, "samples": 1, "reduction": "mean", "keep_original": True,
        },
        "objective": [{"name": "infonce", "temperature": 0.2},
                      {"name": "gradient_invariance", "weight": 0.1}],
        "symmetric": True,
    }

A view spec is ``{"name": ..., **arguments}`` or a list of specs applied in order
(e.g. ``[{"name": "simclr", "size": 32}, {"name": "viewmaker"}]`` for "combined" views).
One spec under ``"views"`` is one module shared by every branch (its random draws differ
per branch); ``"branch_views"`` gives each branch its own.

:func:`build` returns a :class:`Pipeline` (an ``nn.Module`` holding the views, the
feature augmenter and the objectives, so its ``state_dict`` has their weights and queues).
Call it with your own networks: ``out = pipeline(x, encoder, projector, predictor)``;
``out.loss`` is the weighted sum, ``out.terms`` the detached parts.

Feature-augmentation placements (A = augmenter, q = predictor, sg = stop-gradient,
z1 / z2 = the two branches' projections, L = a pairwise objective, online first)::

    basic           z1 ───────────────┐
                    z2 ── sg ── A ────┴─ L(z1, A(z2))          (no predictor)

    parallel        z1 ── q ──────────┐
                    z2 ── sg ── A ────┴─ L(q(z1), A(z2))       (predictor and A on different views)

    pre_predictor   z1 ── sg ── A ── q ┐
                    z2 ────────────────┴─ L(q(A(z1)), z2)

    post_predictor  z1 ── q ── sg ── A ┐
                    z2 ────────────────┴─ L(A(q(z1)), z2)

With ``samples: k`` the augmenter draws k features and the k losses are averaged
(``reduction: "mean"``) or summed (``"sum"``, the "free loss" of Zhang et al. 2024).
With ``keep_original`` (default) the un-augmented pair's loss is added, so the branch
that FA consumes still trains through it when ``stop_gradient`` is on. ``symmetric``
averages the loss with the branches' roles swapped; both directions' features go through
the augmenter in one call, so a support queue never returns this step's own features and
advances once per step.

Objectives get their inputs by the names in their ``forward`` signature:

===================  =====================================================================
``z1``, ``z2``       the pair above (pairwise objectives); with ``num_views > 2`` an objective
                     whose ``z2`` is optional gets all views as ``z1``, (B, V, D)
``z``                all projections as (B, V, D), no predictor or FA
``h``                the encoder's outputs as (B, V, ...)
``x``                the input batch
``views``            the list of views
``encoder``, ``projector``, ``predictor``   the networks passed in
``view_generator``   branch 0's view generator; ``view_params`` its params (parametric only)
``generator``        the ``torch.Generator`` passed to the call
===================  =====================================================================
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from augplug import registry
from augplug.checks import check_tensor
from augplug.components import (
    ComposedViews,
    FeatureAugmenter,
    ParametricViewGenerator,
    Params,
    ViewGenerator,
)

__all__ = ["Pipeline", "PipelineOutput", "RecipeError", "build", "load_recipe"]

PLACEMENTS = ("basic", "parallel", "pre_predictor", "post_predictor")
_TOP_LEVEL = {"views", "branch_views", "num_views", "features", "objective", "symmetric"}
_FEATURE_OPTIONS = {"name", "placement", "stop_gradient", "samples", "reduction", "keep_original"}
_CONTEXT = {
    "z1", "z2", "z", "h", "x", "views", "encoder", "projector", "predictor",
    "view_generator", "view_params", "generator",
}  # fmt: skip


class RecipeError(ValueError):
    """A recipe is malformed; the message starts with the offending key path."""


@dataclass
class PipelineOutput:
    """The result of one :class:`Pipeline` call."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    views: list[torch.Tensor] = field(default_factory=list)


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a recipe from a ``.toml`` or ``.json`` file (no code is ever evaluated)."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        return tomllib.loads(text)
    raise RecipeError(f"path: expected a .toml or .json file, got {str(path)!r}")


def build(recipe: Mapping[str, Any]) -> Pipeline:
    """Validate a recipe dict and build its :class:`Pipeline`; errors name the key path."""
    if not isinstance(recipe, Mapping):
        raise RecipeError(f"recipe: expected a dict, got {type(recipe).__name__}")
    unknown = sorted(set(recipe) - _TOP_LEVEL)
    if unknown:
        raise RecipeError(f"{unknown[0]}: unknown recipe key; expected some of {sorted(_TOP_LEVEL)}")

    if ("views" in recipe) == ("branch_views" in recipe):
        raise RecipeError("views: give exactly one of 'views' (shared by every branch) or 'branch_views'")
    if "views" in recipe:
        num_views = recipe.get("num_views", 2)
        if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 2:
            raise RecipeError(f"num_views: expected an int >= 2, got {num_views!r}")
        generators = [_build_views(recipe["views"], "views")]
        branch_index = [0] * num_views
    else:
        if "num_views" in recipe:
            raise RecipeError("num_views: only with 'views'; 'branch_views' has one entry per branch")
        specs = recipe["branch_views"]
        if not isinstance(specs, Sequence) or isinstance(specs, (str, Mapping)) or len(specs) < 2:
            raise RecipeError(f"branch_views: expected a list of at least 2 view specs, got {specs!r}")
        generators = [_build_views(spec, f"branch_views[{i}]") for i, spec in enumerate(specs)]
        branch_index = list(range(len(specs)))

    symmetric = recipe.get("symmetric", True)
    if not isinstance(symmetric, bool):
        raise RecipeError(f"symmetric: expected true or false, got {symmetric!r}")

    features = None
    feature_options: dict[str, Any] = {}
    if recipe.get("features") is not None:
        if len(branch_index) != 2:
            raise RecipeError("features: feature augmentation needs exactly two branches")
        features, feature_options = _build_features(recipe["features"])

    terms_spec = recipe.get("objective")
    if terms_spec is None:
        raise RecipeError("objective: missing; expected a spec or a list of specs")
    if isinstance(terms_spec, Mapping):
        terms_spec = [terms_spec]
    if not isinstance(terms_spec, Sequence) or isinstance(terms_spec, str) or not terms_spec:
        raise RecipeError(f"objective: expected a spec or a non-empty list of specs, got {terms_spec!r}")
    terms, weights, names = [], [], []
    for i, spec in enumerate(terms_spec):
        path = f"objective[{i}]"
        spec = _spec_dict(spec, path)
        weight = spec.pop("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise RecipeError(f"{path}.weight: expected a number, got {weight!r}")
        term = _create("objective", spec, path)
        _check_inputs(term, path, num_views=len(branch_index))
        terms.append(term)
        weights.append(float(weight))
        names.append(spec["name"] if spec["name"] not in names else f"{spec['name']}[{i}]")
    return Pipeline(
        generators, branch_index, terms, weights, names,
        features=features, symmetric=symmetric, **feature_options,
    )  # fmt: skip


def _spec_dict(spec: Any, path: str) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise RecipeError(f"{path}: expected a dict with a 'name', got {spec!r}")
    if not isinstance(spec.get("name"), str):
        raise RecipeError(f"{path}.name: expected the component's name, got {spec.get('name')!r}")
    return dict(spec)


def _create(kind: str, spec: dict[str, Any], path: str) -> Any:
    name = spec.pop("name")
    try:
        component = registry.create(kind, name, **spec)
    except TypeError as exc:
        message = str(exc)
        for key in spec:  # point at the argument when the message names one
            if repr(key) in message:
                raise RecipeError(f"{path}.{key}: {message}") from exc
        raise RecipeError(f"{path}: {message}") from exc
    except (ValueError, LookupError, ImportError) as exc:
        raise RecipeError(f"{path}.name: {exc}" if isinstance(exc, LookupError) else f"{path}: {exc}") from exc
    spec["name"] = name
    return component


def _build_views(spec: Any, path: str) -> ViewGenerator:
    if isinstance(spec, Sequence) and not isinstance(spec, (str, Mapping)):
        if not spec:
            raise RecipeError(f"{path}: expected at least one view spec")
        stages = [_build_views(s, f"{path}[{i}]") for i, s in enumerate(spec)]
        return stages[0] if len(stages) == 1 else ComposedViews(stages)
    generator = _create("views", _spec_dict(spec, path), path)
    if not isinstance(generator, ViewGenerator):
        raise RecipeError(f"{path}: {spec['name']!r} did not build a ViewGenerator")
    return generator


def _build_features(spec: Any) -> tuple[FeatureAugmenter, dict[str, Any]]:
    spec = _spec_dict(spec, "features")
    options = {k: spec.pop(k) for k in list(spec) if k in _FEATURE_OPTIONS and k != "name"}
    placement = options.get("placement", "basic")
    if placement not in PLACEMENTS:
        raise RecipeError(f"features.placement: expected one of {list(PLACEMENTS)}, got {placement!r}")
    samples = options.get("samples", 1)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise RecipeError(f"features.samples: expected an int >= 1, got {samples!r}")
    reduction = options.get("reduction", "mean")
    if reduction not in ("mean", "sum"):
        raise RecipeError(f"features.reduction: expected 'mean' or 'sum' (the free loss), got {reduction!r}")
    for flag in ("stop_gradient", "keep_original"):
        if not isinstance(options.get(flag, True), bool):
            raise RecipeError(f"features.{flag}: expected true or false, got {options[flag]!r}")
    augmenter = _create("features", spec, "features")
    if not isinstance(augmenter, FeatureAugmenter):
        raise RecipeError(f"features: {spec['name']!r} did not build a FeatureAugmenter")
    return augmenter, {
        "placement": placement,
        "samples": samples,
        "reduction": reduction,
        "stop_gradient": options.get("stop_gradient", True),
        "keep_original": options.get("keep_original", True),
    }


def _required_inputs(term: nn.Module) -> tuple[list[str], list[str]]:
    params = inspect.signature(term.forward).parameters.values()
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    required = [
        p.name for p in params
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]  # fmt: skip
    return names, required


def _check_inputs(term: nn.Module, path: str, *, num_views: int) -> None:
    names, required = _required_inputs(term)
    unknown = [n for n in required if n not in _CONTEXT]
    if unknown:
        raise RecipeError(
            f"{path}: its forward needs {unknown}, which a pipeline does not provide; "
            f"it provides {sorted(_CONTEXT)}"
        )
    if num_views > 2 and "z2" in required:
        raise RecipeError(f"{path}: a pairwise objective (z1, z2) needs num_views == 2, got {num_views}")
    if not set(names) & _CONTEXT:
        raise RecipeError(f"{path}: its forward takes none of the inputs a pipeline provides")


class Pipeline(nn.Module):
    """Views -> your encoder/projector(/predictor) -> optional feature augmentation -> loss.

    Built by :func:`build`; see the module docstring for the recipe format and placements.
    The encoder sees all views concatenated in one batch (one forward, as SimCLR does).
    """

    def __init__(
        self,
        generators: Sequence[ViewGenerator],
        branch_index: Sequence[int],
        terms: Sequence[nn.Module],
        weights: Sequence[float],
        names: Sequence[str],
        *,
        features: FeatureAugmenter | None = None,
        placement: str = "basic",
        samples: int = 1,
        reduction: str = "mean",
        stop_gradient: bool = True,
        keep_original: bool = True,
        symmetric: bool = True,
    ):
        super().__init__()
        self.views = nn.ModuleList(generators)
        self.branch_index = list(branch_index)
        self.terms = nn.ModuleList(terms)
        self.weights = list(weights)
        self.names = list(names)
        self.features = features
        self.placement = placement
        self.samples = samples
        self.reduction = reduction
        self.stop_gradient = stop_gradient
        self.keep_original = keep_original
        self.symmetric = symmetric
        self._inputs = [_required_inputs(t)[0] for t in self.terms]
        self._wants_params = any("view_params" in names for names in self._inputs)

    @property
    def num_views(self) -> int:
        return len(self.branch_index)

    def make_views(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[list[torch.Tensor], list[Params | None]]:
        """One view per branch, and each branch's params where its generator is parametric."""
        views, params = [], []
        for index in self.branch_index:
            gen = self.views[index]
            parametric = isinstance(gen, ParametricViewGenerator) and getattr(gen, "is_parametric", True)
            if parametric and self._wants_params:
                p = gen.sample(x, generator=generator)
                views.append(gen.apply(x, p))
                params.append(p)
            else:
                views.append(gen(x, generator=generator))
                params.append(None)
        return views, params

    def forward(
        self,
        x: torch.Tensor,
        encoder: Callable[[torch.Tensor], torch.Tensor],
        projector: Callable[[torch.Tensor], torch.Tensor] | None = None,
        predictor: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> PipelineOutput:
        check_tensor(x, "x", dtypes=None)
        self._check_predictor(predictor)
        views, params = self.make_views(x, generator=generator)
        batch = x.shape[0]
        h = encoder(torch.cat(views))
        z = projector(h) if projector is not None else h
        h_split, z_split = h.split(batch), z.split(batch)
        context: dict[str, Any] = {
            "x": x, "views": views, "encoder": encoder, "projector": projector,
            "predictor": predictor, "view_generator": self.views[self.branch_index[0]],
            "view_params": params[0], "generator": generator,
            "h": torch.stack(h_split, 1), "z": torch.stack(z_split, 1),
        }  # fmt: skip
        total = x.new_zeros((), dtype=torch.float32)
        terms: dict[str, torch.Tensor] = {}
        for term, weight, name, inputs in zip(self.terms, self.weights, self.names, self._inputs):
            if "z2" in inputs and self.num_views == 2:
                value = self._pairwise(term, inputs, context, z_split, predictor, generator)
            elif "z1" in inputs:  # multi-view objective called with all views as z1
                value = term(**self._kwargs(inputs, context, z1=context["z"]))
            else:
                value = term(**self._kwargs(inputs, context))
            terms[name] = value.detach()
            total = total + weight * value.float()
        return PipelineOutput(total, terms, views)

    def _check_predictor(self, predictor) -> None:
        if self.features is None:
            return
        if self.placement == "basic" and predictor is not None:
            raise ValueError("predictor: the 'basic' placement uses none; use placement 'parallel'")
        if self.placement != "basic" and predictor is None:
            raise ValueError(f"predictor: placement {self.placement!r} needs a predictor, got None")

    @staticmethod
    def _kwargs(inputs: Sequence[str], context: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        merged = {**context, **extra}
        return {n: merged[n] for n in inputs if n in merged}

    def _pairwise(self, term, inputs, context, z_split, predictor, generator) -> torch.Tensor:
        # An objective that is symmetric in its arguments (``symmetric = True``) gives the same
        # value for the swapped pair when both branches are treated alike: skip that work.
        alike = predictor is None and self.features is None and getattr(term, "symmetric", False)
        directions = [(0, 1), (1, 0)] if self.symmetric and not alike else [(0, 1)]
        heads = [predictor(z_split[a]) if predictor is not None else z_split[a] for a, _ in directions]
        augmented = (
            self._augment_all(z_split, heads, directions, generator) if self.features is not None else None
        )
        losses = []
        for d, (_, b) in enumerate(directions):
            target = z_split[b]
            parts = []
            if self.features is None or self.keep_original:
                parts.append(term(**self._kwargs(inputs, context, z1=heads[d], z2=target)))
            if augmented is not None:
                parts.append(self._augmented_loss(term, inputs, context, heads[d], target, augmented[d], predictor))
            losses.append(sum(parts))
        return sum(losses) / len(losses)

    def _augment_all(self, z_split, heads, directions, generator) -> list[torch.Tensor]:
        """Augment what every direction consumes in ONE call, split back per direction.

        One call matters for stateful augmenters: a support queue looks up all of this
        step's features before it enqueues any, so no lookup can return this step's own
        (other-view) features, and the queue advances once per step.
        """
        if self.placement in ("basic", "parallel"):  # A takes the target branch
            consumed = [z_split[b] for _, b in directions]
            partners = [z_split[a] for a, _ in directions]
        else:  # A takes the online branch, before or after the predictor
            online = [z_split[a] for a, _ in directions] if self.placement == "pre_predictor" else heads
            consumed, partners = online, [z_split[b] for _, b in directions]
        z, partner = torch.cat(consumed), torch.cat(partners)
        if self.stop_gradient:
            z, partner = z.detach(), partner.detach()
        out = self.features(z, partner=partner, k=self.samples, generator=generator)  # (n*B, k, D)
        return list(out.split(z_split[0].shape[0]))

    def _augmented_loss(self, term, inputs, context, head, target, augmented, predictor) -> torch.Tensor:
        if self.placement in ("basic", "parallel"):
            pairs = [(head, augmented[:, i]) for i in range(self.samples)]
        elif self.placement == "pre_predictor":
            b, k, d = augmented.shape
            predicted = predictor(augmented.reshape(b * k, d)).reshape(b, k, -1)
            pairs = [(predicted[:, i], target) for i in range(self.samples)]
        else:  # post_predictor
            pairs = [(augmented[:, i], target) for i in range(self.samples)]
        losses = torch.stack([term(**self._kwargs(inputs, context, z1=p, z2=t)).float() for p, t in pairs])
        return losses.sum() if self.reduction == "sum" else losses.mean()
