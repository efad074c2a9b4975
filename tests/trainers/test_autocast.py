"""Objectives under autocast, as Lightning's "bf16-mixed" and Accelerate's mixed precision run them.

Autocast would run the loss's matmuls in bf16 even on float32 operands (and InfoNCE's
float32 running maximum then overflowed bf16); a loss that manages its own precision gives
under autocast exactly what it gives outside it.
"""

from __future__ import annotations

import pytest
import torch

import augplug


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "name", ["infonce", "dcl", "dclw", "byol", "simsiam", "barlow_twins", "vicreg", "moco"]
)
def test_loss_under_cpu_autocast_equals_loss_outside(name, dtype):
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(6, 8, generator=g).to(dtype).requires_grad_()
    z2 = torch.randn(6, 8, generator=g).to(dtype).requires_grad_()
    kwargs = {"queue_size": 0} if name == "moco" else {}
    loss_fn = augplug.create("objective", name, **kwargs)
    plain = loss_fn(z1, z2)
    (plain_grad,) = torch.autograd.grad(plain, z1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss_fn(z1, z2)
    (mixed_grad,) = torch.autograd.grad(mixed, z1)
    assert mixed.dtype == plain.dtype == torch.float32
    torch.testing.assert_close(mixed, plain, rtol=0, atol=0)
    torch.testing.assert_close(mixed_grad, plain_grad, rtol=0, atol=0)
