"""Shared pieces for the viewmaker tests: a plain NT-Xent loss and a tiny encoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent written out: 2B embeddings, each one's positive is its partner view."""
    z = F.normalize(torch.cat((z1, z2)).float(), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    batch = z1.shape[0]
    partner = torch.cat((torch.arange(batch, 2 * batch), torch.arange(batch)))
    return F.cross_entropy(logits, partner)


def tiny_encoder(channels: int = 3, dim: int = 16) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, dim),
    )


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: a second intra-op thread only adds hand-off cost (and, on a
    busy 2-core machine, spin-waiting that made the training run ~20x slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def contrastive_loss():
    return nt_xent


@pytest.fixture
def make_encoder():
    return tiny_encoder
