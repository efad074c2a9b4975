"""Slow float64 references the objectives are tested against (materialised, mask-based)."""

import torch
import torch.nn.functional as F


def nt_xent_reference(views: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-view NT-Xent written the textbook way: the full (BV, BV) matrix and label masks.

    ``views`` is (B, V, D); every other view of the same sample is a positive, an anchor's
    own similarity is excluded from its softmax, and each anchor averages its positives'
    log-probabilities.
    """
    batch, num_views, dim = views.shape
    unit = F.normalize(views.double(), dim=-1).reshape(batch * num_views, dim)
    logits = unit @ unit.T / temperature
    sample_of_row = torch.arange(batch).repeat_interleave(num_views)
    is_self = torch.eye(batch * num_views, dtype=torch.bool)
    is_positive = (sample_of_row[:, None] == sample_of_row[None, :]) & ~is_self
    log_prob = torch.log_softmax(logits.masked_fill(is_self, float("-inf")), dim=1)
    per_anchor = -log_prob.masked_fill(~is_positive, 0.0).sum(1) / (num_views - 1)
    return per_anchor.mean()


def negative_cosine_reference(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Per-row cosine, written out with explicit norms, in float64."""
    a, b = z1.double(), z2.double()
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
