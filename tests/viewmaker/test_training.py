"""A short joint training run: with gradient reversal the viewmaker works against the encoder."""

from __future__ import annotations

import torch
from augplug_viewmaker import Viewmaker


def _train(reversal: bool, loss_fn, make_encoder, steps: int = 24) -> float:
    """Encoder SGD + viewmaker Adam, one backward per step; returns the final loss gap.

    The gap is L(views from the viewmaker) - L(identity views, both branches = x) under the
    final encoder, on fixed noise: how much the learned views cost the encoder.
    """
    torch.manual_seed(0)
    data = torch.rand(16, 3, 8, 8)
    viewmaker = Viewmaker(depth=1, width=8, eps=0.2, gradient_reversal=reversal)
    encoder = make_encoder()
    encoder_opt = torch.optim.SGD(encoder.parameters(), lr=0.03, momentum=0.9)
    viewmaker_opt = torch.optim.Adam(viewmaker.parameters(), lr=3e-2)  # paper 1e-3; few steps here
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        v1, v2 = viewmaker(data, generator=generator), viewmaker(data, generator=generator)
        loss = loss_fn(encoder(v1), encoder(v2))
        encoder_opt.zero_grad()
        viewmaker_opt.zero_grad()
        loss.backward()
        encoder_opt.step()
        viewmaker_opt.step()
    with torch.no_grad():
        fixed = torch.Generator().manual_seed(123)
        views = viewmaker(data, generator=fixed), viewmaker(data, generator=fixed)
        identity = encoder(data)
        return float(loss_fn(*map(encoder, views)) - loss_fn(identity, identity))


def test_gradient_reversal_makes_the_views_adversarial(contrastive_loss, make_encoder):
    adversarial = _train(True, contrastive_loss, make_encoder)
    # Control: the same run without reversal trains the viewmaker to *help* the encoder.
    cooperative = _train(False, contrastive_loss, make_encoder)
    assert adversarial > 0.0, "learned views should cost the encoder more than identity views"
    assert adversarial > cooperative + 0.05, (adversarial, cooperative)
