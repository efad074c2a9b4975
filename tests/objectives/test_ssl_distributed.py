"""Two gloo ranks with unequal batches against one process on the concatenated batch (float64).

Every objective with ``gather_distributed=True`` runs on rank 0 with 3 samples and on rank 1
with 5, through a linear encoder whose weight gradient is averaged over the ranks as DDP
does (an all-reduce divided by the world size). The mean of the ranks' losses and the
averaged weight gradient must equal the single-process loss and gradient on all 8 samples
to 1e-6, and state (DINO's centre, MoCo's queue) must match the single process's. One spawn
for all objectives: starting the processes is the expensive part.
"""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from augplug_objectives.barlow_twins import BarlowTwins
from augplug_objectives.dcl import DCL, DCLW
from augplug_objectives.dino import DINOLoss
from augplug_objectives.moco import MoCo
from augplug_objectives.swav import SwAV
from augplug_objectives.vicreg import VICReg

SIZES = (3, 5)
IN_FEATURES, FEATURES, VIEWS = 5, 4, 3


def _case_names():
    return [
        "dcl",
        "dcl_local",
        "dclw_local",
        "barlow_twins",
        "vicreg",
        "swav",
        "dino",
        "moco_v3",
        "moco_v2",
    ]


def _objective(name):
    torch.manual_seed(3)  # the same SwAV prototypes on every rank and in the reference
    return {
        "dcl": lambda: DCL(temperature=0.3, tile_size=4, gather_distributed=True),
        "dcl_local": lambda: DCL(temperature=0.3, gather_distributed=True, local_anchors=True),
        "dclw_local": lambda: DCLW(temperature=0.3, gather_distributed=True, local_anchors=True),
        "barlow_twins": lambda: BarlowTwins(gather_distributed=True),
        "vicreg": lambda: VICReg(gather_distributed=True),
        "swav": lambda: SwAV(FEATURES, 6, temperature=0.5, gather_distributed=True),
        "dino": lambda: DINOLoss(FEATURES, teacher_temperature=0.3, gather_distributed=True),
        "moco_v3": lambda: MoCo(queue_size=0, temperature=0.5, gather_distributed=True),
        "moco_v2": lambda: MoCo(FEATURES, 12, temperature=0.5, gather_distributed=True),
    }[name]().double()


def _inputs():
    gen = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0] * SIZES[0] + [3.0] * SIZES[1], dtype=torch.float64)[:, None, None]
    return torch.randn(sum(SIZES), VIEWS, IN_FEATURES, generator=gen, dtype=torch.float64) * scale


def _encoders():
    torch.manual_seed(1)
    online = torch.nn.Linear(IN_FEATURES, FEATURES, dtype=torch.float64)
    target = torch.nn.Linear(IN_FEATURES, FEATURES, dtype=torch.float64)
    return online, target


def _run(name, loss_fn, x):
    """One step's loss of ``name`` on batch ``x``; MoCo v2 first fills its queue with a step."""
    online, target = _encoders()
    z = online(x)
    with torch.no_grad():
        t = target(x)
    if name.startswith(("dcl", "swav")):
        loss = loss_fn(z)
    elif name in ("barlow_twins", "vicreg"):
        loss = loss_fn(z[:, 0], z[:, 1])
    elif name == "dino":
        loss = loss_fn(z, t[:, :2])
    else:
        if name == "moco_v2":
            loss_fn(z[:, 2].detach(), t[:, 2])
        loss = loss_fn(z[:, 0], t[:, 1])
    loss.backward()
    return loss.detach(), online.weight.grad


def _reference(name):
    loss_fn = _objective(name)
    loss, grad = _run(name, loss_fn, _inputs())
    return loss, grad, {k: v.clone() for k, v in loss_fn.state_dict().items()}


def _worker(rank, port, references):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=len(SIZES)
    )
    try:
        torch.set_num_threads(1)
        start = sum(SIZES[:rank])
        x = _inputs()[start : start + SIZES[rank]]
        for name in _case_names():
            ref_loss, ref_grad, ref_state = references[name]
            loss_fn = _objective(name)
            loss, grad = _run(name, loss_fn, x)
            dist.all_reduce(grad)  # DDP's gradient average
            grad /= len(SIZES)
            dist.all_reduce(loss)
            loss /= len(SIZES)
            torch.testing.assert_close(
                loss, ref_loss, rtol=1e-6, atol=1e-6, msg=f"{name}: mean loss"
            )
            torch.testing.assert_close(
                grad, ref_grad, rtol=1e-6, atol=1e-9, msg=f"{name}: weight grad"
            )
            if name == "swav":  # the whole batch's gradient on every rank, no averaging needed
                ref_proto_grad = references["swav_prototypes_grad"]
                torch.testing.assert_close(
                    loss_fn.prototypes.grad, ref_proto_grad, rtol=1e-6, atol=1e-9
                )
            for key, value in loss_fn.state_dict().items():
                if key != "prototypes":
                    torch.testing.assert_close(
                        value, ref_state[key], rtol=1e-6, atol=1e-9, msg=f"{name}: {key}"
                    )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed")
def test_two_gloo_ranks_with_unequal_batches_equal_one_process():
    references = {name: _reference(name) for name in _case_names()}
    swav = _objective("swav")
    _run("swav", swav, _inputs())
    references["swav_prototypes_grad"] = swav.prototypes.grad
    mp.spawn(_worker, args=(_free_port(), references), nprocs=len(SIZES), join=True)
