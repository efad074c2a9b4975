"""The support queue and its neighbour augmenters against float64 / pure-Python references."""

from __future__ import annotations

import collections
import copy
import io

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import augplug
import augplug.checks
import augplug.queue
from augplug.queue import SupportQueue


def unit64(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.double(), dim=-1)


def ordered_rows(queue: SupportQueue) -> torch.Tensor:
    """The filled rows, oldest first, read off the buffers."""
    count, pointer = int(queue.count), int(queue.pointer)
    return queue.features[(pointer - count + torch.arange(count)) % queue.size]


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@given(
    size=st.integers(1, 7),
    batches=st.lists(st.integers(1, 16), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_fifo_order_matches_a_python_queue(size, batches, seed):
    gen = torch.Generator().manual_seed(seed)
    queue = SupportQueue(size, 3)
    reference: collections.deque[torch.Tensor] = collections.deque(maxlen=size)
    for rows in batches:
        z = torch.randn(rows, 3, generator=gen)
        queue.enqueue(z)
        reference.extend(unit64(z))
        assert int(queue.count) == len(reference)
        torch.testing.assert_close(ordered_rows(queue).double(), torch.stack(list(reference)))
    assert int(queue.pointer) == sum(batches) % size


@given(
    size=st.integers(1, 7),
    batches=st.lists(
        st.lists(st.sampled_from(["ok", "ok", "nan", "inf", "huge"]), min_size=1, max_size=16),
        min_size=1,
        max_size=8,
    ),
    seed=st.integers(0, 2**16),
)
def test_non_finite_rows_are_never_stored_and_are_counted(size, batches, seed):
    """Against a Python deque that skips the non-finite rows (validation off, as by default)."""
    gen = torch.Generator().manual_seed(seed)
    queue = SupportQueue(size, 3)
    reference: collections.deque[torch.Tensor] = collections.deque(maxlen=size)
    dropped = 0
    with augplug.checks.validation(False):
        for kinds in batches:
            z = torch.randn(len(kinds), 3, generator=gen)
            for i, kind in enumerate(kinds):
                if kind == "nan":
                    z[i, i % 3] = float("nan")
                elif kind == "inf":
                    z[i, 0] = float("-inf")
                elif kind == "huge":
                    z[i] *= 1e37  # finite, and its norm overflows float32: still stored
            queue.enqueue(z)
            for row, kind in zip(z, kinds):
                if kind in ("nan", "inf"):
                    dropped += 1
                else:
                    reference.append(unit64(row))
            assert int(queue.count) == len(reference) and int(queue.dropped) == dropped
            assert torch.isfinite(queue.features).all()
            if reference:
                torch.testing.assert_close(
                    ordered_rows(queue).double(), torch.stack(list(reference))
                )
    finite_rows = sum(kind not in ("nan", "inf") for kinds in batches for kind in kinds)
    assert int(queue.pointer) == finite_rows % size


@pytest.mark.parametrize("name", ["nearest_neighbour", "neighbour_mean"])
def test_a_non_finite_batch_does_not_poison_later_lookups(name):
    aug = augplug.create("features", name, dim=4, size=8)
    gen = torch.Generator().manual_seed(0)
    aug(torch.randn(6, 4, generator=gen))
    bad = torch.randn(3, 4, generator=gen)
    bad[1, 2] = float("nan")
    with augplug.checks.validation(False):
        out = aug(bad)
    # That batch's own lookup: NaN for the bad sample only.
    assert torch.isnan(out[1]).all() and torch.isfinite(out[[0, 2]]).all()
    assert int(aug.queue.dropped) == 1 and int(aug.queue.count) == 8
    for _ in range(5):  # every later clean lookup is finite
        assert torch.isfinite(aug(torch.randn(4, 4, generator=gen), k=3)).all()


@pytest.mark.parametrize("name", ["nearest_neighbour", "neighbour_mean"])
def test_enqueue_argument_writes_those_rows_after_the_lookup(name):
    aug = augplug.create("features", name, dim=4, size=8)
    z, other = torch.randn(3, 4), torch.randn(2, 4)
    aug(torch.randn(5, 4))
    before = ordered_rows(aug.queue).clone()
    twin = copy.deepcopy(aug).eval()
    looked_up = aug(z, enqueue=other)
    torch.testing.assert_close(twin(z), looked_up)  # the lookup saw neither z nor `other`
    torch.testing.assert_close(
        ordered_rows(aug.queue).double(), torch.cat([before.double(), unit64(other)])[-7:]
    )
    with pytest.raises(ValueError, match=r"enqueue: expected shape \(\*, 4\)"):
        aug(z, enqueue=torch.randn(2, 5))


def test_queue_size_beyond_memory_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"^size: expected a queue that fits in memory, got size=10+ x dim=128"
    ):
        SupportQueue(10**15, 128)
    with pytest.raises(TypeError, match=r"^size: expected an integer >= 1, got 8.0 \(float\)"):
        SupportQueue(8.0, 4)
    with pytest.raises(ValueError, match=r"^dim: expected an integer >= 1, got 0"):
        augplug.create("features", "nearest_neighbour", dim=0)


def test_checkpoints_without_the_dropped_counter_still_load():
    queue = SupportQueue(4, 2)
    queue.enqueue(torch.randn(3, 2))
    old = {k: v for k, v in queue.state_dict().items() if k != "dropped"}
    resumed = SupportQueue(4, 2)
    resumed.load_state_dict(old)
    assert torch.equal(resumed.features, queue.features) and int(resumed.dropped) == 0


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1.0, 1e20, 1e30])
def test_rows_are_normalised_at_any_float32_magnitude(scale):
    queue = SupportQueue(4, 3)
    z = torch.tensor([[1.0, 2.0, 2.0]])
    queue.enqueue(z * scale)
    torch.testing.assert_close(queue.features[0], torch.tensor([1.0, 2.0, 2.0]) / 3)


@given(
    size=st.integers(1, 20),
    filled_batches=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    queries=st.integers(1, 6),
    k=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_neighbours_are_the_float64_cosine_top_k_among_filled_rows(
    size, filled_batches, queries, k, seed
):
    gen = torch.Generator().manual_seed(seed)
    aug = augplug.create("features", "nearest_neighbour", dim=5, size=size)
    for rows in filled_batches:
        aug(torch.randn(rows, 5, generator=gen))  # training mode: fills the queue
    aug.eval()
    z = torch.randn(queries, 5, generator=gen)
    out = aug(z, k=k).double()

    filled = aug.queue.features[: int(aug.queue.count)].double()
    brute = unit64(z) @ unit64(filled).t()  # (B, filled): cosine to every filled row
    best = brute.sort(-1, descending=True).values
    for b in range(queries):
        for i in range(k):
            if i >= filled.shape[0]:  # fewer filled rows than asked for: the query stands in
                torch.testing.assert_close(out[b, i], unit64(z[b]), rtol=1e-6, atol=1e-6)
                continue
            matches = (filled == out[b, i]).all(-1)
            assert matches.any(), "the neighbour must be a row of the queue"
            similarity = (unit64(z[b]) * unit64(out[b, i])).sum()
            assert abs(similarity - best[b, i]) < 1e-6


def test_neighbour_of_an_empty_queue_is_the_feature_itself():
    aug = augplug.create("features", "nearest_neighbour", dim=4, size=8)
    z = torch.randn(3, 4)
    torch.testing.assert_close(aug(z), torch.nn.functional.normalize(z, dim=-1))


def test_lookup_happens_before_the_batch_is_enqueued():
    aug = augplug.create("features", "nearest_neighbour", dim=4, size=8)
    aug(torch.eye(4)[:2])
    out = aug(torch.eye(4)[2:])  # its own rows are not in the queue yet
    assert (out[:, 2:] == 0).all()
    assert int(aug.queue.count) == 4


def test_eval_mode_does_not_enqueue():
    aug = augplug.create("features", "nearest_neighbour", dim=4, size=8)
    aug(torch.randn(3, 4))
    before = state(aug)
    aug.eval()
    aug(torch.randn(5, 4))
    assert_same_state(before, state(aug))


@given(
    size=st.integers(2, 16),
    neighbours=st.integers(1, 4),
    filled=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_neighbour_mean_is_the_mean_of_the_float64_top_k(size, neighbours, filled, seed):
    gen = torch.Generator().manual_seed(seed)
    aug = augplug.create(
        "features", "neighbour_mean", dim=6, size=size, neighbours=min(neighbours, size)
    )
    aug(torch.randn(filled, 6, generator=gen))
    aug.eval()
    z = torch.randn(4, 6, generator=gen)
    out = aug(z, k=2).double()
    assert torch.equal(out[:, 0], out[:, 1])
    rows = aug.queue.features[: int(aug.queue.count)].double()
    top = (unit64(z) @ rows.t()).topk(min(aug.neighbours, rows.shape[0]), dim=-1).indices
    picked = rows[top]  # (B, n', D)
    missing = aug.neighbours - picked.shape[1]
    expected = (picked.sum(1) + missing * unit64(z)) / aug.neighbours
    torch.testing.assert_close(out[:, 0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["nearest_neighbour", "neighbour_mean"])
def test_no_gradient_reaches_the_queue(name):
    aug = augplug.create("features", name, dim=4, size=8)
    aug(torch.randn(6, 4))
    z = torch.randn(3, 4, requires_grad=True)
    out = aug(z, k=2)
    assert not out.requires_grad
    assert not any(b.requires_grad for b in aug.buffers())
    assert all(b.grad_fn is None for b in aug.buffers())
    (z.sum() + out.sum()).backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))


@pytest.mark.parametrize("name", ["nearest_neighbour", "neighbour_mean"])
def test_state_dict_round_trip_resumes_with_the_identical_next_step(name):
    gen = torch.Generator().manual_seed(0)
    steps = [torch.randn(5, 6, generator=gen) for _ in range(6)]
    original = augplug.create("features", name, dim=6, size=11)
    for z in steps[:4]:
        original(z)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    resumed = augplug.create("features", name, dim=6, size=11)
    resumed.load_state_dict(torch.load(buffer))
    assert_same_state(state(original), state(resumed))
    for z in steps[4:]:
        assert torch.equal(original(z, k=2), resumed(z, k=2))
        assert_same_state(state(original), state(resumed))


@pytest.mark.parametrize("name", ["nearest_neighbour", "neighbour_mean"])
def test_bad_input_leaves_the_queue_untouched(name):
    aug = augplug.create("features", name, dim=4, size=8)
    aug(torch.randn(6, 4))
    before = state(aug)
    bad_calls = [
        (ValueError, "z: expected shape", dict(z=torch.randn(3, 5))),
        (ValueError, "z: expected a 2-D", dict(z=torch.randn(3))),
        (TypeError, "z: expected dtype", dict(z=torch.ones(3, 4, dtype=torch.int64))),
        (ValueError, "z: expected finite", dict(z=torch.full((3, 4), float("inf")))),
        (ValueError, "z: expected a non-empty batch", dict(z=torch.randn(0, 4))),
        (ValueError, "k: expected", dict(z=torch.randn(3, 4), k=-1)),
        (TypeError, "generator", dict(z=torch.randn(3, 4), generator="seed")),
    ]
    for error, match, kwargs in bad_calls:
        with pytest.raises(error, match=match):
            aug(**kwargs)
        assert_same_state(before, state(aug))


def test_enqueue_takes_every_ranks_features(monkeypatch):
    other_rank = torch.randn(3, 4)
    monkeypatch.setattr(
        augplug.queue, "all_gather_no_grad", lambda x: torch.cat([x, unit64(other_rank).float()])
    )
    aug = augplug.create("features", "nearest_neighbour", dim=4, size=16)
    z = torch.randn(3, 4)
    aug(z)
    torch.testing.assert_close(
        ordered_rows(aug.queue).double(), torch.cat([unit64(z), unit64(other_rank)])
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_queue(dtype):
    aug = augplug.create("features", "nearest_neighbour", dim=8, size=32).to(dtype)
    assert aug.queue.features.dtype == dtype and aug.queue.count.dtype == torch.int64
    gen = torch.Generator().manual_seed(0)
    bank = torch.randn(32, 8, generator=gen)
    aug(bank.to(dtype))
    aug.eval()
    noisy = bank + 0.01 * torch.randn(32, 8, generator=gen)
    out = aug(noisy.float())  # float32 queries against a low-precision queue
    assert out.dtype == torch.float32
    # Each slightly perturbed bank row finds its own (well separated) row.
    assert torch.equal(out, aug.queue.features.float())


@pytest.mark.cuda
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(0)
    bank, z = torch.randn(50, 16, generator=gen), torch.randn(7, 16, generator=gen)
    cpu = augplug.create("features", "nearest_neighbour", dim=16, size=64)
    cuda = augplug.create("features", "nearest_neighbour", dim=16, size=64).cuda()
    cpu(bank), cuda(bank.cuda())
    torch.testing.assert_close(cuda(z.cuda(), k=3).cpu(), cpu(z, k=3))
    assert_same_state({k: v.cpu() for k, v in state(cuda).items()}, state(cpu))


@pytest.mark.parametrize("name", ["nearest_neighbour", "neighbour_mean"])
def test_lookup_and_enqueue_never_read_values_on_the_host(name):
    """On the meta device a tensor has no values: .item(), bool() or int() of one raises.

    So a forward that runs there (a batch longer than the queue included) contains no host
    sync; the finiteness check of validation mode is the one deliberate exception.
    """
    aug = augplug.create("features", name, dim=4, size=8).to("meta")
    with augplug.checks.validation(False):
        out = aug(torch.randn(3, 4, device="meta"), k=2, enqueue=torch.randn(12, 4, device="meta"))
    assert out.shape == (3, 2, 4)
    assert aug.queue.features.device.type == "meta"
