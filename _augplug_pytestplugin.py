"""augplug's pytest plugin (the ``pytest11`` entry point): ``pytest --augplug-check PLUGIN``.

pytest loads this module in every run of every project installed next to augplug, so it
is a top-level module (importing ``augplug.testing...`` would import ``augplug`` and torch)
and imports nothing until the option is given; the work is in
:mod:`augplug.testing.pytest_plugin`.
"""


def pytest_addoption(parser):
    group = parser.getgroup("augplug", "augplug conformance contracts")
    group.addoption(
        "--augplug-check",
        action="append",
        default=[],
        metavar="PLUGIN",
        help="add one test per component x contract for the components of an installed augplug "
        "plugin (repeatable; comma-separated names allowed)",
    )
    group.addoption(
        "--augplug-check-examples",
        type=int,
        default=5,
        metavar="N",
        help="Hypothesis examples per contract for --augplug-check (default 5)",
    )


def pytest_configure(config):
    names = [n.strip() for option in config.getoption("augplug_check") for n in option.split(",")]
    names = [n for n in names if n]
    if names:
        from augplug.testing.pytest_plugin import ContractTests

        config.pluginmanager.register(
            ContractTests(names, config.getoption("augplug_check_examples")), "augplug-check"
        )
