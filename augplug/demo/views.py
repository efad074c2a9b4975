"""``augplug views``: a labelled PNG grid of views from any registered generator.

``augplug views --views viewmaker --data digits-on-photos -o grid.png`` writes rows of
(input, view 1, view 2) for 8 test samples, with ``|delta|`` heat-maps under ``--delta``.
Generators of waveforms (``waveform_*``, ``audio_waveform``, ``log_mel``) read the raw
clips of ``audio-patterns`` and draw each clip as a waveform over its spectrogram;
Spirograph's generator re-renders from the data set's factors. Without ``--data`` the
data set follows what the generator takes (images: digits-on-photos; spectrograms and
waveforms: audio-patterns). Generator arguments go in ``--arg name=value`` (JSON
values, else strings); ``channels``, ``size`` and ``sample_rate``, when the generator
takes them and they are not given, follow the data.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

import augplug
from augplug.demo.main import deterministic
from augplug.demo.strategies import DATASETS, DataSpec
from augplug.demo.training import load_split
from augplug.pictures import heat_map, save_view_grid, waveform_cells
from augplug.testing.inputs import NotTestable, build_component, input_spec

__all__ = ["views_main"]

#: What each input kind is shown on when ``--data`` is not given.
DEFAULT_DATA = {
    "image": "digits-on-photos",
    "spectrogram": "audio-patterns",
    "waveform": "audio-patterns",
}
#: Data sets whose raw inputs are clips (the demo itself trains on their log-mels).
WAVEFORM_DATA = tuple(name for name, spec in DATASETS.items() if spec.modality == "audio")


def _parse_arguments(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, object]:
    arguments: dict[str, object] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.isidentifier():
            parser.error(f"--arg: expected name=value, got {pair!r}")
        try:
            arguments[name] = json.loads(text)  # numbers, booleans, lists; never code
        except json.JSONDecodeError:
            arguments[name] = text
    return arguments


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="augplug views",
        description=__doc__.split("\n\n")[0].replace("``", "'"),
        epilog="e.g. augplug views --views waveform_noise -o noise.png; "
        "augplug views --views byol --arg branch=1 --delta",
    )
    parser.add_argument(
        "--views", required=True, help="a registered view generator (see: augplug list views)"
    )
    parser.add_argument(
        "--data", default=None, choices=sorted(DATASETS),
        help="the samples (default: digits-on-photos for image views, audio-patterns for "
        "spectrogram and waveform views, spirograph for spirograph)",
    )  # fmt: skip
    parser.add_argument("-o", "--out", default="views.png", help="PNG path (default views.png)")
    parser.add_argument(
        "--arg", action="append", default=[], metavar="NAME=VALUE", help="generator argument"
    )
    parser.add_argument("--rows", type=int, default=8, help="samples shown (default 8)")
    parser.add_argument("--count", type=int, default=2, help="views per sample (default 2)")
    parser.add_argument(
        "--delta", action="store_true", help="add |view - input| columns (view - input for clips)"
    )
    parser.add_argument(
        "--scale", type=int, default=None,
        help="pixel repetition (default: cells of at least 128 px)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples and views")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser


def _example_arguments(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` plus the generator's declared example values (``example_kwargs``) for
    the arguments it requires and the user did not give (e.g. the Kornia adapter's ``ops``)."""
    try:
        example = build_component("views", name).kwargs
    except NotTestable:  # required arguments without example values: the user must give them
        return arguments
    filled = {k: v for k, v in example.items() if k not in arguments}
    if filled:
        shown = " ".join(f"--arg {k}={json.dumps(v)}" for k, v in filled.items())
        print(f"augplug views: {name} needs arguments; using its example {shown}", file=sys.stderr)
    return {**filled, **arguments}


def _create(parser: argparse.ArgumentParser, name: str, arguments: dict[str, Any]) -> Any:
    try:
        return augplug.create("views", name, **arguments)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        marker = "missing required argument(s): "  # the registry's wording
        if marker in text:
            missing = text.split(marker, 1)[1].split(", ")
            needed = " ".join(f"--arg {m}=VALUE" for m in missing)
            parser.error(f"--views: {name!r} needs {needed} (see: augplug describe views {name})")
        parser.error(f"--arg: {text}")


def _input_kind(name: str, module: Any) -> str:
    """``image``, ``spectrogram``, ``waveform`` or ``targets`` (views rendered from factors)."""
    if any(name in spec.target_views for spec in DATASETS.values()):
        return "targets"
    try:
        spec = input_spec("views", module)
    except NotTestable:
        return "image"
    if spec.kind == "image" and spec.shape[0] == 1:
        return "spectrogram"  # a one-channel generator (the spectrogram viewmaker): log-mels
    return spec.kind


def _choose_data(
    parser: argparse.ArgumentParser, name: str, kind: str, data: str | None
) -> DataSpec:
    if kind == "targets":
        fitting = [s.name for s in DATASETS.values() if name in s.target_views]
    elif kind == "waveform":
        fitting = list(WAVEFORM_DATA)
    else:
        fitting = sorted(DATASETS)
    if data is None:
        data = DEFAULT_DATA.get(kind, fitting[0])
    if data not in fitting:
        parser.error(
            f"--data: {name!r} takes {'clips' if kind == 'waveform' else kind}; "
            f"{data!r} has none. Use --data {' or '.join(fitting)}"
        )
    if data not in augplug.available("dataset"):
        reason = augplug.describe("dataset", data).unavailable
        parser.error(f"--data: data set {data!r} is not available: {reason}")
    return DATASETS[data]


def _clips(spec: DataSpec, rows: int, seed: int, device: torch.device) -> tuple[torch.Tensor, int]:
    dataset = augplug.create(
        "dataset", spec.name, split="test", size=rows, seed=seed, device=device
    )
    return dataset.inputs.float(), int(dataset.sample_rate)


def views_main(argv: list[str]) -> int:
    """Entry point of ``augplug views`` (``argv`` without the ``views`` word)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    for option in ("rows", "count", "scale"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option}: expected an int >= 1, got {value}")
    available = augplug.available("views")
    if args.views not in available:
        try:
            reason = augplug.describe("views", args.views).unavailable
        except LookupError:
            reason = None
        if reason:
            parser.error(f"--views: {args.views!r} is unavailable: it {reason}")
        parser.error(
            f"--views: {args.views!r} is not registered; choose from {', '.join(available)}"
        )
    arguments = _example_arguments(args.views, _parse_arguments(parser, args.arg))
    kind = _input_kind(args.views, _create(parser, args.views, arguments))
    spec = _choose_data(parser, args.views, kind, args.data)
    device = torch.device(args.device)
    accepted = augplug.describe("views", args.views).defaults
    with deterministic(torch.get_num_threads()):
        if kind == "waveform":
            inputs, sample_rate = _clips(spec, args.rows, args.seed, device)
            source = inputs
            if "sample_rate" in accepted:
                arguments.setdefault("sample_rate", sample_rate)
        else:
            inputs, targets, tasks = load_split(spec, "test", args.rows, args.seed, device)
            source = inputs
            if kind == "targets":
                source = torch.stack([targets[t.name] for t in tasks], 1).float()
            if "channels" in accepted:
                arguments.setdefault("channels", inputs.shape[1])
            if "size" in accepted:
                arguments.setdefault("size", inputs.shape[-1])
        module = _create(parser, args.views, arguments).to(device)
        generator = torch.Generator(device=device).manual_seed(args.seed)
        views, names = [], []
        try:
            with torch.no_grad():
                for i in range(args.count):
                    made = module(source, generator=generator)
                    if isinstance(made, (list, tuple)):  # a multi-view generator (multi-crop)
                        views += made
                        names += [f"view {i + 1}.{j + 1}" for j in range(len(made))]
                    else:
                        views.append(made)
                        names.append(f"view {i + 1}")
        except (TypeError, ValueError) as exc:
            parser.error(
                f"--views: {args.views!r} cannot make views of {spec.name!r} inputs: {exc}"
            )
    if args.delta and any(v.shape != inputs.shape for v in views):
        parser.error(
            f"--delta: the views' shape {tuple(views[0].shape)} differs from the input's "
            f"{tuple(inputs.shape)} (e.g. a crop to another size, or clips to spectrograms)"
        )
    headers = ["input", *names]
    delta = None
    if kind == "waveform":
        shown = [_clip_or_spectrogram(v, inputs) for v in views]
        if args.delta:  # a signed difference of clips reads better as a clip than as a heat-map
            shown += [waveform_cells(v - inputs, inputs) for v in views]
            headers += [f"{name} - input" for name in names]
        inputs, views = waveform_cells(inputs), shown
    else:
        if args.delta:
            delta = [v - inputs for v in views]
            headers += [f"|delta| {name[5:]}" for name in names]
        if spec.modality == "audio":  # low frequencies at the bottom, as spectrograms are drawn
            inputs, views = inputs.flip(-2), [v.flip(-2) for v in views]
            delta = None if delta is None else [d.flip(-2) for d in delta]
    extra = " ".join(args.arg)
    title = f"{args.views} on {spec.name}" + (f" ({extra})" if extra else "")
    width, height = save_view_grid(
        args.out,
        inputs,
        views,
        delta=delta,
        max_rows=args.rows,
        scale=args.scale,
        labels=True,
        title=title,
        headers=headers,
    )
    print(
        f"augplug views: wrote {args.out} ({title}, {min(args.rows, inputs.shape[0])} rows, "
        f"{width} x {height} px)",
        file=sys.stderr,
    )
    return 0


def _clip_or_spectrogram(
    view: torch.Tensor, clips: torch.Tensor, clips_height: int = 128
) -> torch.Tensor:
    """A waveform view as a clip picture; a front end's (N, 1, F, T) output as a heat-mapped
    spectrogram (each sample's min..max, low frequencies at the bottom)."""
    if view.ndim == clips.ndim:
        return waveform_cells(view, clips)
    spectrogram = view.detach().float().cpu()
    spectrogram = spectrogram.reshape(spectrogram.shape[0], -1, *spectrogram.shape[-2:])[:, 0]
    low = spectrogram.amin(dim=(1, 2), keepdim=True)
    high = spectrogram.amax(dim=(1, 2), keepdim=True)
    picture = heat_map(((spectrogram - low) / (high - low).clamp_min(1e-12)).flip(-2))
    # As tall as the clips' cells (a 64 x 64 log-mel beside a 256-px clip reads too small).
    factor = max(1, clips_height // picture.shape[-2])
    return picture.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
