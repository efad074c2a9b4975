"""Small numerical building blocks shared by objectives, augmenters and queues."""

from __future__ import annotations

import torch

__all__ = ["l2_normalize"]


def l2_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``x / ||x||`` along ``dim``, exact for any finite magnitude; zero rows stay zero.

    ``torch.nn.functional.normalize`` squares the entries, so in float32 a row of size
    1e20 overflows to ``inf`` (and comes back as zeros), and it divides by
    ``max(||x||, 1e-12)``, so a row of size 1e-13 is returned unnormalised. Dividing by the
    row's largest magnitude first brings every finite row to entries in [-1, 1] with at
    least one of size 1, whose norm neither overflows nor underflows; the unit vector is
    the same (it does not depend on the row's scale), so losses built on it are
    scale-invariant as their maths is. Computes in ``x``'s dtype: widen half inputs first
    (:func:`augplug.checks.widen`). Differentiable; costs one more reduction over ``x``.

    Examples:
        >>> l2_normalize(torch.tensor([[3e30, 4e30], [0.0, 0.0]]))
        tensor([[0.6000, 0.8000],
                [0.0000, 0.0000]])
    """
    tiny = torch.finfo(x.dtype).tiny
    # clamp_min: a zero row stays zero (0 / tiny); a subnormal row still scales up.
    scaled = x / x.abs().amax(dim=dim, keepdim=True).clamp_min(tiny)
    return scaled / torch.linalg.vector_norm(scaled, dim=dim, keepdim=True).clamp_min(tiny)
