"""Boundary checks shared by every component.

Each check looks only at metadata (shape, dtype, device), so it costs no device
synchronisation and is safe inside ``torch.compile``. The one exception is
:func:`check_finite`, which has to read the values: components call it only while
:func:`validation` is switched on (off by default, on in the test-suite), because a
finite check is a host sync on every call.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import numbers
import os
from collections.abc import Iterable, Iterator, Sequence

import torch

__all__ = [
    "FLOAT_DTYPES",
    "accumulation_dtype",
    "check_batch",
    "check_bool",
    "check_choice",
    "check_device",
    "check_dtype",
    "check_finite",
    "check_float",
    "check_generator",
    "check_in_range",
    "check_int",
    "check_interval",
    "check_positive",
    "check_probability",
    "check_same_batch",
    "check_same_device",
    "check_tensor",
    "validation",
    "validation_enabled",
    "widen",
]

FLOAT_DTYPES: tuple[torch.dtype, ...] = (
    torch.float32,
    torch.bfloat16,
    torch.float16,
    torch.float64,
)

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
    """Raise ``ValueError`` if ``x`` holds NaN or infinity. Synchronises with the device.

    Skipped while ``torch.compile`` traces: a value check is a data-dependent branch that
    would break the graph (the compiled step runs unchecked, as with validation off).
    """
    if torch.compiler.is_compiling():
        return x
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
        raise ValueError(
            f"{name_b}: expected a tensor on {a.device} (the device of {name_a}), got one on {b.device}"
        )


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
        raise TypeError(
            f"{name}: expected a torch.Generator or None, got {type(generator).__name__}"
        )
    if generator.device.type != torch.device(device).type:
        raise ValueError(
            f"{name}: expected a generator on the batch's device type ({torch.device(device).type}), "
            f"got one on {generator.device}; create it with torch.Generator(device=x.device)"
        )


# ---------------------------------------------------------------------------------------
# Hyper-parameter checks. One message format for all of them:
#     "<name>: expected <what>, got <value!r> (<type>)"
# TypeError when the value has the wrong type, ValueError when it has the right type and
# a wrong value, so callers (and the recipe loader) can tell the two apart.
# ---------------------------------------------------------------------------------------


def _got(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _fail(error: type[Exception], name: str, expected: str, value: object) -> Exception:
    return error(f"{name}: expected {expected}, got {_got(value)}")


def _is_int(value: object) -> bool:
    # bool is an int subclass; True as a batch size is always a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
    """Human form of a range: ' > 0', ' <= 1', ' in [0, 1)' or ''."""
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def _inside(value, low, high, low_open: bool, high_open: bool) -> bool:
    if low is not None and (value <= low if low_open else value < low):
        return False
    return not (high is not None and (value >= high if high_open else value > high))


def check_int(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Check an integer hyper-parameter (a count, a size, a seed) and return it as ``int``.

    Rejects ``bool`` and floats (``2.0`` is not a count) with ``TypeError`` and values
    outside ``[minimum, maximum]`` with ``ValueError``.

    Examples:
        >>> check_int(3, "num_views", minimum=2)
        3
        >>> check_int(0, "size", minimum=1)
        Traceback (most recent call last):
            ...
        ValueError: size: expected an integer >= 1, got 0 (int)
    """
    expected = "an integer" + _bounds(minimum, maximum, False, False)
    if not _is_int(value):
        raise _fail(TypeError, name, expected, value)
    if not _inside(value, minimum, maximum, False, False):
        raise _fail(ValueError, name, expected, value)
    return int(value)


def check_float(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> float:
    """Check a real hyper-parameter (int or float) and return it as ``float``.

    ``low``/``high`` bound it, closed unless ``low_open``/``high_open``. ``bool``, strings
    and other types raise ``TypeError``; NaN, infinities (unless ``finite=False``) and
    values out of range raise ``ValueError``.

    Examples:
        >>> check_float(0.1, "temperature", low=0, low_open=True)
        0.1
        >>> check_float("0.1", "temperature", low=0, low_open=True)
        Traceback (most recent call last):
            ...
        TypeError: temperature: expected a number > 0, got '0.1' (str)
    """
    expected = (
        "a finite number" if finite and low is None and high is None else "a number"
    ) + _bounds(low, high, low_open, high_open)
    if not _is_real(value):
        raise _fail(TypeError, name, expected, value)
    number = float(value)
    if (
        math.isnan(number)
        or (finite and math.isinf(number))
        or not _inside(number, low, high, low_open, high_open)
    ):
        raise _fail(ValueError, name, expected, value)
    return number


def check_bool(value: object, name: str) -> bool:
    """Check a flag is exactly ``True`` or ``False`` (not ``1``, not ``"yes"``)."""
    if not isinstance(value, bool):
        raise _fail(TypeError, name, "True or False", value)
    return value


def check_probability(value: object, name: str) -> float:
    """Check a probability in [0, 1] and return it as ``float``."""
    return check_float(value, name, low=0.0, high=1.0)


def check_positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    """Check a number is > 0 (``>= 0`` with ``allow_zero``); see :func:`check_float`."""
    return check_float(value, name, low=0, low_open=not allow_zero)


def check_in_range(value: object, name: str, low: float, high: float) -> float:
    """Check ``low <= value <= high``; see :func:`check_float`."""
    return check_float(value, name, low=low, high=high)


def check_interval(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    allow_equal: bool = True,
    finite: bool = True,
) -> tuple[float, float]:
    """Check a ``(first, second)`` pair of numbers inside ``[low, high]`` with ``first <= second``.

    Used for sampling ranges such as a crop's scale ``(0.08, 1.0)``. ``allow_equal=False``
    also rejects an empty range ``first == second``; ``finite=False`` admits infinite ends
    (an SNR of ``inf`` dB: no noise).
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        expected = "a pair (low, high)" + _bounds(low, high, False, False).replace(" in", " within")
        raise _fail(
            TypeError if not isinstance(value, Sequence) else ValueError, name, expected, value
        )
    first = check_float(value[0], f"{name}[0]", low=low, high=high, finite=finite)
    second = check_float(value[1], f"{name}[1]", low=low, high=high, finite=finite)
    if first > second or (not allow_equal and first == second):
        relation = "<=" if allow_equal else "<"
        raise _fail(ValueError, name, f"a pair (low, high) with low {relation} high", tuple(value))
    return first, second


def check_choice(value: object, name: str, choices: Iterable[object]) -> object:
    """Check ``value`` is one of ``choices``; a misspelt string gets a close-match suggestion.

    Examples:
        >>> check_choice("torch", "kernel", ("torch", "triton"))
        'torch'
        >>> check_choice("trition", "kernel", ("torch", "triton"))
        Traceback (most recent call last):
            ...
        ValueError: kernel: expected one of 'torch', 'triton', got 'trition' (str); did you mean 'triton'?
    """
    options = tuple(choices)
    try:
        if value in options:
            return value
    except TypeError:  # unhashable or incomparable: not one of them either
        pass
    expected = "one of " + ", ".join(repr(c) for c in options)
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [c for c in options if isinstance(c, str)], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
    error = ValueError if any(type(value) is type(c) for c in options) else TypeError
    raise error(f"{name}: expected {expected}, got {_got(value)}{hint}")


def check_device(value: object, name: str = "device") -> torch.device:
    """Check ``value`` names a usable device (``"cpu"``, ``"cuda:0"``, a ``torch.device``, ...).

    Unknown device strings and devices this machine lacks (``"cuda"`` without a GPU, an
    index past the device count) raise ``ValueError`` naming the argument, instead of
    torch's internal message at the first allocation. Returns the ``torch.device``.
    """
    expected = "a device such as 'cpu' or 'cuda:0'"
    if not isinstance(value, (str, torch.device)) and not _is_int(value):
        raise _fail(TypeError, name, expected, value)
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        raise _fail(ValueError, name, expected, value) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise _fail(
                ValueError, name, "a device this machine has (no CUDA device is available)", value
            )
        if device.index is not None and device.index >= count:
            raise _fail(
                ValueError, name, f"a CUDA index below {count} (the devices available)", value
            )
    elif device.type == "mps" and not (
        hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    ):
        raise _fail(ValueError, name, "a device this machine has (MPS is not available)", value)
    return device


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype reductions accumulate in: float64 kept, everything else float32.

    bfloat16/float16 carry 8/11 significant bits, too few for sums over a batch, so every
    component reduces half inputs in float32 (and float32 stays float32).
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def widen(t: torch.Tensor) -> torch.Tensor:
    """``t`` in its :func:`accumulation_dtype` (a no-op for float32 and float64)."""
    return t.to(accumulation_dtype(t.dtype))
