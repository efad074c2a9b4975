"""SimCLR on several processes: DDP for the encoder, all ranks' embeddings in one InfoNCE.

    torchrun --nproc_per_node=2 examples/ddp.py --steps 10

gloo on CPU, nccl when CUDA is available (one GPU per process, picked by LOCAL_RANK).
Each rank makes its own views of its own shard; ``gather_distributed=True`` scores every
rank's anchors against every rank's embeddings, so the loss is the one of the global batch
(world_size x --batch pairs), and DDP's gradient average makes the update exactly that of
one process on the whole batch (see docs/objectives.md).
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import augplug
from augplug import distributed


def small_encoder(out_dim: int = 64) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, out_dim),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32, help="pairs per process")
    parser.add_argument("--local-anchors", action="store_true", help="each rank scores only its own anchors")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    rank = distributed.rank()

    # A stand-in for your dataset; DistributedSampler gives each rank its own shard.
    images = torch.rand(1024, 3, 32, 32, generator=torch.Generator().manual_seed(args.seed))
    sampler = torch.utils.data.DistributedSampler(images, shuffle=True, seed=args.seed, drop_last=True)
    loader = torch.utils.data.DataLoader(images, batch_size=args.batch, sampler=sampler, drop_last=True)

    torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts them)
    model = DistributedDataParallel(small_encoder().to(device), device_ids=[device.index] if use_cuda else None)
    views = augplug.create("views", "simclr", size=32).to(device)
    loss_fn = augplug.create(
        "objective", "infonce", temperature=0.2, gather_distributed=True, local_anchors=args.local_anchors
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # Different random views on every rank.
    generator = torch.Generator(device=device).manual_seed(args.seed * 1000 + rank)

    step, epoch = 0, 0
    while step < args.steps:
        sampler.set_epoch(epoch)
        for x in loader:
            x = x.to(device, non_blocking=True)
            z = model(torch.cat([views(x, generator=generator), views(x, generator=generator)]))
            z1, z2 = z.chunk(2)
            loss = loss_fn(z1, z2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if rank == 0:
                pairs = args.batch * distributed.world_size()
                print(f"step {step:3d}  loss {loss.item():.4f}  ({pairs} pairs across {distributed.world_size()} ranks)")
            if step == args.steps:
                break
        epoch += 1
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
