"""augplug.demo.arguments: every demo argument is checked before data is built, and a failed
run leaves no empty output folder behind."""

from __future__ import annotations

import importlib
import os

import pytest
import torch

import augplug
from augplug.demo import arguments
from augplug.demo.strategies import DATASETS


def test_strategies_default_all_and_a_list():
    spec = DATASETS["digits-on-photos"]
    assert arguments.select_strategies(None, spec) == [
        "untrained",
        "simclr",
        "viewmaker",
        "combined",
    ]
    assert "simclr+invariance" in arguments.select_strategies("all", spec)
    assert arguments.select_strategies(" simclr , viewmaker,", spec) == ["simclr", "viewmaker"]
    assert arguments.select_strategies("spirograph", DATASETS["spirograph"]) == ["spirograph"]


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        ("simclr,nonsense", "digits-on-photos", "unknown 'nonsense'"),
        ("simclr", "audio-patterns", "for --data audio-patterns choose from untrained, spectral"),
        (" , ", "digits-on-photos", "expected names separated by commas"),
    ],
)
def test_unknown_strategies_name_the_choices(text, data, expected):
    with pytest.raises(ValueError, match="^--strategies: ") as info:
        arguments.select_strategies(text, DATASETS[data])
    assert expected in str(info.value)


def test_data_unknown_or_unavailable_names_the_install_command(monkeypatch):
    assert arguments.check_data("spirograph") is DATASETS["spirograph"]
    with pytest.raises(ValueError, match="^--data: unknown data set 'digits'"):
        arguments.check_data("digits")

    real = augplug.available

    def without_photos(kind=None):
        names = real(kind)
        return [n for n in names if n != "digits-on-photos"] if kind == "dataset" else names

    class Described:
        unavailable = "needs sklearn (pip install '.[demo]')"

    monkeypatch.setattr(arguments.augplug, "available", without_photos)
    monkeypatch.setattr(arguments.augplug, "describe", lambda kind, name: Described)
    with pytest.raises(
        ValueError, match=r"not available: needs sklearn \(pip install '\.\[demo\]'\)"
    ):
        arguments.check_data("digits-on-photos")


def test_photos_plugin_hint_names_a_command_that_works_from_a_checkout():
    from augplug_datasets import photos_plugin

    assert "pip install '.[demo]'" in photos_plugin._HINT


def test_device():
    assert arguments.check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="^--device: 'gpu' is not usable here"):
        arguments.check_device("gpu")


def test_output_folder_checks_create_nothing(tmp_path):
    target = tmp_path / "a" / "b"
    assert arguments.check_output_folder(target) == target
    assert not (tmp_path / "a").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="^--out: .* exists and is not a folder"):
        arguments.check_output_folder(a_file)
    with pytest.raises(ValueError, match="^--out: cannot create .* is not a folder"):
        arguments.check_output_folder(a_file / "sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_output_folder_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="is not writable"):
            arguments.check_output_folder(locked)
        with pytest.raises(ValueError, match="cannot create .* is not writable"):
            arguments.check_output_folder(locked / "new")
    finally:
        locked.chmod(0o700)


def test_a_failed_run_leaves_no_empty_folder_but_keeps_what_it_wrote(tmp_path):
    target = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), arguments.output_folder(target) as out:
        assert out.is_dir()
        raise RuntimeError("training failed")
    assert not (tmp_path / "a").exists()

    with pytest.raises(RuntimeError), arguments.output_folder(target) as out:
        (out / "report.md").write_text("partial")
        raise RuntimeError("failed later")
    assert (target / "report.md").exists()

    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(RuntimeError), arguments.output_folder(existing):
        raise RuntimeError("x")
    assert existing.is_dir()  # it was there before the run: left alone

    with arguments.output_folder(tmp_path / "ok") as out:
        pass
    assert out.is_dir()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--strategies", "simclr,nonsense"], "--strategies: unknown 'nonsense'"),
        (["--data", "spirograph", "--strategies", "simclr"], "choose from untrained, spirograph"),
        (["--device", "gpu"], "--device: 'gpu' is not usable here"),
    ],
)
def test_demo_checks_arguments_before_building_data(monkeypatch, tmp_path, capsys, argv, expected):
    demo_main_module = importlib.import_module("augplug.demo.main")  # the module, not main()

    def no_data(*args, **kwargs):
        raise AssertionError("the data was built before the arguments were checked")

    monkeypatch.setattr(demo_main_module, "load_data", no_data)
    out = tmp_path / "new" / "out"
    with pytest.raises(SystemExit):
        demo_main_module.main([*argv, "--out", str(out)])
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # no empty output folder left behind


def test_demo_out_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    from augplug.demo.main import main as demo_main

    target = tmp_path / "report"
    target.write_text("not a folder")
    with pytest.raises(SystemExit):
        demo_main(["--out", str(target)])
    assert "exists and is not a folder" in capsys.readouterr().err
    assert target.read_text() == "not a folder"  # left as it was


def test_a_demo_that_fails_midway_removes_its_new_empty_folder(monkeypatch, tmp_path):
    demo_main_module = importlib.import_module("augplug.demo.main")  # the module, not main()

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(demo_main_module, "load_data", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        demo_main_module.main(["--threads", "1", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()
