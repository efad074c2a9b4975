"""augplug.testing: assert_invariant, conditional_variance and the Hypothesis strategies."""

from __future__ import annotations

import re

import pytest
import torch
from augplug_datasets.spirograph import FACTOR_RANGES, NUISANCE, stack_targets
from hypothesis import given
from hypothesis import strategies as st
from invariance_helpers import Brightness, RowOffset, mean_colour, scale_invariant, tiny_encoder

import augplug
from augplug.testing import (
    assert_invariant,
    conditional_variance,
    embeddings,
    image_batches,
    spectrogram_batches,
    view_params,
    waveform_batches,
)

positive_images = image_batches(batch=(1, 6), size=(2, 8)).map(lambda x: x + 0.1)


@given(positive_images)
def test_a_gain_invariant_encoder_passes(x):
    assert_invariant(scale_invariant, Brightness(), x, atol=1e-6, rtol=1e-5)


@given(positive_images)
def test_a_colour_sensitive_encoder_fails_with_the_worst_sample_named(x):
    with pytest.raises(AssertionError, match=r"Worst: sample \d+, view \d vs view 0") as info:
        assert_invariant(mean_colour, Brightness(), x, atol=1e-6, rtol=1e-5)
    assert "gain=" in str(info.value)


def test_the_worst_sample_is_the_one_that_moves():
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(0)) + 0.1
    moving = torch.zeros(6, 1)
    moving[4] = 1.0

    def encoder(v):  # invariant except on sample 4
        return torch.cat([scale_invariant(v), moving * mean_colour(v)], dim=1)

    with pytest.raises(AssertionError) as info:
        assert_invariant(encoder, Brightness(), x, atol=1e-6, rtol=1e-5)
    message = str(info.value)
    assert message.startswith("encoder is not invariant to the views: 1 of 6 samples")
    assert "Worst: sample 4," in message and "params of sample 4: gain=" in message


def test_tolerance_is_elementwise_atol_plus_rtol():
    x = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    views = Brightness()
    encoder = mean_colour
    g = torch.Generator().manual_seed(2)
    outputs = torch.stack([encoder(views.apply(x, views.sample(x, generator=g))) for _ in range(3)])
    worst = (outputs[1:] - outputs[0]).abs().max().item()
    assert_invariant(
        encoder,
        views,
        x,
        atol=worst * 1.001,
        rtol=0,
        num_views=3,
        generator=torch.Generator().manual_seed(2),
    )
    with pytest.raises(AssertionError):
        assert_invariant(
            encoder,
            views,
            x,
            atol=worst * 0.999,
            rtol=0,
            num_views=3,
            generator=torch.Generator().manual_seed(2),
        )


def test_non_finite_outputs_fail():
    x = torch.zeros(2, 3, 2, 2)  # scale_invariant divides 0 by 0
    with pytest.raises(AssertionError, match="2 of 2 samples"):
        assert_invariant(scale_invariant, Brightness(), x)


def test_the_colour_recipe_leaves_standardised_luminance_unchanged():
    views = augplug.create("views", "colour")

    def standardised_luminance(v):
        y = (0.299 * v[:, 0] + 0.587 * v[:, 1] + 0.114 * v[:, 2]).flatten(1)
        y = y - y.mean(1, keepdim=True)
        return y / y.norm(dim=1, keepdim=True)

    # Mid-range images: no channel clips at 0 or 1 under the colour jitter.
    x = 0.35 + 0.2 * torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    assert_invariant(
        standardised_luminance,
        views,
        x,
        atol=1e-4,
        rtol=1e-3,
        generator=torch.Generator().manual_seed(4),
    )
    with pytest.raises(AssertionError, match="brightness="):
        assert_invariant(
            mean_colour, views, x, atol=1e-4, rtol=1e-3, generator=torch.Generator().manual_seed(4)
        )


def test_spirograph_views_fail_a_colour_sensitive_encoder():
    x = stack_targets(augplug.create("dataset", "spirograph", size=4).targets)
    with pytest.raises(AssertionError, match="back_r="):
        assert_invariant(mean_colour, augplug.create("views", "spirograph"), x)


@given(batch=st.integers(1, 5), m=st.integers(2, 6))
def test_conditional_variance_matches_the_naive_float64_variance(batch, m):
    x = torch.rand(batch, 4, generator=torch.Generator().manual_seed(m), dtype=torch.float64)
    encoder = tiny_encoder(4, dim=3)
    got = conditional_variance(
        encoder, RowOffset(), x, m, generator=torch.Generator().manual_seed(7)
    )
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        outputs = torch.stack([encoder(RowOffset()(x, generator=g)) for _ in range(m)])
    torch.testing.assert_close(got, outputs.var(0, correction=1).sum(-1))


def test_conditional_variance_keeps_small_variances_of_large_features():
    x = torch.rand(4, 4, generator=torch.Generator().manual_seed(0))
    encoder = tiny_encoder(4, dim=3, dtype=torch.float32)

    def shifted(v):
        return encoder(v) + 100.0  # E[h^2] - E[h]^2 in float32 would lose ~1e-3 to rounding

    plain = conditional_variance(
        encoder, RowOffset(), x, 8, generator=torch.Generator().manual_seed(1)
    )
    offset = conditional_variance(
        shifted, RowOffset(), x, 8, generator=torch.Generator().manual_seed(1)
    )
    assert plain.min() > 0
    torch.testing.assert_close(offset, plain, rtol=1e-2, atol=0)


@given(batch=st.integers(1, 7), chunk=st.integers(1, 10))
def test_conditional_variance_is_zero_for_an_invariant_encoder(batch, chunk):
    x = (
        torch.rand(
            batch, 2, 2, 2, generator=torch.Generator().manual_seed(batch), dtype=torch.float64
        )
        + 0.1
    )
    variance = conditional_variance(scale_invariant, Brightness(), x, 5, chunk=chunk)
    assert variance.shape == (batch,) and (variance < 1e-25).all()
    assert (conditional_variance(mean_colour, Brightness(), x, 5, chunk=chunk) > 1e-6).all()


@given(
    image_batches(
        batch=(1, 4), channels=(1, 3), size=(2, 9), dtypes=(torch.float32, torch.bfloat16)
    )
)
def test_image_batches_follow_their_arguments(x):
    assert x.ndim == 4 and 1 <= x.shape[0] <= 4 and 1 <= x.shape[1] <= 3
    assert 2 <= x.shape[2] <= 9 and 2 <= x.shape[3] <= 9
    assert x.dtype in (torch.float32, torch.bfloat16)
    assert (x >= 0).all() and (x <= 1).all()


@given(
    spectrogram_batches(batch=2, channels=1, freq=(4, 6), frames=5),
    waveform_batches(channels=2, samples=(8, 16)),
)
def test_audio_batches_follow_their_arguments(spectrogram, waveform):
    assert (
        spectrogram.shape[:2] == (2, 1)
        and 4 <= spectrogram.shape[2] <= 6
        and spectrogram.shape[3] == 5
    )
    assert waveform.ndim == 3 and waveform.shape[1] == 2 and 8 <= waveform.shape[2] <= 16
    assert waveform.abs().max() <= 1 and torch.isfinite(spectrogram).all()


@given(embeddings(batch=(2, 5), dim=(1, 8), normalized=True))
def test_normalized_embeddings_have_unit_rows(z):
    torch.testing.assert_close(z.norm(dim=1), torch.ones(z.shape[0]))


@given(st.data())
def test_view_params_follow_the_registered_generators_distribution(data):
    x = stack_targets(augplug.create("dataset", "spirograph", size=3).targets)
    params = data.draw(view_params("spirograph", x))
    for name in NUISANCE:
        low, high = FACTOR_RANGES[name]
        assert params[name].shape == (3,) and ((params[name] >= low) & (params[name] <= high)).all()
    colour = data.draw(view_params("colour", torch.rand(2, 3, 4, 4), strength=0.5))
    assert ((colour["brightness"] >= 0.6) & (colour["brightness"] <= 1.4)).all()


def test_bad_arguments_name_themselves():
    with pytest.raises(TypeError, match="views: expected a parametric"):
        view_params(RowOffset(), torch.rand(2, 3))
    with pytest.raises(TypeError, match="size"):
        image_batches(size="big")
    with pytest.raises(ValueError, match="batch"):
        image_batches(batch=(3, 1))
    with pytest.raises(ValueError, match=re.escape("num_views: expected an int >= 2")):
        assert_invariant(mean_colour, Brightness(), torch.rand(2, 3, 2, 2), num_views=1)
    with pytest.raises(ValueError, match="m: expected an int >= 2"):
        conditional_variance(mean_colour, Brightness(), torch.rand(2, 3, 2, 2), 1)
