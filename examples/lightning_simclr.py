"""SimCLR or BYOL with augplug inside a PyTorch Lightning ``LightningModule``.

    python examples/lightning_simclr.py --epochs 2                        # SimCLR
    python examples/lightning_simclr.py --method byol --epochs 2          # BYOL, momentum target
    python examples/lightning_simclr.py --precision bf16-mixed            # autocast, CPU or GPU
    python examples/lightning_simclr.py --devices 2 --strategy ddp        # 2 processes (gloo on CPU)
    python examples/lightning_simclr.py --recipe my_recipe.toml           # any augplug recipe

What goes where (docs/trainers.md explains each choice):

* ``training_step`` is the pipeline call, ``self.pipeline(x, encoder, projector, predictor)``.
* The pipeline is a submodule, so its state (the momentum target and its schedule step,
  feature-augmentation queues, a learned viewmaker) is in every Lightning checkpoint. The
  momentum target is made in ``__init__``, so a fresh module loads any checkpoint.
* The momentum update is in ``on_train_batch_end``, which Lightning calls after
  ``optimizer.step()`` (one update per optimiser step without gradient accumulation).
* The views of step k on rank r come from a generator seeded with (seed, k, r): ranks
  draw different views, and a run resumed from a checkpoint draws exactly the views the
  uninterrupted run would have, with no generator state to save.
* ``gather_distributed=True`` (InfoNCE): under ``strategy="ddp"`` every rank scores its
  anchors against all ranks' embeddings, so the loss and the DDP-averaged gradient are
  those of one process on the concatenated batch (a no-op on one process).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

import augplug

try:  # the unified `lightning` package, or the standalone `pytorch-lightning`
    import lightning.pytorch as pl
except ImportError:
    import pytorch_lightning as pl

RECIPES = Path(__file__).resolve().parent / "recipes"


def method_recipe(method: str, *, size: int, total_steps: int) -> dict[str, Any]:
    """``examples/recipes/<method>.toml`` at ``size`` px, its target's schedule over the run.

    InfoNCE gathers every process's embeddings (``gather_distributed``; a no-op on one).
    """
    recipe = augplug.load_recipe(RECIPES / f"{method}.toml")
    for spec in [recipe.get("views"), *recipe.get("branch_views", [])]:
        if spec is not None:
            spec["size"] = size
    if "target" in recipe:
        recipe["target"]["total_steps"] = total_steps
    if recipe["objective"]["name"] == "infonce":
        recipe["objective"]["gather_distributed"] = True
    return recipe


def view_seed(seed: int, step: int, rank: int) -> int:
    """A seed distinct for every (seed, step, rank), rank < 2**16 and step < 2**24."""
    return (seed * 2**40 + step * 2**16 + rank) % 2**63


def small_encoder(out_dim: int = 32) -> nn.Module:
    # No batch norm: each DDP rank would normalise with its own statistics.
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, out_dim),
    )  # fmt: skip


def mlp(dim: int = 32, hidden: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))


class SelfSupervised(pl.LightningModule):
    """An encoder, a projector (and a predictor) trained by an augplug recipe.

    Args:
        recipe: an augplug recipe dict (:func:`augplug.build`).
        predictor: give the online branch a predictor (BYOL, SimSiam, placements).
        lr: SGD learning rate (momentum 0.9), for every trainable parameter, the
            pipeline's (a learned viewmaker) included.
        seed: the base seed of the views (:func:`view_seed`).
    """

    def __init__(
        self, recipe: dict[str, Any], predictor: bool = False, lr: float = 0.05, seed: int = 0
    ):
        super().__init__()
        self.save_hyperparameters()  # load_from_checkpoint rebuilds the same module
        self.encoder = small_encoder()
        self.projector = mlp()
        self.predictor = mlp() if predictor else None
        self.pipeline = augplug.build(recipe)
        if self.pipeline.target_options is not None:
            # Made now rather than at the first step, so the target is in the state_dict
            # before Lightning loads a checkpoint into this module.
            self.pipeline.init_target(self.encoder, self.projector)
        self.lr = lr
        self.seed = seed
        self.step_losses: list[torch.Tensor] = []  # detached; read once after training
        self._generator: torch.Generator | None = None

    def views_generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        return self._generator.manual_seed(view_seed(self.seed, self.global_step, self.global_rank))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        generator = self.views_generator(batch.device)
        out = self.pipeline(
            batch, self.encoder, self.projector, self.predictor, generator=generator
        )
        self.log("loss", out.loss, prog_bar=True)
        self.step_losses.append(out.loss.detach())
        return out.loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Lightning calls this after optimizer.step(): the EMA follows the updated weights.
        if self.pipeline.target is not None:
            self.pipeline.update_target(self.encoder, self.projector)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The momentum target's parameters take no gradient and stay out of the optimiser.
        trainable = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.SGD(trainable, lr=self.lr, momentum=0.9)


def random_images(count: int, size: int, seed: int) -> torch.Tensor:
    """A stand-in dataset: ``count`` random RGB images in [0, 1], each with its own colour cast."""
    generator = torch.Generator().manual_seed(seed)
    cast = torch.rand(count, 3, 1, 1, generator=generator)
    return cast * torch.rand(count, 3, size, size, generator=generator)


def make_trainer(args: argparse.Namespace, **overrides: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": args.accelerator,
        "devices": args.devices,
        "strategy": args.strategy,
        "precision": args.precision,
        # Epochs, not max_steps: pytorch-lightning 2.6 resumed from an end-of-epoch
        # checkpoint under max_steps runs one batch of the first resumed epoch only.
        "max_epochs": args.epochs,
        "default_root_dir": args.root_dir,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        # main() gives the loader its own sampler (below), so Lightning must not replace it.
        "use_distributed_sampler": False,
    }
    options.update(overrides)
    return pl.Trainer(**options)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", choices=["simclr", "byol"], default="simclr")
    parser.add_argument("--recipe", type=Path, help="a recipe .toml/.json (replaces --method)")
    parser.add_argument("--predictor", action="store_true", help="with --recipe: add a predictor")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="images per process and step")
    parser.add_argument("--size", type=int, default=16, help="image side")
    parser.add_argument("--images", type=int, default=256, help="images in the dataset")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--root-dir", default="lightning_logs")
    parser.add_argument("--resume", type=Path, help="a checkpoint to resume from")
    parser.add_argument("--save", type=Path, help="write a checkpoint here after training")
    parser.add_argument("--losses-json", type=Path, help="rank 0 writes the step losses here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if isinstance(args.devices, str) and args.devices.isdigit():
        args.devices = int(args.devices)
    return args


def setup(
    args: argparse.Namespace, **trainer_overrides: Any
) -> tuple[SelfSupervised, pl.Trainer, torch.utils.data.DataLoader]:
    """The module, the trainer and the loader of ``args`` (keyword arguments override the trainer's)."""
    trainer = make_trainer(args, **trainer_overrides)
    # Each rank its own shard, shuffled by (seed, epoch): Lightning calls set_epoch, so the
    # order is reproducible, a run resumed from an end-of-epoch checkpoint sees the same
    # batches, and the global batch of step k (all ranks' shards together) is the
    # one-process batch of step k at world_size x --batch images.
    images = random_images(args.images, args.size, args.seed)
    sampler = torch.utils.data.DistributedSampler(
        images, num_replicas=trainer.world_size, rank=trainer.global_rank,
        shuffle=True, seed=args.seed, drop_last=True,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        images, batch_size=args.batch, sampler=sampler, drop_last=True
    )
    if args.recipe is not None:
        recipe, predictor = augplug.load_recipe(args.recipe), args.predictor
    else:
        # BYOL's momentum schedule spans the whole run: resume with the same --epochs.
        total_steps = args.epochs * len(loader)
        recipe = method_recipe(args.method, size=args.size, total_steps=total_steps)
        predictor = args.method == "byol"
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = SelfSupervised(recipe, predictor=predictor, lr=args.lr, seed=args.seed)
    return model, trainer, loader


def main(argv: list[str] | None = None) -> list[float]:
    """Train; returns this process's step losses (rank 0: also written to --losses-json)."""
    args = parse_args(argv)
    model, trainer, loader = setup(args)
    trainer.fit(model, loader, ckpt_path=args.resume)
    if args.save is not None:
        trainer.save_checkpoint(args.save)
    losses = torch.stack(model.step_losses).tolist() if model.step_losses else []
    if trainer.global_rank == 0:
        if losses:
            print(f"{len(losses)} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        if args.losses_json is not None:
            args.losses_json.write_text(json.dumps(losses))
    if torch.distributed.is_initialized():
        # Lightning leaves the process group up; PyTorch asks for an explicit teardown, and
        # the barrier keeps one rank from exiting while another still talks to it.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return losses


if __name__ == "__main__":
    main()
