"""What a component takes, so the conformance kit and the bad-input matrix can feed it.

A component says what it takes with plain attributes, all optional:

* ``input_kind`` - a view generator's input: ``"image"`` (B, C, H, W) in [0, 1),
  ``"spectrogram"`` (B, C, F, T) normalised log-mels or ``"waveform"`` (B, T) clips in
  [-1, 1]. Without it the kind is read from the human ``input_layout``
  (``"(B, C, H, W)"``, ``"(B, C, F, T)"``, ``"(B, T) ..."``); a
  :class:`~augplug.components.ComposedViews` takes what its first stage takes.
* ``input_channels`` - C for images and spectrograms (default: a ``channels`` int
  attribute, else 3 for images and 1 for spectrograms).
* ``input_dim`` - D of a feature augmenter's (B, D) input (default 8).
* ``example_input(batch, *, generator)`` - a method returning a valid batch of ``batch``
  samples, for inputs none of the kinds above describe (targets that a view renders,
  token ids, ...). It wins over ``input_kind``.
* ``example_kwargs`` - on the registered factory (a class attribute, or an attribute of
  the factory function): the arguments that build a small instance when the defaults
  cannot (required arguments, or defaults too large for a quick test), e.g.
  ``example_kwargs = {"dim": 8, "size": 32}``.

Feature augmenters take (B, D) features; objectives take what their ``forward`` names
(the recipe's names: ``z1``/``z2`` (B, D) embeddings, ``z`` (B, V, D), ``x``,
``encoder``, ``view_generator``, ``view_params``, ``h``, ``generator``), built here
from small stand-ins.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from augplug import registry, rng
from augplug.components import ComposedViews, ParametricViewGenerator, Params, ViewGenerator

__all__ = [
    "ComponentUnderTest",
    "InputSpec",
    "NotTestable",
    "build_component",
    "input_spec",
    "is_parametric",
    "objective_arguments",
]

#: Spatial size of generated images and spectrograms (>= the viewmaker's 5 x 5 minimum).
SIDE = 16
#: Length of generated clips (> the log-mel front end's default n_fft of 512).
FRAMES = 1024
#: Feature width when a component declares none.
DIM = 8
#: ``size`` of the datasets built for tests.
DATASET_SIZE = 8


class NotTestable(Exception):
    """The kit cannot build this component or its input; the message says what to declare."""


@dataclass(frozen=True)
class InputSpec:
    """How to make a valid input batch for one component.

    ``kind`` is ``"image"``, ``"spectrogram"``, ``"waveform"``, ``"features"``,
    ``"custom"`` (the component's ``example_input``) or ``"objective"``; ``shape`` the
    per-sample shape (``None`` for custom inputs and objectives).
    """

    kind: str
    shape: tuple[int, ...] | None
    make_custom: Callable[..., torch.Tensor] | None = None

    @property
    def channel_dim(self) -> int | None:
        """Index of the channel dimension in a batch, for the wrong-channel-count case."""
        return 1 if self.kind in ("image", "spectrogram") else None

    def make(
        self,
        batch: int,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """A valid batch of ``batch`` samples, drawn from ``seed`` on the CPU, then moved."""
        g = torch.Generator().manual_seed(seed)
        if self.kind == "custom":
            x = self.make_custom(batch, generator=g)
        elif self.kind == "image":
            x = torch.rand((batch, *self.shape), generator=g)
        elif self.kind == "waveform":
            x = 2 * torch.rand((batch, *self.shape), generator=g) - 1
        elif self.kind in ("spectrogram", "features"):
            x = torch.randn((batch, *self.shape), generator=g)
        else:
            raise NotTestable(f"no input batches for kind {self.kind!r}")
        if x.is_floating_point():
            x = x.to(dtype)
        return x.to(device)


def is_parametric(views: Any) -> bool:
    """Whether ``views`` has a working ``sample``/``apply`` (a composition: every stage)."""
    return isinstance(views, ParametricViewGenerator) and getattr(views, "is_parametric", True)


def _layout_kind(layout: str | None) -> str | None:
    if not layout:
        return None
    if re.search(r"\(B,\s*C,\s*H,\s*W\)", layout):
        return "image"
    if re.search(r"\(B,\s*C,\s*F,\s*T\)", layout):
        return "spectrogram"
    if re.search(r"\(B,\s*T\)", layout):
        return "waveform"
    return None


def _first_stage(views: ViewGenerator) -> ViewGenerator:
    while isinstance(views, ComposedViews):
        views = views.stages[0]
    return views


def input_spec(kind: str, component: Any) -> InputSpec:
    """The :class:`InputSpec` of a built component of registry kind ``kind``."""
    if kind == "objective":
        return InputSpec("objective", None)
    if kind == "features":
        dim = getattr(component, "input_dim", None) or DIM
        return InputSpec("features", (int(dim),))
    if kind != "views":
        raise NotTestable(f"kind {kind!r} has no input batches")
    if callable(getattr(component, "example_input", None)):
        return InputSpec("custom", None, component.example_input)
    first = _first_stage(component)
    if callable(getattr(first, "example_input", None)):
        return InputSpec("custom", None, first.example_input)
    declared = getattr(first, "input_kind", None) or getattr(component, "input_kind", None)
    found = declared or _layout_kind(getattr(first, "input_layout", None))
    if found is None:
        raise NotTestable(
            f"{type(component).__name__} declares neither input_kind ('image', 'spectrogram', "
            f"'waveform') nor example_input(batch, *, generator), and its input_layout "
            f"{getattr(first, 'input_layout', None)!r} names none of them"
        )
    if found == "waveform":
        return InputSpec("waveform", (FRAMES,))
    if found not in ("image", "spectrogram"):
        raise NotTestable(f"{type(component).__name__}.input_kind: unknown kind {found!r}")
    channels = getattr(first, "input_channels", None)
    if channels is None:
        declared_channels = getattr(first, "channels", None)
        channels = declared_channels if isinstance(declared_channels, int) else None
    if channels is None:
        channels = 3 if found == "image" else 1
    return InputSpec(found, (int(channels), SIDE, SIDE))


@dataclass
class ComponentUnderTest:
    """A component to test: how to build fresh instances of it and what it takes.

    ``make()`` builds a fresh instance with ``kwargs``; ``create(**kwargs)`` builds one
    with other arguments (``None`` when only an instance was given, so no
    hyper-parameter cases); ``spec`` overrides the input read from the component.
    """

    kind: str
    name: str
    plugin: str
    make: Callable[[], Any]
    kwargs: dict[str, Any]
    create: Callable[..., Any] | None = None
    factory: Callable[..., Any] | None = None
    spec: InputSpec | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"

    def input_spec(self, instance: Any) -> InputSpec:
        return self.spec if self.spec is not None else input_spec(self.kind, instance)


def _example_kwargs(factory: Any) -> dict[str, Any]:
    declared = getattr(factory, "example_kwargs", None)
    if declared is not None and not isinstance(declared, Mapping):
        raise NotTestable(
            f"example_kwargs: expected a dict of arguments, got {type(declared).__name__}"
        )
    return dict(declared or {})


def build_component(
    kind: str, name: str, kwargs: Mapping[str, Any] | None = None
) -> ComponentUnderTest:
    """Look ``kind``/``name`` up in the registry and say how to build a small instance.

    ``kwargs`` (given) replace the factory's ``example_kwargs``. Raises
    :class:`NotTestable` when a required argument has no value.
    """
    entry = registry.get_registry()._entry(kind, name)
    reason = entry.unavailable_reason()
    if reason:
        raise NotTestable(f"unavailable: it {reason}")
    factory = entry.resolve()
    chosen = _example_kwargs(factory) if kwargs is None else dict(kwargs)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        if kind == "dataset" and "size" in signature.parameters and "size" not in chosen:
            chosen["size"] = DATASET_SIZE  # the default would build the full dataset
        missing = [
            p.name
            for p in signature.parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in chosen
        ]
        if missing:
            raise NotTestable(
                f"required argument(s) {missing} have no value: declare example_kwargs on "
                f"{getattr(factory, '__qualname__', factory)!r} (e.g. example_kwargs = "
                f"{{{', '.join(f'{m!r}: ...' for m in missing)}}})"
            )

    def create(**arguments: Any) -> Any:
        return registry.create(kind, name, **arguments)

    return ComponentUnderTest(
        kind, name, entry.plugin, lambda: create(**chosen), chosen, create, factory
    )


# ----------------------------------------------------------------- objectives
class ScaleViews(ParametricViewGenerator):
    """A tiny parametric view for objectives that need one: ``x * scale``, scale ~ U(0.5, 1.5).

    Differentiable in ``scale`` (its one continuous param); used as the stand-in
    ``view_generator`` when an objective's ``forward`` asks for one.
    """

    input_kind = "image"
    continuous_params = ("scale",)

    def sample(self, x, generator=None):
        shape = (x.shape[0],)
        return Params(scale=rng.uniform(shape, 0.5, 1.5, device=x.device, generator=generator))

    def apply(self, x, params):
        return x * params["scale"].to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def small_encoder(channels: int = 3, dim: int = DIM, seed: int = 0) -> nn.Module:
    """A seeded (B, C, H, W) -> (B, dim) network: mean-pool, then a linear map."""
    g = torch.Generator().manual_seed(seed)
    linear = nn.Linear(channels, dim)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=g))
        linear.bias.copy_(torch.randn(linear.bias.shape, generator=g))
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)


#: The objective arguments the kit can supply, by ``forward`` parameter name.
OBJECTIVE_NAMES = (
    "z1", "z2", "z", "z_target", "x", "encoder", "view_generator", "view_params", "h", "generator",
)  # fmt: skip


def objective_arguments(
    objective: nn.Module,
    batch: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    dim: int = DIM,
) -> dict[str, Any]:
    """Keyword arguments for ``objective(**kwargs)``, built from its ``forward`` signature.

    ``z1``, ``z2``: (B, D) embeddings (``z2`` correlated with ``z1``, as two views are);
    ``z``: (B, 2, D) and ``z_target`` (B, 2, D) its target-branch partner; ``x``: images (B, 3, 16, 16); ``encoder``: :func:`small_encoder`;
    ``view_generator``: :class:`ScaleViews`; ``view_params``: its draw for ``x``. Optional
    parameters other than these are left out. Raises :class:`NotTestable` for a required
    parameter the kit does not know.
    """
    g = torch.Generator().manual_seed(seed)
    parameters = inspect.signature(objective.forward).parameters
    unknown = [
        p.name
        for p in parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in OBJECTIVE_NAMES
    ]
    if unknown:
        raise NotTestable(
            f"forward needs {unknown}; the kit supplies {list(OBJECTIVE_NAMES)} (pass inputs= yourself)"
        )
    z1 = torch.randn(batch, dim, generator=g)
    z2 = z1 + 0.5 * torch.randn(batch, dim, generator=g)
    x = torch.rand(batch, 3, SIDE, SIDE, generator=g)
    views = ScaleViews()
    available = {
        "z1": z1,
        "z2": z2,
        "z": torch.stack((z1, z2), dim=1),
        "z_target": torch.stack((z2, z1), dim=1),
        "x": x,
        "encoder": small_encoder(seed=seed),
        "view_generator": views,
        "view_params": views.sample(x, generator=g),
    }
    # Required parameters, and z2 even when optional (a pairwise loss's second view).
    chosen = [
        name
        for name, p in parameters.items()
        if name in available and (p.default is inspect.Parameter.empty or name == "z2")
    ]
    out: dict[str, Any] = {}
    for name in chosen:
        value = available[name]
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype)
        elif isinstance(value, Params):
            value = value.to(device)
        elif isinstance(value, nn.Module):  # the stand-in encoder runs in the input's dtype
            value = value.to(device=device, dtype=dtype)
        out[name] = value
    return out
