"""Viewmaker: a learned, L1-bounded, stochastic perturbation network (Tamkin et al., ICLR 2021).

A small style-transfer shaped image-to-image network maps ``x`` (plus injected uniform
noise) to a perturbation ``delta`` with per-example mean ``|delta| == eps``; the view is
``x + delta`` (clamped to [0, 1] only with ``clamp=True``). Trained adversarially: the
encoder minimises the contrastive loss, the viewmaker maximises it, either in one pass
(gradient reversal: simultaneous gradient descent-ascent) or with the reference's
alternating two-pass schedule (:func:`alternating_step`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from augplug import rng
from augplug.checks import check_batch, check_bool, check_generator, check_int, check_positive
from augplug.components import ParametricViewGenerator, Params

__all__ = ["Viewmaker", "ViewmakerNetwork", "alternating_step", "viewmaker_parameters"]

# The 9x9 convolutions reflect-pad by 4 pixels, which needs at least 5 pixels per side;
# the two stride-2 levels then keep at least 2 pixels for the 3x3 reflect padding.
MIN_SIDE = 5

# Guards the budget's division against an all-zero tanh output only. The reference adds
# 1e-4 to the mean, which biases mean |delta| by up to ~0.1% for small raw outputs; a clamp
# keeps the budget exact whenever the raw mean |tanh| exceeds it.
_MIN_MEAN_ABS = 1e-6


class _ReverseGradient(torch.autograd.Function):
    """Identity on any number of tensors in the forward pass; negated gradients backward."""

    @staticmethod
    def forward(ctx, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(-g for g in grads)


class _Conv(nn.Module):
    """Reflection padding + convolution, then InstanceNorm(affine) + ReLU unless ``last``.

    A convolution followed by instance norm carries no bias: the norm subtracts the
    per-channel mean, so a bias would be a parameter with no effect on the output.
    """

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1, last: bool = False):
        super().__init__()
        self.pad = kernel // 2
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, bias=last)
        self.norm = None if last else nn.InstanceNorm2d(cout, affine=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.conv(F.pad(h, (self.pad,) * 4, mode="reflect"))
        if self.norm is None:
            return h
        return F.relu(self.norm(h))


class _Residual(nn.Module):
    """conv-IN-ReLU-conv-IN plus the skip connection, channel count kept."""

    def __init__(self, channels: int):
        super().__init__()
        self.first = _Conv(channels, channels, 3)
        self.second = nn.Conv2d(channels, channels, 3, bias=False)
        self.second_norm = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.second(F.pad(self.first(h), (1, 1, 1, 1), mode="reflect"))
        return h + self.second_norm(out)


class ViewmakerNetwork(nn.Module):
    """The viewmaker's image-to-image network; returns the raw output before the budget.

    Layout (Tamkin et al. 2021, style-transfer shaped): 9x9 conv (C+1 -> w), two 3x3
    stride-2 convs (-> 2w -> 4w), ``depth`` residual blocks with one fresh noise channel
    concatenated before each (so block i has 4w + i + 1 channels), two nearest-upsample +
    3x3 conv stages (-> 2w -> w) and a final 9x9 conv to C channels. Upsampling goes to the
    exact size of the matching down-sampling level, so odd and non-square inputs work.
    """

    def __init__(self, channels: int, depth: int, width: int):
        super().__init__()
        bottleneck = 4 * width
        self.stem = _Conv(channels + 1, width, 9)
        self.down1 = _Conv(width, 2 * width, 3, stride=2)
        self.down2 = _Conv(2 * width, bottleneck, 3, stride=2)
        self.blocks = nn.ModuleList(_Residual(bottleneck + i + 1) for i in range(depth))
        self.up1 = _Conv(bottleneck + depth, 2 * width, 3)
        self.up2 = _Conv(2 * width, width, 3)
        self.head = _Conv(width, channels, 9, last=True)

    def forward(
        self, x: torch.Tensor, input_noise: torch.Tensor, block_noise: torch.Tensor
    ) -> torch.Tensor:
        full = self.stem(torch.cat((x, input_noise), dim=1))
        half = self.down1(full)
        h = self.down2(half)
        for i, block in enumerate(self.blocks):
            h = block(torch.cat((h, block_noise[:, i : i + 1]), dim=1))
        h = self.up1(F.interpolate(h, size=half.shape[-2:], mode="nearest"))
        h = self.up2(F.interpolate(h, size=full.shape[-2:], mode="nearest"))
        return self.head(h)

    @staticmethod
    def bottleneck_size(height: int, width: int) -> tuple[int, int]:
        """Spatial size after the two stride-2 convs: each maps n to ceil(n / 2), so ceil(n / 4)."""
        return (height + 3) // 4, (width + 3) // 4


class Viewmaker(ParametricViewGenerator):
    """Learned adversarial views (Viewmaker, Tamkin, Wu & Goodman, ICLR 2021, arXiv 2010.07432).

    ``view = x + delta`` with ``delta = eps * t / mean_{C,H,W}|t|``, ``t = tanh(network(x, noise))``:
    every example gets the same L1 budget (mean absolute perturbation ``eps``); single
    pixels are not bounded by ``eps``. Fresh uniform noise (one channel at the input, one
    before each residual block) makes every call a new view.

    Arguments (defaults follow the paper's image setting):

    * ``channels=3`` - input channels C (1 for log-mel spectrograms, 52 for the paper's
      wearable-sensor spectrograms). Any H x W >= 5 x 5 works, odd and non-square included.
    * ``depth=3`` residual blocks, ``width=32`` channels of the first conv (about 1.1M
      parameters for C = 3).
    * ``eps=0.05`` - the budget, in the input's units (images in [0, 1]; the paper uses
      0.05-0.125 for spectrograms).
    * ``clamp=False`` - ``True`` clamps views to [0, 1]. The reference's ``Viewmaker``
      class defaults to clamping, but its training systems pass ``clamp_views`` from a
      config key that no shipped config sets (a falsy value), so the image views the
      paper trained on were *not* clamped (then dataset-normalised); this default follows
      what the reference ran. Spectrograms are never clamped.
    * ``gradient_reversal=True`` - the viewmaker's parameters receive the *negated*
      gradient of whatever loss is back-propagated through the views, so one
      ``loss.backward()`` trains the encoder to minimise and the viewmaker to maximise the
      same loss: simultaneous gradient descent-ascent, both players stepping from the
      same point. Gradients to ``x`` and to everything else are unchanged. ``False``
      gives plain gradients, for the reference's alternating schedule
      (:func:`alternating_step`): an encoder step on views made without a viewmaker
      graph, then fresh views and a viewmaker step on ``-loss`` against the *updated*
      encoder (about twice the cost). The two give the viewmaker the same gradient only
      before the encoder's step and with the same noise.
    * ``freeze_after=None`` - after this many :meth:`step` calls the viewmaker stops
      learning: its parameters get no gradient (and no graph is built for them).

    Give the viewmaker's parameters their own optimizer or parameter group (the paper:
    Adam, lr 1e-3; encoder SGD); :func:`viewmaker_parameters` collects them from any module.
    Parametric: ``sample`` draws the noise, ``apply`` replays it with the current weights.
    Inputs of any float dtype; the network runs in its parameters' dtype (or autocast) and
    the budget in float32; the view has the input's dtype.
    """

    input_layout = "(B, C, H, W)"

    def __init__(
        self,
        channels: int = 3,
        depth: int = 3,
        width: int = 32,
        eps: float = 0.05,
        clamp: bool = False,
        gradient_reversal: bool = True,
        freeze_after: int | None = None,
    ):
        super().__init__()
        self.channels = check_int(channels, "channels", minimum=1)
        self.depth = check_int(depth, "depth", minimum=0)
        width = check_int(width, "width", minimum=1)
        self.eps = check_positive(eps, "eps")
        self.clamp = check_bool(clamp, "clamp")
        self.gradient_reversal = check_bool(gradient_reversal, "gradient_reversal")
        self.freeze_after = (
            None if freeze_after is None else check_int(freeze_after, "freeze_after", minimum=0)
        )
        self.steps = 0
        self.network = ViewmakerNetwork(channels, depth, width)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, depth={self.depth}, eps={self.eps}, clamp={self.clamp}, "
            f"gradient_reversal={self.gradient_reversal}, freeze_after={self.freeze_after}"
        )

    # ------------------------------------------------------------------ training schedule
    def step(self) -> None:
        """Count one training step (call it next to ``optimizer.step()``), for ``freeze_after``."""
        self.steps += 1

    @property
    def frozen(self) -> bool:
        """Whether ``freeze_after`` steps have been taken (a host-side int: no device sync)."""
        return self.freeze_after is not None and self.steps >= self.freeze_after

    def get_extra_state(self) -> dict[str, Any]:
        # The step count is a Python int so that ``frozen`` never reads a device tensor.
        return {"steps": self.steps}

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        steps = state.get("steps") if isinstance(state, Mapping) else None
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(
                f"state_dict: expected extra state {{'steps': int >= 0}}, got {state!r}"
            )
        self.steps = steps

    # ------------------------------------------------------------------ views
    def _check_input(self, x: object) -> torch.Tensor:
        x = check_batch(x, "x", ndim=4, layout=self.input_layout)
        if x.shape[1] != self.channels:
            raise ValueError(
                f"x: expected {self.channels} channels (B, {self.channels}, H, W), got shape {tuple(x.shape)}"
            )
        if min(x.shape[-2:]) < MIN_SIDE:
            raise ValueError(
                f"x: expected H and W >= {MIN_SIDE} (the 9x9 reflection padding), got shape {tuple(x.shape)}"
            )
        weight = self.network.stem.conv.weight
        if x.device != weight.device:
            raise ValueError(
                f"x: expected a tensor on {weight.device} (the viewmaker's device), got one on {x.device}"
            )
        return x

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """Draw the noise channels: ``input_noise`` (B, 1, H, W), ``block_noise`` (B, depth, h, w)."""
        x = self._check_input(x)
        check_generator(generator, x.device)
        batch, _, height, width = x.shape
        dtype = self.network.stem.conv.weight.dtype
        small = ViewmakerNetwork.bottleneck_size(height, width)
        input_noise = rng.uniform(
            (batch, 1, height, width), 0.0, 1.0, device=x.device, generator=generator, dtype=dtype
        )
        block_noise = rng.uniform(
            (batch, self.depth, *small), 0.0, 1.0, device=x.device, generator=generator, dtype=dtype
        )
        return Params(input_noise=input_noise, block_noise=block_noise)

    def perturbation(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The float32 ``delta`` (before clamping) for ``x`` and drawn noise ``params``."""
        x = self._check_input(x)
        input_noise, block_noise = self._check_params(x, params)
        weights = dict(self.network.named_parameters())
        if self.frozen:
            weights = {name: w.detach() for name, w in weights.items()}
        elif self.gradient_reversal and torch.is_grad_enabled():
            weights = dict(zip(weights, _ReverseGradient.apply(*weights.values())))
        inputs = x.to(input_noise.dtype)
        raw = torch.func.functional_call(self.network, weights, (inputs, input_noise, block_noise))
        direction = torch.tanh(raw.float())
        mean_abs = direction.abs().mean(dim=(1, 2, 3), keepdim=True)
        return direction * (self.eps / mean_abs.clamp_min(_MIN_MEAN_ABS))

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The view ``x + delta`` (clamped to [0, 1] when ``clamp``), in ``x``'s dtype."""
        delta = self.perturbation(x, params)
        # Add in float32 at least (half inputs), keeping float64 inputs exact.
        work = torch.promote_types(x.dtype, torch.float32)
        view = x.to(work) + delta.to(work)
        if self.clamp:
            view = view.clamp(0.0, 1.0)
        return view.to(x.dtype)

    def _check_params(
        self, x: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> Sequence[torch.Tensor]:
        if not isinstance(params, Mapping) or set(params) != {"input_noise", "block_noise"}:
            got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
            raise ValueError(
                f"params: expected the keys ['block_noise', 'input_noise'] from sample(), got {got}"
            )
        batch, _, height, width = x.shape
        expected = {
            "input_noise": (batch, 1, height, width),
            "block_noise": (batch, self.depth, *ViewmakerNetwork.bottleneck_size(height, width)),
        }
        for key, shape in expected.items():
            value = params[key]
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                got = (
                    tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                )
                raise ValueError(
                    f"params[{key!r}]: expected shape {shape} for x of shape {tuple(x.shape)}, got {got}"
                )
        return params["input_noise"], params["block_noise"]


def viewmaker_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of every :class:`Viewmaker` inside ``module`` (itself included).

    For a separate optimizer or parameter group, e.g. on a recipe's ``Pipeline``::

        vm_params = viewmaker_parameters(pipeline)
        vm_opt = torch.optim.Adam(vm_params, lr=1e-3)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected an nn.Module, got {type(module).__name__}")
    seen: set[int] = set()
    found = []
    for sub in module.modules():
        if isinstance(sub, Viewmaker):
            for p in sub.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    found.append(p)
    return found


def alternating_step(
    views: nn.Module,
    x: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    encoder_optimizer: torch.optim.Optimizer,
    viewmaker_optimizer: torch.optim.Optimizer,
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the reference's alternating schedule (Tamkin et al. 2021's training code).

    1. Encoder step: two views drawn without a graph through the viewmaker, then
       ``loss(v1, v2)`` minimised by ``encoder_optimizer``.
    2. Viewmaker step: two *fresh* views, ``-loss(v1, v2)`` minimised by
       ``viewmaker_optimizer`` against the encoder as updated by step 1; the parameters of
       ``encoder_optimizer`` are excluded from this backward and keep their gradients of step 1.

    Args:
        views: the view generator holding the viewmaker(s), e.g. a :class:`Viewmaker` or a
            composition; every viewmaker in it needs ``gradient_reversal=False``.
        x: the batch.
        loss: ``loss(v1, v2)``: the user's encoder, projector and objective on two views.
        encoder_optimizer, viewmaker_optimizer: the two players' optimizers (the paper:
            SGD lr 0.03 momentum 0.9 for the encoder, Adam lr 1e-3 for the viewmaker).
        generator: the source of both passes' view noise.

    Returns the detached ``(encoder_loss, viewmaker_loss)``; every viewmaker's ``step()``
    is counted once. Costs two contrastive steps, against one for gradient reversal.

    Examples:
        >>> vm = Viewmaker(depth=1, width=4, gradient_reversal=False)
        >>> encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> def loss(v1, v2):
        ...     return (encoder(v1) - encoder(v2)).square().mean()
        >>> enc_opt = torch.optim.SGD(encoder.parameters(), lr=0.03)
        >>> vm_opt = torch.optim.Adam(vm.parameters(), lr=1e-3)
        >>> encoder_loss, viewmaker_loss = alternating_step(vm, torch.rand(2, 3, 8, 8), loss, enc_opt, vm_opt)
    """
    if not isinstance(views, nn.Module):
        raise TypeError(
            f"views: expected an nn.Module holding a Viewmaker, got {type(views).__name__}"
        )
    makers = [m for m in views.modules() if isinstance(m, Viewmaker)]
    if not makers:
        raise ValueError(
            f"views: expected a module holding a Viewmaker, got {type(views).__name__}"
        )
    if any(m.gradient_reversal for m in makers):
        raise ValueError(
            "views: the alternating schedule needs gradient_reversal=False on every viewmaker "
            "(with reversal, one backward already trains both players)"
        )
    if not callable(loss):
        raise TypeError(f"loss: expected a callable loss(v1, v2), got {type(loss).__name__}")
    with torch.no_grad():
        v1, v2 = views(x, generator=generator), views(x, generator=generator)
    encoder_loss = loss(v1, v2)
    encoder_optimizer.zero_grad(set_to_none=True)
    encoder_loss.backward()
    encoder_optimizer.step()

    encoder_params = [p for group in encoder_optimizer.param_groups for p in group["params"]]
    trainable = [p.requires_grad for p in encoder_params]
    for p in encoder_params:
        p.requires_grad_(False)
    try:
        viewmaker_optimizer.zero_grad(set_to_none=True)
        v1, v2 = views(x, generator=generator), views(x, generator=generator)
        viewmaker_loss = -loss(v1, v2)
        if viewmaker_loss.requires_grad:  # frozen viewmakers build no graph
            viewmaker_loss.backward()
            viewmaker_optimizer.step()
    finally:
        for p, flag in zip(encoder_params, trainable):
            p.requires_grad_(flag)
    for maker in makers:
        maker.step()
    return encoder_loss.detach(), viewmaker_loss.detach()
