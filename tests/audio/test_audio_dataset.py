"""The synthetic ``audio-patterns`` set: balance, independence, determinism, disjoint speakers, learnability."""

from __future__ import annotations

import pytest
import torch
from augplug_audio.dataset import NUM_SAMPLES, SAMPLE_RATE, audio_patterns, balanced_labels
from hypothesis import given
from hypothesis import strategies as st

import augplug


@pytest.fixture(scope="module")
def splits():
    return audio_patterns("train", size=600, seed=1), audio_patterns("test", size=300, seed=1)


def test_layout_and_tasks(splits):
    train, _ = splits
    assert isinstance(train, augplug.MultiTaskDataset)
    assert train.inputs.shape == (600, NUM_SAMPLES) and train.inputs.dtype == torch.float32
    assert train.sample_rate == SAMPLE_RATE == 8000
    assert [(t.name, t.kind, t.size) for t in train.tasks] == [
        ("content", "classification", 10),
        ("noise", "classification", 3),
    ]
    assert train.inputs.abs().max() <= 1.0 and torch.isfinite(train.inputs).all()
    clip, targets = train[0]
    assert clip.shape == (NUM_SAMPLES,) and set(targets) == {"content", "noise"}


@given(size=st.integers(1, 500), seed=st.integers(0, 50))
def test_labels_are_balanced_and_independent(size, seed):
    content, noise = balanced_labels(size, torch.Generator().manual_seed(seed))
    assert content.dtype == noise.dtype == torch.int64
    # Each label balanced to within one clip, and every (content, noise) pair as often as
    # every other to within one: the joint is the product of the marginals.
    for counts in (
        torch.bincount(content, minlength=10),
        torch.bincount(noise, minlength=3),
        torch.bincount(content * 3 + noise, minlength=30),
    ):
        assert counts.max() - counts.min() <= 1 and counts.sum() == size


def test_the_dataset_uses_balanced_labels(splits):
    train, _ = splits
    joint = torch.zeros(10, 3, dtype=torch.long)
    joint.index_put_((train.targets["content"], train.targets["noise"]), torch.ones(600, dtype=torch.long), accumulate=True)
    assert (joint == 20).all()


def test_speakers_are_split_between_train_and_test(splits):
    train, test = splits
    train_speakers, test_speakers = set(train.speaker.tolist()), set(test.speaker.tolist())
    assert not train_speakers & test_speakers
    assert len(train_speakers) == 8 and len(test_speakers) == 4


def test_deterministic_per_seed():
    first, again = audio_patterns("test", size=12, seed=5), audio_patterns("test", size=12, seed=5)
    assert torch.equal(first.inputs, again.inputs)
    for name in ("content", "noise"):
        assert torch.equal(first.targets[name], again.targets[name])
    other = audio_patterns("test", size=12, seed=6)
    assert not torch.equal(first.inputs, other.inputs)
    assert not torch.equal(first.inputs, audio_patterns("train", size=12, seed=5).inputs)


def band_energies(clips: torch.Tensor) -> torch.Tensor:
    """Hand-made features: log energy in 16 frequency bands x 8 time segments."""
    spectrum = torch.stft(clips, 256, 128, window=torch.hann_window(256), return_complex=True).abs().square()
    pooled = torch.nn.functional.adaptive_avg_pool2d(spectrum[:, None], (16, 8))[:, 0]
    return torch.log(pooled + 1e-6).flatten(1)


def ridge_probe_accuracy(train, test, task: str) -> float:
    """A linear probe (ridge regression onto one-hot labels) trained on train, scored on test."""
    a, b = band_energies(train.inputs), band_energies(test.inputs)
    mean, std = a.mean(0), a.std(0) + 1e-6
    a = torch.cat([(a - mean) / std, torch.ones(len(a), 1)], 1)
    b = torch.cat([(b - mean) / std, torch.ones(len(b), 1)], 1)
    onehot = torch.nn.functional.one_hot(train.targets[task], train.task(task).size).float()
    weights = torch.linalg.solve(a.T @ a + torch.eye(a.shape[1]), a.T @ onehot)
    return ((b @ weights).argmax(1) == test.targets[task]).float().mean().item()


def test_both_labels_are_learnable_by_a_linear_probe_on_unseen_speakers(splits):
    train, test = splits
    assert ridge_probe_accuracy(train, test, "content") > 0.4  # chance 0.1
    assert ridge_probe_accuracy(train, test, "noise") > 0.85  # chance 0.33


def test_registered_and_bad_arguments_are_named():
    data = augplug.create("dataset", "audio-patterns", split="test", size=30, seed=2)
    assert len(data) == 30
    with pytest.raises(ValueError, match="split: expected one of 'train', 'test', got 'valid'"):
        audio_patterns("valid")
    with pytest.raises(ValueError, match="size: expected an integer >= 1, got 0"):
        audio_patterns(size=0)
    with pytest.raises(TypeError, match=r"size: expected an integer >= 1, got '30' \(str\)"):
        audio_patterns(size="30")
    with pytest.raises(ValueError, match="seed: expected an integer >= 0, got -1"):
        audio_patterns(seed=-1)
    with pytest.raises(ValueError, match="device: expected a device such as 'cpu' or 'cuda:0', got 'nope'"):
        audio_patterns(size=3, device="nope")


@pytest.mark.cuda
def test_generates_on_cuda_with_the_same_labels():
    cpu, cuda = audio_patterns(size=90, seed=3), audio_patterns(size=90, seed=3, device="cuda")
    assert cuda.inputs.device.type == "cuda" and cuda.inputs.shape == cpu.inputs.shape
    for name in ("content", "noise"):
        assert torch.equal(cuda.targets[name].cpu(), cpu.targets[name])
    moved = cpu.to("cuda")
    assert moved.sample_rate == SAMPLE_RATE and moved.speaker.device.type == "cuda"
