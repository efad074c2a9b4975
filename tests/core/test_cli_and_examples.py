"""The `augplug` command and the runnable examples."""

from __future__ import annotations

import math
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import augplug
from augplug import cli

ROOT = Path(__file__).resolve().parents[2]


def test_plugins_table_lists_every_builtin(capsys):
    assert cli.main(["plugins", "--strict"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for info in augplug.plugins():
        if info.builtin:
            start = next(i for i, line in enumerate(lines) if line.startswith(info.name + " "))
            end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
            block = "\n".join(lines[start:end])
            assert f"augplug {augplug.__version__}  ok" in lines[start]
            for kind, names in info.components.items():
                assert f"{kind}: {', '.join(sorted(names))}" in block


def test_list_and_describe(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines()] == list(augplug.registry.KINDS)
    name = augplug.available("objective")[0]
    assert cli.main(["describe", "objective", name]) == 0
    assert f"objective/{name}(" in capsys.readouterr().out
    assert cli.main(["describe", "objective", "no-such-thing"]) == 2
    assert "no objective named 'no-such-thing'" in capsys.readouterr().err


def test_train_loop_example_runs_and_learns(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_loop.py"])
    module = runpy.run_path(str(ROOT / "examples" / "train_loop.py"))
    losses = module["main"](["--steps", "8", "--batch", "32", "--device", "cpu"])
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("kind", augplug.registry.KINDS)
def test_every_builtin_component_is_described(kind):
    for name in augplug.available(kind):
        info = augplug.describe(kind, name)
        assert info.doc, f"{kind}/{name} has no docstring"


def test_example_plugin_passes_the_conformance_kit(tmp_path):
    """The example's own tests, `augplug check example` and `pytest --augplug-check example`."""
    source = shutil.copytree(ROOT / "examples" / "third_party_plugin", tmp_path / "src")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}
    commands = [
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests")],
        [sys.executable, "-m", "augplug.cli", "check", "example", "--max-examples", "2"],
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--augplug-check", "example",
         "--augplug-check-examples", "2"],
    ]  # fmt: skip
    outputs = []
    for command in commands:
        out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"{command[2:]}:\n{out.stdout}\n{out.stderr}"
        outputs.append(out.stdout)
    assert re.search(r"example +views +gaussian_noise +pass: output", outputs[1])
    assert "2 components: 2 without a failure" in outputs[1]
