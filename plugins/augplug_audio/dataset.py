"""``audio-patterns``: a synthetic two-label audio set in the spirit of spoken digits + background noise.

Feature Dropout (Tamkin et al., NeurIPS 2023) pairs spoken digits with one of three
background noises added at a fixed peak level, two labels per clip, speakers split between
train and test. This set keeps that structure with nothing to download:

* **content** (10 classes): a voiced "word" - a sawtooth source at the speaker's pitch,
  gliding by a class-specific ratio, shaped by two class-specific formants and cut into
  1-3 syllables. Speakers differ in pitch, vocal-tract length (formant scale) and tempo;
  clips also vary in onset and pitch.
* **noise** (3 classes): babble-like (speech-shaped noise with a syllabic-rate flutter),
  traffic-like (brown rumble below ~300 Hz with a slow swell) or machinery hum (narrow
  lines at the harmonics of a 50-120 Hz fundamental), scaled to a fixed peak of
  ``NOISE_PEAK`` times the content's peak.

Clips are 8064 samples at 8 kHz (1.008 s: 63 hops of 128, so the default ``log_mel``
gives 64 x 64). Both labels are balanced and independent: every content x noise pair
comes equally often (exactly when 30 divides ``size``, to within one clip otherwise).
Generation is batched: two real-FFT pairs and about twenty elementwise passes over (N, T),
with filters built once per (class, speaker) and per hum frequency and gathered per clip;
the default 3000 clips take a few seconds on one CPU thread.
"""

from __future__ import annotations

import math

import torch

from augplug.checks import check_choice, check_device, check_int
from augplug.components import MultiTaskDataset, Task

__all__ = ["NOISE_PEAK", "NUM_SAMPLES", "SAMPLE_RATE", "AudioPatterns", "audio_patterns", "balanced_labels"]

SAMPLE_RATE = 8000
NUM_SAMPLES = 8064
NOISE_PEAK = 0.5
HUM_LOWEST, HUM_HIGHEST = 50, 120
TRAIN_SPEAKERS = 8
TEST_SPEAKERS = 4
NOISE_TYPES = ("babble", "traffic", "machinery")

# Per content class: syllables, pitch ratio at the start and end of the word, formants F1, F2 (Hz).
_CONTENT = torch.tensor(
    [
        [1, 1.0, 1.0, 300, 2300],
        [1, 1.0, 1.5, 700, 1200],
        [1, 1.5, 1.0, 500, 900],
        [2, 1.0, 1.0, 700, 1200],
        [2, 1.3, 0.9, 300, 2300],
        [2, 0.9, 1.3, 500, 1700],
        [3, 1.0, 1.0, 500, 900],
        [3, 1.2, 0.8, 700, 1700],
        [3, 0.8, 1.2, 300, 900],
        [1, 1.0, 1.0, 600, 1500],
    ],
    dtype=torch.float64,
)


class AudioPatterns(MultiTaskDataset):
    """Clips (N, T) float32 with tasks ``content`` (10) and ``noise`` (3); ``speaker`` (N,) ids.

    ``sample_rate`` is 8000; training and test speakers are disjoint.
    """

    sample_rate = SAMPLE_RATE
    noise_types = NOISE_TYPES

    def __init__(self, inputs, targets, tasks, speaker: torch.Tensor):
        super().__init__(inputs, targets, tasks)
        self.speaker = speaker

    def to(self, device: torch.device | str) -> AudioPatterns:
        return AudioPatterns(
            self.inputs.to(device), {k: v.to(device) for k, v in self.targets.items()}, self.tasks, self.speaker.to(device)
        )


def _uniform(generator: torch.Generator, size: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(size, generator=generator, dtype=torch.float64)


def _gaussian_bump(frequency: torch.Tensor, centre: torch.Tensor, width: torch.Tensor | float) -> torch.Tensor:
    return torch.exp(-0.5 * ((frequency - centre) / width) ** 2)


def balanced_labels(size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(content, noise) labels, int64 (size,): balanced, independent, in shuffled order.

    Clip k of a shuffled 0..size-1 gets (k mod 10, k mod 3); that map is one-to-one on 0..29
    (10 and 3 are coprime), so each label is balanced to within one clip and every
    (content, noise) pair comes equally often to within one (exactly when 30 divides size).
    """
    order = torch.randperm(size, generator=generator)
    return order % 10, order % 3


def audio_patterns(
    split: str = "train", size: int | None = None, seed: int = 0, device: str | torch.device = "cpu"
) -> AudioPatterns:
    """Synthetic spoken-pattern + background-noise clips with two labels (Feature Dropout's audio set, redone).

    Clips (N, 8064) float32 at 8 kHz (the default ``log_mel`` makes them 64 x 64); tasks
    ``content`` (10 synthetic voiced "words": pitch glide, two formants, 1-3 syllables) and
    ``noise`` (3: babble-like, traffic-like rumble, machinery hum at a fixed peak of half the
    content's), balanced and independent; ``speaker`` ids on the result.
    ``split``: ``"train"`` (8 speakers, default 3000 clips) or ``"test"`` (4 other speakers,
    default 900 clips). Labels, speakers and every per-clip parameter come from a CPU
    generator, identical on every device; the noise samples are drawn on ``device`` with a
    generator seeded from ``seed``, so clips are reproducible per seed and device.
    """
    check_choice(split, "split", ("train", "test"))
    if size is None:
        size = 3000 if split == "train" else 900
    size = check_int(size, "size", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    device = check_device(device)

    # Speakers are shared by both splits' generators, so "train" and "test" agree on who is who.
    speakers = torch.Generator().manual_seed(seed)
    num_speakers = TRAIN_SPEAKERS + TEST_SPEAKERS
    pitch = _uniform(speakers, num_speakers, 90.0, 250.0)
    tract = _uniform(speakers, num_speakers, 0.85, 1.15)
    tempo = _uniform(speakers, num_speakers, 0.8, 1.2)

    split_index = 0 if split == "train" else 1
    clips = torch.Generator().manual_seed(2 * seed + split_index + 1)
    first_speaker = 0 if split == "train" else TRAIN_SPEAKERS
    split_speakers = TRAIN_SPEAKERS if split == "train" else TEST_SPEAKERS
    content, noise = balanced_labels(size, clips)
    speaker = first_speaker + torch.randint(split_speakers, (size,), generator=clips)

    seconds = 0.6 * tempo[speaker] * _uniform(clips, size, 0.9, 1.1)
    onset = _uniform(clips, size, 0.05, 0.3)
    f0 = pitch[speaker] * _uniform(clips, size, 0.95, 1.05)
    hum = torch.randint(HUM_LOWEST, HUM_HIGHEST + 1, (size,), generator=clips)  # whole Hz
    flutter = torch.where(noise == 0, _uniform(clips, size, 3.0, 7.0), _uniform(clips, size, 0.3, 1.0))
    flutter_phase = _uniform(clips, size, 0.0, 2 * math.pi)
    syllables, ratio_start, ratio_end = _CONTENT[content, :3].T

    def column(values: torch.Tensor) -> torch.Tensor:
        return values.to(device=device, dtype=torch.float32)[:, None]

    time = torch.arange(NUM_SAMPLES, device=device, dtype=torch.float32) / SAMPLE_RATE
    frequency = torch.fft.rfftfreq(NUM_SAMPLES, d=1.0 / SAMPLE_RATE, device=device)

    # Content: a sawtooth whose pitch glides across the word, formant-filtered, cut into syllables.
    progress = ((time - column(onset)) / column(seconds)).clamp(0.0, 1.0)
    cycles = torch.cumsum(torch.lerp(column(ratio_start), column(ratio_end), progress), dim=-1)
    source = torch.frac(cycles * column(f0 / SAMPLE_RATE))  # a sawtooth; its DC is filtered out below
    # The formant filter depends only on (class, speaker): build those few and gather per clip.
    centres = _CONTENT[:, 3:, None] * tract  # (class, formant, speaker)
    centres = column(centres.permute(0, 2, 1).reshape(-1, 2))  # (class * speaker, 2) -> columns
    filters = _gaussian_bump(frequency, centres[..., 0], 90.0) + 0.6 * _gaussian_bump(frequency, centres[..., 1], 140.0)
    formants = filters[(content * (TRAIN_SPEAKERS + TEST_SPEAKERS) + speaker).to(device)]
    voiced = torch.fft.irfft(torch.fft.rfft(source, dim=-1) * formants, n=NUM_SAMPLES, dim=-1)
    # sin^2(pi n p) is n bumps over the word and exactly 0 before (p = 0) and after (p = 1) it.
    word = voiced * torch.sin(progress * column(math.pi * syllables)).square()

    # Background: white noise (drawn directly as its spectrum) shaped by its type's filter, one
    # per type and hum frequency, gathered per clip.
    noise_generator = torch.Generator(device=device).manual_seed(2 * seed + split_index + 1)
    white = torch.randn(size, frequency.shape[0], 2, generator=noise_generator, device=device)
    babble = _gaussian_bump(frequency, 500.0, 300.0) + 0.5 * _gaussian_bump(frequency, 1500.0, 600.0)
    rumble = _gaussian_bump(frequency, 0.0, 150.0) / (frequency.clamp_min(20.0) / 20.0)
    # Lines at the first six harmonics of the hum, 1/h in amplitude: each bin looks at its nearest one.
    hums = column(torch.arange(HUM_LOWEST, HUM_HIGHEST + 1))
    nearest = torch.round(frequency / hums).clamp(1.0, 6.0)
    lines = _gaussian_bump(frequency, nearest * hums, 3.0) / nearest
    shapes = torch.cat([babble[None], rumble[None], lines])
    row = torch.where(noise == 0, 0, torch.where(noise == 1, 1, 2 + hum - HUM_LOWEST))
    background = torch.fft.irfft(torch.view_as_complex(white) * shapes[row.to(device)], n=NUM_SAMPLES, dim=-1)
    depth = torch.where(noise == 0, 0.6, torch.where(noise == 1, 0.5, 0.0))
    background = background * torch.addcmul(
        torch.ones((), device=device), column(depth), torch.sin(2 * math.pi * column(flutter) * time + column(flutter_phase))
    )

    # Peak-normalise both parts (the noise at a fixed NOISE_PEAK of the content's), keep the sum in [-1, 1].
    word_peak = torch.linalg.vector_norm(word, ord=math.inf, dim=-1, keepdim=True).clamp_min(1e-12)
    background_peak = torch.linalg.vector_norm(background, ord=math.inf, dim=-1, keepdim=True).clamp_min(1e-12)
    clips_out = torch.addcmul(
        word / (word_peak * (1.0 + NOISE_PEAK)), background, NOISE_PEAK / (background_peak * (1.0 + NOISE_PEAK))
    )
    tasks = (Task("content", "classification", 10), Task("noise", "classification", 3))
    targets = {"content": content.to(device), "noise": noise.to(device)}
    return AudioPatterns(clips_out, targets, tasks, speaker.to(device))
