"""SimCLR or BYOL with augplug in a Hugging Face Accelerate training loop.

    python examples/accelerate_simclr.py --epochs 2                       # SimCLR, one process
    python examples/accelerate_simclr.py --method byol                    # BYOL, momentum target
    python examples/accelerate_simclr.py --mixed-precision bf16           # autocast, CPU or GPU
    torchrun --nproc_per_node 2 examples/accelerate_simclr.py --cpu       # 2 processes (gloo)
    python examples/accelerate_simclr.py --checkpoint-dir ckpt            # save_state each epoch
    python examples/accelerate_simclr.py --resume ckpt                    # load_state, continue

What goes where (docs/trainers.md explains each choice):

* One ``nn.Module`` holds the networks and the augplug pipeline and returns the loss, so
  ``accelerator.prepare`` wraps it once (DDP across processes) and
  ``accelerator.save_state`` writes the pipeline's state (momentum target and its
  schedule step, feature queues, a learned viewmaker) with the weights.
* The momentum update follows ``optimizer.step()`` on the unwrapped module.
* The step counter is registered for checkpointing; the views of step k on rank r come from
  a generator seeded with (seed, k, r), so a resumed run draws the views the uninterrupted
  run would have, and ``skip_first_batches`` puts it at the same batch of the epoch.
* ``gather_distributed=True`` (InfoNCE): every process scores its anchors against all
  processes' embeddings, so loss and averaged gradient are those of the global batch.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import nn

import augplug

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


def mlp(dim: int = 32, hidden: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))


class SelfSupervised(nn.Module):
    """An encoder, a projector (and a predictor) and the augplug pipeline that trains them."""

    def __init__(self, recipe: dict[str, Any], predictor: bool = False, out_dim: int = 32):
        super().__init__()
        # No batch norm: each process would normalise with its own statistics.
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, out_dim),
        )  # fmt: skip
        self.projector = mlp(out_dim)
        self.predictor = mlp(out_dim) if predictor else None
        self.pipeline = augplug.build(recipe)
        if self.pipeline.target_options is not None:
            # Made now, so the target is in the state_dict that load_state restores.
            self.pipeline.init_target(self.encoder, self.projector)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        out = self.pipeline(x, self.encoder, self.projector, self.predictor, generator=generator)
        return out.loss

    @torch.no_grad()
    def update_target(self) -> None:
        """One EMA step of the momentum target (if the recipe has one); after optimizer.step()."""
        if self.pipeline.target is not None:
            self.pipeline.update_target(self.encoder, self.projector)


@dataclass
class Progress:
    """Optimiser steps done; ``register_for_checkpointing`` saves it with the weights."""

    step: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def random_images(count: int, size: int, seed: int) -> torch.Tensor:
    """A stand-in dataset: ``count`` random RGB images in [0, 1], each with its own colour cast."""
    generator = torch.Generator().manual_seed(seed)
    cast = torch.rand(count, 3, 1, 1, generator=generator)
    return cast * torch.rand(count, 3, size, size, generator=generator)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", choices=["simclr", "byol"], default="simclr")
    parser.add_argument("--recipe", type=Path, help="a recipe .toml/.json (replaces --method)")
    parser.add_argument("--predictor", action="store_true", help="with --recipe: add a predictor")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in all")
    parser.add_argument("--batch", type=int, default=32, help="images per process and step")
    parser.add_argument("--size", type=int, default=16, help="image side")
    parser.add_argument("--images", type=int, default=256, help="images in the dataset")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even with a GPU")
    parser.add_argument("--checkpoint-dir", type=Path, help="save_state here after each epoch")
    parser.add_argument("--resume", type=Path, help="a save_state directory to continue from")
    parser.add_argument("--losses-json", type=Path, help="process 0 writes the step losses here")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[float]:
    """Train; returns this process's step losses (process 0: also written to --losses-json)."""
    args = parse_args(argv)
    accelerator = Accelerator(
        cpu=args.cpu,
        mixed_precision=args.mixed_precision,
        # A shuffle seeded by (data_seed, epoch): reproducible, and the same after a resume.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    set_seed(args.seed)  # the same initial weights in every process
    images = random_images(args.images, args.size, args.seed)
    loader = torch.utils.data.DataLoader(
        images, batch_size=args.batch, shuffle=True, drop_last=True
    )
    loader = accelerator.prepare(loader)  # first: its length is this process's steps per epoch
    if args.recipe is not None:
        recipe, predictor = augplug.load_recipe(args.recipe), args.predictor
    else:
        # BYOL's momentum schedule spans the whole run: resume with the same --epochs.
        total_steps = args.epochs * len(loader)
        recipe = method_recipe(args.method, size=args.size, total_steps=total_steps)
        predictor = args.method == "byol"
    model = SelfSupervised(recipe, predictor=predictor)
    # The momentum target's parameters take no gradient and stay out of the optimiser.
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=args.lr, momentum=0.9)
    model, optimizer = accelerator.prepare(model, optimizer)
    progress = Progress()
    accelerator.register_for_checkpointing(progress)
    if args.resume is not None:
        accelerator.load_state(args.resume)

    generator = torch.Generator(device=accelerator.device)
    last_step = args.epochs * len(loader)
    if args.max_steps is not None:
        last_step = min(last_step, args.max_steps)
    losses: list[torch.Tensor] = []
    while progress.step < last_step:
        epoch, done = divmod(progress.step, len(loader))
        loader.set_epoch(epoch)
        # A resumed run continues mid-epoch at the batch the uninterrupted run would see.
        batches = accelerator.skip_first_batches(loader, done) if done else loader
        for x in batches:
            generator.manual_seed(view_seed(args.seed, progress.step, accelerator.process_index))
            loss = model(x, generator)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            accelerator.unwrap_model(model).update_target()
            losses.append(loss.detach())
            progress.step += 1
            if progress.step == last_step:
                break
        if args.checkpoint_dir is not None:
            accelerator.save_state(args.checkpoint_dir)  # safetensors: the target's step is a tensor

    values = torch.stack(losses).tolist() if losses else []  # one host sync, at the end
    if accelerator.is_main_process:
        if values:
            first = progress.step - len(values)
            print(f"steps {first}..{progress.step}: loss {values[0]:.4f} -> {values[-1]:.4f}")
        if args.losses_json is not None:
            args.losses_json.write_text(json.dumps(values))
    accelerator.end_training()
    return values


if __name__ == "__main__":
    main()
