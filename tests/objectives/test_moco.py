"""MoCo v2 (queue) and v3 (in-batch) against float64 references from the papers' pseudo-code, and lightly."""

import hypothesis.strategies as st
import pytest
import torch
from augplug_objectives.moco import MoCo
from hypothesis import given
from ssl_references import loss_and_grads, moco_reference, moco_v3_reference, views

import augplug


@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    queue_size=st.integers(1, 12),
    steps=st.integers(0, 4),
    seed=st.integers(0, 2**31 - 1),
    temperature=st.floats(0.05, 1.0),
)
def test_queue_form_matches_reference_and_enqueues_after_the_loss(
    shape, queue_size, steps, seed, temperature
):
    batch, dim = shape
    loss_fn = MoCo(dim, queue_size, temperature).double()
    past = []
    for step in range(steps):  # fill (part of) the queue
        key = views(seed + step, batch, dim)
        loss_fn(views(seed + 50 + step, batch, dim), key)
        past.append(torch.nn.functional.normalize(key, dim=1))
    # The queue holds the newest keys (normalised in float32 by SupportQueue), none of this
    # step's; its filled rows, in any order, are the negatives.
    expected = torch.cat(past)[-queue_size:] if past else torch.zeros(0, dim, dtype=torch.float64)
    filled = int(loss_fn.queue.count)
    negatives = loss_fn.queue.features[:filled]
    stored = sorted(map(tuple, negatives.tolist()))
    torch.testing.assert_close(
        torch.tensor(stored).reshape(-1, dim),
        torch.tensor(sorted(map(tuple, expected.tolist()))).reshape(-1, dim),
        rtol=1e-6,
        atol=1e-7,
    )
    q, k = views(seed + 99, batch, dim), views(seed + 98, batch, dim)
    loss, (grad_q, grad_k) = loss_and_grads(loss_fn.eval(), q, k)
    ref, (ref_grad, _) = loss_and_grads(
        lambda a, b: moco_reference(a, b, negatives, temperature), q, k
    )
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad_q, ref_grad, rtol=1e-8, atol=1e-10)
    assert (grad_k == 0).all()  # the keys are constants
    assert int(loss_fn.queue.count) == min(queue_size, steps * batch)


@given(shape=st.tuples(st.integers(1, 7), st.integers(1, 6)), seed=st.integers(0, 2**31 - 1))
def test_in_batch_form_matches_reference(shape, seed):
    q, k = views(seed, *shape), views(seed + 1, *shape)
    loss, (grad_q, _) = loss_and_grads(MoCo(queue_size=0, temperature=0.2), q, k)
    ref, (ref_grad, _) = loss_and_grads(lambda a, b: moco_v3_reference(a, b, 0.2), q, k)
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad_q, ref_grad, rtol=1e-8, atol=1e-10)


def test_gradcheck_with_respect_to_the_queries():
    k = views(1, 4, 3)
    for loss_fn in (MoCo(3, 5).double().eval(), MoCo(queue_size=0)):
        if loss_fn.queue is not None:
            loss_fn.queue.enqueue(views(2, 3, 3))
        assert torch.autograd.gradcheck(
            lambda q, f=loss_fn: f(q, k), (views(3, 4, 3).requires_grad_(True),)
        )


def test_scale_and_batch_order_invariance():
    q, k = views(4, 6, 5), views(5, 6, 5)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    for loss_fn in (MoCo(queue_size=0), MoCo(5, 8).double().eval()):
        if loss_fn.queue is not None:
            loss_fn.queue.enqueue(views(6, 6, 5))
        loss = loss_fn(q, k)
        torch.testing.assert_close(loss_fn(q[order], k[order]), loss, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(loss_fn(q * 1e3, k * 1e-3), loss, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_float32(dtype):
    q, k = views(7, 16, 32, dtype=dtype), views(8, 16, 32, dtype=dtype)
    loss_fn = MoCo(32, 64, temperature=0.05).eval()
    loss_fn.queue.enqueue(views(9, 64, 32, dtype=torch.float32))
    loss = loss_fn(q, k)
    assert loss.dtype == torch.float32
    ref = moco_reference(q.double(), k.double(), loss_fn.queue.features.double(), 0.05)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-5)


def test_queue_round_trips_through_state_dict_and_resumes_exactly():
    batches = [(views(s, 4, 6), views(s + 100, 4, 6)) for s in range(7)]
    loss_fn = MoCo(6, 10).double()
    for q, k in batches[:3]:
        loss_fn(q, k)
    resumed = MoCo(6, 10).double()
    resumed.load_state_dict(loss_fn.state_dict())
    for q, k in batches[3:]:
        torch.testing.assert_close(resumed(q, k), loss_fn(q, k), rtol=0, atol=0)
    for name, value in loss_fn.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_matches_lightly_memory_bank_over_steps():
    lightly_loss = pytest.importorskip("lightly.loss")
    dim, size, batch = 16, 48, 8
    ours = MoCo(dim, size, temperature=0.2)
    theirs = lightly_loss.NTXentLoss(temperature=0.2, memory_bank_size=(size, dim))
    # lightly starts from random unit rows; fill ours with the same rows first.
    ours.queue.enqueue(theirs.memory_bank.bank.clone())
    theirs.memory_bank.bank_ptr.zero_()
    for step in range(8):
        q, k = (
            views(step, batch, dim, dtype=torch.float32),
            views(step + 50, batch, dim, dtype=torch.float32),
        )
        loss, (grad,) = loss_and_grads(lambda a, b=k: ours(a, b), q)
        ref, (ref_grad,) = loss_and_grads(lambda a, b=k: theirs(a, b), q)
        torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_registered_with_the_papers_defaults():
    loss_fn = augplug.create("objective", "moco", dim=128)
    assert isinstance(loss_fn, MoCo) and loss_fn.queue_size == 65536 and loss_fn.temperature == 0.2


def test_bad_inputs_name_the_argument_and_leave_the_queue_alone():
    loss_fn = MoCo(4, 6)
    with pytest.raises(ValueError, match="dim: expected the keys' width"):
        MoCo(queue_size=16)
    with pytest.raises(ValueError, match="z1: expected shape"):
        loss_fn(torch.randn(3, 5), torch.randn(3, 5))
    with pytest.raises(ValueError, match="z2: expected the same batch size"):
        loss_fn(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="z2: expected finite values"):
        loss_fn(torch.randn(3, 4), torch.full((3, 4), float("inf")))
    assert int(loss_fn.queue.count) == 0 and int(loss_fn.queue.pointer) == 0
