"""The project's objective contracts (augplug.testing.check_objective) on every new objective."""

import pytest

import augplug
from augplug.testing.contracts import check_objective
from augplug.testing.inputs import build_component

NEW = ["dcl", "dclw", "moco", "barlow_twins", "vicreg", "dino", "swav"]


@pytest.mark.parametrize("name", NEW)
def test_objective_contracts(name):
    component = build_component("objective", name)
    report = check_objective(augplug.create("objective", name, **component.kwargs), name=name)
    assert report is not None
