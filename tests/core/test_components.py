"""Interfaces, checks and random draws of the core."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import augplug
from augplug import checks, rng


class Scale(augplug.ParametricViewGenerator):
    """Multiplies each sample by a factor in U(0.5, 1.5)."""

    continuous_params = ("factor",)

    def sample(self, x, generator=None):
        return augplug.Params(
            factor=rng.uniform((x.shape[0],), 0.5, 1.5, device=x.device, generator=generator)
        )

    def apply(self, x, params):
        return x * params["factor"].reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


class Crop(augplug.ParametricViewGenerator):
    """Keeps the first `width` columns (changes the shape, so composition must sample in order)."""

    def __init__(self, width):
        super().__init__()
        self.width = width

    def sample(self, x, generator=None):
        return augplug.Params(offset=torch.full((x.shape[0],), float(x.shape[-1] - self.width)))

    def apply(self, x, params):
        return x[..., : self.width] + params["offset"].reshape(-1, 1)


class Noise(augplug.ViewGenerator):
    def forward(self, x, *, generator=None):
        return x + rng.normal(x.shape, device=x.device, generator=generator)


def test_params_move_detach_index_and_keep_integer_dtypes():
    p = augplug.Params(
        a=torch.rand(4, requires_grad=True), mask=torch.tensor([True, False, True, True])
    )
    half = p.to(torch.float16)
    assert half["a"].dtype == torch.float16 and half["mask"].dtype == torch.bool
    moved = p.to("cpu", torch.float64)
    assert moved["a"].dtype == torch.float64 and moved["mask"].dtype == torch.bool
    assert not p.detach()["a"].requires_grad
    sub = p.index(slice(1, 3))
    assert sub.batch_size == 2 and torch.equal(sub["mask"], p["mask"][1:3])
    with pytest.raises(ValueError, match="disagree on the batch size"):
        _ = augplug.Params(a=torch.zeros(2), b=torch.zeros(3)).batch_size
    with pytest.raises(KeyError, match="no parameter 'b'"):
        augplug.Params(a=torch.zeros(2)).requires_grad_(["b"])


@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 6))
def test_composed_views_replay_and_match_sequential_application(seed, batch):
    x = torch.rand(batch, 5, generator=torch.Generator().manual_seed(seed + 1))
    composed = augplug.ComposedViews([Scale(), Crop(3), Scale()])
    params = composed.sample(x, generator=torch.Generator().manual_seed(seed))
    assert set(params) == {"0.factor", "1.offset", "2.factor"}
    assert composed.continuous_params == ("0.factor", "2.factor")
    view = composed.apply(x, params)
    # Reference: apply each stage by hand with its own params.
    expected = x * params["0.factor"][:, None]
    expected = expected[:, :3] + params["1.offset"][:, None]
    expected = expected * params["2.factor"][:, None]
    torch.testing.assert_close(view, expected)
    torch.testing.assert_close(composed.apply(x, params.clone()), view)
    again = composed(x, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(again, view)


def test_composition_with_a_non_parametric_stage_still_runs_but_cannot_sample():
    composed = augplug.ComposedViews([Scale(), Noise()])
    assert not composed.is_parametric
    assert composed(torch.zeros(2, 3)).shape == (2, 3)
    with pytest.raises(TypeError, match="every stage must be parametric"):
        composed.sample(torch.zeros(2, 3))
    with pytest.raises(TypeError, match=r"stages\[1\]: expected a ViewGenerator"):
        augplug.ComposedViews([Scale(), torch.nn.Identity()])


def test_check_tensor_messages_name_argument_expectation_and_value():
    with pytest.raises(TypeError, match=r"x: expected a torch.Tensor \(B, D\), got list"):
        checks.check_tensor([1, 2], "x", layout="(B, D)")
    with pytest.raises(ValueError, match=r"z: expected a 2-D tensor.*got tensor of shape \(3,\)"):
        checks.check_tensor(torch.zeros(3), "z", ndim=2)
    with pytest.raises(TypeError, match=r"z: expected dtype in \(float32.*got tensor.*int64"):
        checks.check_tensor(torch.zeros(3, 2, dtype=torch.long), "z", ndim=2)
    with pytest.raises(ValueError, match="z: expected a non-empty batch"):
        checks.check_tensor(torch.zeros(0, 2), "z", ndim=2)
    with pytest.raises(ValueError, match=r"z: expected shape \(\*, 4\)"):
        checks.check_tensor(torch.zeros(2, 3), "z", shape=(None, 4))
    with pytest.raises(ValueError, match="z: expected finite values, got 1 non-finite"):
        checks.check_tensor(torch.tensor([[0.0, float("nan")]]), "z")
    with checks.validation(False):
        checks.check_tensor(torch.tensor([[0.0, float("nan")]]), "z")  # no sync when off
    with pytest.raises(ValueError, match="expected a number > 0, got 0"):
        checks.check_positive(0, "temperature")
    with pytest.raises(ValueError, match=r"p: expected a number in \[0.0, 1.0\], got 1.5"):
        checks.check_probability(1.5, "p")
    with pytest.raises(ValueError, match="expected the same batch size"):
        checks.check_same_batch("z1", torch.zeros(2, 1), "z2", torch.zeros(3, 1))


def test_generator_checks():
    with pytest.raises(TypeError, match="generator: expected a torch.Generator"):
        rng.uniform((2,), 0, 1, device="cpu", generator=123)
    meta = torch.device("meta")
    with pytest.raises(
        ValueError, match="generator: expected a generator on the batch's device type"
    ):
        checks.check_generator(torch.Generator(), meta)


@given(seed=st.integers(0, 2**31 - 1))
def test_draws_are_reproducible_with_a_generator_and_leave_global_rng_alone(seed):
    state = torch.get_rng_state()
    draws = [
        (
            rng.uniform(
                (50,), -1.0, 2.0, device="cpu", generator=torch.Generator().manual_seed(seed)
            ),
            rng.bernoulli((50,), 0.3, device="cpu", generator=torch.Generator().manual_seed(seed)),
            rng.rademacher((50,), device="cpu", generator=torch.Generator().manual_seed(seed)),
            rng.randint((50,), 2, 7, device="cpu", generator=torch.Generator().manual_seed(seed)),
        )
        for _ in range(2)
    ]
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(*draws):
        assert torch.equal(a, b)
    u, bern, signs, ints = draws[0]
    assert bool(((u >= -1) & (u < 2)).all())
    assert set(signs.unique().tolist()) <= {-1.0, 1.0}
    assert bool(((ints >= 2) & (ints < 7)).all())
    assert bern.dtype == torch.bool
    assert bool(rng.bernoulli((20,), 1.0, device="cpu").all()) and not bool(
        rng.bernoulli((20,), 0.0, device="cpu").any()
    )


def test_multitask_dataset_validates_and_batches():
    inputs = torch.arange(10.0).reshape(5, 2)
    targets = {"a": torch.arange(5), "b": torch.rand(5, 2)}
    tasks = [augplug.Task("a", "classification", 5), augplug.Task("b", "regression", 2)]
    data = augplug.MultiTaskDataset(inputs, targets, tasks)
    x, y = data[2]
    assert torch.equal(x, inputs[2]) and int(y["a"]) == 2
    rows = torch.cat(
        [b[0] for b in data.batches(2, shuffle=True, generator=torch.Generator().manual_seed(0))]
    )
    assert sorted(rows[:, 0].tolist()) == inputs[:, 0].tolist()
    assert data.task("b").size == 2
    with pytest.raises(ValueError, match=r"targets\['a'\]: expected 5 rows"):
        augplug.MultiTaskDataset(inputs, {"a": torch.arange(4), "b": targets["b"]}, tasks)
    with pytest.raises(ValueError, match="one entry per task"):
        augplug.MultiTaskDataset(inputs, {"a": targets["a"]}, tasks)
    # Checked at the call, not at the first next(): batches(0) used to raise range()'s
    # error and batches(-1) to yield nothing.
    with pytest.raises(ValueError, match=r"^batch_size: expected an integer >= 1, got 0 \(int\)$"):
        data.batches(0)
    with pytest.raises(ValueError, match=r"^batch_size: expected an integer >= 1, got -1 \(int\)$"):
        data.batches(-1)
    with pytest.raises(
        TypeError, match=r"^batch_size: expected an integer >= 1, got 2.0 \(float\)$"
    ):
        data.batches(2.0)
    with pytest.raises(TypeError, match=r"^shuffle: expected True or False, got 'yes' \(str\)$"):
        data.batches(2, shuffle="yes")
    with pytest.raises(TypeError, match=r"^generator: expected a torch.Generator or None"):
        data.batches(2, shuffle=True, generator=0)
    assert [len(x) for x, _ in data.batches(2)] == [2, 2, 1]


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.5), (2.0, 2.0), (1.6, 4.0)])
def test_beta_draws_follow_the_beta_distribution(a, b):
    from scipy import stats

    draws = rng.beta((4000,), a, b, device="cpu", generator=torch.Generator().manual_seed(0))
    assert draws.shape == (4000,) and bool(((draws >= 0) & (draws <= 1)).all())
    # Kolmogorov-Smirnov at a fixed seed; p < 1e-3 would fail a correct sampler 0.1% of the time.
    assert stats.kstest(draws.double().numpy(), stats.beta(a, b).cdf).pvalue > 1e-3


def test_composed_views_and_task_name_their_bad_arguments():
    with pytest.raises(TypeError, match=r"^stages\[1\]: expected a ViewGenerator, got int$"):
        augplug.ComposedViews([_identity_view(), 3])
    with pytest.raises(TypeError, match=r"^stages: expected a list of view generators, got int$"):
        augplug.ComposedViews(3)
    with pytest.raises(ValueError, match=r"^stages: expected at least one view generator"):
        augplug.ComposedViews([])
    with pytest.raises(
        ValueError,
        match=r"^kind: expected one of 'classification', 'regression', got 'clasification' \(str\); did you mean 'classification'\?$",
    ):
        augplug.Task("a", "clasification", 2)
    with pytest.raises(TypeError, match=r"^size: expected an integer >= 1, got '2' \(str\)$"):
        augplug.Task("a", "classification", "2")


def _identity_view():
    class Identity(augplug.ViewGenerator):
        def forward(self, x, *, generator=None):
            return x

    return Identity()
