"""average_features: the naive loop, the memory bound, and exact means for fixed views."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from invariance_helpers import Brightness, RowOffset, tiny_encoder

from augplug.evaluate import average_features


class RecordingEncoder(torch.nn.Module):
    """A fixed linear map that records the batch size of every call."""

    def __init__(self, in_features: int):
        super().__init__()
        self.inner = tiny_encoder(in_features, dim=3)
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return self.inner(x)


@given(batch=st.integers(1, 6), m=st.integers(1, 7), spare=st.integers(0, 40))
def test_matches_the_naive_loop_over_views(batch, m, spare):
    x = torch.rand(
        batch, 2, 2, 2, generator=torch.Generator().manual_seed(batch), dtype=torch.float64
    )
    encoder = RecordingEncoder(8)
    views = RowOffset()
    chunk = batch + spare
    got = average_features(
        encoder, views, x, m, chunk=chunk, generator=torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)
    naive = torch.stack([encoder.inner(views(x, generator=g)) for _ in range(m)]).mean(0)
    torch.testing.assert_close(got, naive)
    assert max(encoder.calls) <= chunk and sum(encoder.calls) == batch * m


@given(batch=st.integers(1, 9), m=st.integers(1, 5), chunk=st.integers(1, 12))
def test_memory_is_bounded_by_chunk_for_any_batch(batch, m, chunk):
    # A view that draws nothing: every copy encodes to the same features, whatever the chunking.
    x = torch.rand(
        batch, 2, 2, 2, generator=torch.Generator().manual_seed(chunk), dtype=torch.float64
    )
    encoder = RecordingEncoder(8)
    fixed = Brightness(1.5, 1.5)
    got = average_features(encoder, fixed, x, m, chunk=chunk)
    torch.testing.assert_close(got, encoder.inner(1.5 * x))
    assert max(encoder.calls) <= chunk and sum(encoder.calls) == batch * m


def test_the_average_converges_to_the_expectation():
    # E[x + U(0, 1)] = x + 0.5 through a linear encoder.
    x = torch.rand(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    linear = torch.nn.Linear(4, 2).double()
    got = average_features(
        linear, RowOffset(), x, 4000, chunk=3000, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(got, linear(x + 0.5).detach(), atol=0.03, rtol=0)
    assert not got.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"m": 0}, "m: expected an int >= 1"), ({"m": 2, "chunk": 0}, "chunk")]
)
def test_bad_counts_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        average_features(lambda v: v, RowOffset(), torch.rand(2, 3), **kwargs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_encoders_accumulate_in_float32(dtype):
    x = torch.rand(3, 8, generator=torch.Generator().manual_seed(2))
    linear = torch.nn.Linear(8, 4)
    low = linear.to(dtype)
    got = average_features(
        low, RowOffset(), x.to(dtype), 50, chunk=64, generator=torch.Generator().manual_seed(3)
    )
    assert got.dtype == dtype
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        reference = torch.stack(
            [low(RowOffset()(x.to(dtype), generator=g)).float() for _ in range(50)]
        ).mean(0)
    torch.testing.assert_close(got.float(), reference, atol=2e-2, rtol=1e-2)
