"""Conformance contracts every augplug component must meet, for plugin authors' own tests.

::

    from augplug.testing import check_parametric_view_generator, check_objective

    def test_my_views_conform():
        check_parametric_view_generator(MyViews())      # raises AssertionError listing failures

    def test_my_loss_conforms():
        report = check_objective(MyLoss())              # the per-contract results on success

Each ``check_*`` runs named contracts and returns a :class:`ContractReport` (one
:class:`ContractResult` per contract: ``pass``, ``fail`` or ``skip`` with the reason),
or raises ``AssertionError`` listing the failed ones (``raise_on_failure=False`` returns
the report instead). Inputs are drawn by Hypothesis (batch sizes and seeds;
``max_examples`` per contract, 5 by default, derandomised so a run is reproducible) from
what the component says it takes (:mod:`augplug.testing.inputs`: ``input_kind``,
``input_channels``, ``input_dim``, ``example_input``); ``inputs=`` overrides it with a
callable ``inputs(batch, generator) -> tensor``.

The contracts (the rules of ``ARCHITECTURE.md``):

* ``output`` - batch size, dtype and device kept; finite output for finite input.
* ``equal_generators`` - two calls with equally seeded ``torch.Generator`` s agree exactly.
* ``global_rng`` - the global RNG is untouched when a generator is given.
* ``low_precision`` - bfloat16 and float16 inputs give finite outputs of that dtype
  (objectives: a finite float loss).
* ``bad_input`` - every case of :mod:`augplug.testing.bad_inputs` is a clear error or a
  correct result: no torch-internal error, no message that fails to name the argument,
  no silent wrong result, no state changed by a call that raised.
* ``state_dict`` - after some calls, the state saved with ``torch.save`` and loaded into a
  fresh copy is identical, and the copy gives the same next output.
* ``replay`` (parametric views) - ``apply(x, params)`` twice agree, ``apply(x, sample(x,
  g))`` is ``forward(x, generator=g)``, and every param has the batch as leading dim.
* ``gradients`` - parametric views: finite gradients reach ``x`` and every
  ``continuous_params`` entry; objectives: finite gradients reach the embeddings.
* datasets: ``structure`` (targets match the tasks), ``deterministic`` (same arguments,
  same data), ``batches`` (every row once; shuffling follows the generator).
"""

from __future__ import annotations

import copy
import inspect
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from augplug.components import MultiTaskDataset
from augplug.testing import bad_inputs
from augplug.testing.inputs import (
    ComponentUnderTest,
    InputSpec,
    NotTestable,
    build_component,
    is_parametric,
    objective_arguments,
)

__all__ = [
    "ContractReport",
    "ContractResult",
    "check_component",
    "check_dataset",
    "check_feature_augmenter",
    "check_objective",
    "check_parametric_view_generator",
    "check_view_generator",
]

Inputs = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class ContractResult:
    """The result of one contract: ``status`` is ``"pass"``, ``"fail"`` or ``"skip"``."""

    contract: str
    status: str
    detail: str = ""


@dataclass
class ContractReport:
    """All contract results of one component."""

    component: str
    results: list[ContractResult] = field(default_factory=list)

    @property
    def failures(self) -> list[ContractResult]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def result(self, contract: str) -> ContractResult:
        for r in self.results:
            if r.contract == contract:
                return r
        raise KeyError(
            f"contract: no contract {contract!r}; have {[r.contract for r in self.results]}"
        )

    def __str__(self) -> str:
        lines = [f"{self.component}:"]
        for r in self.results:
            lines.append(f"  {r.contract:<16} {r.status}" + (f"  {r.detail}" if r.detail else ""))
        return "\n".join(lines)

    def raise_for_failures(self) -> ContractReport:
        if self.failures:
            listed = "\n".join(f"  {r.contract}: {r.detail}" for r in self.failures)
            raise AssertionError(
                f"{self.component} fails {len(self.failures)} contract(s):\n{listed}\n{self}"
            )
        return self


class _Skip(Exception):
    pass


def _settings(max_examples: int) -> settings:
    # Derandomised and without a database: the same examples every run, no files written.
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )


def _run_contracts(
    label: str,
    contracts: Iterable[tuple[str, Callable[[], None]]],
    raise_on_failure: bool,
    skip: Iterable[str] = (),
) -> ContractReport:
    report = ContractReport(label)
    skip = set(skip)
    for name, contract in contracts:
        if name in skip:
            report.results.append(ContractResult(name, "skip", "skipped by the caller"))
            continue
        try:
            contract()
        except _Skip as skip:
            report.results.append(ContractResult(name, "skip", str(skip)))
        except NotTestable as exc:
            report.results.append(ContractResult(name, "skip", str(exc)))
        except Exception as exc:
            detail = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
            report.results.append(ContractResult(name, "fail", " ".join(detail.split())[:600]))
        else:
            report.results.append(ContractResult(name, "pass"))
    return report.raise_for_failures() if raise_on_failure else report


def _examples(max_examples: int, test: Callable[[int, int], None], batches=(1, 4)) -> None:
    """Run ``test(batch, seed)`` on Hypothesis-drawn batch sizes and seeds."""

    @_settings(max_examples)
    @given(batch=st.integers(*batches), seed=st.integers(0, 2**31 - 1))
    def run(batch: int, seed: int) -> None:
        test(batch, seed)

    run()


def _generator(seed: int, device: torch.device | str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _rng_state(device: torch.device | str) -> list[torch.Tensor]:
    states = [torch.get_rng_state()]
    if torch.device(device).type == "cuda":
        states.append(torch.cuda.get_rng_state(torch.device(device)))
    return states


def _assert_rng_untouched(before: list[torch.Tensor], device, what: str) -> None:
    after = _rng_state(device)
    assert all(torch.equal(a, b) for a, b in zip(before, after)), (
        f"{what} with an explicit generator changed the global RNG state"
    )


def _assert_same(a: Any, b: Any, what: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape, f"{what}: shapes differ"
        same = (a == b) | (a.isnan() & b.isnan()) if a.is_floating_point() else a == b
        assert bool(same.all()), f"{what}: outputs differ (max |difference| {(a - b).abs().max()})"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{what}: lengths differ"
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_same(u, v, f"{what}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{what}: keys differ ({sorted(a)} vs {sorted(b)})"
        for k in a:
            _assert_same(a[k], b[k], f"{what}[{k!r}]")
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (list, tuple)) else out


def _assert_batch_output(out: Any, x: torch.Tensor, *, dtype: torch.dtype | None = None) -> None:
    y = _first(out)
    assert isinstance(y, torch.Tensor), f"returned {type(out).__name__}, expected a tensor"
    assert y.ndim >= 1 and y.shape[0] == x.shape[0], (
        f"batch size not kept: input {tuple(x.shape)}, output {tuple(y.shape)}"
    )
    want = x.dtype if dtype is None else dtype
    if x.is_floating_point():
        assert y.dtype == want, f"dtype not kept: input {x.dtype}, output {y.dtype}"
    assert y.device == x.device, f"device not kept: input on {x.device}, output on {y.device}"
    if y.is_floating_point():
        assert bool(y.isfinite().all()), f"non-finite output for a finite {x.dtype} input"


def _round_trip(module: torch.nn.Module, fresh: torch.nn.Module) -> torch.nn.Module:
    """Load ``module``'s state, through ``torch.save``/``torch.load``, into ``fresh``."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    _assert_same(dict(module.state_dict()), dict(fresh.state_dict()), "reloaded state_dict")
    return fresh


def _subject(component: Any, kind: str, name: str | None, spec: InputSpec | None):
    """The instance and a :class:`ComponentUnderTest` around it (fresh copies for each call)."""
    if isinstance(component, ComponentUnderTest):
        return component.make(), component
    if isinstance(component, type):
        component = component()
    pristine = copy.deepcopy(component)
    label = name or type(component).__name__
    return component, ComponentUnderTest(
        kind, label, "-", lambda: copy.deepcopy(pristine), {}, spec=spec
    )


def _spec(cut: ComponentUnderTest, instance: Any, inputs: Inputs | None) -> InputSpec:
    if inputs is not None:
        return InputSpec("custom", None, inputs)
    return cut.input_spec(instance)


def _bad_input_contract(cut: ComponentUnderTest) -> Callable[[], None]:
    def contract() -> None:
        problems = []
        for case in bad_inputs.bad_input_cases(cut):
            outcome = bad_inputs.run_case(case)
            if outcome.failed:
                problems.append(f"[{case.name}] {outcome.category}: {outcome.detail}")
        assert not problems, f"{len(problems)} bad-input case(s): " + "; ".join(problems)

    return contract


# ----------------------------------------------------------------- views
def _view_contracts(views, cut, spec, device, max_examples, parametric):
    views = views.to(device)

    def make(batch: int, seed: int, dtype=torch.float32) -> torch.Tensor:
        return spec.make(batch, seed=seed, dtype=dtype, device=device)

    def output() -> None:
        def test(batch, seed):
            x = make(batch, seed)
            _assert_batch_output(views(x, generator=_generator(seed, device)), x)

        _examples(max_examples, test)

    def equal_generators() -> None:
        def test(batch, seed):
            x = make(batch, seed)
            a = views(x, generator=_generator(seed, device))
            b = views(x, generator=_generator(seed, device))
            _assert_same(a, b, "two calls with equally seeded generators")

        _examples(max_examples, test)

    def global_rng() -> None:
        def test(batch, seed):
            x = make(batch, seed)
            before = _rng_state(device)
            views(x, generator=_generator(seed, device))
            if parametric:
                views.sample(x, generator=_generator(seed, device))
            _assert_rng_untouched(before, device, "the view generator")

        _examples(max_examples, test)

    def low_precision() -> None:
        def test(batch, seed):
            for dtype in (torch.bfloat16, torch.float16):
                x = make(batch, seed, dtype)
                _assert_batch_output(views(x, generator=_generator(seed, device)), x)

        _examples(max(1, max_examples // 2), test)

    def state_dict() -> None:
        fresh = cut.make().to(device)
        x = make(2, 0)
        for seed in range(2):
            views(x, generator=_generator(seed, device))
        copy_ = _round_trip(views, fresh)
        _assert_same(
            views(x, generator=_generator(7, device)),
            copy_(x, generator=_generator(7, device)),
            "the next view of the original and of the reloaded copy",
        )

    contracts = [
        ("output", output),
        ("equal_generators", equal_generators),
        ("global_rng", global_rng),
        ("low_precision", low_precision),
        ("state_dict", state_dict),
        ("bad_input", _bad_input_contract(cut)),
    ]
    if not parametric:
        return contracts

    def replay() -> None:
        def test(batch, seed):
            x = make(batch, seed)
            with torch.no_grad():
                params = views.sample(x, generator=_generator(seed, device))
            for key, value in params.items():
                assert (
                    isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == batch
                ), (
                    f"params[{key!r}]: expected a tensor with {batch} rows, got "
                    f"{tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__}"
                )
            first = views.apply(x, params)
            _assert_same(first, views.apply(x, params), "apply(x, params) twice")
            _assert_same(
                first, views(x, generator=_generator(seed, device)),
                "apply(x, sample(x, generator=g)) and forward(x, generator=g)",
            )  # fmt: skip

        _examples(max_examples, test)

    def gradients() -> None:
        names = tuple(views.continuous_params)

        def test(batch, seed):
            x = make(batch, seed).requires_grad_(True)
            with torch.no_grad():
                params = views.sample(x, generator=_generator(seed, device))
            missing = [n for n in names if n not in params]
            assert not missing, (
                f"continuous_params {missing} are not in sample()'s params {sorted(params)}"
            )
            leaves = {n: params[n].detach().clone().requires_grad_(True) for n in names}
            out = _first(views.apply(x, {**params, **leaves}))
            weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
            (out.float() * weights.to(out.device)).sum().backward()
            for what, leaf in (("x", x), *((f"params[{n!r}]", v) for n, v in leaves.items())):
                assert leaf.grad is not None, f"apply is not differentiable in {what} (no gradient)"
                assert bool(leaf.grad.isfinite().all()), f"non-finite gradient for {what}"

        _examples(max(1, max_examples // 2), test)

    return [*contracts[:3], ("replay", replay), *contracts[3:], ("gradients", gradients)]


def check_view_generator(
    views: Any,
    *,
    inputs: Inputs | None = None,
    device: torch.device | str = "cpu",
    max_examples: int = 5,
    raise_on_failure: bool = True,
    name: str | None = None,
    skip: Iterable[str] = (),
) -> ContractReport:
    """Run the view-generator contracts on ``views`` (an instance, a class or a zero-arg factory).

    ``inputs(batch, generator)`` makes valid batches when the component does not say what it
    takes; ``device`` is where the contracts run (the bad-input cases run on the CPU).
    """
    instance, cut = _subject(views, "views", name, None)
    spec = _spec(cut, instance, inputs)
    cut.spec = spec
    return _run_contracts(
        f"views/{cut.name}",
        _view_contracts(instance, cut, spec, device, max_examples, parametric=False),
        raise_on_failure,
        skip,
    )


def check_parametric_view_generator(
    views: Any,
    *,
    inputs: Inputs | None = None,
    device: torch.device | str = "cpu",
    max_examples: int = 5,
    raise_on_failure: bool = True,
    name: str | None = None,
    skip: Iterable[str] = (),
) -> ContractReport:
    """:func:`check_view_generator` plus ``replay`` and ``gradients`` (``sample``/``apply``)."""
    instance, cut = _subject(views, "views", name, None)
    if not is_parametric(instance):
        raise TypeError(
            f"views: expected a parametric view generator, got {type(instance).__name__}"
        )
    spec = _spec(cut, instance, inputs)
    cut.spec = spec
    return _run_contracts(
        f"views/{cut.name}",
        _view_contracts(instance, cut, spec, device, max_examples, parametric=True),
        raise_on_failure,
        skip,
    )


# ----------------------------------------------------------------- features
def check_feature_augmenter(
    augmenter: Any,
    *,
    dim: int | None = None,
    device: torch.device | str = "cpu",
    max_examples: int = 5,
    raise_on_failure: bool = True,
    name: str | None = None,
    skip: Iterable[str] = (),
) -> ContractReport:
    """Run the feature-augmenter contracts on ``augmenter`` with (B, ``dim``) features.

    ``dim`` defaults to the augmenter's ``input_dim`` (else 8). A ``needs_partner``
    augmenter gets the other view's features too; ``k=3`` must give (B, 3, D).
    """
    spec = None if dim is None else InputSpec("features", (dim,))
    instance, cut = _subject(augmenter, "features", name, spec)
    spec = cut.input_spec(instance)
    cut.spec = spec
    instance = instance.to(device)
    pristine = copy.deepcopy(instance)
    needs_partner = bool(getattr(instance, "needs_partner", False))

    def call(module, z, seed, **kw):
        partner = z.flip(0) if needs_partner else None
        return module(z, partner=partner, generator=_generator(seed, device), **kw)

    def make(batch, seed, dtype=torch.float32):
        return spec.make(batch, seed=seed, dtype=dtype, device=device)

    def output() -> None:
        def test(batch, seed):
            z = make(batch, seed)
            _assert_batch_output(call(cut.make().to(device), z, seed), z)
            samples = call(cut.make().to(device), z, seed, k=3)
            assert tuple(samples.shape) == (batch, 3, z.shape[1]), (
                f"k=3: expected shape {(batch, 3, z.shape[1])}, got {tuple(samples.shape)}"
            )

        _examples(max_examples, test)

    def equal_generators() -> None:
        def test(batch, seed):
            z = make(batch, seed)
            a = call(copy.deepcopy(pristine), z, seed)
            b = call(copy.deepcopy(pristine), z, seed)
            _assert_same(a, b, "two copies called with equally seeded generators")

        _examples(max_examples, test)

    def global_rng() -> None:
        def test(batch, seed):
            z = make(batch, seed)
            before = _rng_state(device)
            call(instance, z, seed)
            _assert_rng_untouched(before, device, "the feature augmenter")

        _examples(max_examples, test)

    def low_precision() -> None:
        def test(batch, seed):
            for dtype in (torch.bfloat16, torch.float16):
                z = make(batch, seed, dtype)
                _assert_batch_output(call(cut.make().to(device), z, seed), z)

        _examples(max(1, max_examples // 2), test)

    def state_dict() -> None:
        module, fresh = cut.make().to(device), cut.make().to(device)
        for seed in range(3):
            call(module, make(4, seed), seed)
        copy_ = _round_trip(module, fresh)
        z = make(4, 9)
        _assert_same(
            call(module, z, 9), call(copy_, z, 9), "the next output of the original and the copy"
        )
        _assert_same(
            dict(module.state_dict()), dict(copy_.state_dict()), "the state after the next call"
        )

    return _run_contracts(
        f"features/{cut.name}",
        [
            ("output", output),
            ("equal_generators", equal_generators),
            ("global_rng", global_rng),
            ("low_precision", low_precision),
            ("state_dict", state_dict),
            ("bad_input", _bad_input_contract(cut)),
        ],
        raise_on_failure,
        skip,
    )


# ----------------------------------------------------------------- objectives
def check_objective(
    objective: Any,
    *,
    inputs: Callable[..., dict[str, Any]] | None = None,
    device: torch.device | str = "cpu",
    max_examples: int = 5,
    raise_on_failure: bool = True,
    name: str | None = None,
    skip: Iterable[str] = (),
) -> ContractReport:
    """Run the objective contracts on ``objective``.

    Its ``forward`` arguments are built from their names (see
    :func:`augplug.testing.inputs.objective_arguments`); ``inputs(batch, seed=..., dtype=...,
    device=...)`` returning the keyword arguments replaces that.
    """
    instance, cut = _subject(objective, "objective", name, None)
    instance = instance.to(device)
    pristine = copy.deepcopy(instance)
    takes_generator = "generator" in inspect.signature(instance.forward).parameters

    def arguments(module, batch, seed, dtype=torch.float32) -> dict[str, Any]:
        make = inputs or (lambda b, **kw: objective_arguments(module, b, **kw))
        out = make(batch, seed=seed, dtype=dtype, device=device)
        if takes_generator:
            out["generator"] = _generator(seed, device)
        return out

    def check_loss(loss: Any) -> None:
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0, (
            f"expected a scalar tensor, got {type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}"
        )
        assert loss.is_floating_point() and bool(loss.isfinite()), (
            f"expected a finite float loss, got {loss}"
        )
        assert loss.device.type == torch.device(device).type, (
            f"loss on {loss.device}, inputs on {device}"
        )

    def output() -> None:
        def test(batch, seed):
            check_loss(instance(**arguments(instance, batch, seed)))

        _examples(max_examples, test, batches=(2, 6))

    def equal_generators() -> None:
        def test(batch, seed):
            # Copies of one instance: randomly initialised weights (prototypes) must not differ.
            a = copy.deepcopy(pristine)(**arguments(instance, batch, seed))
            b = copy.deepcopy(pristine)(**arguments(instance, batch, seed))
            _assert_same(a, b, "the loss of two equal calls")

        _examples(max_examples, test, batches=(2, 6))

    def global_rng() -> None:
        def test(batch, seed):
            args = arguments(instance, batch, seed)
            before = _rng_state(device)
            instance(**args)
            _assert_rng_untouched(before, device, "the objective")

        _examples(max_examples, test, batches=(2, 6))

    def low_precision() -> None:
        def test(batch, seed):
            for dtype in (torch.bfloat16, torch.float16):
                check_loss(instance(**arguments(instance, batch, seed, dtype)))

        _examples(max(1, max_examples // 2), test, batches=(2, 6))

    def gradients() -> None:
        def test(batch, seed):
            args = arguments(instance, batch, seed)
            leaves = {
                k: v.requires_grad_(True)
                for k, v in args.items()
                if isinstance(v, torch.Tensor) and v.is_floating_point()
            }
            if not leaves:
                raise _Skip("no floating tensor among the arguments")
            instance(**args).backward()
            reached = [k for k, v in leaves.items() if v.grad is not None]
            assert reached, f"no gradient reaches any of {sorted(leaves)}"
            for k in reached:
                assert bool(leaves[k].grad.isfinite().all()), f"non-finite gradient for {k}"

        _examples(max(1, max_examples // 2), test, batches=(2, 6))

    def state_dict() -> None:
        module, fresh = cut.make().to(device), cut.make().to(device)
        for seed in range(2):
            module(**arguments(module, 4, seed))
        copy_ = _round_trip(module, fresh)
        _assert_same(
            module(**arguments(module, 4, 9)), copy_(**arguments(copy_, 4, 9)),
            "the next loss of the original and of the reloaded copy",
        )  # fmt: skip

    return _run_contracts(
        f"objective/{cut.name}",
        [
            ("output", output),
            ("equal_generators", equal_generators),
            ("global_rng", global_rng),
            ("low_precision", low_precision),
            ("gradients", gradients),
            ("state_dict", state_dict),
            ("bad_input", _bad_input_contract(cut)),
        ],
        raise_on_failure,
        skip,
    )


# ----------------------------------------------------------------- datasets
def check_dataset(
    dataset: Callable[[], MultiTaskDataset] | MultiTaskDataset,
    *,
    max_examples: int = 5,
    raise_on_failure: bool = True,
    name: str | None = None,
    skip: Iterable[str] = (),
) -> ContractReport:
    """Run the dataset contracts on a :class:`~augplug.components.MultiTaskDataset`.

    Pass a zero-argument factory (e.g. ``lambda: my_dataset(size=16, seed=0)``) to also
    check that equal arguments give equal data, and the bad-input cases of ``batches``.
    """
    if isinstance(dataset, ComponentUnderTest):
        cut = dataset
    elif isinstance(dataset, MultiTaskDataset):
        cut = ComponentUnderTest(
            "dataset", name or type(dataset).__name__, "-", lambda: dataset, {}
        )
    else:
        cut = ComponentUnderTest(
            "dataset", name or getattr(dataset, "__name__", "dataset"), "-", dataset, {}
        )
    instance = cut.make()

    def structure() -> None:
        assert isinstance(instance, MultiTaskDataset), (
            f"expected a MultiTaskDataset, got {type(instance).__name__}"
        )
        n = len(instance)
        assert n > 0 and instance.inputs.shape[0] == n, (
            f"{n} rows but inputs of shape {tuple(instance.inputs.shape)}"
        )
        if instance.inputs.is_floating_point():
            assert bool(instance.inputs.isfinite().all()), "non-finite inputs"
        for task in instance.tasks:
            target = instance.targets[task.name]
            if task.kind == "classification":
                assert not target.is_floating_point(), (
                    f"targets[{task.name!r}]: expected class indices, got {target.dtype}"
                )
                assert target.ndim == 1 and bool(((target >= 0) & (target < task.size)).all()), (
                    f"targets[{task.name!r}]: expected (N,) classes in [0, {task.size})"
                )
            else:
                assert target.is_floating_point() and bool(target.isfinite().all()), (
                    f"targets[{task.name!r}]: expected finite floats"
                )
                width = 1 if target.ndim == 1 else target.shape[1]
                assert width == task.size, (
                    f"targets[{task.name!r}]: {width} columns for size {task.size}"
                )

    def deterministic() -> None:
        if isinstance(dataset, MultiTaskDataset):
            raise _Skip("pass a factory to check that equal arguments give equal data")
        again = cut.make()
        _assert_same(instance.inputs, again.inputs, "inputs of two equal builds")
        _assert_same(dict(instance.targets), dict(again.targets), "targets of two equal builds")

    def batches() -> None:
        n = len(instance)

        def test(batch, seed):
            rows = torch.cat([b[0] for b in instance.batches(batch)])
            _assert_same(rows, instance.inputs, f"batches({batch}) concatenated")
            before = _rng_state("cpu")
            first = [
                b[0]
                for b in instance.batches(batch, shuffle=True, generator=_generator(seed, "cpu"))
            ]
            _assert_rng_untouched(before, "cpu", "batches(shuffle=True)")
            second = [
                b[0]
                for b in instance.batches(batch, shuffle=True, generator=_generator(seed, "cpu"))
            ]
            _assert_same(first, second, "two shuffles with equally seeded generators")
            assert sum(len(b) for b in first) == n, "a shuffled epoch does not cover every row once"

        _examples(max_examples, test, batches=(1, max(1, n)))

    contracts = [("structure", structure), ("deterministic", deterministic), ("batches", batches)]
    if not isinstance(dataset, MultiTaskDataset):
        contracts.append(("bad_input", _bad_input_contract(cut)))
    return _run_contracts(f"dataset/{cut.name}", contracts, raise_on_failure, skip)


# ----------------------------------------------------------------- registry
def check_component(
    kind: str,
    name: str,
    *,
    kwargs: dict[str, Any] | None = None,
    max_examples: int = 5,
    raise_on_failure: bool = True,
    skip: Iterable[str] = (),
) -> ContractReport:
    """Run the contracts of a registered component's kind on it, built from the registry.

    ``kwargs`` replaces the factory's ``example_kwargs``; ``skip`` names contracts not to
    run. A component the kit cannot build
    or feed gets one ``build`` result, ``skip`` with the reason.
    """
    try:
        cut = build_component(kind, name, kwargs)
        if kind == "dataset":
            return check_dataset(
                cut, max_examples=max_examples, raise_on_failure=raise_on_failure, skip=skip
            )
        instance = cut.make()
        if kind != "objective":
            cut.spec = cut.input_spec(instance)
    except NotTestable as exc:
        return ContractReport(f"{kind}/{name}", [ContractResult("build", "skip", str(exc))])
    except Exception as exc:  # an import or constructor failure is the plugin's failure
        report = ContractReport(
            f"{kind}/{name}", [ContractResult("build", "fail", f"{type(exc).__name__}: {exc}")]
        )
        return report.raise_for_failures() if raise_on_failure else report
    options = {
        "max_examples": max_examples,
        "raise_on_failure": raise_on_failure,
        "name": name,
        "skip": skip,
    }
    if kind == "views":
        parametric = is_parametric(instance)
        check = check_parametric_view_generator if parametric else check_view_generator
        return check(cut, **options)
    if kind == "features":
        return check_feature_augmenter(cut, **options)
    return check_objective(cut, **options)
