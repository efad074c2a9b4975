"""examples/accelerate_simclr.py on CPU, one process: a few steps, bf16, exact mid-epoch resume."""

from __future__ import annotations

import math

import pytest
import safetensors.torch

pytest.importorskip("accelerate")

from accelerate.state import AcceleratorState
from trainer_examples import load_example

ex = load_example("accelerate_simclr")

# 24 images of 8: 3 steps per epoch.
TINY = ["--cpu", "--images", "24", "--batch", "8", "--size", "16"]


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    # Accelerate keeps one process-wide state; each run here picks its own precision.
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_a_few_steps(method):
    losses = ex.main([*TINY, "--method", method, "--max-steps", "2"])
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


def test_bf16_matches_float32():
    plain = ex.main([*TINY, "--max-steps", "1"])
    AcceleratorState._reset_state(reset_partial_state=True)
    mixed = ex.main([*TINY, "--max-steps", "1", "--mixed-precision", "bf16"])
    # The same views and weights; bf16 rounds the activations to 8 bits of mantissa.
    assert math.isclose(mixed[0], plain[0], rel_tol=2e-2)


def test_save_state_and_resume_mid_epoch_continue_exactly(tmp_path):
    """BYOL (momentum target and its schedule step, SGD momentum, step counter): 4 + 2 == 6."""
    args = [*TINY, "--method", "byol", "--epochs", "2"]
    uninterrupted = ex.main(args)
    assert len(uninterrupted) == 6

    AcceleratorState._reset_state(reset_partial_state=True)
    ex.main([*args, "--max-steps", "4", "--checkpoint-dir", str(tmp_path)])  # epoch 1, batch 1
    weights = safetensors.torch.load_file(tmp_path / "model.safetensors")
    assert int(weights["pipeline.target._extra_state"]) == 4  # the schedule step, as a tensor

    AcceleratorState._reset_state(reset_partial_state=True)
    resumed = ex.main([*args, "--resume", str(tmp_path)])
    assert resumed == uninterrupted[4:]
