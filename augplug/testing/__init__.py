"""Property-based testing of your own encoders and plugins.

Invariance assertions and Hypothesis strategies for your encoders::

    from augplug.testing import assert_invariant, conditional_variance, image_batches

    @given(image_batches(channels=3, size=32))
    def test_my_encoder_ignores_colour(x):
        assert_invariant(my_encoder, augplug.create("views", "colour"), x, atol=1e-4, rtol=1e-3)

and the conformance contracts every component must meet, for a plugin's own tests
(:mod:`augplug.testing.contracts`; also ``augplug check`` and ``pytest --augplug-check``)::

    from augplug.testing import check_parametric_view_generator
    check_parametric_view_generator(MyViews())     # AssertionError listing failed contracts

The strategies and the contracts need ``hypothesis`` (``pip install '.[dev]'`` in an augplug checkout) and
are imported on first use, so the assertions work without it.
"""

from augplug.testing.assertions import assert_invariant, conditional_variance

_STRATEGIES = (
    "embeddings",
    "image_batches",
    "spectrogram_batches",
    "view_params",
    "waveform_batches",
)
_CONTRACTS = (
    "ContractReport",
    "ContractResult",
    "check_component",
    "check_dataset",
    "check_feature_augmenter",
    "check_objective",
    "check_parametric_view_generator",
    "check_view_generator",
)

__all__ = ["assert_invariant", "conditional_variance", *_CONTRACTS, *_STRATEGIES]


def __getattr__(name: str):
    module = "strategies" if name in _STRATEGIES else "contracts" if name in _CONTRACTS else None
    if module is None:
        raise AttributeError(f"module 'augplug.testing' has no attribute {name!r}")
    try:
        imported = __import__(f"augplug.testing.{module}", fromlist=[name])
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"augplug.testing.{name} needs hypothesis: pip install hypothesis ({exc})"
        ) from exc
    return getattr(imported, name)
