"""Audio views, augplug vs. torchaudio.transforms, side by side on the same inputs.

Rows (time per batch, median after warm-up; CUDA events on GPU, perf_counter on CPU):

* spectral recipe on (B, 1, F, F) normalised log-mels: augplug ``audio_spectral`` (one
  frequency mask, one time mask, Gaussian noise 0.25) vs. the same pipeline from
  ``torchaudio.transforms.FrequencyMasking`` / ``TimeMasking`` + ``randn`` applied per
  sample in a Python loop (what users do today), and vs. torchaudio's batched
  ``iid_masks=True`` masks (per-example masks, but no generator and no replay).
* waveform recipe on (B, T) clips: augplug ``audio_waveform`` (crop with zero fill, white
  noise at a per-clip SNR) vs. a per-sample loop of the crop by slicing +
  ``torchaudio.transforms.AddNoise``.
* a copy of the batch (read + write): the memory-bandwidth floor on this device.

Usage: ``python benchmarks/bench_audio.py --device cuda --batch 256 --length 16000 --size 64``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchaudio

import augplug

MASK_WIDTH = 40 / 224  # the viewmaker reference's mask factor, as in augplug's audio_spectral
NOISE_STD = 0.25


def timed(fn, device: torch.device, warmup: int, repeats: int) -> float:
    """Median milliseconds per call."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--length", type=int, default=16000, help="waveform samples per clip")
    parser.add_argument("--size", type=int, default=64, help="spectrogram bins = frames")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator(device=device).manual_seed(0)

    spectrograms = torch.randn(args.batch, 1, args.size, args.size, device=device)
    clips = 0.1 * torch.randn(args.batch, args.length, device=device)

    spectral = augplug.create("views", "audio_spectral").to(device)
    width = int(MASK_WIDTH * args.size)
    frequency_mask, time_mask = torchaudio.transforms.FrequencyMasking(width), torchaudio.transforms.TimeMasking(width)
    batched_frequency = torchaudio.transforms.FrequencyMasking(width, iid_masks=True)
    batched_time = torchaudio.transforms.TimeMasking(width, iid_masks=True)

    def spectral_loop():
        out = []
        for spectrogram in spectrograms:  # (1, F, T) per sample
            view = time_mask(frequency_mask(spectrogram))
            out.append(view + NOISE_STD * torch.randn_like(view))
        return torch.stack(out)

    def spectral_batched_torchaudio():
        view = batched_time(batched_frequency(spectrograms))
        return view + NOISE_STD * torch.randn_like(view)

    waveform = augplug.create("views", "audio_waveform").to(device)
    add_noise = torchaudio.transforms.AddNoise()
    low_scale, low_snr, high_snr = 0.08, 10.0, 30.0

    def waveform_loop():
        out = []
        for clip in clips:  # (T,) per sample, parameters drawn on the host as users do
            length = max(1, int(torch.empty(()).uniform_(low_scale, 1.0) * args.length))
            start = int(torch.randint(0, args.length - length + 1, ()))
            cropped = torch.zeros_like(clip)
            cropped[start : start + length] = clip[start : start + length]
            snr = torch.empty(1, device=device).uniform_(low_snr, high_snr)
            out.append(add_noise(cropped[None], torch.randn_like(cropped)[None], snr)[0])
        return torch.stack(out)

    rows = [
        (f"spectral ({args.batch}, 1, {args.size}, {args.size})", "augplug audio_spectral",
         lambda: spectral(spectrograms, generator=generator)),
        ("", "torchaudio.transforms, per-sample loop", spectral_loop),
        ("", "torchaudio iid_masks, batched (no generator/replay)", spectral_batched_torchaudio),
        ("", "copy (bandwidth floor)", spectrograms.clone),
        (f"waveform ({args.batch}, {args.length})", "augplug audio_waveform",
         lambda: waveform(clips, generator=generator)),
        ("", "slicing + torchaudio AddNoise, per-sample loop", waveform_loop),
        ("", "copy (bandwidth floor)", clips.clone),
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}, torchaudio {torchaudio.__version__}")
    print(f"median of {args.repeats} after {args.warmup} warm-up calls\n")
    print("| input | pipeline | ms / batch | vs. augplug |")
    print("|---|---|---|---|")
    reference = None
    for label, pipeline, fn in rows:
        ms = timed(fn, device, args.warmup, args.repeats)
        if pipeline.startswith("augplug"):
            reference = ms
        print(f"| {label} | {pipeline} | {ms:.3f} | {ms / reference:.2f}x |")


if __name__ == "__main__":
    main()
