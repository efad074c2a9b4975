"""Checks of ``augplug demo``'s arguments, run before any data is built.

Building the data takes tens of seconds, so every argument that can be wrong is checked
first: a misspelt strategy, a data set whose plugin or extra is missing, an unusable
device, an output path that is a file or not writable. Each check raises ``ValueError``
whose message starts with the option (``--strategies: ...``), ready for
``parser.error``. :func:`output_folder` creates the folder only for the run and removes
what it created if the run fails before writing anything into it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch

import augplug
from augplug.demo.strategies import DATASETS, DataSpec, default_strategies, strategies

__all__ = [
    "check_data",
    "check_device",
    "check_output_folder",
    "output_folder",
    "select_strategies",
]


def check_data(name: str) -> DataSpec:
    """The demo's spec of data set ``name``, if its plugin and extra are installed.

    Unavailable data sets name what is missing and the command that installs it (the
    plugin's hint, e.g. the ``demo`` extra for ``digits-on-photos``).
    """
    if name not in DATASETS:
        raise ValueError(f"--data: unknown data set {name!r}; choose from {sorted(DATASETS)}")
    if name not in augplug.available("dataset"):
        try:
            reason = augplug.describe("dataset", name).unavailable
        except LookupError as exc:  # no plugin registers it at all
            reason = str(exc)
        raise ValueError(
            f"--data: data set {name!r} is not available: {reason or 'see `augplug plugins`'}"
        )
    return DATASETS[name]


def select_strategies(text: str | None, spec: DataSpec) -> list[str]:
    """The strategy names of ``--strategies`` (comma-separated, ``all``, or ``None`` for the default).

    The names do not depend on the data's shapes, so this runs before the data is built.
    """
    table = strategies(spec, channels=1, size=32)
    if text is None:
        return default_strategies(spec)
    if text.strip() == "all":
        return list(table)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--strategies: expected names separated by commas, got {text!r}")
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(
            f"--strategies: unknown {', '.join(map(repr, unknown))}; for --data {spec.name} "
            f"choose from {', '.join(table)} or 'all'"
        )
    return names


def check_device(text: str) -> torch.device:
    """``--device`` as a ``torch.device`` that can hold a tensor here."""
    try:
        device = torch.device(text)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise ValueError(f"--device: {text!r} is not usable here: {exc}") from None
    return device


def check_output_folder(path: str | os.PathLike[str]) -> Path:
    """``--out`` as a ``Path`` that is, or can be created as, a writable folder; nothing is created."""
    out = Path(path)
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"--out: {str(out)!r} exists and is not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise ValueError(f"--out: folder {str(out)!r} is not writable")
        return out
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out: cannot create {str(out)!r}: {str(parent)!r} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out: cannot create {str(out)!r}: {str(parent)!r} is not writable")
    return out


@contextlib.contextmanager
def output_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Create ``path`` (and missing parents) for a run; if the run raises, remove the folders
    this call created that are still empty, so a failed run leaves nothing behind."""
    out = check_output_folder(path)
    created = []
    for folder in [out, *out.parents]:
        if folder.exists():
            break
        created.append(folder)
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):  # not empty: keep what the run wrote
                folder.rmdir()
        raise
