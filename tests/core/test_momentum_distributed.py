"""Under DDP the momentum target is no DDP parameter and stays identical on every rank."""

from __future__ import annotations

import textwrap

import pytest
import torch

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    from torch import nn
    from augplug.momentum import MomentumTarget

    rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    class Online(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
            self.predictor = nn.Linear(4, 4)

        def forward(self, v):
            return self.predictor(self.encoder(v))

    torch.manual_seed(0)
    online = nn.parallel.DistributedDataParallel(Online())
    encoder = online.module.encoder
    target = MomentumTarget(encoder, momentum=0.9, schedule="constant")
    assert all(not p.requires_grad for p in target.parameters())
    optimizer = torch.optim.SGD(online.parameters(), lr=0.5)
    gen = torch.Generator().manual_seed(rank)  # every rank sees different data
    for _ in range(3):
        x = torch.randn(5, 6, generator=gen)
        v1, v2 = (x + 0.1 * torch.randn(5, 6, generator=gen) for _ in range(2))
        loss = (2 - 2 * nn.functional.cosine_similarity(online(v1), target(v2), dim=-1)).mean()
        optimizer.zero_grad()
        loss.backward()  # DDP averages the online gradients; the target has none
        optimizer.step()
        target.update(encoder)
    torch.save({"target": target.state_dict(), "online": encoder.state_dict()}, out)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_targets_stay_identical_across_ranks(run_ranks):
    results = run_ranks(WORKER)
    for key, value in results[0]["target"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, results[1]["target"][key]), key
    # and the target moved (it follows the DDP-synchronised online weights)
    assert not torch.equal(
        results[0]["target"]["module.0.weight"], results[0]["online"]["0.weight"]
    )
