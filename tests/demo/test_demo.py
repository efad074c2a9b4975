"""`augplug demo` / `augplug views` end to end at a tiny size, and the feature-dropout theory study."""

import json

import pytest
import torch
from PIL import Image

import augplug
from augplug.cli import main as cli_main
from augplug.demo import main, report, strategies, theory
from augplug.demo.theory import TheorySettings, simulate

TINY = [
    "--steps",
    "2",
    "--batch-size",
    "8",
    "--train-size",
    "48",
    "--test-size",
    "24",
    "--threads",
    "1",
]


def grid_size(columns: int, rows: int = 8, side: int = 32) -> tuple[int, int]:
    """(width, body height) of the demo's labelled view grids per augplug.pictures' layout:
    128-px cells (each pixel repeated 128 // side times) and gaps of that many pixels; the
    title and header bands (and the |delta| colour scale) add height above and below."""
    scale = 128 // side
    cell = side * scale
    return columns * cell + (columns + 1) * scale, rows * cell + (rows + 1) * scale


def assert_grid(image, columns: int, side: int = 32) -> None:
    width, body_height = grid_size(columns, side=side)
    assert image.size[0] == width and image.size[1] > body_height


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """Two runs with the same seed (for the determinism test) and their output folders."""
    outs = [tmp_path_factory.mktemp(f"demo{i}") for i in range(2)]
    codes = [cli_main(["demo", *TINY, "--out", str(out)]) for out in outs]
    return codes, outs


def test_demo_writes_parseable_outputs(tiny_demo):
    codes, (out, _) = tiny_demo
    assert codes == [0, 0]
    results = json.loads((out / "results.json").read_text())
    assert results["seed"] == 0
    assert results["config"]["steps"] == 2
    assert results["versions"]["torch"] == torch.__version__
    tasks = [t["name"] for t in results["data"]["tasks"]]
    assert tasks == ["photo", "digit"]
    runs = results["strategies"]
    assert results["config"]["strategies"] == ["untrained", "simclr", "viewmaker", "combined"]
    assert sorted(runs) == sorted(results["config"]["strategies"])
    for name, run in runs.items():
        if run["status"] == "skipped":  # only when a component is not installed
            assert run["reason"], name
            continue
        assert run["status"] == "ok"
        for task in tasks:
            assert 0.0 <= run["metrics"][task]["accuracy"] <= 1.0
            assert run["metrics"][task]["cross_entropy"] > 0
    report_text = (out / "report.md").read_text()
    assert "| strategy" in report_text and "scores.png" in report_text
    for name in runs:
        assert f"| {name}" in report_text


def test_demo_pictures_are_pngs_of_the_stated_size(tiny_demo):
    _, (out, _) = tiny_demo
    runs = json.loads((out / "results.json").read_text())["strategies"]
    for name, run in runs.items():
        path = out / f"views-{name}.png"
        if name == "untrained" or run["status"] != "ok":
            assert not path.exists()
            continue
        # input + two views (+ the viewmaker's two |delta| maps, also in combined), eight rows.
        columns = 5 if name in ("viewmaker", "combined") else 3
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert_grid(image, columns)
    with Image.open(out / "scores.png") as chart:
        assert chart.format == "PNG" and chart.mode == "RGB"
        assert chart.size[0] > 2 * 100 and chart.size[1] > 240


def test_same_seed_gives_identical_results_json(tiny_demo):
    _, (first, second) = tiny_demo
    assert (first / "results.json").read_bytes() == (second / "results.json").read_bytes()


def test_a_different_seed_gives_different_numbers(tiny_demo, tmp_path):
    _, (first, _) = tiny_demo
    assert main([*TINY, "--strategies", "untrained", "--seed", "1", "--out", str(tmp_path)]) == 0
    other = json.loads((tmp_path / "results.json").read_text())["strategies"]["untrained"][
        "metrics"
    ]
    same = json.loads((first / "results.json").read_text())["strategies"]["untrained"]["metrics"]
    assert other != same


def test_a_strategy_with_a_missing_component_is_skipped_with_the_reason(
    monkeypatch, tmp_path, capsys
):
    real = augplug.available

    def without_viewmaker(kind=None):
        names = real(kind)
        return [n for n in names if n != "viewmaker"] if kind == "views" else names

    monkeypatch.setattr(strategies.augplug, "available", without_viewmaker)
    code = main([*TINY, "--strategies", "untrained,viewmaker,combined", "--out", str(tmp_path)])
    assert code == 0
    runs = json.loads((tmp_path / "results.json").read_text())["strategies"]
    assert runs["untrained"]["status"] == "ok"
    for name in ("viewmaker", "combined"):
        assert runs[name]["status"] == "skipped"
        assert "views/viewmaker" in runs[name]["reason"]
    assert "skipped" in capsys.readouterr().err


def test_bad_options_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--steps", "0", "--out", str(tmp_path)])
    assert "--steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--strategies", "simclr,nonsense", "--out", str(tmp_path)])
    assert "nonsense" in capsys.readouterr().err


def test_the_table_has_one_row_per_strategy_and_a_column_per_task():
    tasks = [augplug.Task("photo", "classification", 10), augplug.Task("m", "regression", 1)]
    runs = {
        "a": {
            "status": "ok",
            "metrics": {"photo": {"accuracy": 0.5}, "m": {"mse": 0.25, "r2": 0.5}},
        },
        "b": {"status": "skipped", "reason": "x"},
    }
    lines = report.table(tasks, runs, {"photo": "10.0%", "m": "1 (R2 0.00)"}).splitlines()
    assert len(lines) == 5 and all(line.count("|") == 4 for line in lines)
    assert "50.0%" in lines[3] and "0.25 (R2 0.50)" in lines[3] and "skipped" in lines[4]


def test_feature_dropout_theory_study_outcome(tmp_path):
    # The default setting (8 outputs for 16 input features): without dropout the weak
    # group's task stays near chance (50%), with dropout it is learned; the strong task is
    # solved in both. The sweep is cut to two cells here (the CLI runs nine).
    assert theory.run_study(tmp_path, widths=(8, 32), ratios=(0.25,)) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    preserving, dropout = (
        results["metrics"]["label-preserving"],
        results["metrics"]["feature-dropout"],
    )
    assert preserving["strong"]["accuracy"] > 0.9 and dropout["strong"]["accuracy"] > 0.9
    assert preserving["weak"]["accuracy"] < 0.6
    assert dropout["weak"]["accuracy"] > 0.85
    narrow, wide = results["sweep"]
    assert (narrow["width"], wide["width"]) == (8, 32) and narrow["ceiling"] > 0.9
    assert narrow["label-preserving"]["suppressed"] and not narrow["feature-dropout"]["suppressed"]
    assert "## Sweep" in (tmp_path / "report.md").read_text()


def test_feature_dropout_theory_holds_for_another_seed_and_smaller_run():
    settings = TheorySettings(train_size=1000, test_size=1000, steps=150)
    metrics = simulate(settings, seed=7)
    assert metrics["label-preserving"]["weak"]["accuracy"] < 0.6
    assert metrics["feature-dropout"]["weak"]["accuracy"] > 0.85


@pytest.mark.cuda
def test_demo_on_cuda_matches_its_own_rerun(tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main([*TINY, "--device", "cuda", "--out", str(out)]) == 0
    assert (outs[0] / "results.json").read_bytes() == (outs[1] / "results.json").read_bytes()
    results = json.loads((outs[0] / "results.json").read_text())
    assert results["config"]["device"] == "cuda"
    assert all(run["status"] == "ok" for run in results["strategies"].values())


@pytest.mark.parametrize(
    ("data", "expert", "metric"),
    [("spirograph", "spirograph", "r2"), ("audio-patterns", "spectral", "accuracy")],
)
def test_other_studies_run_end_to_end(tmp_path, data, expert, metric):
    strategies_arg = f"untrained,{expert},combined"
    assert (
        main([*TINY, "--data", data, "--strategies", strategies_arg, "--out", str(tmp_path)]) == 0
    )
    results = json.loads((tmp_path / "results.json").read_text())
    tasks = [t["name"] for t in results["data"]["tasks"]]
    for name in strategies_arg.split(","):
        run = results["strategies"][name]
        assert run["status"] == "ok", run.get("reason")
        assert all(metric in run["metrics"][task] for task in tasks)
    with Image.open(tmp_path / f"views-{expert}.png") as image:
        side = 64 if data == "audio-patterns" else 32  # 64x64 log-mels, 32x32 images
        assert_grid(image, 3, side=side)
