"""Shared test set-up: Hypothesis profiles and strict input validation."""

import os
from collections import Counter

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


# The bad-input matrix (tests/core/test_bad_input_matrix.py) records (case, outcome, known
# finding) here; the summary below prints the counts when it ran.
_BAD_INPUT_OUTCOMES: list[tuple[str, str, bool]] = []


@pytest.fixture(scope="session")
def bad_input_outcomes():
    return _BAD_INPUT_OUTCOMES


def pytest_terminal_summary(terminalreporter):
    if not _BAD_INPUT_OUTCOMES:
        return
    counts = Counter(category for _, category, _ in _BAD_INPUT_OUTCOMES)
    known = sum(1 for _, category, k in _BAD_INPUT_OUTCOMES if k and category in ("obscure", "silent", "corrupted"))
    terminalreporter.write_sep("-", "bad-input matrix")
    terminalreporter.write_line(
        f"{len(_BAD_INPUT_OUTCOMES)} cases: {counts['clear']} clear errors, {counts['handled']} handled, "
        f"{counts['obscure']} obscure, {counts['silent']} silent, {counts['corrupted']} corrupted "
        f"({known} of the failures are known findings marked xfail)"
    )


@pytest.fixture
def run_ranks(tmp_path):
    """Run a worker script as ``world_size`` gloo ranks; return each rank's ``torch.save``d output.

    The script gets ``rank store out`` on its command line: it joins the process group with
    ``init_method=f"file://{store}"`` and saves its results to ``out``.
    """
    import subprocess
    import sys

    def run(source: str, world_size: int = 2, timeout: float = 120) -> list:
        script = tmp_path / "worker.py"
        script.write_text(source)
        store = tmp_path / "store"
        outs = [tmp_path / f"rank{r}.pt" for r in range(world_size)]
        workers = [
            subprocess.Popen([sys.executable, str(script), str(r), str(store), str(outs[r])])
            for r in range(world_size)
        ]
        assert [w.wait(timeout=timeout) for w in workers] == [0] * world_size
        return [torch.load(out) for out in outs]

    return run
