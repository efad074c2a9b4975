"""Whole set-ups from a plain dict (or a TOML / JSON file): views, targets, feature augmentation, objectives.

A recipe::

    {
        "views": {"name": "simclr", "size": 32},           # every branch, or
        # "branch_views": [{"name": "byol", "branch": 0}, {"name": "byol", "branch": 1}],
        "num_views": 2,                                     # with "views"; default 2
        "target": {"momentum": 0.996, "schedule": "cosine", "total_steps": 10000},  # optional
        "features": {                                       # optional feature augmentation
            "name": "nearest_neighbour", "dim": 128,        # the augmenter and its arguments
            "placement": "parallel",                        # see below
            "stop_gradient": True, "samples": 1, "reduction": "mean",
            "keep_original": True, "enqueue": "one_view",
        },
        "objective": [{"name": "byol"},
                      {"name": "gradient_invariance", "weight": 0.1}],
        "swap_branches": True,
    }

A view spec is ``{"name": ..., **arguments}`` or a list of specs applied in order
(e.g. ``[{"name": "simclr", "size": 32}, {"name": "viewmaker"}]`` for "combined" views).
One spec under ``"views"`` is one module shared by every branch (its random draws differ
per branch); ``"branch_views"`` gives each branch its own. A multi-crop generator (one
that has ``n_global`` and ``n_local`` and returns a list of views per call, e.g.
``multicrop``) makes all the views in one call: ``num_views`` is then its crop count.

:func:`build` returns a :class:`Pipeline` (an ``nn.Module`` holding the views, the
momentum targets, the feature augmenter and the objectives, so its ``state_dict`` has
their weights, queues and schedules). Call it with your own networks:
``out = pipeline(x, encoder, projector, predictor)``; ``out.loss`` is the weighted sum,
``out.terms`` the detached parts.

**Encoding.** Views of one resolution are encoded in one call (``encoder(torch.cat(views))``,
so batch-norm statistics span them, as SimCLR does); multi-crop views make one call per
resolution, as DINO does.

**Momentum target** (``"target"``, BYOL / MoCo / DINO). The target branch uses EMA copies
of the encoder and projector (:class:`augplug.momentum.MomentumTarget`: momentum 0.996
raised to 1 by BYOL's cosine schedule over ``total_steps``, or ``"schedule": "constant"``
as MoCo). The copies are made from the networks of the first call (or by
:meth:`Pipeline.init_target`), live in the pipeline's ``state_dict`` and take no gradient.
Update them once per step, after the optimiser::

    out = pipeline(x, encoder, projector, predictor)
    out.loss.backward(); optimizer.step(); optimizer.zero_grad()
    pipeline.update_target()        # EMA towards the networks of the last call

With a multi-crop generator the target encodes the global crops only (DINO's teacher).
Without a ``"target"``, the target branch is the online network itself (SimSiam, SimCLR);
objectives such as ``byol``/``simsiam`` stop its gradient themselves.

**Pairwise objectives** (``forward(z1, z2)``) get ``z1`` = the online prediction of one
view (its projection passed through the predictor, if one is given) and ``z2`` = the
target branch's projection of another view. With two views the loss is averaged over
both directions (``swap_branches``, default true; one direction otherwise); with more
views, over every ordered pair (online view a, target view b), b a global view, a != b
(solo-learn's multi-crop form for BYOL-style losses).

**Feature augmentation placements.** The augmented feature is always a *target*: the
augmenter A consumes the target branch's projection behind a stop-gradient (sg), and
the loss pulls the online branch towards it, so the encoder is trained by the augmented
term through the online path and never through the augmented copy (Zhang et al. 2024,
"stop-gradient on the projected features that FA consumes"). q = predictor, t2 = the
target branch's projection of the other view (EMA target or online network)::

    basic           z1 ──────────────────────┐
                    t2 ── sg ── A ───────────┴─ L(z1, A(sg t2))          no predictor

    parallel        z1 ── q ─────────────────┐
                    t2 ── sg ── A ───────────┴─ L(q(z1), A(sg t2))       predictor and A on
                                                                         different views
    pre_predictor   z1 ── q ─────────────────┐
                    t2 ── sg ── A ── q ──────┴─ L(q(z1), sg q(A(t2)))    A, then q, on the target

    post_predictor  z1 ── q ─────────────────┐
                    t2 ── sg ── q ── A ──────┴─ L(q(z1), A(sg q(t2)))    q, then A, on the target

``stop_gradient: false`` removes the sg (an ablation: gradients then reach the target
branch's network through A, the failure mode the study reports). With ``samples: k`` the
augmenter draws k features and the k losses are averaged (``reduction: "mean"``) or
summed (``"sum"``, the "free loss" of Zhang et al. 2024). With ``keep_original`` (default)
the un-augmented pair's loss is added. Both directions' targets go through the augmenter
in one call, so a support queue never returns this step's own features and advances
once per step; a queue is filled with one view's target projections per step
(``enqueue: "one_view"``, B rows, as NNCLR and lightly) or both (``"both_views"``).

Objectives get their inputs by the names in their ``forward`` signature:

=====================  ===================================================================
``z1``, ``z2``         the pair above (pairwise objectives); an objective whose ``z2`` is
                       optional gets all online projections as ``z1``, (B, V, D), and no pairs
``z``                  all online projections as (B, V, D), no predictor or FA
``z_target``           the target branch's projections (B, G, D) of the G global views (the
                       EMA target's with a ``"target"``, else the online ones, detached)
``h``                  the encoder's outputs as (B, V, ...)
``x``                  the input batch
``views``              the list of views
``encoder``, ``projector``, ``predictor``   the networks passed in
``view_generator``     branch 0's view generator; ``view_params`` its params (parametric only)
``generator``          the ``torch.Generator`` passed to the call
=====================  ===================================================================
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
from augplug.checks import check_bool, check_choice, check_float, check_int, check_tensor
from augplug.components import (
    ComposedViews,
    FeatureAugmenter,
    ParametricViewGenerator,
    Params,
    ViewGenerator,
)
from augplug.momentum import MomentumTarget, unwrap

__all__ = ["Pipeline", "PipelineOutput", "Placement", "RecipeError", "Term", "build", "load_recipe"]

Network = Callable[[torch.Tensor], torch.Tensor]

_TOP_LEVEL = {
    "views",
    "branch_views",
    "num_views",
    "target",
    "features",
    "objective",
    "swap_branches",
}
_TARGET_OPTIONS = {"momentum", "schedule", "total_steps", "final_momentum"}
_FEATURE_OPTIONS = {
    "placement", "stop_gradient", "samples", "reduction", "keep_original", "enqueue",
}  # fmt: skip
_ENQUEUE = ("one_view", "both_views")
_CONTEXT = {
    "z1", "z2", "z", "z_target", "h", "x", "views", "encoder", "projector", "predictor",
    "view_generator", "view_params", "generator",
}  # fmt: skip


class RecipeError(ValueError):
    """A recipe is malformed; the message starts with the offending key path."""


@dataclass(frozen=True)
class Placement:
    """Where feature augmentation A sits relative to the predictor q (module docstring).

    ``uses_predictor``: the online branch goes through q. ``predict_first``: q is applied to
    the target before A (post_predictor). ``predict_after``: q is applied to A's output
    (pre_predictor).
    """

    name: str
    uses_predictor: bool
    predict_first: bool = False
    predict_after: bool = False


PLACEMENTS: dict[str, Placement] = {
    p.name: p
    for p in (
        Placement("basic", uses_predictor=False),
        Placement("parallel", uses_predictor=True),
        Placement("pre_predictor", uses_predictor=True, predict_after=True),
        Placement("post_predictor", uses_predictor=True, predict_first=True),
    )
}


@dataclass(frozen=True)
class FeatureOptions:
    """How the recipe's feature augmenter is wired in (the ``features`` options)."""

    placement: Placement
    samples: int = 1
    reduction: str = "mean"
    stop_gradient: bool = True
    keep_original: bool = True
    enqueue: str = "one_view"


@dataclass(frozen=True)
class Term:
    """One weighted objective of a recipe and the pipeline inputs its ``forward`` asks for."""

    objective: nn.Module
    weight: float
    name: str
    inputs: tuple[str, ...]

    def pairwise(self, num_views: int) -> bool:
        """Called with (z1, z2) pairs: ``z2`` is required, or optional with two views."""
        if "z2" not in self.inputs:
            return False
        return num_views == 2 or "z2" in _required_inputs(self.objective)


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
        hint = " ('symmetric' is now 'swap_branches')" if unknown[0] == "symmetric" else ""
        raise RecipeError(
            f"{unknown[0]}: unknown recipe key{hint}; expected some of {sorted(_TOP_LEVEL)}"
        )

    generators, branch_index, num_global = _build_branches(recipe)
    swap_branches = _checked(check_bool, recipe.get("swap_branches", True), "swap_branches")
    target = _target_options(recipe.get("target"))

    features, feature_options = None, None
    if recipe.get("features") is not None:
        if len(branch_index) != 2:
            raise RecipeError("features: feature augmentation needs exactly two branches")
        features, feature_options = _build_features(recipe["features"])

    terms = _build_terms(recipe.get("objective"))
    crops = _crops(generators[0])
    num_views = sum(crops) if crops else len(branch_index)
    _check_once_per_step(
        terms, num_views=num_views, swap_branches=swap_branches, features=features is not None
    )
    return Pipeline(
        generators, branch_index, terms,
        features=features, feature_options=feature_options, target=target,
        swap_branches=swap_branches, num_global=num_global,
    )  # fmt: skip


def _build_branches(recipe: Mapping[str, Any]) -> tuple[list[ViewGenerator], list[int], int]:
    """The view generators, which generator each view comes from, and the global view count."""
    if ("views" in recipe) == ("branch_views" in recipe):
        raise RecipeError(
            "views: give exactly one of 'views' (shared by every branch) or 'branch_views'"
        )
    if "branch_views" in recipe:
        if "num_views" in recipe:
            raise RecipeError(
                "num_views: only with 'views'; 'branch_views' has one entry per branch"
            )
        specs = recipe["branch_views"]
        if not isinstance(specs, Sequence) or isinstance(specs, (str, Mapping)) or len(specs) < 2:
            raise RecipeError(
                f"branch_views: expected a list of at least 2 view specs, got {specs!r}"
            )
        generators = [_build_views(spec, f"branch_views[{i}]") for i, spec in enumerate(specs)]
        if any(_crops(g) for g in generators):
            raise RecipeError(
                "branch_views: a multi-crop generator makes every view; give it under 'views'"
            )
        return generators, list(range(len(specs))), len(specs)
    generator = _build_views(recipe["views"], "views")
    crops = _crops(generator)
    if crops:
        if "num_views" in recipe:
            raise RecipeError(
                "num_views: a multi-crop generator sets the view count (n_global + n_local)"
            )
        return [generator], [0], crops[0]
    num_views = _checked(check_int, recipe.get("num_views", 2), "num_views", minimum=2)
    return [generator], [0] * num_views, num_views


def _crops(generator: ViewGenerator) -> tuple[int, int] | None:
    """(n_global, n_local) for a multi-crop generator, else None."""
    n_global, n_local = getattr(generator, "n_global", None), getattr(generator, "n_local", None)
    return None if n_global is None or n_local is None else (int(n_global), int(n_local))


def _target_options(spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise RecipeError(
            f"target: expected a dict such as {{'momentum': 0.996, 'total_steps': N}}, got {spec!r}"
        )
    unknown = sorted(set(spec) - _TARGET_OPTIONS)
    if unknown:
        raise RecipeError(
            f"target.{unknown[0]}: unknown option; expected some of {sorted(_TARGET_OPTIONS)}"
        )
    options = {
        "momentum": 0.996,
        "schedule": "cosine",
        "total_steps": None,
        "final_momentum": 1.0,
        **spec,
    }
    try:  # validate now, with the same checks the target itself runs
        MomentumTarget(nn.Identity(), **options)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"target.{exc}") from exc
    return options


def _checked(check: Callable[..., Any], value: Any, path: str, *args: Any, **kwargs: Any) -> Any:
    """Run an ``augplug.checks`` check named by the key path; its error becomes a RecipeError."""
    try:
        return check(value, path, *args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise RecipeError(str(exc)) from exc


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
            if repr(key) in message or message.startswith(f"{key}:"):
                raise RecipeError(f"{path}.{key}: {message}") from exc
        raise RecipeError(f"{path}: {message}") from exc
    except (ValueError, LookupError, ImportError) as exc:
        raise RecipeError(
            f"{path}.name: {exc}" if isinstance(exc, LookupError) else f"{path}: {exc}"
        ) from exc
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


def _build_features(spec: Any) -> tuple[FeatureAugmenter, FeatureOptions]:
    spec = _spec_dict(spec, "features")
    options = {k: spec.pop(k) for k in list(spec) if k in _FEATURE_OPTIONS}
    placement = _checked(
        check_choice, options.pop("placement", "basic"), "features.placement", PLACEMENTS
    )
    _checked(check_int, options.get("samples", 1), "features.samples", minimum=1)
    _checked(check_choice, options.get("reduction", "mean"), "features.reduction", ("mean", "sum"))
    _checked(check_choice, options.get("enqueue", "one_view"), "features.enqueue", _ENQUEUE)
    for flag in ("stop_gradient", "keep_original"):
        _checked(check_bool, options.get(flag, True), f"features.{flag}")
    augmenter = _create("features", spec, "features")
    if not isinstance(augmenter, FeatureAugmenter):
        raise RecipeError(f"features: {spec['name']!r} did not build a FeatureAugmenter")
    return augmenter, FeatureOptions(placement=PLACEMENTS[placement], **options)


def _build_terms(spec: Any) -> list[Term]:
    if spec is None:
        raise RecipeError("objective: missing; expected a spec or a list of specs")
    if isinstance(spec, Mapping):
        spec = [spec]
    if not isinstance(spec, Sequence) or isinstance(spec, str) or not spec:
        raise RecipeError(f"objective: expected a spec or a non-empty list of specs, got {spec!r}")
    terms: list[Term] = []
    for i, term_spec in enumerate(spec):
        path = f"objective[{i}]"
        term_spec = _spec_dict(term_spec, path)
        weight = _checked(check_float, term_spec.pop("weight", 1.0), f"{path}.weight")
        objective = _create("objective", term_spec, path)
        inputs = _check_inputs(objective, path)
        name = term_spec["name"]
        if any(t.name == name for t in terms):
            name = f"{name}[{i}]"
        terms.append(Term(objective, float(weight), name, inputs))
    return terms


def _check_once_per_step(
    terms: Sequence[Term], *, num_views: int, swap_branches: bool, features: bool
) -> None:
    """A stateful objective (``once_per_step``, e.g. MoCo's queue) must see one pair per step."""
    for i, term in enumerate(terms):
        if not getattr(term.objective, "once_per_step", False):
            continue
        reason = (
            "feature augmentation (it would be called per augmented copy)" if features
            else f"{num_views} views (one call per pair)" if num_views > 2
            else "swap_branches (one call per direction)" if swap_branches
            else None
        )  # fmt: skip
        if reason is not None:
            raise RecipeError(
                f"objective[{i}]: {term.name!r} keeps state that advances on every call, so it "
                f"must run once per step; this recipe would call it more often: {reason}. "
                "Set swap_branches = false, use two views and no features"
            )


def _forward_parameters(objective: nn.Module) -> list[inspect.Parameter]:
    params = inspect.signature(objective.forward).parameters.values()
    return [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _required_inputs(objective: nn.Module) -> list[str]:
    return [p.name for p in _forward_parameters(objective) if p.default is inspect.Parameter.empty]


def _check_inputs(objective: nn.Module, path: str) -> tuple[str, ...]:
    names = [p.name for p in _forward_parameters(objective)]
    unknown = [n for n in _required_inputs(objective) if n not in _CONTEXT]
    if unknown:
        raise RecipeError(
            f"{path}: its forward needs {unknown}, which a pipeline does not provide; "
            f"it provides {sorted(_CONTEXT)}"
        )
    if not set(names) & _CONTEXT:
        raise RecipeError(f"{path}: its forward takes none of the inputs a pipeline provides")
    return tuple(n for n in names if n in _CONTEXT)


class _Branch(nn.Module):
    """encoder -> projector as one module: what a momentum target copies."""

    def __init__(self, encoder: nn.Module, projector: nn.Module | None):
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        return h if self.projector is None else self.projector(h)


def _as_module(network: Any, name: str) -> nn.Module | None:
    if network is None or isinstance(network, nn.Module):
        return None if network is None else unwrap(network)
    raise TypeError(
        f"{name}: a recipe with a momentum 'target' needs an nn.Module to copy, "
        f"got {type(network).__name__}"
    )


class Pipeline(nn.Module):
    """Views -> your encoder/projector(/predictor) -> optional targets and feature augmentation -> loss.

    Built by :func:`build`; see the module docstring for the recipe format, the momentum
    target and the placements.
    """

    def __init__(
        self,
        generators: Sequence[ViewGenerator],
        branch_index: Sequence[int],
        terms: Sequence[Term],
        *,
        features: FeatureAugmenter | None = None,
        feature_options: FeatureOptions | None = None,
        target: Mapping[str, Any] | None = None,
        swap_branches: bool = True,
        num_global: int | None = None,
    ):
        super().__init__()
        self.views = nn.ModuleList(generators)
        self.branch_index = list(branch_index)
        self.num_global = len(self.branch_index) if num_global is None else num_global
        self.term_list = list(terms)
        self.terms = nn.ModuleList(t.objective for t in terms)  # in the state_dict
        self.features = features
        self.feature_options = feature_options if features is not None else None
        self.target_options = dict(target) if target is not None else None
        self.target: MomentumTarget | None = None
        self.swap_branches = swap_branches
        self._wants_params = any("view_params" in t.inputs for t in terms)
        self._enqueue_argument = (
            features is not None and "enqueue" in inspect.signature(features.forward).parameters
        )
        self._last_networks: tuple[nn.Module, nn.Module | None] | None = None
        self.register_load_state_dict_pre_hook(self._check_target_before_load)

    @property
    def num_views(self) -> int:
        return (
            len(self.branch_index) if _crops(self.views[0]) is None else sum(_crops(self.views[0]))
        )

    @property
    def placement(self) -> str | None:
        """The feature-augmentation placement's name (None without feature augmentation)."""
        return None if self.feature_options is None else self.feature_options.placement.name

    # -- momentum target -------------------------------------------------------------------

    def init_target(self, encoder: nn.Module, projector: nn.Module | None = None) -> None:
        """Make the momentum target: EMA copies of ``encoder`` and ``projector``.

        Done by the first call otherwise; call it yourself before ``load_state_dict`` of a
        checkpoint that holds a target.
        """
        if self.target_options is None:
            raise RuntimeError(
                "init_target: this recipe has no 'target'; add one to use momentum targets"
            )
        online = _Branch(_as_module(encoder, "encoder"), _as_module(projector, "projector"))
        self.target = MomentumTarget(online, **self.target_options)
        self._last_networks = (online.encoder, online.projector)

    @torch.no_grad()
    def update_target(
        self, encoder: nn.Module | None = None, projector: nn.Module | None = None
    ) -> None:
        """One EMA step of the target towards the online networks; call after ``optimizer.step()``.

        Without arguments, the networks of the last call are used.
        """
        if self.target is None:
            raise RuntimeError(
                "update_target: no momentum target yet; the recipe needs a 'target' and one "
                "pipeline call (or init_target) before the first update"
            )
        if encoder is None:
            encoder, projector = self._last_networks
        online = _Branch(_as_module(encoder, "encoder"), _as_module(projector, "projector"))
        self.target.update(online)

    def _check_target_before_load(self, module, state_dict, prefix, *args) -> None:
        if self.target is None and any(k.startswith(prefix + "target.") for k in state_dict):
            raise RuntimeError(
                "load_state_dict: the checkpoint holds a momentum target; call "
                "pipeline.init_target(encoder, projector) before loading it"
            )

    # -- the step ------------------------------------------------------------------------

    def make_views(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[list[torch.Tensor], list[Params | None]]:
        """Every view, and each view's params where its generator is parametric."""
        views: list[torch.Tensor] = []
        params: list[Params | None] = []
        for index in self.branch_index:
            gen = self.views[index]
            parametric = isinstance(gen, ParametricViewGenerator) and getattr(
                gen, "is_parametric", True
            )
            if parametric and self._wants_params and _crops(gen) is None:
                p = gen.sample(x, generator=generator)
                if not views and torch.is_grad_enabled():
                    # Branch 0's continuous params carry gradients, so a regulariser
                    # (gradient_invariance's "paper" estimator) differentiates the loss's own
                    # encoding of view 0, as the reference does, instead of encoding it again.
                    p.requires_grad_([n for n in getattr(gen, "continuous_params", ()) if n in p])
                views.append(gen.apply(x, p))
                params.append(p)
                continue
            out = gen(x, generator=generator)
            crops = list(out) if isinstance(out, (list, tuple)) else [out]
            views.extend(crops)
            params.extend([None] * len(crops))
        return views, params

    def forward(
        self,
        x: torch.Tensor,
        encoder: Network,
        projector: Network | None = None,
        predictor: Network | None = None,
        *,
        generator: torch.Generator | None = None,
        views: Sequence[torch.Tensor] | None = None,
        view_params: Params | None = None,
    ) -> PipelineOutput:
        """One step's loss. ``views`` (and branch 0's ``view_params``) made beforehand, e.g. by
        :meth:`make_views` outside a ``torch.compile``-d step (dynamo cannot trace a
        ``torch.Generator``), replace the pipeline's own draw."""
        check_tensor(x, "x", dtypes=None)
        self._check_networks(encoder, projector, predictor)
        if self.target_options is not None and self.target is None:
            self.init_target(encoder, projector)  # copied before this step changes anything
        if views is None:
            views, params = self.make_views(x, generator=generator)
        else:
            views, params = self._given_views(x, views, view_params)
        h, z = self._encode(views, encoder, projector)
        targets = self._target_projections(views, encoder, projector, z)
        context: dict[str, Any] = {
            "x": x, "views": views, "encoder": encoder, "projector": projector,
            "predictor": predictor, "view_generator": self.views[self.branch_index[0]],
            "view_params": params[0], "generator": generator,
        }  # fmt: skip
        # The (B, V, ...) stacks are copies: made only when a term asks for them.
        wanted = {name for term in self.term_list for name in term.inputs}
        if "h" in wanted:
            context["h"] = _stack(h)
        multi_view = any("z1" in t.inputs and not t.pairwise(len(views)) for t in self.term_list)
        if "z" in wanted or multi_view:  # a multi-view objective takes the stack as z1
            context["z"] = _stack(z)
        if "z_target" in wanted:
            context["z_target"] = _stack(
                [t if self.target is not None else t.detach() for t in targets]
            )
        total = x.new_zeros((), dtype=torch.float32)
        values: dict[str, torch.Tensor] = {}
        for term in self.term_list:
            if term.pairwise(len(views)):
                value = self._pairwise(term, context, z, targets, predictor, generator)
            elif "z1" in term.inputs:  # a multi-view objective called with all views as z1
                value = term.objective(**_inputs(term, context, z1=context.get("z")))
            else:
                value = term.objective(**_inputs(term, context))
            values[term.name] = value.detach()
            total = total + term.weight * value.float()
        return PipelineOutput(total, values, views)

    def _given_views(self, x, views, view_params) -> tuple[list[torch.Tensor], list[Params | None]]:
        if isinstance(views, torch.Tensor) or not isinstance(views, Sequence):
            raise TypeError(
                f"views: expected a list of {self.num_views} view tensors, got {type(views).__name__}"
            )
        if len(views) != self.num_views:
            raise ValueError(
                f"views: expected {self.num_views} views (this recipe's), got {len(views)}"
            )
        for i, v in enumerate(views):
            check_tensor(v, f"views[{i}]", dtypes=None)
            if v.shape[0] != x.shape[0]:
                raise ValueError(
                    f"views[{i}]: expected the batch size of x ({x.shape[0]}), got {v.shape[0]}"
                )
        if self._wants_params and view_params is None:
            raise ValueError(
                "view_params: an objective of this recipe needs branch 0's params with given views"
            )
        return list(views), [view_params] + [None] * (len(views) - 1)

    def _check_networks(self, encoder, projector, predictor) -> None:
        if not callable(encoder):
            raise TypeError(f"encoder: expected a callable network, got {type(encoder).__name__}")
        for name, network in (("projector", projector), ("predictor", predictor)):
            if network is not None and not callable(network):
                raise TypeError(
                    f"{name}: expected a callable network or None, got {type(network).__name__}"
                )
        if self.feature_options is None:
            return
        placement = self.feature_options.placement
        if not placement.uses_predictor and predictor is not None:
            raise ValueError("predictor: the 'basic' placement uses none; use placement 'parallel'")
        if placement.uses_predictor and predictor is None:
            raise ValueError(f"predictor: placement {placement.name!r} needs a predictor, got None")

    def _encode(
        self, views: list[torch.Tensor], encoder: Network, projector: Network | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Encoder outputs and projections per view, one network call per view resolution."""
        h: list[torch.Tensor | None] = [None] * len(views)
        z: list[torch.Tensor | None] = [None] * len(views)
        for group in _resolution_groups(views):
            h_group = encoder(torch.cat([views[i] for i in group]))
            z_group = projector(h_group) if projector is not None else h_group
            for i, h_i, z_i in zip(group, h_group.chunk(len(group)), z_group.chunk(len(group))):
                h[i], z[i] = h_i, z_i
        return h, z

    def _target_projections(self, views, encoder, projector, z) -> list[torch.Tensor]:
        """The target branch's projections of the global views."""
        if self.target_options is None:
            return z[: self.num_global]
        self._last_networks = (_as_module(encoder, "encoder"), _as_module(projector, "projector"))
        global_views = views[: self.num_global]
        targets: list[torch.Tensor | None] = [None] * len(global_views)
        for group in _resolution_groups(global_views):
            out = self.target(torch.cat([global_views[i] for i in group]))
            for i, t in zip(group, out.chunk(len(group))):
                targets[i] = t
        return targets

    def _pairs(self, term: Term, predictor, num_views: int) -> list[tuple[int, int]]:
        if num_views > 2:
            return [(a, b) for b in range(self.num_global) for a in range(num_views) if a != b]
        alike = (
            predictor is None and self.features is None and self.target is None
            and getattr(term.objective, "swap_invariant", False)
        )  # fmt: skip
        # L(z1, z2) == L(z2, z1) with both branches treated alike: the swapped pair is the same loss.
        return [(0, 1), (1, 0)] if self.swap_branches and not alike else [(0, 1)]

    def _pairwise(self, term, context, z, targets, predictor, generator) -> torch.Tensor:
        pairs = self._pairs(term, predictor, len(z))
        predictions = [predictor(z[a]) if predictor is not None else z[a] for a, _ in pairs]
        augmented = (
            self._augment(targets, pairs, predictor, generator)
            if self.features is not None
            else None
        )
        losses = []
        for d, (_, b) in enumerate(pairs):
            parts = []
            if augmented is None or self.feature_options.keep_original:
                parts.append(
                    term.objective(**_inputs(term, context, z1=predictions[d], z2=targets[b]))
                )
            if augmented is not None:
                copies = augmented[d]  # (B, k, D)
                per_copy = torch.stack([
                    term.objective(**_inputs(term, context, z1=predictions[d], z2=copies[:, i])).float()
                    for i in range(copies.shape[1])
                ])  # fmt: skip
                parts.append(
                    per_copy.sum() if self.feature_options.reduction == "sum" else per_copy.mean()
                )
            losses.append(sum(parts))
        return sum(losses) / len(losses)

    def _augment(self, targets, pairs, predictor, generator) -> list[torch.Tensor]:
        """The augmented target of every pair, (B, k, D) each, from ONE augmenter call.

        One call matters for stateful augmenters: a support queue looks up all of this
        step's targets before it enqueues any, so no lookup returns this step's own
        features, and the queue advances once per step.
        """
        options = self.feature_options
        consumed = torch.cat([targets[b] for _, b in pairs])
        partners = torch.cat([targets[a] for a, _ in pairs])
        enqueue = (
            {"enqueue": targets[0].detach()}
            if self._enqueue_argument and options.enqueue == "one_view"
            else {}
        )
        if options.stop_gradient:
            consumed, partners = consumed.detach(), partners.detach()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not options.stop_gradient):
            if options.placement.predict_first:
                consumed = predictor(consumed)
            out = self.features(
                consumed, partner=partners, k=options.samples, generator=generator, **enqueue
            )
            if options.placement.predict_after:
                rows, k, dim = out.shape
                out = predictor(out.reshape(rows * k, dim)).reshape(rows, k, -1)
        return list(out.split(targets[0].shape[0]))


def _resolution_groups(views: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices of the views grouped by shape, in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, v in enumerate(views):
        groups.setdefault(tuple(v.shape[1:]), []).append(i)
    return list(groups.values())


def _stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """(B, V, ...) when every tensor has one shape (multi-resolution encoder outputs may not)."""
    if len({tuple(t.shape) for t in tensors}) != 1:
        return None
    return torch.stack(list(tensors), 1)


def _inputs(term: Term, context: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    merged = {**context, **extra}
    return {n: merged[n] for n in term.inputs if n in merged}
