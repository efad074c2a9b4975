"""Bad inputs for any registered component, and what counts as handling them well.

:func:`bad_input_cases` lists, for one component, calls with a bad (or borderline) input of
every class: wrong rank, dtype or type, an empty batch, a batch of one, mismatched batches
and widths, non-finite values with validation on and off, extreme magnitudes, a wrong
channel count, bad generators, and wrong hyper-parameter types and ranges. :func:`run_case`
makes the call on a fresh instance and classifies the outcome:

* ``clear`` - a ``TypeError`` / ``ValueError`` / ``LookupError`` raised by the component
  whose message names the argument at fault (the :mod:`augplug.checks` format);
* ``handled`` - an input that may be valid was accepted and the output passed its check;
* ``obscure`` - any other exception, one raised inside torch, or a message that does not
  name the argument;
* ``silent`` - a bad input accepted without error, or a wrong result (non-finite output
  from finite input, a scale-invariant loss that changes with the scale);
* ``corrupted`` - the module's state changed during a call that raised, or a call left a
  non-finite value in a buffer or parameter.

The bad-input matrix (``tests/core/test_bad_input_matrix.py``) runs every case of every
registered component; :func:`augplug.testing.check_view_generator` and its siblings run
the cases of one component as their ``bad_input`` contract.
"""

from __future__ import annotations

import inspect
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from augplug.checks import validation
from augplug.testing.inputs import ComponentUnderTest, is_parametric, objective_arguments

__all__ = [
    "FAILURES",
    "OUTCOMES",
    "Case",
    "Outcome",
    "bad_input_cases",
    "classify_error",
    "run_case",
]

OUTCOMES = ("clear", "handled", "obscure", "silent", "corrupted")
#: Outcomes that fail the matrix and the ``bad_input`` contract.
FAILURES = ("obscure", "silent", "corrupted")

_TORCH_DIR = os.path.dirname(torch.__file__)
_ERRORS = (TypeError, ValueError, LookupError)
#: Objective arguments that are embeddings (scaled together by the magnitude case).
_EMBEDDINGS = ("z1", "z2", "z", "z_target")


@dataclass(frozen=True)
class Outcome:
    category: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.category in FAILURES


@dataclass(frozen=True)
class Case:
    """One call with a bad input.

    ``expect`` is ``"error"`` (accepting it is a silent wrong result), ``"either"`` (a
    clear error or a checked output) or ``"valid"`` (must be accepted). ``call`` gets a
    fresh module (``None`` for a constructor case) and returns the output, which
    ``check`` inspects (``None`` when it is right, else what is wrong). A clear error names
    one of ``arguments``.
    """

    component: ComponentUnderTest
    name: str
    expect: str
    arguments: tuple[str, ...]
    call: Callable[[Any], Any]
    check: Callable[[Any], str | None] | None = None
    validate: bool = True
    constructs: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.component.label}: {self.name}"


# --------------------------------------------------------------- classification
def _innermost_file(exc: BaseException) -> str:
    tb = exc.__traceback__
    filename = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return filename


def _names(message: str, argument: str) -> bool:
    return (
        re.search(rf"(?<![A-Za-z0-9_]){re.escape(argument)}(?![A-Za-z0-9_])", message) is not None
    )


def classify_error(exc: BaseException, arguments: tuple[str, ...]) -> Outcome:
    """``clear`` or ``obscure`` for an exception raised by a call with a bad ``arguments``."""
    message = str(exc)
    summary = f"{type(exc).__name__}: {message[:300]}"
    if not isinstance(exc, _ERRORS):
        return Outcome("obscure", f"{summary} (expected TypeError or ValueError)")
    if _innermost_file(exc).startswith(_TORCH_DIR):
        return Outcome("obscure", f"{summary} (raised inside torch)")
    if not any(_names(message, a) for a in arguments):
        return Outcome("obscure", f"{summary} (does not name {' or '.join(arguments)})")
    return Outcome("clear", summary)


def _snapshot(module: Any) -> dict[str, Any] | None:
    if not isinstance(module, torch.nn.Module):
        return None
    return {
        k: v.detach().clone() if isinstance(v, torch.Tensor) else v
        for k, v in module.state_dict().items()
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point():
            return bool(((a == b) | (a.isnan() & b.isnan())).all())
        return torch.equal(a, b)
    return a == b


def _changed(before: dict[str, Any], module: Any) -> list[str]:
    after = _snapshot(module)
    return [k for k in before if k not in after or not _same(before[k], after[k])] + [
        k for k in after if k not in before
    ]


def _newly_non_finite(before: dict[str, Any], module: Any) -> list[str]:
    out = []
    for key, value in _snapshot(module).items():
        if (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and not bool(value.isfinite().all())
        ):
            old = before.get(key)
            if not (isinstance(old, torch.Tensor) and not bool(old.isfinite().all())):
                out.append(key)
    return out


def run_case(case: Case) -> Outcome:
    """Make the call of ``case`` on a fresh instance and classify what happened."""
    module = None if case.constructs else case.component.make()
    before = _snapshot(module)
    try:
        with validation(case.validate):
            output = case.call(module)
    except Exception as exc:
        outcome = classify_error(exc, case.arguments)
        changed = _changed(before, module) if before is not None else []
        if changed:
            return Outcome(
                "corrupted", f"state {changed} changed by a call that raised {outcome.detail}"
            )
        return outcome
    if before is not None:
        poisoned = _newly_non_finite(before, module)
        if poisoned:
            return Outcome("corrupted", f"non-finite values stored in {poisoned}")
    if case.expect == "error":
        return Outcome(
            "silent",
            f"accepted without error (expected an error naming {' or '.join(case.arguments)})",
        )
    problem = case.check(output) if case.check is not None else None
    if problem:
        return Outcome("silent", problem)
    return Outcome("handled")


# --------------------------------------------------------------- output checks
def _batch_check(batch: int, *, finite: bool = True) -> Callable[[Any], str | None]:
    def check(out: Any) -> str | None:
        tensor = out[0] if isinstance(out, (list, tuple)) and out else out
        if not isinstance(tensor, torch.Tensor):
            return f"returned {type(out).__name__}, expected a tensor"
        if tensor.ndim == 0 or tensor.shape[0] != batch:
            return f"returned shape {tuple(tensor.shape)}, expected a batch of {batch}"
        if finite and tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            return "non-finite output from a finite input"
        return None

    return check


def _finite_scalar(out: Any) -> str | None:
    if not isinstance(out, torch.Tensor) or out.ndim != 0:
        return (
            f"returned {type(out).__name__} {getattr(out, 'shape', '')}, expected a scalar tensor"
        )
    if not bool(out.isfinite()):
        return f"non-finite loss {out.item()} from finite inputs"
    return None


def _with_nonfinite(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    flat = x.view(-1)
    flat[0] = float("nan")
    flat[-1] = float("inf")
    return x


# --------------------------------------------------------------- hyper-parameters
def _hyperparameter_cases(component: ComponentUnderTest) -> list[Case]:
    """Wrong types and ranges for every argument whose default says its type."""
    if component.create is None or component.factory is None:
        return []
    try:
        parameters = inspect.signature(component.factory).parameters
    except (TypeError, ValueError):
        return []
    base = dict(component.kwargs)
    cases = []

    def add(name: str, label: str, value: Any, expect: str, check=None) -> None:
        def call(_module, name=name, value=value):
            return component.create(**{**base, name: value})

        cases.append(
            Case(component, f"{name}={label}", expect, (name,), call, check, constructs=True)
        )

    dataset_check = _dataset_check if component.kind == "dataset" else None
    for name, p in parameters.items():
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        default = base.get(name, p.default)
        if default is inspect.Parameter.empty or default is None:
            continue
        if name == "device":
            add(name, "'nope'", "nope", "error")
        elif isinstance(default, bool):
            add(name, "'yes'", "yes", "error")
        elif isinstance(default, (int, float)):
            add(name, "str", str(default), "error")
            add(name, "nan", math.nan, "error")
            add(name, "-1", -1 if isinstance(default, int) else -1.0, "either", dataset_check)
            if isinstance(default, int):
                add(name, "2.5", 2.5, "error")
        elif isinstance(default, str):
            add(name, "int", 7, "error")
            add(name, "'no-such-choice'", "no-such-choice", "error")
        elif (
            isinstance(default, tuple)
            and default
            and all(isinstance(v, (int, float)) for v in default)
        ):
            add(name, "str", "ab", "error")
            add(name, "too-short", default[:1], "error")
            add(name, "nan", (math.nan,) * len(default), "error")
        elif isinstance(default, torch.dtype):
            add(name, "str", "float32", "error")
    return cases


def _dataset_check(dataset: Any) -> str | None:
    if len(dataset) == 0:
        return "built an empty dataset"
    if dataset.inputs.is_floating_point() and not bool(dataset.inputs.isfinite().all()):
        return "non-finite inputs"
    return None


# --------------------------------------------------------------- per kind
def _common_tensor_cases(
    component: ComponentUnderTest,
    argument: str,
    make: Callable[..., torch.Tensor],
    call: Callable[[Any, torch.Tensor], Any],
    *,
    output_check: Callable[[int], Callable[[Any], str | None]] = lambda batch: _batch_check(batch),
    channel_dim: int | None = None,
    also: tuple[str, ...] = (),
) -> list[Case]:
    """The input-tensor cases shared by views, feature augmenters and objectives' embeddings.

    ``output_check(batch)`` checks the output of a valid call on a batch of that size; a
    clear error names ``argument`` or one of ``also`` (e.g. the other view of a pair).
    """
    arguments = (argument, *also)
    x = make(2)
    cases = [
        Case(component, f"{argument}: a list", "error", arguments, lambda m: call(m, x.tolist())),
        Case(component, f"{argument}: 0-D tensor", "error", arguments, lambda m: call(m, torch.tensor(0.5))),
        Case(component, f"{argument}: two extra dims", "error", arguments, lambda m: call(m, x[..., None, None])),
        Case(component, f"{argument}: int64", "error", arguments, lambda m: call(m, (x * 10).long())),
        Case(component, f"{argument}: complex64", "error", arguments, lambda m: call(m, x.to(torch.complex64))),
        Case(
            component, f"{argument}: empty batch", "either", arguments,
            lambda m: call(m, make(0)), output_check(0),
        ),
        Case(
            component, f"{argument}: batch of 1", "valid", arguments,
            lambda m: call(m, make(1)), output_check(1),
        ),
        Case(
            component, f"{argument}: bfloat16", "either", arguments,
            lambda m: call(m, make(2, dtype=torch.bfloat16)), output_check(2),
        ),
        Case(
            component, f"{argument}: non-finite, validation on", "error", arguments,
            lambda m: call(m, _with_nonfinite(x)),
        ),
        Case(
            component, f"{argument}: non-finite, validation off", "either", arguments,
            lambda m: call(m, _with_nonfinite(x)), validate=False,
        ),
    ]  # fmt: skip
    if channel_dim is not None:

        def more_channels(m):
            extra = x.narrow(channel_dim, 0, 1)
            return call(m, torch.cat([x, extra], dim=channel_dim))

        cases.append(
            Case(component, f"{argument}: one more channel", "either", arguments, more_channels,
                 output_check(2))
        )  # fmt: skip
    return cases


def _view_cases(component: ComponentUnderTest, views: Any) -> list[Case]:
    spec = component.input_spec(views)
    make = spec.make
    cases = _common_tensor_cases(
        component, "x", make, lambda m, x: m(x), channel_dim=spec.channel_dim
    )
    x = make(2)
    if spec.kind != "custom":
        cases.append(
            Case(
                component,
                "x: magnitude 1e6",
                "either",
                ("x",),
                lambda m: m(x * 1e6),
                _batch_check(2),
            )
        )
    cases.append(
        Case(
            component, "generator: a string", "error", ("generator",), lambda m: m(x, generator="0")
        )
    )
    if torch.cuda.is_available():
        cases.append(
            Case(component, "generator: on another device", "error", ("generator",),
                 lambda m: m(x, generator=torch.Generator(device="cuda")))
        )  # fmt: skip
    if is_parametric(views):
        with torch.no_grad():
            has_params = len(views.sample(x)) > 0
        expect = "error" if has_params else "either"
        cases += [
            Case(component, "params: of a batch of 3", expect, ("params", "x"),
                 lambda m: m.apply(x, m.sample(make(3))), _batch_check(2)),
            Case(component, "params: empty", expect, ("params",), lambda m: m.apply(x, {}), _batch_check(2)),
        ]  # fmt: skip
    return cases


def _feature_cases(component: ComponentUnderTest, augmenter: Any) -> list[Case]:
    spec = component.input_spec(augmenter)
    needs_partner = bool(getattr(augmenter, "needs_partner", False))

    def partner_for(z: Any) -> Any:
        if not needs_partner:
            return None
        if (
            isinstance(z, torch.Tensor)
            and z.ndim == 2
            and z.is_floating_point()
            and z.isfinite().all()
        ):
            return z.flip(0)
        return spec.make(2)

    def forward(m, z, **kw):
        return m(z, partner=kw.pop("partner", partner_for(z)), **kw)

    cases = _common_tensor_cases(component, "z", spec.make, forward)
    z = spec.make(4, seed=1)
    wide = torch.cat([z, z[:, :1]], dim=1)
    cases += [
        Case(component, "z: magnitude 1e30", "either", ("z",), lambda m: forward(m, z * 1e30), _batch_check(4)),
        Case(component, "z: magnitude 1e-30", "either", ("z",), lambda m: forward(m, z * 1e-30), _batch_check(4)),
        Case(component, "z: one more feature", "either", ("z",),
             lambda m: forward(m, wide, partner=wide.flip(0) if needs_partner else None), _batch_check(4)),
        Case(component, "k: 0", "error", ("k",), lambda m: forward(m, z, k=0)),
        Case(component, "k: '2'", "error", ("k",), lambda m: forward(m, z, k="2")),
        Case(component, "k: 2", "valid", ("k",), lambda m: forward(m, z, k=2), _batch_check(4)),
        Case(component, "generator: a string", "error", ("generator",), lambda m: forward(m, z, generator="0")),
    ]  # fmt: skip
    if needs_partner:
        cases += [
            Case(component, "partner: missing", "error", ("partner",), lambda m: m(z)),
            Case(component, "partner: batch of 3", "error", ("partner", "z"), lambda m: m(z, partner=z[:3])),
            Case(component, "partner: int64", "error", ("partner",), lambda m: m(z, partner=z.long())),
        ]  # fmt: skip
    return cases


def _objective_cases(component: ComponentUnderTest, objective: Any) -> list[Case]:
    base = objective_arguments(objective, 4)
    parameters = inspect.signature(objective.forward).parameters
    cases: list[Case] = []

    def with_args(**changes):
        return lambda m: m(**{**objective_arguments(m, 4), **changes})

    embeddings = [n for n in _EMBEDDINGS if n in base]
    for name in embeddings:

        def make(batch, dtype=torch.float32, name=name):
            return objective_arguments(objective, batch, dtype=dtype)[name]

        cases += _common_tensor_cases(
            component,
            name,
            make,
            lambda m, t, name=name: _call_with(m, name, t),
            output_check=lambda batch: _finite_scalar,
            also=tuple(embeddings),
        )
        cases.append(
            Case(component, f"{name}: one more feature", "error" if len(embeddings) > 1 else "either",
                 (name, *embeddings), with_args(**{name: torch.cat([base[name], base[name][..., :1]], -1)}),
                 _finite_scalar)
        )  # fmt: skip
    if "z1" in base and "z2" in base:
        cases.append(
            Case(component, "z2: batch of 3", "error", ("z2", "z1"), with_args(z2=base["z2"][:3]))
        )
    if embeddings:
        cases.append(
            Case(component, "embeddings: magnitude 1e30 and 1e-30", "either", tuple(embeddings),
                 lambda m: _scale_responses(m), _scale_check)
        )  # fmt: skip
    for name in ("x", "view_params"):
        if name in base:
            cases.append(
                Case(component, f"{name}: batch of 3", "error", (name, "x", "view_params"),
                     with_args(**{name: _rows(base[name], 3)}))
            )  # fmt: skip
    if "x" in base:
        cases.append(Case(component, "x: a list", "error", ("x",), with_args(x=base["x"].tolist())))
    if "encoder" in base:
        cases.append(
            Case(component, "encoder: an int", "error", ("encoder",), with_args(encoder=3))
        )
    if "view_generator" in base:
        cases.append(
            Case(
                component,
                "view_generator: an int",
                "error",
                ("view_generator",),
                with_args(view_generator=3),
            )
        )
    if "generator" in parameters:
        cases.append(
            Case(
                component, "generator: a string", "error", ("generator",), with_args(generator="0")
            )
        )
    return cases


def _rows(value: Any, rows: int) -> Any:
    if isinstance(value, Mapping):
        return type(value)({k: v[:rows] for k, v in value.items()})
    return value[:rows]


def _call_with(objective: Any, name: str, value: Any) -> Any:
    """Call ``objective`` with ``value`` as ``name`` and valid other arguments of its batch and dtype."""
    batch = value.shape[0] if isinstance(value, torch.Tensor) and value.ndim > 0 else 2
    floating = isinstance(value, torch.Tensor) and value.is_floating_point()
    arguments = objective_arguments(
        objective, batch, dtype=value.dtype if floating else torch.float32
    )
    arguments[name] = value
    return objective(**arguments)


def _scale_responses(objective: Any) -> tuple[torch.Tensor, ...]:
    """The loss at scales 1, 10, 1e30 and 1e-30 of every embedding."""
    arguments = objective_arguments(objective, 4)
    out = []
    for scale in (1.0, 10.0, 1e30, 1e-30):
        scaled = {k: v * scale if k in _EMBEDDINGS else v for k, v in arguments.items()}
        out.append(objective(**scaled).detach())
    return tuple(out)


def _scale_check(losses: tuple[torch.Tensor, ...]) -> str | None:
    one, ten, huge, tiny = (float(v) for v in losses)
    if not math.isfinite(one):
        return f"non-finite loss {one} at scale 1"
    scale_invariant = math.isclose(one, ten, rel_tol=1e-5, abs_tol=1e-6)
    for label, value in (("1e30", huge), ("1e-30", tiny)):
        if not math.isfinite(value):
            return f"non-finite loss {value} at scale {label} (finite {one} at scale 1)"
        if scale_invariant and not math.isclose(value, one, rel_tol=1e-3, abs_tol=1e-5):
            return (
                f"the loss is scale-invariant (scale 1: {one:.6g}, 10: {ten:.6g}) "
                f"but is {value:.6g} at scale {label}"
            )
    return None


def _dataset_cases(component: ComponentUnderTest) -> list[Case]:
    def with_dataset(action):
        def call(_module):
            return action(component.make())

        return call

    def all_rows(out: tuple[int, int]) -> str | None:
        covered, rows = out
        return None if covered == rows else f"batches covered {covered} rows of {rows}"

    cases = []
    for label, value, expect in (
        ("0", 0, "error"), ("-1", -1, "error"), ("'2'", "2", "error"), ("2.5", 2.5, "error"),
        ("3", 3, "valid"),
    ):  # fmt: skip
        cases.append(
            Case(component, f"batches(batch_size={label})", expect, ("batch_size",),
                 with_dataset(lambda d, v=value: (sum(len(b[0]) for b in d.batches(v)), len(d))),
                 all_rows, constructs=True)
        )  # fmt: skip
    cases.append(
        Case(component, "batches(generator='0')", "error", ("generator",),
             with_dataset(lambda d: list(d.batches(3, shuffle=True, generator="0"))), constructs=True)
    )  # fmt: skip
    return cases


def bad_input_cases(component: ComponentUnderTest) -> list[Case]:
    """Every bad-input case of ``component`` (built once here to read its input).

    Raises :class:`~augplug.testing.inputs.NotTestable` when the component does not say
    what it takes.
    """
    cases = _hyperparameter_cases(component)
    if component.kind == "dataset":
        return cases + _dataset_cases(component)
    instance = component.make()
    if component.kind == "views":
        return cases + _view_cases(component, instance)
    if component.kind == "features":
        return cases + _feature_cases(component, instance)
    if component.kind == "objective":
        return cases + _objective_cases(component, instance)
    return cases
