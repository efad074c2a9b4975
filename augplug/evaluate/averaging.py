"""Test-time feature averaging (Foster, Pukdee & Rainforth, ICLR 2021).

Encode ``m`` independently transformed copies of each input and average the encoder
outputs. The paper uses the averaged features both to fit and to test the linear probe
(CIFAR-10 with M = 100: 93.35% -> 94.83%; Spirograph mean MSE 1.99e-3 at M = 1 ->
0.96e-3 at M = 30).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from augplug.checks import check_tensor

__all__ = ["average_features", "iter_view_features"]

Encoder = Callable[[torch.Tensor], torch.Tensor]


def _check_count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


@torch.no_grad()
def iter_view_features(
    encoder: Encoder,
    views: Callable[..., torch.Tensor],
    x: torch.Tensor,
    m: int,
    *,
    chunk: int = 4096,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Encode ``m`` random views of every row of ``x``, at most ``chunk`` images per encoder call.

    Yields ``(rows, features)``: ``features`` is (k, len(rows), D), the encoder outputs
    (flattened after the batch dim) of k fresh views of ``x[rows]``. Each call renders
    the copies of a block of rows as one batch (copy-major), so the only Python loop is
    over chunks. With ``x`` no larger than ``chunk`` the views are drawn in the same
    order as ``m`` successive ``views(x, generator=generator)`` calls.
    """
    check_tensor(x, "x", dtypes=None)
    _check_count(m, "m", 1)
    _check_count(chunk, "chunk", 1)
    batch = x.shape[0]
    rows_per_block = min(batch, chunk)
    for start in range(0, batch, rows_per_block):
        rows = slice(start, min(start + rows_per_block, batch))
        block = x[rows]
        copies_per_call = max(1, chunk // block.shape[0])
        done = 0
        while done < m:
            copies = min(copies_per_call, m - done)
            repeated = block.repeat(copies, *([1] * (block.ndim - 1)))
            features = encoder(views(repeated, generator=generator))
            yield rows, features.reshape(copies, block.shape[0], -1)
            done += copies


def average_features(
    encoder: Encoder,
    views: Callable[..., torch.Tensor],
    x: torch.Tensor,
    m: int,
    *,
    chunk: int = 4096,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean encoder output over ``m`` independent views of each input: (B, D).

    ``views`` is any view generator (called as ``views(batch, generator=generator)``);
    ``chunk`` bounds the images per encoder call (memory), the batch is split when it
    is larger. Runs without gradients; put the encoder in ``eval()`` mode first so
    BatchNorm uses its running statistics. Accumulates in float32 (float64 stays
    float64) and returns the encoder's dtype.
    """
    total: torch.Tensor | None = None
    out_dtype = None
    for rows, features in iter_view_features(
        encoder, views, x, m, chunk=chunk, generator=generator
    ):
        if total is None:  # the feature size and dtype are known only after the first call
            out_dtype = features.dtype
            accumulate = torch.float64 if out_dtype == torch.float64 else torch.float32
            total = features.new_zeros((x.shape[0], features.shape[-1]), dtype=accumulate)
        total[rows] += features.to(total.dtype).sum(0)
    return (total / m).to(out_dtype)
