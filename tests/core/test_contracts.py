"""The conformance kit (augplug.testing.contracts): every built-in passes it, and it catches breakage."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest
import torch

import augplug
from augplug import cli
from augplug.testing import (
    check_component,
    check_dataset,
    check_feature_augmenter,
    check_objective,
    check_parametric_view_generator,
    check_view_generator,
)


@pytest.mark.parametrize(
    ("kind", "name"), [(k, n) for k in augplug.registry.KINDS for n in augplug.available(k)]
)
def test_every_builtin_passes_the_contracts(kind, name):
    # bad_input runs the same cases as tests/core/test_bad_input_matrix.py, where the open
    # findings are listed; it is not run twice.
    report = check_component(
        kind, name, max_examples=3, skip=("bad_input",)
    )
    ran = [r for r in report.results if r.contract != "bad_input"]
    assert all(r.status == "pass" for r in ran), str(report)


class _CarelessViews(augplug.ViewGenerator):
    """Ignores the generator (draws from the global RNG) and returns float64."""

    input_kind = "image"

    def forward(self, x, *, generator=None):
        return (x + torch.rand(x.shape)).double()


class _CarelessLoss(augplug.Objective):
    def forward(self, z1, z2):
        return (z1 - z2).pow(2).sum(1)  # not a scalar, no input checks


@pytest.mark.filterwarnings("ignore:Casting complex values:UserWarning")
def test_a_careless_view_generator_fails_with_the_contracts_named():
    with pytest.raises(AssertionError) as info:
        check_view_generator(_CarelessViews(), max_examples=2)
    message = str(info.value)
    for contract in ("output", "equal_generators", "global_rng", "bad_input"):
        assert f"  {contract}: " in message
    report = check_view_generator(_CarelessViews(), max_examples=2, raise_on_failure=False)
    assert {r.contract for r in report.failures} >= {"output", "equal_generators", "global_rng"}


def test_a_careless_objective_fails():
    report = check_objective(_CarelessLoss(), max_examples=2, raise_on_failure=False)
    assert report.result("output").status == "fail"
    assert "scalar" in report.result("output").detail
    assert report.result("bad_input").status == "fail"


def test_kit_on_instances_and_factories():
    from augplug_features.augmenters import GaussianNoise

    report = check_feature_augmenter(GaussianNoise, dim=5, max_examples=2)
    assert report.passed and report.result("state_dict").status == "pass"
    views = augplug.create("views", "waveform_gain")
    assert (
        check_parametric_view_generator(views, max_examples=2).result("gradients").status == "pass"
    )
    report = check_dataset(lambda: augplug.create("dataset", "spirograph", size=6), max_examples=2)
    assert report.result("deterministic").status == "pass"


def test_augplug_check_command(capsys):
    assert cli.main(["check", "features", "--max-examples", "2"]) == 0
    out = capsys.readouterr().out
    assert "features  features  mask" in out and "pass: output equal_generators" in out
    assert "6 components: 6 without a failure" in out  # the queues too: they declare example_kwargs
    assert cli.main(["check", "no-such-plugin"]) == 2
    assert "no plugin named ['no-such-plugin']" in capsys.readouterr().err


def test_augplug_check_exits_1_on_a_failure(capsys):
    class Careless:
        @augplug.hookimpl
        def augplug_register_views(self, register):
            register("careless", _CarelessViews)

    with augplug.registry.isolated(autoload=False) as reg:
        reg.register_plugin(Careless(), "careless")
        assert cli.main(["check", "careless", "--max-examples", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL global_rng" in out and "1 failing" in out


@pytest.mark.skipif(
    not any(ep.name == "augplug" for ep in importlib.metadata.entry_points(group="pytest11")),
    reason="the pytest11 entry point is not installed (pip install -e . again)",
)
def test_pytest_option_makes_one_test_per_component_and_contract(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--augplug-check", "features",
         "--augplug-check-examples", "2", "-k", "mask or mixup"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "12 passed" in out.stdout  # 2 components x 6 contracts
