"""The README's quick start as a complete plain-PyTorch loop (random data, CPU or GPU).

    python examples/train_loop.py --steps 20 --device cpu
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import augplug


def small_encoder(out_dim: int = 64) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, out_dim),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    # A stand-in for your DataLoader: random 32x32 RGB images in [0, 1].
    images = torch.rand(512, 3, 32, 32)
    loader = torch.utils.data.DataLoader(images, batch_size=args.batch, shuffle=True, drop_last=True)

    views = augplug.create("views", "simclr", size=32).to(device)
    loss_fn = augplug.create("objective", "infonce", temperature=0.2)
    model = small_encoder().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator(device=device).manual_seed(args.seed)

    losses: list[float] = []
    step = 0
    while step < args.steps:
        for x in loader:
            x = x.to(device, non_blocking=True)
            v1, v2 = views(x, generator=generator), views(x, generator=generator)
            loss = loss_fn(model(v1), model(v2))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            step += 1
            if step == args.steps:
                break
    # One host sync at the end, not one per step.
    values = torch.stack(losses).tolist()
    print(f"{args.steps} steps on {device}: loss {values[0]:.3f} -> {values[-1]:.3f}")
    return values


if __name__ == "__main__":
    main()
