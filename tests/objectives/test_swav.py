"""SwAV against a float64 reference from Caron et al. 2020 (Sinkhorn-Knopp, swapped prediction), and lightly."""

import hypothesis.strategies as st
import pytest
import torch
from augplug_objectives.swav import SwAV, sinkhorn_knopp
from hypothesis import given
from ssl_references import loss_and_grads, sinkhorn_reference, swav_reference, views

import augplug


def _reference_loss(crops, prototypes, **kwargs):
    unit = torch.nn.functional.normalize(crops.double(), dim=-1)
    # Unit rows already (the module keeps them so); used as they are, as the official code's
    # linear layer, so the gradient to them is not projected onto the sphere.
    weights = prototypes.double()
    return swav_reference([unit[:, v] @ weights.T for v in range(crops.shape[1])], **kwargs)


@given(
    shape=st.tuples(st.integers(1, 6), st.integers(2, 5), st.integers(1, 6), st.integers(1, 7)),
    assign=st.integers(1, 2),
    seed=st.integers(0, 2**31 - 1),
    temperature=st.floats(0.05, 1.0),
    epsilon=st.sampled_from([0.05, 0.5]),
)
def test_loss_and_gradients_match_float64_reference(shape, assign, seed, temperature, epsilon):
    batch, num_views, dim, prototypes = shape
    loss_fn = SwAV(
        dim,
        prototypes,
        temperature=temperature,
        epsilon=epsilon,
        assign_views=min(assign, num_views),
    )
    loss_fn = (
        loss_fn.double().eval()
    )  # eval: no in-place re-normalisation, the reference normalises
    crops = views(seed, batch, num_views, dim)
    weight = loss_fn.prototypes.detach().clone()
    torch.testing.assert_close(weight.norm(dim=1), torch.ones(prototypes, dtype=torch.float64))
    loss, (grad,) = loss_and_grads(loss_fn, crops)
    ref, (ref_grad, ref_weight_grad) = loss_and_grads(
        lambda c, w: _reference_loss(
            c, w, temperature=temperature, assign_views=loss_fn.assign_views, epsilon=epsilon
        ),
        crops,
        weight,
    )
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)
    (weight_grad,) = torch.autograd.grad(loss_fn(crops), loss_fn.prototypes)
    torch.testing.assert_close(weight_grad, ref_weight_grad, rtol=1e-8, atol=1e-10)


@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 9),
    k=st.integers(1, 9),
    eps=st.sampled_from([0.01, 0.05, 1.0]),
)
def test_sinkhorn_matches_reference_and_balances_prototypes(seed, n, k, eps):
    scores = torch.nn.functional.normalize(views(seed, n, k), dim=1)
    codes = sinkhorn_knopp(scores, epsilon=eps, iterations=3)
    torch.testing.assert_close(codes, sinkhorn_reference(scores, eps, 3), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(
        codes.sum(1), torch.ones(n, dtype=torch.float64)
    )  # last step: columns
    # Run to convergence (fast when well conditioned), every prototype gets n / k of the mass.
    many = sinkhorn_knopp(scores, epsilon=1.0, iterations=200)
    torch.testing.assert_close(
        many.sum(0), torch.full((k,), n / k, dtype=torch.float64), rtol=1e-6, atol=1e-6
    )


def test_sinkhorn_leaves_out_invalid_samples():
    scores = torch.nn.functional.normalize(views(1, 7, 4), dim=1)
    valid = torch.tensor([True, False, True, True, False, True, True])
    codes = sinkhorn_knopp(scores, valid=valid)
    torch.testing.assert_close(
        codes[valid], sinkhorn_reference(scores[valid]), rtol=1e-9, atol=1e-12
    )
    assert (codes[~valid] == 0).all()


def test_half_precision_stays_finite_at_small_epsilon():
    # exp(1 / 0.05) overflows float16; the shifted float32 exponential does not.
    crops = views(2, 16, 4, 8)
    loss_fn = SwAV(8, 20).eval()
    ref = loss_fn(crops.float())
    for dtype in (torch.bfloat16, torch.float16):
        loss = loss_fn(crops.to(dtype))
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss, ref, rtol=2e-2, atol=2e-2)


@given(seed=st.integers(0, 2**31 - 1), data=st.data())
def test_invariant_to_batch_order_and_crop_scale(seed, data):
    crops = views(seed, 6, 4, 5)
    loss_fn = SwAV(5, 7).double().eval()
    order = torch.tensor(data.draw(st.permutations(range(6))))
    loss = loss_fn(crops)
    torch.testing.assert_close(loss_fn(crops[order]), loss, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(loss_fn(crops * 37.0), loss, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(loss_fn(list(crops.unbind(1))), loss, rtol=0, atol=0)


def test_training_call_renormalises_the_prototypes():
    loss_fn = SwAV(4, 6)
    with torch.no_grad():
        loss_fn.prototypes.mul_(3.0)
    loss_fn(views(3, 5, 2, 4, dtype=torch.float32))
    torch.testing.assert_close(loss_fn.prototypes.norm(dim=1), torch.ones(6))


def test_queue_joins_sinkhorn_and_round_trips_through_state_dict():
    torch.manual_seed(0)
    loss_fn = SwAV(4, 6, queue_size=10).double()
    batches = [views(s, 4, 3, 4) for s in range(5)]
    for crops in batches[:2]:
        loss_fn(crops)
    # With 8 of 10 slots filled, the codes equal Sinkhorn over the 8 queued rows + the batch.
    crops = batches[2]
    unit = torch.nn.functional.normalize(crops, dim=-1)
    weight = torch.nn.functional.normalize(loss_fn.prototypes.detach(), dim=-1)
    queue0 = loss_fn.queues[0].features[:8]
    codes = sinkhorn_reference(torch.cat([queue0, unit[:, 0]]) @ weight.T)[8:]
    log_p = torch.log_softmax(unit[:, 1:] @ weight.T / 0.1, dim=-1)
    expected_first = -(codes[:, None] * log_p).sum(-1).mean(0).sum() / 2
    log_p_second = torch.log_softmax(unit[:, [0, 2]] @ weight.T / 0.1, dim=-1)
    codes_second = sinkhorn_reference(
        torch.cat([loss_fn.queues[1].features[:8], unit[:, 1]]) @ weight.T
    )[8:]
    expected_second = -(codes_second[:, None] * log_p_second).sum(-1).mean(0).sum() / 2
    torch.testing.assert_close(loss_fn.eval()(crops), (expected_first + expected_second) / 2)
    loss_fn.train()
    resumed = SwAV(4, 6, queue_size=10).double()
    resumed.load_state_dict(loss_fn.state_dict())
    for crops in batches[2:]:
        torch.testing.assert_close(resumed(crops), loss_fn(crops), rtol=0, atol=0)
    for name, buffer in loss_fn.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], buffer, rtol=0, atol=0, msg=name)


def test_matches_lightly_on_the_same_scores():
    lightly_loss = pytest.importorskip("lightly.loss")
    crops = views(4, 16, 5, 8, dtype=torch.float32)
    loss_fn = SwAV(8, 12, assign_views=2)
    loss_fn.normalize_prototypes()
    loss_fn.eval()
    loss, (grad,) = loss_and_grads(loss_fn, crops)

    def theirs(c):
        scores = torch.nn.functional.normalize(c, dim=-1) @ loss_fn.prototypes.detach().T
        return lightly_loss.SwaVLoss()(
            [scores[:, 0], scores[:, 1]], [scores[:, v] for v in range(2, 5)]
        )

    ref, (ref_grad,) = loss_and_grads(theirs, crops)
    torch.testing.assert_close(loss, ref.squeeze(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_registered_with_the_papers_defaults():
    loss_fn = augplug.create("objective", "swav", dim=128)
    assert isinstance(loss_fn, SwAV) and loss_fn.prototypes.shape == (3000, 128)
    assert (loss_fn.temperature, loss_fn.epsilon, loss_fn.sinkhorn_iterations) == (0.1, 0.05, 3)


def test_bad_inputs_name_the_argument():
    loss_fn = SwAV(4, 6)
    with pytest.raises(ValueError, match="z: expected 4 features"):
        loss_fn(torch.randn(3, 2, 5))
    with pytest.raises(ValueError, match="z: expected at least 2 crops"):
        loss_fn(torch.randn(3, 1, 4))
    with pytest.raises(ValueError, match=r"z\[1\]: expected shape"):
        loss_fn([torch.randn(3, 4), torch.randn(2, 4)])
    with pytest.raises(TypeError, match="z: expected a"):
        loss_fn("crops")
    with pytest.raises(ValueError, match="num_prototypes"):
        SwAV(4, 0)
    with pytest.raises(TypeError, match="dim"):
        SwAV(4.0)
