"""``augplug views``: a PNG grid of views from any registered generator on any demo data set.

``augplug views --views viewmaker --data digits-on-photos -o grid.png`` writes rows of
(input, view 1, view 2) for 8 samples, and ``|delta|`` heat-maps with ``--delta``.
Generator arguments go in ``--arg name=value`` (JSON values, else strings); ``channels``
and ``size``, when the generator takes them and they are not given, follow the data.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

import augplug
from augplug.demo.main import deterministic
from augplug.demo.strategies import DATASETS
from augplug.demo.training import load_split
from augplug.pictures import save_view_grid

__all__ = ["views_main"]


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


def views_main(argv: list[str]) -> int:
    """Entry point of ``augplug views`` (``argv`` without the ``views`` word)."""
    parser = argparse.ArgumentParser(prog="augplug views", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--views", required=True, help="a registered view generator (`augplug list views`)"
    )
    parser.add_argument("--data", default="digits-on-photos", choices=sorted(DATASETS))
    parser.add_argument("-o", "--out", default="views.png", help="PNG path (default views.png)")
    parser.add_argument(
        "--arg", action="append", default=[], metavar="NAME=VALUE", help="generator argument"
    )
    parser.add_argument("--rows", type=int, default=8, help="samples shown (default 8)")
    parser.add_argument("--count", type=int, default=2, help="views per sample (default 2)")
    parser.add_argument("--delta", action="store_true", help="add |view - input| heat-map columns")
    parser.add_argument("--scale", type=int, default=3, help="pixel repetition (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    for name in ("rows", "count", "scale"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected an int >= 1, got {getattr(args, name)}")
    available = augplug.available("views")
    if args.views not in available:
        parser.error(f"--views: {args.views!r} is not available; choose from {available}")
    arguments = _parse_arguments(parser, args.arg)
    spec = DATASETS[args.data]
    device = torch.device(args.device)
    with deterministic(torch.get_num_threads()):
        inputs, targets, tasks = load_split(spec, "test", args.rows, args.seed, device)
        accepted = augplug.describe("views", args.views).defaults
        if "channels" in accepted:
            arguments.setdefault("channels", inputs.shape[1])
        if "size" in accepted:
            arguments.setdefault("size", inputs.shape[-1])
        try:
            generator_module = augplug.create("views", args.views, **arguments).to(device)
        except (TypeError, ValueError) as exc:
            parser.error(f"--arg: {exc}")
        source = inputs
        if args.views in spec.target_views:
            source = torch.stack([targets[t.name] for t in tasks], 1).float()
        generator = torch.Generator(device=device).manual_seed(args.seed)
        try:
            with torch.no_grad():
                views = [generator_module(source, generator=generator) for _ in range(args.count)]
        except (TypeError, ValueError) as exc:  # e.g. a waveform view on log-mel inputs
            parser.error(
                f"--views: {args.views!r} cannot make views of {args.data!r} inputs: {exc}"
            )
    delta = None
    if args.delta:
        if any(v.shape != inputs.shape for v in views):
            parser.error(
                f"--delta: the views' shape {tuple(views[0].shape)} differs from the input's {tuple(inputs.shape)}"
            )
        delta = [v - inputs for v in views]
    if spec.modality == "audio":  # low frequencies at the bottom, as spectrograms are drawn
        inputs, views = inputs.flip(-2), [v.flip(-2) for v in views]
        delta = None if delta is None else [d.flip(-2) for d in delta]
    save_view_grid(args.out, inputs, views, delta=delta, max_rows=args.rows, scale=args.scale)
    print(
        f"augplug views: wrote {args.out} ({args.views} on {args.data}, {args.rows} rows)",
        file=sys.stderr,
    )
    return 0
