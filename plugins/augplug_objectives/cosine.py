"""Negative-cosine objectives with a stop-gradient on the target: BYOL and SimSiam.

Both compare the online branch's prediction ``z1`` with the target branch's projection
``z2``, and no gradient flows into ``z2`` (the stop-gradient that, with the predictor,
keeps these non-contrastive methods from collapsing). :class:`augplug.recipe.Pipeline`
symmetrises them by swapping the branches and averaging the two directions.
"""

from __future__ import annotations

import torch

from augplug.checks import accumulation_dtype, check_batch, check_same_batch, check_same_device
from augplug.components import Objective
from augplug.ops import l2_normalize

__all__ = ["BYOLLoss", "SimSiamLoss", "cosine_to_target"]


def cosine_to_target(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine similarity of ``z1`` (B, D) to the detached ``z2`` (B, D), in float32.

    Float64 inputs stay float64; bf16/fp16 are normalised and reduced in float32. The
    cosine does not depend on the rows' scale, and neither does the result: rows of any
    finite magnitude (1e-30 or 1e30 in float32) are normalised exactly.
    """
    check_batch(z1, "z1", ndim=2, layout="(B, D), the online prediction")
    check_batch(z2, "z2", ndim=2, layout="(B, D), the target")
    check_same_batch("z1", z1, "z2", z2)
    check_same_device("z1", z1, "z2", z2)
    if z1.shape[1] != z2.shape[1]:
        raise ValueError(
            f"z2: expected {z1.shape[1]} features (as z1), got shape {tuple(z2.shape)}"
        )
    dtype = accumulation_dtype(torch.promote_types(z1.dtype, z2.dtype))
    online = l2_normalize(z1.to(dtype))
    target = l2_normalize(z2.detach().to(dtype))
    return (online * target).sum(-1)


class BYOLLoss(Objective):
    """BYOL's regression loss (Grill et al. 2020, eq. 2): ``mean(2 - 2 cos(z1, sg(z2)))``.

    The squared distance of the L2-normalised prediction to the normalised target, in
    [0, 4]. ``z1`` is the online predictor's output and ``z2`` the target network's
    projection (B, D) each; no gradient reaches ``z2``. The paper sums the two swapped
    directions; the recipe Pipeline averages them, which halves the scale (a learning-rate
    matter only). Returns a float32 scalar (float64 for float64 inputs).
    """

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return (2.0 - 2.0 * cosine_to_target(z1, z2)).mean()


class SimSiamLoss(Objective):
    """SimSiam's loss (Chen & He 2021, eq. 1): ``-mean(cos(p1, sg(z2)))``, in [-1, 1].

    ``z1`` is the predictor output p1 and ``z2`` the other view's projection (B, D) each; no
    gradient reaches ``z2``. The paper's symmetric loss is the average of the two swapped
    directions, which is what the recipe Pipeline computes. Returns a float32 scalar
    (float64 for float64 inputs).
    """

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return -cosine_to_target(z1, z2).mean()
