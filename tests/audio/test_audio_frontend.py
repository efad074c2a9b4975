"""The log-mel front end against a per-clip float64 torchaudio reference."""

from __future__ import annotations

import pytest
import torch
import torchaudio
from augplug_audio.frontend import LogMelSpectrogram
from hypothesis import given
from hypothesis import strategies as st


def reference(x: torch.Tensor, sample_rate: int, n_fft: int, hop: int, n_mels: int, top_db: float, mean, std):
    """One clip at a time, float64, dB and the top_db floor written out by hand."""
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels, power=2.0
    ).double()
    clips = x.double() if x.ndim == 3 else x.double()[:, None]
    out = []
    for clip in clips:
        db = 10.0 * torch.log10(mel(clip).clamp_min(1e-10))
        out.append((torch.maximum(db, db.max() - top_db) - mean) / std)
    return torch.stack(out)


@given(
    batch=st.integers(1, 3),
    channels=st.one_of(st.none(), st.integers(1, 2)),
    length=st.integers(129, 1500),
    sample_rate=st.sampled_from([8000, 16000, 22050, 44100]),
    hop=st.integers(32, 256),
    seed=st.integers(0, 1000),
)
def test_matches_per_clip_reference(batch, channels, length, sample_rate, hop, seed):
    shape = (batch, length) if channels is None else (batch, channels, length)
    loud = torch.logspace(-2, 0, batch).reshape(-1, *[1] * (len(shape) - 1))  # different peaks per clip
    x = loud * torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    front = LogMelSpectrogram(sample_rate=sample_rate, n_fft=256, hop_length=hop, n_mels=16, mean=-20.0, std=15.0)
    out = front(x)
    assert out.shape == (batch, channels or 1, 16, 1 + length // hop) and out.dtype == torch.float32
    expected = reference(x, sample_rate, 256, hop, 16, 80.0, -20.0, 15.0)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=2e-4)


def test_defaults_give_64_by_64_for_audio_patterns_clips():
    out = LogMelSpectrogram()(torch.randn(2, 8064))
    assert out.shape == (2, 1, 64, 64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes_follow_the_input(dtype):
    x = 0.3 * torch.randn(2, 1000)
    front = LogMelSpectrogram()
    out = front(x.to(dtype))
    assert out.dtype == dtype
    # Within the input's own rounding of the waveform: compare with the float32 result of the rounded input.
    torch.testing.assert_close(out.float(), front(x.to(dtype).float()), rtol=0.02, atol=0.02)


def test_deterministic_parametric_view_with_no_params():
    front, x = LogMelSpectrogram(), torch.randn(3, 2, 600)
    params = front.sample(x, generator=torch.Generator().manual_seed(0))
    assert dict(params) == {}
    assert torch.equal(front.apply(x, params), front(x))


@pytest.mark.parametrize(
    ("kwargs", "x", "error", "match"),
    [
        ({"n_mels": 0}, None, ValueError, "n_mels"),
        ({"f_max": 9000.0}, None, ValueError, "f_max"),
        ({"std": 0.0}, None, ValueError, "std"),
        ({"std": "0.1"}, None, TypeError, r"std: expected a number > 0, got '0.1' \(str\)"),
        ({"n_fft": 512.0}, None, TypeError, r"n_fft: expected an integer >= 1, got 512.0"),
        ({"f_min": "0"}, None, TypeError, r"f_min: expected a number >= 0.0, got '0'"),
        ({}, torch.randn(2, 100), ValueError, "x: expected clips longer than n_fft // 2 = 256"),
        ({}, torch.randn(2, 1, 1, 600), ValueError, r"x: expected a 2 or 3-D tensor"),
    ],
)
def test_bad_arguments_are_named(kwargs, x, error, match):
    with pytest.raises(error, match=match):
        LogMelSpectrogram(**kwargs)(x)


@pytest.mark.cuda
def test_on_the_batch_device_and_device_mismatch_is_named():
    x = torch.randn(4, 8064, device="cuda")
    front = LogMelSpectrogram()
    with pytest.raises(ValueError, match="move the front end"):
        front(x)
    front = front.to("cuda")
    torch.testing.assert_close(front(x).cpu(), LogMelSpectrogram()(x.cpu()), rtol=1e-4, atol=1e-3)


def test_default_statistics_normalise_audio_patterns():
    from augplug_audio.dataset import audio_patterns

    out = LogMelSpectrogram()(audio_patterns(size=120, seed=0).inputs)
    assert abs(out.mean().item()) < 0.1 and abs(out.std().item() - 1.0) < 0.1
