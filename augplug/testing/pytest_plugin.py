"""``pytest --augplug-check PLUGIN``: one test per component x contract of an installed plugin.

Registered by the ``--augplug-check`` option (see the top-level ``_augplug_pytestplugin``
module, the ``pytest11`` entry point). Each component's contracts run once, on its first
test, and every contract's result is reported as its own test: passed, failed with the
contract's message, or skipped with the reason. ``--augplug-check-examples N`` sets the
Hypothesis examples per contract.
"""

from __future__ import annotations

import pytest

from augplug import registry
from augplug.testing.contracts import ContractReport, check_component
from augplug.testing.inputs import build_component, is_parametric

__all__ = ["ContractTests"]

#: The contracts each kind runs, in order (views: parametric ones add replay and gradients).
CONTRACTS = {
    "views": ("output", "equal_generators", "global_rng", "low_precision", "state_dict", "bad_input"),
    "parametric views": (
        "output", "equal_generators", "global_rng", "replay", "low_precision", "state_dict",
        "bad_input", "gradients",
    ),
    "features": ("output", "equal_generators", "global_rng", "low_precision", "state_dict", "bad_input"),
    "objective": (
        "output", "equal_generators", "global_rng", "low_precision", "gradients", "state_dict",
        "bad_input",
    ),
    "dataset": ("structure", "deterministic", "batches", "bad_input"),
}  # fmt: skip


class ContractFailure(Exception):
    """A contract failed; its message is the whole report (no traceback)."""


def _contracts(kind: str, name: str) -> tuple[str, ...]:
    if kind != "views":
        return CONTRACTS[kind]
    try:
        instance = build_component(kind, name).make()
    except Exception:  # not testable, or an import or constructor failure: the "build" test says
        return ("build",)
    return CONTRACTS["parametric views" if is_parametric(instance) else "views"]


class ContractItem(pytest.Item):
    def __init__(self, *, tests: ContractTests, kind: str, component: str, contract: str, **kw):
        super().__init__(**kw)
        self.tests, self.kind, self.component, self.contract = tests, kind, component, contract

    def runtest(self) -> None:
        report = self.tests.report(self.kind, self.component)
        if any(r.contract == "build" for r in report.results):
            result = report.result("build")
        else:
            result = report.result(self.contract)
        if result.status == "skip":
            pytest.skip(result.detail)
        if result.status == "fail":
            raise ContractFailure(f"{report.component} {result.contract}: {result.detail}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ContractFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, self.name


class ContractTests:
    """Adds the contract tests of the named plugins to the collected items."""

    def __init__(self, plugins: list[str], max_examples: int):
        self.plugins = plugins
        self.max_examples = max_examples
        self._reports: dict[tuple[str, str], ContractReport] = {}

    def report(self, kind: str, name: str) -> ContractReport:
        key = (kind, name)
        if key not in self._reports:
            self._reports[key] = check_component(
                kind, name, max_examples=self.max_examples, raise_on_failure=False
            )
        return self._reports[key]

    def pytest_collection_modifyitems(self, session, config, items) -> None:
        infos = {info.name: info for info in registry.plugins()}
        unknown = [name for name in self.plugins if name not in infos]
        if unknown:
            raise pytest.UsageError(
                f"--augplug-check: no augplug plugin named {unknown}; installed: {sorted(infos)}"
            )
        for plugin in self.plugins:
            info = infos[plugin]
            if info.status != "ok":
                raise pytest.UsageError(
                    f"--augplug-check: plugin {plugin!r} is {info.status}: {info.error}"
                )
            for kind in registry.KINDS:
                for name in sorted(info.components.get(kind, [])):
                    for contract in _contracts(kind, name):
                        test = f"augplug-check[{plugin}:{kind}/{name}:{contract}]"
                        items.append(
                            ContractItem.from_parent(
                                session, name=test, nodeid=test, tests=self, kind=kind,
                                component=name, contract=contract,
                            )
                        )  # fmt: skip
