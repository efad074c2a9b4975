"""examples/lightning_simclr.py on CPU: fast_dev_run, bf16-mixed, exact resume, 2-process DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("pytorch_lightning")

from trainer_examples import EXAMPLES, load_example

ex = load_example("lightning_simclr")

# Tiny runs: 16 x 16 images, 8 per step; the trainer writes no logs or checkpoints itself.
QUIET = {"enable_checkpointing": False, "accelerator": "cpu", "devices": 1}


def _args(tmp_path, *extra: str):
    return ex.parse_args(
        ["--batch", "8", "--images", "16", "--size", "16", "--root-dir", str(tmp_path), *extra]
    )


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_fast_dev_run(tmp_path, method):
    model, trainer, loader = ex.setup(_args(tmp_path, "--method", method), fast_dev_run=2, **QUIET)
    initial = [p.detach().clone() for p in model.encoder.parameters()]
    trainer.fit(model, loader)
    losses = torch.stack(model.step_losses)
    assert losses.shape == (2,) and torch.isfinite(losses).all()
    if method == "byol":
        target = model.pipeline.target
        assert target.step == 2
        # The EMA moved the target off its initial copy but not onto the online weights.
        for t, online, start in zip(
            target.module.encoder.parameters(), model.encoder.parameters(), initial
        ):
            assert not t.requires_grad
            assert not torch.equal(t, start) and not torch.equal(t, online)


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_bf16_mixed_matches_float32(tmp_path, method):
    losses = {}
    for precision in ("32-true", "bf16-mixed"):
        model, trainer, loader = ex.setup(
            _args(tmp_path, "--method", method, "--precision", precision), fast_dev_run=1, **QUIET
        )
        trainer.fit(model, loader)
        (loss,) = model.step_losses
        assert loss.dtype == torch.float32  # the losses accumulate in float32 under autocast
        losses[precision] = loss
    # The same views and weights; bf16 rounds the activations to 8 bits of mantissa.
    torch.testing.assert_close(losses["bf16-mixed"], losses["32-true"], rtol=2e-2, atol=0)


def test_resume_from_checkpoint_continues_exactly(tmp_path):
    """BYOL (momentum target and its schedule step, SGD momentum): 1 + 1 epochs == 2 epochs.

    The checkpoint is at an epoch's end: this DataLoader is not resumable mid-epoch.
    """
    args = _args(tmp_path, "--method", "byol", "--epochs", "2")
    model, trainer, loader = ex.setup(args, **QUIET)
    trainer.fit(model, loader)
    uninterrupted = torch.stack(model.step_losses)
    assert uninterrupted.shape == (4,)

    path = tmp_path / "half.ckpt"
    model, trainer, loader = ex.setup(args, max_epochs=1, **QUIET)
    trainer.fit(model, loader)
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]
    assert any(k.startswith("pipeline.target.module.encoder.") for k in state)
    assert int(state["pipeline.target._extra_state"]) == 2

    model, trainer, loader = ex.setup(args, **QUIET)
    trainer.fit(model, loader, ckpt_path=path)
    torch.testing.assert_close(torch.stack(model.step_losses), uninterrupted[2:], rtol=0, atol=0)
    assert model.pipeline.target.step == 4

    # A fresh module (its target made in __init__) loads the checkpoint by itself too.
    loaded = ex.SelfSupervised.load_from_checkpoint(path)
    prefix = "pipeline."
    expected = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    torch.testing.assert_close(loaded.pipeline.state_dict(), expected, rtol=0, atol=0)


@pytest.mark.slow
def test_two_ddp_processes_equal_one_process_on_the_concatenated_batch(tmp_path):
    """strategy="ddp", 2 CPU processes (gloo) x 8 images vs 1 process x 16, InfoNCE gathered.

    Deterministic views (no flip / flip) so both runs see the same views; a large learning
    rate so the later steps' losses show any difference in the DDP-averaged gradient.
    """
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({
        "branch_views": [{"name": "horizontal_flip", "p": 0.0}, {"name": "horizontal_flip", "p": 1.0}],
        "objective": {"name": "infonce", "temperature": 0.2, "gather_distributed": True},
    }))  # fmt: skip
    common = ["--recipe", str(recipe), "--epochs", "1", "--images", "48", "--lr", "2.0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    out = tmp_path / "ddp.json"
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "lightning_simclr.py"), *common, "--batch", "8",
         "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
         "--root-dir", str(tmp_path), "--losses-json", str(out)],
        env=env, timeout=600, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    ddp = torch.tensor(json.loads(out.read_text()))

    model, trainer, loader = ex.setup(
        ex.parse_args([*common, "--batch", "16", "--root-dir", str(tmp_path)]), **QUIET
    )
    trainer.fit(model, loader)
    one = torch.stack(model.step_losses)
    assert ddp.shape == one.shape == (3,)
    assert math.isclose(one[0].item(), math.log(31), rel_tol=0.05)  # 16 pairs, near uniform
    assert (one[2] - one[0]).abs() > 1e-2  # the updates change the loss
    torch.testing.assert_close(ddp, one, rtol=1e-5, atol=0)
