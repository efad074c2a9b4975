"""DINO against a float64 reference from Caron et al. 2021 (Algorithm 1), the centre, the schedule, lightly."""

import hypothesis.strategies as st
import pytest
import torch
from augplug_objectives.dino import DINOHead, DINOLoss
from hypothesis import given
from ssl_references import dino_reference, loss_and_grads, views

import augplug


@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(0, 4), st.integers(1, 8)),
    seed=st.integers(0, 2**31 - 1),
    student_temperature=st.floats(0.05, 1.0),
    teacher_temperature=st.floats(0.02, 1.0),
)
def test_loss_gradient_and_centre_match_float64_reference(
    shape, seed, student_temperature, teacher_temperature
):
    batch, num_global, num_local, dim = shape
    if num_global + num_local < 2:
        num_local = 1
    student = views(seed, batch, num_global + num_local, dim, scale=3.0)
    teacher = views(seed + 1, batch, num_global, dim, scale=3.0)
    loss_fn = DINOLoss(dim, student_temperature, teacher_temperature, teacher_temperature).double()
    center = views(seed + 2, dim)
    loss_fn.center.copy_(center)
    loss, (grad,) = loss_and_grads(lambda s: loss_fn(s, teacher), student)
    ref, (ref_grad,) = loss_and_grads(
        lambda s: dino_reference(
            s.unbind(1), teacher.unbind(1), center, student_temperature, teacher_temperature
        ),
        student,
    )
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)
    # The training call moved the centre once, after the loss (which used the old centre).
    expected = 0.9 * center + 0.1 * teacher.reshape(-1, dim).mean(0)
    torch.testing.assert_close(loss_fn.center, expected, rtol=1e-12, atol=1e-12)


def test_gradcheck_with_respect_to_the_student():
    loss_fn = DINOLoss(4).double().eval()
    teacher = views(1, 3, 2, 4)
    student = views(2, 3, 4, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: loss_fn(s, teacher), (student,))


def test_no_gradient_reaches_the_teacher_and_eval_keeps_the_state():
    loss_fn = DINOLoss(4).eval()
    teacher = views(1, 3, 2, 4, dtype=torch.float32).requires_grad_(True)
    student = views(2, 3, 4, 4, dtype=torch.float32).requires_grad_(True)
    loss_fn(student, teacher).backward()
    assert teacher.grad is None and student.grad is not None
    assert int(loss_fn.step) == 0 and (loss_fn.center == 0).all()


def test_teacher_temperature_warms_up_as_the_official_linspace():
    loss_fn = DINOLoss(4, teacher_temperature=0.07, warmup_teacher_temperature=0.04, warmup_steps=5)
    schedule = [*torch.linspace(0.04, 0.07, 5).tolist(), 0.07, 0.07]
    seen = []
    for _ in schedule:
        seen.append(float(loss_fn.current_teacher_temperature()))
        loss_fn(views(0, 2, 3, 4, dtype=torch.float32), views(1, 2, 2, 4, dtype=torch.float32))
    assert seen == pytest.approx(schedule, abs=1e-7)


def test_state_round_trips_and_resumes_exactly():
    batches = [(views(s, 4, 5, 6), views(s + 100, 4, 2, 6)) for s in range(6)]
    loss_fn = DINOLoss(6, teacher_temperature=0.07, warmup_steps=4).double()
    for student, teacher in batches[:3]:
        loss_fn(student, teacher)
    resumed = DINOLoss(6, teacher_temperature=0.07, warmup_steps=4).double()
    resumed.load_state_dict(loss_fn.state_dict())
    for student, teacher in batches[3:]:
        torch.testing.assert_close(
            resumed(student, teacher), loss_fn(student, teacher), rtol=0, atol=0
        )
    torch.testing.assert_close(resumed.center, loss_fn.center, rtol=0, atol=0)
    assert int(resumed.step) == int(loss_fn.step) == 6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_float32(dtype):
    student, teacher = (
        views(3, 8, 6, 64, dtype=dtype, scale=3.0),
        views(4, 8, 2, 64, dtype=dtype, scale=3.0),
    )
    loss_fn = DINOLoss(64).eval()
    loss = loss_fn(student, teacher)
    assert loss.dtype == torch.float32
    ref = dino_reference(student.double().unbind(1), teacher.double().unbind(1), torch.zeros(64))
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-5)


def test_batch_permutation_invariance_and_list_inputs():
    student, teacher = views(5, 6, 4, 8), views(6, 6, 2, 8)
    loss_fn = DINOLoss(8).double().eval()
    order = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    loss = loss_fn(student, teacher)
    torch.testing.assert_close(
        loss_fn(student[order], teacher[order]), loss, rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        loss_fn(list(student.unbind(1)), list(teacher.unbind(1))), loss, rtol=0, atol=0
    )


def test_matches_lightly():
    lightly_loss = pytest.importorskip("lightly.loss")
    student, teacher = (
        views(7, 16, 6, 32, dtype=torch.float32),
        views(8, 16, 2, 32, dtype=torch.float32),
    )
    ours = DINOLoss(32)
    theirs = lightly_loss.DINOLoss(output_dim=32, warmup_teacher_temp_epochs=0)
    for step in range(3):  # the centres move alike
        target = teacher * (step + 1)
        loss, (grad,) = loss_and_grads(lambda s, t=target: ours(s, t), student)
        ref, (ref_grad,) = loss_and_grads(
            lambda s, t=target: theirs(list(t.unbind(1)), list(s.unbind(1))), student
        )
        torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    # loss_and_grads calls each loss once per step.
    torch.testing.assert_close(ours.center, theirs.center.reshape(-1), rtol=1e-5, atol=1e-6)


def test_head_outputs_cosines_to_unit_prototypes():
    head = DINOHead(in_dim=12, out_dim=20, hidden_dim=16, bottleneck_dim=8)
    out = head(torch.randn(5, 12))
    assert out.shape == (5, 20) and out.abs().max() <= 1 + 1e-6
    free = DINOHead(in_dim=12, out_dim=20, hidden_dim=16, bottleneck_dim=8, norm_last_layer=False)
    assert free.gain is not None and free(torch.randn(5, 12)).shape == (5, 20)


def test_registered_with_the_papers_defaults():
    loss_fn = augplug.create("objective", "dino", dim=65536)
    assert isinstance(loss_fn, DINOLoss)
    assert (loss_fn.student_temperature, loss_fn.teacher_temperature, loss_fn.center_momentum) == (
        0.1,
        0.04,
        0.9,
    )


def test_bad_inputs_name_the_argument():
    loss_fn = DINOLoss(4)
    state = {k: v.clone() for k, v in loss_fn.state_dict().items()}
    with pytest.raises(ValueError, match="z_target: expected the same batch size"):
        loss_fn(torch.randn(3, 4, 4), torch.randn(2, 2, 4))
    with pytest.raises(ValueError, match="z_target: expected at most as many crops"):
        loss_fn(torch.randn(3, 2, 4), torch.randn(3, 3, 4))
    with pytest.raises(ValueError, match="z: expected 4 features"):
        loss_fn(torch.randn(3, 4, 5), torch.randn(3, 2, 4))
    with pytest.raises(ValueError, match="z: expected finite values"):
        loss_fn(torch.full((3, 4, 4), float("nan")), torch.randn(3, 2, 4))
    with pytest.raises(ValueError, match="center_momentum"):
        DINOLoss(4, center_momentum=1.5)
    for name, value in loss_fn.state_dict().items():
        assert torch.equal(value, state[name]), name
