"""augplug.threads: the default thread count, setting it, and the advice for shared machines."""

from __future__ import annotations

import pytest
import torch

from augplug import threads


def test_default_is_one_thread_unless_the_environment_says_otherwise():
    assert threads.default_threads({}) == 1
    assert threads.default_threads({"OMP_NUM_THREADS": "3"}) == 3
    assert threads.default_threads({"AUGPLUG_THREADS": "2", "OMP_NUM_THREADS": "3"}) == 2
    assert threads.default_threads({"AUGPLUG_THREADS": " ", "OMP_NUM_THREADS": "3"}) == 3


@pytest.mark.parametrize(
    ("environ", "error"),
    [({"AUGPLUG_THREADS": "two"}, "AUGPLUG_THREADS: expected a positive integer, got 'two'"),
     ({"OMP_NUM_THREADS": "0"}, "OMP_NUM_THREADS: expected an integer >= 1, got 0")],
)  # fmt: skip
def test_bad_environment_values_name_the_variable(environ, error):
    with pytest.raises(ValueError, match=f"^{error}"):
        threads.default_threads(environ)


def test_configure_threads_sets_torch_and_checks_the_count(monkeypatch):
    previous = torch.get_num_threads()
    monkeypatch.delenv("AUGPLUG_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert threads.configure_threads(2) == 2 and torch.get_num_threads() == 2
        assert threads.configure_threads() == 1 and torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="^threads: expected an integer >= 1"):
            threads.configure_threads(0)
        with pytest.raises(TypeError, match="^threads: "):
            threads.configure_threads(1.5)
        assert torch.get_num_threads() == 1  # a bad value changes nothing
    finally:
        torch.set_num_threads(previous)


def test_conditions_name_cores_load_threads_and_policy(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    found = threads.cpu_conditions()
    assert found["cores"] >= 1 and found["threads"] == torch.get_num_threads()
    assert found["omp_wait_policy"] == "PASSIVE"
    assert found["load_1min"] is None or found["load_1min"] >= 0


@pytest.mark.parametrize(
    ("count", "load", "policy", "warns"),
    [
        (1, 8.0, "default", None),  # one thread never spins
        (2, 0.0, "default", None),  # an idle machine
        (2, 1.0, "default", "spinning"),  # one core busy elsewhere
        (2, 8.0, "PASSIVE", None),  # sleeping threads
        (2, None, "default", None),  # no load average on this OS
        (3, 0.0, "PASSIVE", "3 threads on 2 usable cores"),
    ],
)
def test_advice(count, load, policy, warns):
    conditions = {"cores": 2, "load_1min": load, "omp_wait_policy": policy}
    advice = threads.thread_advice(count, conditions)
    if warns is None:
        assert advice is None
    else:
        assert warns in advice
