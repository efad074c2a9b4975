"""The `augplug` command and the runnable examples."""

from __future__ import annotations

import math
import runpy
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
