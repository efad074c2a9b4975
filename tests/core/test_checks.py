"""The hyper-parameter vocabulary of augplug.checks: one message format, TypeError vs ValueError."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from augplug import checks


@given(st.integers(-(10**6), 10**6), st.integers(-100, 100), st.integers(0, 200))
def test_check_int_accepts_exactly_the_range(value, minimum, width):
    maximum = minimum + width
    inside = minimum <= value <= maximum
    if inside:
        assert checks.check_int(value, "n", minimum=minimum, maximum=maximum) == value
    else:
        with pytest.raises(
            ValueError,
            match=rf"^n: expected an integer in \[{minimum}, {maximum}\], got {value} \(int\)$",
        ):
            checks.check_int(value, "n", minimum=minimum, maximum=maximum)


@pytest.mark.parametrize("value", [True, 2.0, "3", None, [1]])
def test_check_int_rejects_other_types_with_type_error(value):
    with pytest.raises(
        TypeError, match=rf"^size: expected an integer >= 1, got .* \({type(value).__name__}\)$"
    ):
        checks.check_int(value, "size", minimum=1)


def test_check_int_accepts_numpy_integers_and_returns_int():
    out = checks.check_int(np.int64(4), "k", minimum=1)
    assert out == 4 and type(out) is int


@given(st.floats(allow_nan=False, allow_infinity=False, width=32), st.booleans(), st.booleans())
def test_check_float_open_and_closed_bounds(value, low_open, high_open):
    low, high = -1.0, 1.0
    inside = (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high
    )
    if inside:
        assert (
            checks.check_float(
                value, "x", low=low, high=high, low_open=low_open, high_open=high_open
            )
            == value
        )
    else:
        with pytest.raises(ValueError, match="^x: expected a number in "):
            checks.check_float(
                value, "x", low=low, high=high, low_open=low_open, high_open=high_open
            )


def test_check_float_messages():
    # The example, verbatim.
    with pytest.raises(TypeError, match=r"^temperature: expected a number > 0, got '0.1' \(str\)$"):
        checks.check_float("0.1", "temperature", low=0, low_open=True)
    with pytest.raises(TypeError, match=r"^eps: expected a number >= 0, got True \(bool\)$"):
        checks.check_float(True, "eps", low=0)
    with pytest.raises(ValueError, match=r"^std: expected a finite number, got nan \(float\)$"):
        checks.check_float(math.nan, "std")
    with pytest.raises(ValueError, match=r"^std: expected a finite number, got inf"):
        checks.check_float(math.inf, "std")
    assert checks.check_float(math.inf, "clamp", low=0, finite=False) == math.inf
    with pytest.raises(ValueError, match="clamp"):
        checks.check_float(math.nan, "clamp", finite=False)  # NaN is never a hyper-parameter
    assert type(checks.check_float(3, "t")) is float


def test_legacy_wrappers_keep_their_messages_and_raise_type_error_for_strings():
    assert checks.check_positive(0, "std", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=r"^temperature: expected a number > 0, got 0 \(int\)$"):
        checks.check_positive(0, "temperature")
    with pytest.raises(TypeError, match=r"^std: expected a number >= 0, got '0.1' \(str\)$"):
        checks.check_positive("0.1", "std", allow_zero=True)
    with pytest.raises(
        ValueError, match=r"^p: expected a number in \[0.0, 1.0\], got 1.5 \(float\)$"
    ):
        checks.check_probability(1.5, "p")
    with pytest.raises(ValueError, match=r"^r: expected a number in \[0, 2\], got -1"):
        checks.check_in_range(-1, "r", 0, 2)


def test_check_bool():
    assert checks.check_bool(False, "flag") is False
    for bad in (1, 0, "yes", None):
        with pytest.raises(TypeError, match=r"^flag: expected True or False, got "):
            checks.check_bool(bad, "flag")


def test_check_interval():
    assert checks.check_interval((0.08, 1), "scale", low=0, high=1) == (0.08, 1.0)
    assert checks.check_interval([0.5, 0.5], "scale") == (0.5, 0.5)
    with pytest.raises(ValueError, match=r"^scale: expected a pair \(low, high\) with low < high"):
        checks.check_interval([0.5, 0.5], "scale", allow_equal=False)
    with pytest.raises(
        ValueError,
        match=r"^scale: expected a pair \(low, high\) with low <= high, got \(0.9, 0.1\)",
    ):
        checks.check_interval((0.9, 0.1), "scale")
    with pytest.raises(ValueError, match=r"^scale\[1\]: expected a number in \[0, 1\], got 2"):
        checks.check_interval((0.1, 2), "scale", low=0, high=1)
    with pytest.raises(TypeError, match=r"^scale\[0\]: expected a finite number, got .a. \(str\)"):
        checks.check_interval(("a", 1), "scale")
    with pytest.raises(
        TypeError, match=r"^scale: expected a pair \(low, high\) within \[0, 1\], got 0.5 \(float\)"
    ):
        checks.check_interval(0.5, "scale", low=0, high=1)
    with pytest.raises(ValueError, match=r"^scale: expected a pair"):
        checks.check_interval((0.1, 0.2, 0.3), "scale")
    with pytest.raises(ValueError, match=r"^scale: expected a pair"):
        checks.check_interval("ab", "scale")


def test_check_choice_suggests_the_close_match():
    assert checks.check_choice("triton", "kernel", ("torch", "triton")) == "triton"
    with pytest.raises(
        ValueError,
        match=r"^kernel: expected one of 'torch', 'triton', got 'trition' \(str\); did you mean 'triton'\?$",
    ):
        checks.check_choice("trition", "kernel", ("torch", "triton"))
    with pytest.raises(ValueError, match=r"got 'zzz' \(str\)$"):
        checks.check_choice("zzz", "kernel", ("torch", "triton"))
    with pytest.raises(
        TypeError, match=r"^kernel: expected one of 'torch', 'triton', got \[1\] \(list\)$"
    ):
        checks.check_choice([1], "kernel", ("torch", "triton"))


def test_check_device():
    assert checks.check_device("cpu") == torch.device("cpu")
    assert checks.check_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(
        ValueError,
        match=r"^device: expected a device such as 'cpu' or 'cuda:0', got 'nope' \(str\)$",
    ):
        checks.check_device("nope")
    with pytest.raises(TypeError, match=r"^where: expected a device"):
        checks.check_device(1.5, "where")
    if not torch.cuda.is_available():
        with pytest.raises(
            ValueError, match=r"^device: expected a device this machine has \(no CUDA"
        ):
            checks.check_device("cuda")
    else:
        with pytest.raises(ValueError, match=r"^device: expected a CUDA index below"):
            checks.check_device(f"cuda:{torch.cuda.device_count()}")


def test_long_values_are_truncated_in_messages():
    with pytest.raises(TypeError) as info:
        checks.check_int("x" * 500, "n")
    assert len(str(info.value)) < 120


@pytest.mark.parametrize(
    ("dtype", "wide"),
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_accumulation_dtype_and_widen(dtype, wide):
    assert checks.accumulation_dtype(dtype) == wide
    t = torch.ones(2, dtype=dtype)
    assert checks.widen(t).dtype == wide
    if dtype == wide:
        assert checks.widen(t) is t  # no copy when nothing widens


# --- augplug.ops.l2_normalize: the overflow-free normalisation the objectives and queue use.


@given(
    exponent=st.integers(-37, 37),
    rows=st.integers(1, 5),
    dim=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_l2_normalize_is_exact_at_any_float32_magnitude(exponent, rows, dim, seed):
    from augplug.ops import l2_normalize

    x64 = torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = (x64 * 10.0**exponent).float()
    reference = x.double() / torch.linalg.vector_norm(x.double(), dim=-1, keepdim=True)
    torch.testing.assert_close(l2_normalize(x).double(), reference, rtol=1e-6, atol=1e-6)


def test_l2_normalize_zero_rows_subnormals_and_gradient():
    from augplug.ops import l2_normalize

    assert torch.equal(l2_normalize(torch.zeros(2, 3)), torch.zeros(2, 3))
    tiny = torch.tensor([[3e-44, 4e-44]])  # float32 subnormals
    torch.testing.assert_close(l2_normalize(tiny), torch.tensor([[0.6, 0.8]]), rtol=0.05, atol=0.0)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(l2_normalize, (x,))
    (grad,) = torch.autograd.grad((l2_normalize(x) * torch.arange(5.0)).sum(), x)
    y = x.detach().clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(
        (y / y.norm(dim=-1, keepdim=True) * torch.arange(5.0)).sum(), y
    )
    torch.testing.assert_close(grad, reference)


def test_value_checks_do_not_break_a_compiled_graph():
    from augplug.checks import check_tensor, validation

    def step(x):
        return check_tensor(x, "x", ndim=2).sum()

    compiled = torch.compile(step, fullgraph=True, backend="eager")
    with validation(True):
        assert float(compiled(torch.ones(2, 3))) == 6.0
