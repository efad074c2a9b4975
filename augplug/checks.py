"""Boundary checks shared by every component.

Each check looks only at metadata (shape, dtype, device), so it costs no device
synchronisation and is safe inside ``torch.compile``. The one exception is
:func:`check_finite`, which has to read the values: components call it only while
:func:`validation` is switched on (off by default, on in the test-suite), because a
finite check is a host sync on every call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import torch

__all__ = [
    "FLOAT_DTYPES",
    "check_batch",
    "check_dtype",
    "check_finite",
    "check_generator",
    "check_in_range",
    "check_positive",
    "check_probability",
    "check_same_batch",
    "check_same_device",
    "check_tensor",
    "validation",
    "validation_enabled",
]

FLOAT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16, torch.float64)

_validation = os.environ.get("AUGPLUG_VALIDATE", "0") not in ("", "0", "false", "False")


def validation_enabled() -> bool:
    """Whether value checks that need a host sync (finiteness) are on."""
    return _validation


@contextlib.contextmanager
def validation(enabled: bool = True) -> Iterator[None]:
    """Switch the value checks (non-finite input) on or off inside a ``with`` block.

    Also set for a whole process by ``AUGPLUG_VALIDATE=1``.
    """
    global _validation
    previous, _validation = _validation, bool(enabled)
    try:
        yield
    finally:
        _validation = previous


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)}, dtype {x.dtype}, on {x.device}"
    return f"{type(x).__name__}"


def check_tensor(
    x: object,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    dtypes: Sequence[torch.dtype] | None = FLOAT_DTYPES,
    shape: Sequence[int | None] | None = None,
    layout: str | None = None,
    allow_empty: bool = False,
) -> torch.Tensor:
    """Check that ``x`` is a tensor of the expected rank, dtype and shape.

    ``shape`` may hold ``None`` for free dimensions; ``layout`` is a human name for the
    expected layout (e.g. ``"(B, C, H, W)"``) used in the message. Raises ``TypeError``
    for a wrong type/dtype and ``ValueError`` for a wrong rank, shape or empty batch.
    Returns ``x`` so the check can be used inline.
    """
    what = f" {layout}" if layout else ""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor{what}, got {_describe(x)}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            dims = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{name}: expected a {dims}-D tensor{what}, got {_describe(x)}")
    if dtypes is not None and x.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name}: expected dtype in ({names}), got {_describe(x)}")
    if shape is not None and (
        len(shape) != x.ndim or any(s is not None and s != d for s, d in zip(shape, x.shape))
    ):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}{what}, got {_describe(x)}")
    if not allow_empty and x.ndim > 0 and x.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch, got {_describe(x)}")
    if _validation:
        check_finite(x, name)
    return x


def check_batch(
    x: object, name: str, *, ndim: int | Sequence[int], layout: str | None = None
) -> torch.Tensor:
    """Shorthand for a non-empty floating-point batch of the given rank."""
    return check_tensor(x, name, ndim=ndim, layout=layout)


def check_dtype(x: torch.Tensor, name: str, dtypes: Sequence[torch.dtype]) -> torch.Tensor:
    """Check only the dtype of a tensor."""
    return check_tensor(x, name, dtypes=dtypes, allow_empty=True)


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity. Synchronises with the device."""
    if x.is_floating_point() or x.is_complex():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            count = int(bad.sum())
            raise ValueError(
                f"{name}: expected finite values, got {count} non-finite "
                f"element(s) in a {_describe(x)}"
            )
    return x


def check_same_device(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise ``ValueError`` if two tensors live on different devices."""
    if a.device != b.device:
        raise ValueError(f"{name_b}: expected a tensor on {a.device} (the device of {name_a}), got one on {b.device}")


def check_same_batch(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise ``ValueError`` if two tensors disagree in their leading (batch) dimension."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_b}: expected the same batch size as {name_a} ({a.shape[0]}), got {b.shape[0]}"
        )


def check_generator(generator: object, device: torch.device, name: str = "generator") -> None:
    """Check that an optional ``torch.Generator`` can draw numbers on ``device``."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{name}: expected a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != torch.device(device).type:
        raise ValueError(
            f"{name}: expected a generator on the batch's device type ({torch.device(device).type}), "
            f"got one on {generator.device}; create it with torch.Generator(device=x.device)"
        )


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    """Check a scalar hyper-parameter is positive (or non-negative)."""
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a number {bound}, got {value!r}")
    return float(value)


def check_probability(value: float, name: str) -> float:
    """Check a scalar is a probability in [0, 1]."""
    return check_in_range(value, name, 0.0, 1.0)


def check_in_range(value: float, name: str, low: float, high: float) -> float:
    """Check ``low <= value <= high`` for a scalar hyper-parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
    return float(value)
