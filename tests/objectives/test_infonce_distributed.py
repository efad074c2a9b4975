"""Two gloo processes on CPU against one process on the concatenated batch (float64).

The ranks hold equal batches (3 and 3 samples) and then unequal ones (4 and 3, the last
batch of an epoch without ``drop_last``), in one spawn since spawning costs seconds.

Each rank holds a different batch (not a mirror of the other) and a linear encoder whose
weight gradients are averaged over the ranks exactly as DDP does (an all-reduce divided by
the world size; DDP itself is exercised by examples/ddp.py, since constructing it imports
torch._dynamo, seconds per process). A wrong all-gather backward, a missing rank offset or
a mean-instead-of-sum shows up as a mismatch in the loss, the embedding gradients or the
averaged weight gradients.
"""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from augplug_objectives.infonce import InfoNCE
from objective_references import nt_xent_reference

from augplug import distributed

WORLD_SIZE = 2
VIEWS, IN_FEATURES, FEATURES = 3, 5, 4
#: Samples per rank, for each run: equal, then unequal.
LAYOUTS = ((3, 3), (4, 3))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _inputs_of_every_rank(layout) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    # Rank 1's inputs are on another scale, so the two halves are far from mirrored.
    scale = torch.tensor([1.0, 3.0], dtype=torch.float64).repeat_interleave(torch.tensor(layout))
    x = torch.randn(sum(layout), VIEWS, IN_FEATURES, generator=gen, dtype=torch.float64)
    return x * scale[:, None, None]


def _encoder() -> torch.nn.Linear:
    torch.manual_seed(1)
    return torch.nn.Linear(IN_FEATURES, FEATURES, dtype=torch.float64)


def _single_process(temperature: float, pairwise: bool, layout):
    """Loss, embedding gradient and weight gradient of one process on the whole batch."""
    encoder = _encoder()
    z = encoder(_inputs_of_every_rank(layout))
    z.retain_grad()
    loss = InfoNCE(temperature=temperature)(*((z[:, 0], z[:, 1]) if pairwise else (z,)))
    loss.backward()
    assert torch.allclose(loss, nt_xent_reference(z[:, :2] if pairwise else z, temperature))
    return loss.detach(), z.grad, encoder.weight.grad


def _check_all_gathers(rank: int) -> None:
    # Rank r holds r + 2 rows: the gathers pad, gather and strip, in rank order.
    sizes = [r + 2 for r in range(WORLD_SIZE)]

    def rows_of(r):
        return torch.arange(2 * sizes[r], dtype=torch.float64).reshape(sizes[r], 2) + 10 * r

    x = rows_of(rank).requires_grad_(True)
    assert distributed.gather_sizes(x) == sizes
    assert distributed.row_offset(x) == sum(sizes[:rank])
    gathered = distributed.all_gather_with_grad(x)
    expected = torch.cat([rows_of(r) for r in range(WORLD_SIZE)])
    torch.testing.assert_close(gathered, expected)
    torch.testing.assert_close(distributed.all_gather_no_grad(x), expected)
    # Rank r weighs the gathered rows by (r + 1) * row index: the gradient of this rank's rows
    # is the sum of every rank's weights on them, at this rank's offset.
    row = torch.arange(sum(sizes), dtype=torch.float64)[:, None]
    (gathered * (rank + 1) * row).sum().backward()
    weight_sum = sum(r + 1 for r in range(WORLD_SIZE))
    start = sum(sizes[:rank])
    torch.testing.assert_close(
        x.grad, (weight_sum * row[start : start + sizes[rank]]).expand(-1, 2)
    )
    # A rank with another feature width or dtype: a ValueError on every rank, not a hang or
    # gloo's size mismatch.
    for odd in (
        torch.zeros(2, 2 + rank),
        torch.zeros(2, 2, dtype=torch.float32 if rank else torch.float64),
    ):
        with pytest.raises(
            ValueError, match="x: expected the same shape after the batch dimension"
        ):
            distributed.all_gather_no_grad(odd)


def _compare(rank, layout, rows, local_anchors, pairwise) -> None:
    temperature = 0.3
    loss_ref, z_grad_ref, weight_grad_ref = _single_process(temperature, pairwise, layout)
    encoder = _encoder()
    z = encoder(_inputs_of_every_rank(layout)[rows])
    z.retain_grad()
    loss_fn = InfoNCE(
        temperature=temperature, tile_size=2, gather_distributed=True, local_anchors=local_anchors
    )
    loss = loss_fn(*((z[:, 0], z[:, 1]) if pairwise else (z,)))
    loss.backward()
    dist.all_reduce(encoder.weight.grad)  # DDP's gradient averaging
    encoder.weight.grad /= WORLD_SIZE
    mode = f"layout={layout}, local_anchors={local_anchors}, pairwise={pairwise}, rank={rank}"
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    mean_loss /= WORLD_SIZE
    torch.testing.assert_close(mean_loss, loss_ref, rtol=1e-6, atol=1e-6, msg=f"mean loss ({mode})")
    if not local_anchors:
        torch.testing.assert_close(
            loss.detach(), loss_ref, rtol=1e-6, atol=1e-6, msg=f"loss ({mode})"
        )
    # Each rank's embeddings get world_size x their single-process gradient (every rank's
    # loss is summed into them); DDP's average over world_size ranks divides it back out.
    torch.testing.assert_close(
        z.grad, WORLD_SIZE * z_grad_ref[rows], rtol=1e-6, atol=1e-9, msg=f"embedding grad ({mode})"
    )
    torch.testing.assert_close(
        encoder.weight.grad, weight_grad_ref, rtol=1e-6, atol=1e-9, msg=f"weight grad ({mode})"
    )


def _worker(rank: int, port: int) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        torch.set_num_threads(1)
        assert distributed.is_distributed() and distributed.rank() == rank
        assert distributed.world_size() == WORLD_SIZE
        _check_all_gathers(rank)
        for layout in LAYOUTS:
            start = sum(layout[:rank])
            rows = slice(start, start + layout[rank])
            for local_anchors, pairwise in (
                (False, False),
                (True, False),
                (False, True),
                (True, True),
            ):
                _compare(rank, layout, rows, local_anchors, pairwise)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed")
def test_two_gloo_ranks_equal_one_process_on_the_concatenated_batch():
    mp.spawn(_worker, args=(_free_port(),), nprocs=WORLD_SIZE, join=True)
