"""Gradient regulariser for transformation invariance (Foster, Pukdee & Rainforth, ICLR 2021).

The penalty estimates the conditional variance of the L2-normalised representation
given the input, E_{alpha'} || h(x, alpha') - h(x, alpha) ||^2, where alpha are the
continuous parameters of a parametric view (colour jitter strengths, Spirograph's
nuisance factors) and alpha' fresh draws of them. It is added to a contrastive loss
with weight lambda: 0.1 for natural images (CIFAR), 0.01 for Spirograph; the penalty is
clamped at 1 (CIFAR) or 1000 (Spirograph).

Two estimators, chosen by ``estimator`` (derivation in docs/invariance.md):

* ``"paper"`` - the paper's first-order estimate: a Rademacher vector v, the gradient
  g = d (v . h) / d alpha by double backprop, and ``num_draws`` draws alpha' per
  example; R = mean (g . (alpha' - alpha))^2. Its expectation is E || J (alpha' - alpha) ||^2
  with J = d h / d alpha. The reference differentiates the encoding of view 1 that its
  contrastive loss already computed, so it makes no extra encoder pass, only a double
  backward. This objective does the same when it is given ``h`` and view 0's alpha are
  tensors that require grad (view 0 was rendered from them); otherwise it renders and
  encodes view 0 once more.
* ``"difference"`` - R = mean || h(alpha') - h(alpha) ||^2 with one fresh draw per example:
  a consistent (and unbiased) estimator of the conditional variance itself, of which the
  paper's estimate is the first-order Taylor version. It adds one plain encoder pass over
  B images when it can reuse the pipeline's encoding of view 0, and a pass over 2B
  otherwise (see :meth:`GradientInvariance._difference` on batch norm).

With crops in the view (a continuous param named ``crop_box``) and no ``params``, alpha
is the colour params only (brightness, contrast, saturation, hue), as in the paper,
where crops stay non-differentiable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from augplug import rng
from augplug.checks import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_tensor,
    widen,
)
from augplug.components import Objective, ParametricViewGenerator, Params

__all__ = ["COLOUR_PARAMS", "GradientInvariance"]

ESTIMATORS = ("paper", "difference")
#: The params the paper perturbs when the view also crops: its differentiable colour jitter.
COLOUR_PARAMS = ("brightness", "contrast", "saturation", "hue")


class GradientInvariance(Objective):
    """Penalty on how much the normalised representation moves with the view's continuous params.

    Foster et al. (ICLR 2021). Defaults follow the paper's CIFAR setting: the ``"paper"``
    estimator with ``num_draws=100`` draws of alpha' per example, ``clamp=1.0``
    (use 1000 for Spirograph), ``normalize=True`` (h is L2-normalised). The weight
    lambda (paper: 0.1 CIFAR, 0.01 Spirograph) is the recipe term's ``weight``.

    Args:
        estimator: ``"paper"`` (first order, double backprop) or ``"difference"``.
        num_draws: alpha' draws per example for ``"paper"`` (the paper's 100).
        clamp: upper limit on the penalty; no gradient flows above it, as in the reference.
        normalize: L2-normalise h (the encoder output before the projection head).
        params: names of the continuous params that form alpha. Default: all of the
            generator's ``continuous_params``, except that a generator with a crop
            (a param named ``crop_box``) perturbs only its colour params
            (:data:`COLOUR_PARAMS`), as the paper does; a cropping generator with no colour
            params is an error asking for ``params``. A name also matches a composed
            generator's prefixed name (``"brightness"`` matches ``"1.brightness"``).

    ``forward(encoder, view_generator, x, view_params, h=None, generator=None)``:

    * ``encoder`` - a callable (module) from views to features.
    * ``view_generator`` - a :class:`ParametricViewGenerator`; alpha are the entries of
      ``view_params`` named in its ``continuous_params``.
    * ``view_params`` - the params the pipeline drew for view 0.
    * ``h`` - optional encoder outputs (B, V, ...) whose view 0 is
      ``encoder(view_generator.apply(x, view_params))``, as :class:`augplug.Pipeline`
      passes; reused where that gives the same function (see the estimators).
    * ``generator`` - source of the Rademacher vector and the alpha' draws.

    Returns a float32 scalar (float64 when the representation is float64).

    Examples:
        >>> penalty = GradientInvariance("difference", clamp=1000.0)  # Spirograph
        >>> penalty.estimator, penalty.num_draws
        ('difference', 100)
    """

    #: It runs the user's encoder: keep the caller's autocast (mixed precision) for that pass.
    disable_autocast = False

    def __init__(
        self,
        estimator: str = "paper",
        num_draws: int = 100,
        clamp: float = 1.0,
        normalize: bool = True,
        params: Sequence[str] | None = None,
    ):
        super().__init__()
        if params is not None and (
            isinstance(params, str) or not all(isinstance(p, str) for p in params)
        ):
            raise TypeError(f"params: expected a list of parameter names or None, got {params!r}")
        self.params = None if params is None else tuple(params)
        self.estimator = check_choice(estimator, "estimator", ESTIMATORS)
        self.num_draws = check_int(num_draws, "num_draws", minimum=1)
        self.clamp = check_positive(clamp, "clamp")
        self.normalize = check_bool(normalize, "normalize")

    def extra_repr(self) -> str:
        return (
            f"estimator={self.estimator!r}, num_draws={self.num_draws}, "
            f"clamp={self.clamp}, normalize={self.normalize}, params={self.params}"
        )

    def forward(
        self,
        encoder: Callable[[torch.Tensor], torch.Tensor],
        view_generator: ParametricViewGenerator,
        x: torch.Tensor,
        view_params: Mapping[str, torch.Tensor] | None,
        h: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        names = self._check(encoder, view_generator, x, view_params, h)
        if self.estimator == "paper":
            penalty = self._paper(encoder, view_generator, x, view_params, names, h, generator)
        else:
            penalty = self._difference(encoder, view_generator, x, view_params, names, h, generator)
        # clamp(max=) passes no gradient above the limit, as in the reference.
        return penalty.clamp(max=self.clamp)

    # ----------------------------------------------------------------- helpers
    def alpha_names(self, view_generator: ParametricViewGenerator) -> tuple[str, ...]:
        """The continuous params of ``view_generator`` that this penalty perturbs (see ``params``)."""
        names = tuple(view_generator.continuous_params)
        if not names:
            raise ValueError(
                f"view_generator: {type(view_generator).__name__} has no continuous_params to perturb"
            )
        if self.params is not None:
            chosen = tuple(n for n in names if n in self.params or _leaf(n) in self.params)
            if not chosen:
                raise ValueError(
                    f"params: none of {list(self.params)} is a continuous param of "
                    f"{type(view_generator).__name__}; it has {list(names)}"
                )
            return chosen
        if any(_leaf(n) == "crop_box" for n in names):
            # A crop box in pixels would dominate the first-order term and hit the clamp;
            # the paper's crops are not differentiable, only its colour jitter is.
            chosen = tuple(n for n in names if _leaf(n) in COLOUR_PARAMS)
            if not chosen:
                raise ValueError(
                    f"params: {type(view_generator).__name__} crops (continuous params "
                    f"{list(names)}) and has none of the colour params {list(COLOUR_PARAMS)}; "
                    "name the params to perturb, e.g. params=[...]"
                )
            return chosen
        return names

    def _check(self, encoder, view_generator, x, view_params, h) -> tuple[str, ...]:
        if not callable(encoder):
            raise TypeError(
                f"encoder: expected a callable (a module mapping views to features), got "
                f"{type(encoder).__name__}"
            )
        if not isinstance(view_generator, ParametricViewGenerator) or not getattr(
            view_generator, "is_parametric", True
        ):
            raise TypeError(
                "view_generator: expected a parametric view generator (sample/apply), got "
                f"{type(view_generator).__name__}"
            )
        names = self.alpha_names(view_generator)
        x = check_tensor(x, "x", dtypes=None)
        if x.ndim == 0:
            raise ValueError("x: expected a batch with a leading batch dimension, got a 0-d tensor")
        if view_params is None:
            raise ValueError(
                "view_params: expected the params of view 0, got None (the pipeline passes them "
                "when branch 0's view generator is parametric)"
            )
        missing = [n for n in names if n not in view_params]
        if missing:
            raise ValueError(
                f"view_params: missing continuous params {missing}; have {sorted(view_params)}"
            )
        values = {
            n: check_tensor(view_params[n], f"view_params[{n!r}]", ndim=range(1, 8)) for n in names
        }
        # The batch is the row count most params agree on; a param that disagrees is named.
        batch = Counter(v.shape[0] for v in values.values()).most_common(1)[0][0]
        for name, value in values.items():
            if value.shape[0] != batch:
                raise ValueError(
                    f"view_params[{name!r}]: expected {batch} rows (as the other params), got {value.shape[0]}"
                )
        # The params were drawn for view 0's batch: a batch size that disagrees is x's fault.
        if x.shape[0] != batch:
            raise ValueError(
                f"x: expected {batch} rows (the batch view_params were drawn for), got shape "
                f"{tuple(x.shape)}"
            )
        if h is not None:
            check_tensor(h, "h", ndim=range(3, 8), layout="(B, V, ...)")
            if h.shape[0] != batch:
                raise ValueError(f"h: expected {batch} rows (the batch of x), got {h.shape[0]}")
        return names

    def _normalized(self, h: torch.Tensor) -> torch.Tensor:
        h = widen(h.flatten(1))
        return F.normalize(h, dim=1) if self.normalize else h

    def _represent(self, encoder, view: torch.Tensor) -> torch.Tensor:
        return self._normalized(encoder(view))

    def _fresh_draws(self, view_generator, x, names, count, generator) -> torch.Tensor:
        """``count`` draws of alpha' per example, flattened: (count, B, k).

        ``sample`` is asked for count * B rows of a stride-0 stand-in for ``x`` (it only
        reads the batch's shape, device and dtype), so no copy of ``x`` is made. (A
        :class:`ComposedViews` renders its stages while sampling, so there the stand-in
        does cost count * B rendered inputs.)
        """
        batch = x.shape[0]
        stand_in = x[:1].expand(count * batch, *x.shape[1:])
        with torch.no_grad():
            draws = view_generator.sample(stand_in, generator=generator)
        return _flatten(draws, names).reshape(count, batch, -1)

    def _paper(self, encoder, view_generator, x, view_params, names, h, generator) -> torch.Tensor:
        if h is not None and all(view_params[n].requires_grad for n in names):
            # As the reference: differentiate the encoding the contrastive loss already made.
            alpha = {n: view_params[n] for n in names}
            h_alpha = self._normalized(h[:, 0])
        else:
            alpha = {n: view_params[n].detach().clone().requires_grad_(True) for n in names}
            params = Params({**view_params, **alpha})
            h_alpha = self._represent(encoder, view_generator.apply(x, params))
        signs = rng.rademacher(
            h_alpha.shape, device=h_alpha.device, generator=generator, dtype=h_alpha.dtype
        )
        grads = torch.autograd.grad(
            (signs * h_alpha).sum(), [alpha[n] for n in names], create_graph=True
        )
        slope = widen(torch.cat([g.reshape(x.shape[0], -1) for g in grads], dim=1))  # (B, k)
        delta = (
            self._fresh_draws(view_generator, x, names, self.num_draws, generator)
            - _flatten(alpha, names).detach()
        )
        return ((slope * delta).sum(-1) ** 2).mean()

    def _difference(
        self, encoder, view_generator, x, view_params, names, h, generator
    ) -> torch.Tensor:
        """R = mean || h(alpha') - h(alpha) ||^2, both from the same normalisation statistics.

        An encoder whose output depends on the rest of the batch (batch norm in training
        mode) normalises the pipeline's view 0 with the statistics of both views, and a
        separate pass over the fresh views with theirs: the difference would then carry a
        bias that does not vanish as alpha' -> alpha. So ``h`` is reused only when the
        encoder holds no training-mode batch norm; otherwise views alpha and alpha' are
        encoded together in one pass over 2B images. (A plain function wrapping batch norm
        cannot be inspected: it is treated as per-sample.)
        """
        with torch.no_grad():
            fresh = view_generator.sample(x, generator=generator)
        # Only alpha moves; the view's other params (crop boxes, flips) stay those of view 0.
        params = Params({**view_params, **{n: fresh[n] for n in names}})
        moved = view_generator.apply(x, params)
        if h is not None and not _uses_batch_statistics(encoder):
            h_alpha = self._normalized(h[:, 0])
            h_fresh = self._represent(encoder, moved)
        else:
            both = self._represent(
                encoder, torch.cat([view_generator.apply(x, view_params), moved])
            )
            h_alpha, h_fresh = both.split(x.shape[0])
        return ((h_fresh - h_alpha) ** 2).sum(-1).mean()


def _leaf(name: str) -> str:
    """A composed generator's ``"1.brightness"`` -> ``"brightness"``."""
    return name.rsplit(".", 1)[-1]


def _uses_batch_statistics(encoder: object) -> bool:
    """Whether ``encoder`` normalises with the current batch's statistics (batch norm, training)."""
    if not isinstance(encoder, nn.Module):
        return False
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in encoder.modules()
    )


def _flatten(params: Mapping[str, torch.Tensor], names) -> torch.Tensor:
    rows = params[names[0]].shape[0]
    return torch.cat([widen(params[n].reshape(rows, -1)) for n in names], dim=1)
