"""Property-based testing of your own encoders: invariance assertions and Hypothesis strategies.

::

    from augplug.testing import assert_invariant, conditional_variance, image_batches

    @given(image_batches(channels=3, size=32))
    def test_my_encoder_ignores_colour(x):
        assert_invariant(my_encoder, augplug.create("views", "colour"), x, atol=1e-4, rtol=1e-3)

The strategies (:mod:`augplug.testing.strategies`) need ``hypothesis`` (``pip install
'augplug[dev]'``) and are imported on first use, so the assertions work without it.
"""

from augplug.testing.assertions import assert_invariant, conditional_variance

_STRATEGIES = ("embeddings", "image_batches", "spectrogram_batches", "view_params", "waveform_batches")

__all__ = ["assert_invariant", "conditional_variance", *_STRATEGIES]


def __getattr__(name: str):
    if name in _STRATEGIES:
        try:
            from augplug.testing import strategies
        except ModuleNotFoundError as exc:
            raise ImportError(
                f"augplug.testing.{name} needs hypothesis: pip install 'augplug[dev]' ({exc})"
            ) from exc
        return getattr(strategies, name)
    raise AttributeError(f"module 'augplug.testing' has no attribute {name!r}")
