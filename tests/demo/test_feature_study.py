"""The feature-augmentation study at a tiny size: every recipe builds, runs train and are probed."""

from __future__ import annotations

import augplug
from augplug.demo import feature_study as fs

TINY = fs.FeatureStudySettings(train_size=48, test_size=24, steps=2, batch_size=8)


def test_the_grid_is_placements_x_augmenters_per_objective_and_every_recipe_builds():
    runs = fs.grid()
    assert len(runs) == 2 * (2 + 3 * 4 + 1)
    for run in runs:
        pipeline = augplug.build(fs.recipe(run, TINY))
        assert (pipeline.features is None) == (run.placement is None)
        if run.objective == "byol":
            assert fs.recipe(run, TINY)["target"]["momentum"] == TINY.momentum
    ablations = [r for r in runs if not r.stop_gradient]
    assert [(r.augmenter, r.placement) for r in ablations] == [("mask", "parallel")] * 2


def test_a_few_runs_train_and_report(tmp_path):
    chosen = [r for r in fs.grid() if r.augmenter == "none" and not r.predictor]
    chosen += [fs.Run("byol", "nearest_neighbour", "parallel", True)]
    rows = fs.run_grid(TINY, seed=0, runs=chosen)
    assert [r["label"] for r in rows] == [r.label for r in chosen]
    for row in rows:
        for task in ("photo", "digit"):
            assert 0 <= row["metrics"][task]["accuracy"] <= 1
    text = fs.table(rows)
    assert text.count("\n") == 1 + 2  # header, rule, two (augmenter, placement) rows
    assert "nearest_neighbour | parallel" in text
