"""The reference's alternating schedule (alternating_step) against a hand-written two-pass step."""

from __future__ import annotations

import copy

import pytest
import torch
from augplug_viewmaker import Viewmaker, alternating_step


def setup(make_encoder, reversal=False):
    torch.manual_seed(0)
    vm = Viewmaker(depth=1, width=4, eps=0.1, gradient_reversal=reversal)
    encoder = make_encoder()
    return vm, encoder, torch.rand(6, 3, 8, 8)


def test_matches_the_two_pass_step_written_out(contrastive_loss, make_encoder):
    vm, encoder, x = setup(make_encoder)
    vm_ref, encoder_ref = copy.deepcopy(vm), copy.deepcopy(encoder)

    def loss(v1, v2):
        return contrastive_loss(encoder(v1), encoder(v2))

    enc_opt = torch.optim.SGD(encoder.parameters(), lr=0.03, momentum=0.9)
    vm_opt = torch.optim.Adam(vm.parameters(), lr=1e-3)
    got = alternating_step(vm, x, loss, enc_opt, vm_opt, generator=torch.Generator().manual_seed(5))

    # By hand: views without a viewmaker graph, an encoder step, fresh views, -loss for
    # the viewmaker against the updated (frozen) encoder.
    enc_opt_ref = torch.optim.SGD(encoder_ref.parameters(), lr=0.03, momentum=0.9)
    vm_opt_ref = torch.optim.Adam(vm_ref.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        v1, v2 = vm_ref(x, generator=g), vm_ref(x, generator=g)
    first = contrastive_loss(encoder_ref(v1), encoder_ref(v2))
    first.backward()
    enc_opt_ref.step()
    encoder_grads = [p.grad.clone() for p in encoder_ref.parameters()]
    frozen = copy.deepcopy(encoder_ref).requires_grad_(False)
    v1, v2 = vm_ref(x, generator=g), vm_ref(x, generator=g)
    second = -contrastive_loss(frozen(v1), frozen(v2))
    second.backward()
    vm_grads = [p.grad.clone() for p in vm_ref.parameters()]
    vm_opt_ref.step()

    torch.testing.assert_close(got[0], first.detach(), rtol=0, atol=0)
    torch.testing.assert_close(got[1], second.detach(), rtol=0, atol=0)
    for p, q, grad in zip(encoder.parameters(), encoder_ref.parameters(), encoder_grads):
        assert torch.equal(p, q) and torch.equal(p.grad, grad)  # pass 2 left them alone
        assert p.requires_grad
    for p, q, grad in zip(vm.parameters(), vm_ref.parameters(), vm_grads):
        assert torch.equal(p.grad, grad) and torch.equal(p, q)
    assert vm.steps == 1


def test_differs_from_one_pass_reversal_after_the_encoder_moves(contrastive_loss, make_encoder):
    # Simultaneous descent-ascent (reversal) evaluates the viewmaker's gradient before the
    # encoder's step; the alternating schedule after it. Same noise, different gradients.
    vm, encoder, x = setup(make_encoder)
    reversed_vm = copy.deepcopy(vm)
    reversed_vm.gradient_reversal = True
    reversed_encoder = copy.deepcopy(encoder)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # the alternating schedule's first pass draws two views first
        reversed_vm(x, generator=g), reversed_vm(x, generator=g)
    v1, v2 = reversed_vm(x, generator=g), reversed_vm(x, generator=g)
    contrastive_loss(reversed_encoder(v1), reversed_encoder(v2)).backward()

    def loss(v1, v2):
        return contrastive_loss(encoder(v1), encoder(v2))

    alternating_step(
        vm, x, loss, torch.optim.SGD(encoder.parameters(), lr=0.5),
        torch.optim.SGD(vm.parameters(), lr=0.0), generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    differences = [
        (p.grad - q.grad).abs().max() for p, q in zip(vm.parameters(), reversed_vm.parameters())
    ]
    assert max(differences) > 1e-6


def test_bad_arguments_are_named(contrastive_loss, make_encoder):
    vm, encoder, x = setup(make_encoder, reversal=True)
    enc_opt = torch.optim.SGD(encoder.parameters(), lr=0.1)
    vm_opt = torch.optim.SGD(vm.parameters(), lr=0.1)

    def loss(v1, v2):
        return contrastive_loss(encoder(v1), encoder(v2))

    with pytest.raises(
        ValueError, match="views: the alternating schedule needs gradient_reversal=False"
    ):
        alternating_step(vm, x, loss, enc_opt, vm_opt)
    with pytest.raises(ValueError, match="views: expected a module holding a Viewmaker"):
        alternating_step(encoder, x, loss, enc_opt, vm_opt)
    vm.gradient_reversal = False
    with pytest.raises(TypeError, match="loss: expected a callable"):
        alternating_step(vm, x, 3, enc_opt, vm_opt)
