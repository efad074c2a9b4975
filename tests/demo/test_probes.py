"""Multi-task linear probes: planted linear signals are recovered; references in float64."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from augplug import Task
from augplug.evaluate import LinearProbes, encode, probe_tasks

TASKS = (Task("class", "classification", 4), Task("value", "regression", 2))


def planted(seed: int, n: int = 600, d: int = 12, noise: float = 0.05):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(0.5, 3.0, d)  # unequal feature scales
    classes = (x @ torch.randn(d, 4, generator=g)).argmax(1)
    value = x @ torch.randn(d, 2, generator=g) + 1.5 + noise * torch.randn(n, 2, generator=g)
    return x, {"class": classes, "value": value}


def split(x, targets, n_train):
    return (
        x[:n_train], {k: v[:n_train] for k, v in targets.items()},
        x[n_train:], {k: v[n_train:] for k, v in targets.items()},
    )  # fmt: skip


@given(seed=st.integers(0, 10_000))
def test_probes_recover_a_planted_linear_signal(seed):
    x, targets = planted(seed)
    metrics = probe_tasks(*split(x, targets, 400), TASKS)
    # The classes are a linear function of the features: far above chance (25%).
    assert metrics["class"]["accuracy"] > 0.85
    assert metrics["class"]["cross_entropy"] < 0.6
    # The regression noise has variance 0.05^2: the probe's test MSE is close to it.
    assert metrics["value"]["mse"] < 4 * 0.05**2
    assert metrics["value"]["r2"] > 0.99
    assert len(metrics["value"]["mse_per_target"]) == 2


def test_regression_head_is_the_float64_ridge_solution():
    x, targets = planted(1, n=300)
    ridge = 1e-2
    probes = LinearProbes.fit(x, targets, TASKS, ridge=ridge)
    # Reference: ridge on standardised features with an unpenalised bias, in NumPy float64.
    xs = x.double().numpy()
    xs = (xs - xs.mean(0)) / xs.std(0)
    design = np.hstack([xs, np.ones((len(xs), 1))])
    penalty = ridge * len(xs) * np.eye(design.shape[1])
    penalty[-1, -1] = 0
    solution = np.linalg.solve(
        design.T @ design + penalty, design.T @ targets["value"].double().numpy()
    )
    expected = design @ solution
    got = probes(x)["value"].double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_metrics_match_a_direct_computation():
    x, targets = planted(2)
    probes = LinearProbes.fit(x, targets, TASKS)
    metrics = probes.evaluate(x, targets)
    out = probes(x)
    accuracy = (out["class"].argmax(1) == targets["class"]).double().mean().item()
    log_probs = torch.log_softmax(out["class"].double(), 1)
    cross_entropy = -log_probs[torch.arange(len(x)), targets["class"]].mean().item()
    errors = (out["value"].double() - targets["value"].double()) ** 2
    assert metrics["class"]["accuracy"] == pytest.approx(accuracy)
    assert metrics["class"]["cross_entropy"] == pytest.approx(cross_entropy, rel=1e-5)
    assert metrics["value"]["mse_per_target"] == pytest.approx(errors.mean(0).tolist(), rel=1e-6)
    variance = targets["value"].double().var(0, unbiased=False)
    assert metrics["value"]["r2"] == pytest.approx(
        (1 - errors.mean(0) / variance).mean().item(), rel=1e-6
    )


def test_fitting_is_deterministic_and_needs_no_random_state():
    x, targets = planted(3)
    torch.manual_seed(0)
    first = LinearProbes.fit(x, targets, TASKS).state_dict()
    torch.manual_seed(1)
    second = LinearProbes.fit(x, targets, TASKS).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_uninformative_features_stay_at_chance():
    _x, targets = planted(4, n=1000)
    noise = torch.randn(1000, 12, generator=torch.Generator().manual_seed(9))
    metrics = probe_tasks(*split(noise, targets, 600), TASKS)
    counts = torch.bincount(targets["class"][600:], minlength=4)
    majority = (counts.max() / counts.sum()).item()
    assert metrics["class"]["accuracy"] < majority + 0.1
    assert metrics["value"]["r2"] < 0.05


def test_encode_batches_and_feature_averaging():
    encoder = torch.nn.Linear(5, 3)
    x = torch.randn(10, 5)
    torch.testing.assert_close(encode(encoder, x, batch_size=3), encoder(x).detach())

    def shift(batch, generator=None):
        return batch + torch.randn(batch.shape, generator=generator)

    averaged = encode(
        encoder,
        x,
        batch_size=4,
        views=shift,
        samples=200,
        generator=torch.Generator().manual_seed(0),
    )
    # A linear encoder of zero-mean noise: the average is encoder(x) up to Monte-Carlo error.
    torch.testing.assert_close(averaged, encoder(x).detach(), atol=0.3, rtol=0)


def test_bad_inputs_raise_clear_errors():
    x, targets = planted(5, n=50)
    with pytest.raises(ValueError, match="targets"):
        LinearProbes.fit(x, {"class": targets["class"]}, TASKS)
    with pytest.raises(TypeError, match=r"targets\['class'\]"):
        LinearProbes.fit(x, {**targets, "class": targets["class"].float()}, TASKS)
    with pytest.raises(ValueError, match=r"targets\['value'\]"):
        LinearProbes.fit(x, {**targets, "value": targets["value"][:40]}, TASKS)
    with pytest.raises(ValueError, match="features"):
        LinearProbes.fit(x[:, :, None], targets, TASKS)
    probes = LinearProbes.fit(x, targets, TASKS)
    with pytest.raises(ValueError, match="features"):
        probes(x[:, :5])
    with pytest.raises(ValueError, match="views, samples"):
        encode(torch.nn.Identity(), x, samples=3)
