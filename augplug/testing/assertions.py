"""Invariance checks for users' encoders: ``assert_invariant`` and ``conditional_variance``.

In the spirit of e3nn's ``assert_equivariant``: call them on your own model inside your
own (property-based) tests. Invariance here means invariance to the *view
distribution*: ``encoder(views(x))`` must not depend on the views' random draw. Views
are compared with each other rather than with ``encoder(x)``, so ``x`` need not be an
encoder input (e.g. the Spirograph views render images from a batch of targets).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from augplug.checks import check_positive, check_tensor
from augplug.components import ParametricViewGenerator
from augplug.evaluate.averaging import iter_view_features

__all__ = ["assert_invariant", "conditional_variance"]

Encoder = Callable[[torch.Tensor], torch.Tensor]


def _wide(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float64 else t.float()


def conditional_variance(
    encoder: Encoder,
    views: Callable[..., torch.Tensor],
    x: torch.Tensor,
    m: int = 16,
    *,
    chunk: int = 4096,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample variance of the encoder output over ``m`` random views: (B,).

    The trace of the covariance of ``encoder(views(x_i))`` given ``x_i``, estimated
    without bias from ``m >= 2`` views (sum over features of the variance across views).
    Averaged over alpha too, the quantity the ``gradient_invariance`` objective penalises,
    E || h(alpha') - h(alpha) ||^2 (Foster et al., ICLR 2021), is twice this. It is 0 for
    an invariant encoder. Runs without gradients, ``chunk`` images per encoder call;
    float32 (float64 kept). Put the encoder in ``eval()`` mode first (BatchNorm).
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 2:
        raise ValueError(f"m: expected an int >= 2 (a variance needs two views), got {m!r}")
    shift: torch.Tensor | None = None
    shifted_sum: torch.Tensor | None = None
    shifted_squares: torch.Tensor | None = None
    first_block_start = None
    for rows, features in iter_view_features(encoder, views, x, m, chunk=chunk, generator=generator):
        features = _wide(features)
        if shift is None:
            batch, dim = x.shape[0], features.shape[-1]
            shift = features.new_zeros(batch, dim)
            shifted_sum = features.new_zeros(batch, dim)
            shifted_squares = features.new_zeros(batch)
        if first_block_start != rows.start:
            # Sums are taken around one view of each sample, not around 0: a nearly
            # invariant encoder has a variance far below |h|^2, which the naive
            # E[h^2] - E[h]^2 would lose to cancellation.
            first_block_start = rows.start
            shift[rows] = features[0]
        centred = features - shift[rows]
        shifted_sum[rows] += centred.sum(0)
        shifted_squares[rows] += (centred**2).sum((0, 2))
    variance = (shifted_squares - (shifted_sum**2).sum(-1) / m) / (m - 1)
    return variance.clamp(min=0.0)


def _format_params(params: Mapping[str, torch.Tensor], index: int) -> str:
    parts = []
    for name, value in params.items():
        row = value[index].detach().to("cpu", torch.float64) if value.is_floating_point() else value[index].cpu()
        if row.numel() == 1:
            parts.append(f"{name}={row.item():.4g}")
        else:
            shown = ", ".join(f"{v:.4g}" for v in row.flatten()[:6].tolist())
            parts.append(f"{name}=[{shown}{', ...' if row.numel() > 6 else ''}]")
    return ", ".join(parts)


@torch.no_grad()
def assert_invariant(
    encoder: Encoder,
    views: Callable[..., torch.Tensor],
    x: torch.Tensor,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    *,
    num_views: int = 4,
    generator: torch.Generator | None = None,
) -> None:
    """Raise ``AssertionError`` unless ``encoder(views(x))`` is the same for every view drawn.

    Draws ``num_views`` views of ``x`` and compares each sample's encoder output (flattened)
    with that of the first view, elementwise like ``torch.isclose``:
    ``|h_v - h_0| <= atol + rtol * |h_0|``. The message names the worst sample, its worst
    feature, and, for a parametric view generator, the params of both views. Put the
    encoder in ``eval()`` mode first, so BatchNorm does not mix the samples.
    """
    check_tensor(x, "x", dtypes=None)
    check_positive(atol, "atol", allow_zero=True)
    check_positive(rtol, "rtol", allow_zero=True)
    if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 2:
        raise ValueError(f"num_views: expected an int >= 2, got {num_views!r}")
    parametric = isinstance(views, ParametricViewGenerator) and getattr(views, "is_parametric", True)
    outputs, drawn = [], []
    for _ in range(num_views):  # a handful of views, each a batched call
        if parametric:
            params = views.sample(x, generator=generator)
            view = views.apply(x, params)
            drawn.append(params)
        else:
            view = views(x, generator=generator)
        outputs.append(_wide(encoder(view)).flatten(1).double())
    reference = outputs[0]
    others = torch.stack(outputs[1:])  # (V - 1, B, D)
    allowed = atol + rtol * reference.abs()
    # Ratio of the error to its allowance: > 1 fails; NaN anywhere counts as a failure.
    excess = ((others - reference).abs() / allowed.clamp(min=torch.finfo(torch.float64).tiny)).nan_to_num(
        nan=float("inf")
    )
    per_sample = excess.amax(dim=(0, 2))  # (B,)
    failing = int((per_sample > 1).sum())
    if failing == 0:
        return
    flat = int(excess.argmax())
    view_index, sample, feature = (int(i) for i in torch.unravel_index(torch.tensor(flat), excess.shape))
    got, ref = others[view_index, sample, feature].item(), reference[sample, feature].item()
    diff = (others[view_index, sample] - reference[sample]).norm().item()
    lines = [
        f"encoder is not invariant to the views: {failing} of {x.shape[0]} samples differ by more than "
        f"atol={atol:g} + rtol={rtol:g} * |reference| across {num_views} views.",
        f"Worst: sample {sample}, view {view_index + 1} vs view 0: feature {feature} is {got:.6g} vs "
        f"{ref:.6g} (|difference| {abs(got - ref):.3g}, allowed {allowed[sample, feature].item():.3g}); "
        f"norm of the difference over all {reference.shape[1]} features {diff:.3g}.",
    ]
    if parametric:
        lines.append(f"View 0 params of sample {sample}: {_format_params(drawn[0], sample)}")
        lines.append(f"View {view_index + 1} params of sample {sample}: {_format_params(drawn[view_index + 1], sample)}")
    raise AssertionError("\n".join(lines))
