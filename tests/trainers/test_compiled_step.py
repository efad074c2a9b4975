"""examples/compiled_step.py: a whole training step under torch.compile on CPU.

SimCLR views, then a small viewmaker (a superset of the SimCLR-only step), a conv encoder, a
projector and InfoNCE. The compile tests use ``backend="aot_eager"``: dynamo's capture and
AOTAutograd's forward and backward graphs, where graph breaks and tracing failures happen,
without inductor's C++ code generation (minutes on a shared 2-core CPU; docs/trainers.md
records an inductor run).
"""

from __future__ import annotations

import pytest
import torch
from trainer_examples import load_example

from augplug.checks import validation

ex = load_example("compiled_step")


@pytest.fixture(autouse=True)
def _default_validation():
    # The suite switches augplug's finiteness checks on; they read the device (a host sync
    # and a data-dependent branch, so graph breaks). Compiled steps run with them off, the
    # default.
    with validation(False):
        yield


def _setup():
    torch.manual_seed(0)
    pipeline, encoder, projector = ex.build(viewmaker=True)
    parameters = [
        p for m in (pipeline, encoder, projector) for p in m.parameters() if p.requires_grad
    ]
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return pipeline, encoder, projector, parameters, x


def _assert_same_loss_and_gradients(eager, compiled, parameters):
    eager_grads = torch.autograd.grad(eager, parameters)
    compiled_grads = torch.autograd.grad(compiled, parameters)
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-6)
    for c, e in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_explicit_generator_breaks_the_graph_only_at_its_draws():
    """Dynamo cannot trace a torch.Generator: every break is a draw in augplug/rng.py.

    The count is recorded in docs/trainers.md (torch 2.11): update both together.
    """
    pipeline, encoder, projector, _, x = _setup()
    generator = torch.Generator().manual_seed(0)

    def step(x, generator):
        return pipeline(x, encoder, projector, generator=generator).loss

    count, locations = ex.graph_breaks(step, x, generator)
    assert count == 5
    assert locations and all(loc.startswith("augplug/rng.py:") for loc in locations), locations


@pytest.mark.slow
def test_global_rng_step_is_one_graph_with_eager_loss_and_gradients():
    pipeline, encoder, projector, parameters, x = _setup()
    step = ex.global_rng_step(pipeline, encoder, projector)
    torch.manual_seed(2)
    eager = step(x)
    # fullgraph=True: any graph break, in augplug or elsewhere, is an error.
    compiled_step = torch.compile(step, fullgraph=True, backend="aot_eager")
    torch.manual_seed(2)  # the same draws: aot_eager replays eager's random ops
    _assert_same_loss_and_gradients(eager, compiled_step(x), parameters)


@pytest.mark.slow
def test_sampled_params_step_is_one_graph_with_eager_loss_and_gradients():
    pipeline, encoder, projector, parameters, x = _setup()
    generator = torch.Generator().manual_seed(0)
    views = pipeline.views[0]
    params = views.sample(x, generator=generator), views.sample(x, generator=generator)
    step = ex.sampled_params_step(pipeline, encoder, projector)
    eager = step(x, *params)
    # The recipe's own step draws the same views from a generator in the same state.
    pipeline_loss = pipeline(x, encoder, projector, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(eager, pipeline_loss.loss, rtol=0, atol=0)
    compiled_step = torch.compile(step, fullgraph=True, backend="aot_eager")
    _assert_same_loss_and_gradients(eager, compiled_step(x, *params), parameters)
