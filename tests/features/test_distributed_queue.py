"""Under torch.distributed every rank's queue receives all ranks' features, in rank order.

The ranks pass different batch sizes (3 and 2 rows, as in an epoch's last batch), and one
of rank 1's rows is NaN: both queues must stay identical and hold only the finite rows.
"""

from __future__ import annotations

import textwrap

import pytest
import torch

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    from augplug.checks import validation
    from augplug_features.support_queue import NearestNeighbour

    rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    aug = NearestNeighbour(dim=4, size=10)  # direct import: the registry would load every plugin
    gen = torch.Generator().manual_seed(rank)
    batches = [torch.randn(3 - rank, 4, generator=gen) for _ in range(3)]
    if rank == 1:
        batches[1][0, 1] = float("nan")
    with validation(False):  # as by default: the NaN row reaches the queue's enqueue
        neighbours = [aug(z) for z in batches]
    torch.save({"batches": batches, "neighbours": neighbours, "state": aug.state_dict()}, out)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_two_ranks_fill_identical_queues_with_everyones_features(run_ranks):
    results = run_ranks(WORKER)
    for key, value in results[0]["state"].items():
        assert torch.equal(value, results[1]["state"][key]), key
    # Three steps of 3 + 2 rows, one of them NaN: 14 finite rows through a 10-row queue.
    state = results[0]["state"]
    assert int(state["queue.dropped"]) == 1
    assert int(state["queue.count"]) == 10 and int(state["queue.pointer"]) == 14 % 10
    rows = [torch.cat([r["batches"][step] for r in results]) for step in range(3)]
    every = torch.cat(rows)
    finite = every[torch.isfinite(every).all(-1)]
    expected = torch.nn.functional.normalize(finite, dim=-1)[-10:]
    order = (int(state["queue.pointer"]) + torch.arange(10)) % 10  # oldest first
    torch.testing.assert_close(state["queue.features"][order], expected)
    # The second step's lookup already sees the other rank's first batch.
    first_step = torch.nn.functional.normalize(rows[0], dim=-1)
    for r in range(2):
        close = torch.isclose(results[r]["neighbours"][1][:, None], first_step[None], atol=1e-6)
        found = close.all(-1).any(-1)
        assert found[torch.isfinite(results[r]["batches"][1]).all(-1)].all()
