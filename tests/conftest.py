"""Shared test set-up: Hypothesis profiles and strict input validation."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# "ci" keeps the suite fast on a 2-core machine; "dev" searches harder locally.
settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Test tensors are tiny: a second intra-op thread only adds synchronisation.
torch.set_num_threads(1)

# Without a GPU, Triton kernels (InfoNCE's kernel="triton") run in Triton's CPU interpreter.
# Triton reads the switch when it is first imported, so it is set before any test imports it;
# torch.compile on the CPU generates C++, not Triton, and does not look at it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _strict_validation():
    """Run every test with the value checks (non-finite input) switched on."""
    from augplug.checks import validation

    with validation(True):
        yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
