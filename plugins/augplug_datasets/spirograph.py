"""Spirograph: a differentiable generative image dataset with known nuisance factors.

From Foster, Pukdee & Rainforth, "Improving Transformation Invariance in Contrastive
Representation Learning" (ICLR 2021). An image is a hypotrochoid drawn with Gaussian
splats in a foreground colour over a background colour. Ten factors, each uniform:

===========  ==============  ==========================================
factor       range           role
===========  ==============  ==========================================
m            U(2, 5)         target (downstream regression)
b            U(0.1, 1.1)     target
sigma        U(0.25, 1)      target (splat width)
fore_r       U(0.4, 1)       target (red channel of the foreground)
h            U(0.5, 2.5)     nuisance (re-drawn for every view)
back_r       U(0, 0.6)       nuisance
fore_g       U(0.4, 1)       nuisance
back_g       U(0, 0.6)       nuisance
fore_b       U(0.4, 1)       nuisance
back_b       U(0, 0.6)       nuisance
===========  ==============  ==========================================

Rendering follows the reference code (ae-foster/invclr, ``data/spirograph.py``), from
which the paper's numbers come, with ``normalisation="reference"`` (the default): the
image's first axis (rows) follows the curve's x coordinate and its second axis y (the
grid of ``torch.meshgrid`` with its default ``"ij"`` indexing), and every **row** is divided
by its own maximum (+1e-8), because the reference takes the max twice over the same
axis. ``normalisation="global"`` divides the whole image by its maximum, as the paper's
text describes. (augplug before this option rendered the global max with rows
following y, the transpose; ``benchmarks/results/invariance.md`` says which its runs used.)

Design: a view must share its image's targets and re-draw only the nuisance, and the
targets cannot be read back from pixels. So :class:`SpirographViews` takes the
**(B, 4) target batch** (columns m, b, sigma, fore_r; :func:`stack_targets` builds it
from a dataset's targets) as its input ``x`` and renders a fresh image per call. The
dataset's ``inputs`` are the rendered (N, 3, 32, 32) images (with their own nuisance),
for evaluation without views.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from augplug import rng
from augplug.checks import (
    check_batch,
    check_choice,
    check_device,
    check_int,
    check_same_batch,
    check_same_device,
    check_tensor,
)
from augplug.components import MultiTaskDataset, ParametricViewGenerator, Params, Task

__all__ = [
    "FACTOR_RANGES",
    "NORMALISATIONS",
    "NUISANCE",
    "TARGETS",
    "SpirographViews",
    "render_spirograph",
    "spirograph",
    "stack_targets",
]

TARGETS: tuple[str, ...] = ("m", "b", "sigma", "fore_r")
NUISANCE: tuple[str, ...] = ("h", "back_r", "fore_g", "back_g", "fore_b", "back_b")
FACTOR_RANGES: dict[str, tuple[float, float]] = {
    "m": (2.0, 5.0),
    "b": (0.1, 1.1),
    "sigma": (0.25, 1.0),
    "fore_r": (0.4, 1.0),
    "h": (0.5, 2.5),
    "back_r": (0.0, 0.6),
    "fore_g": (0.4, 1.0),
    "back_g": (0.0, 0.6),
    "fore_b": (0.4, 1.0),
    "back_b": (0.0, 0.6),
}

NUM_POINTS = 40  # points on the curve, t in linspace(0, 2 pi, 40)
IMAGE_SIZE = 32  # the raster is IMAGE_SIZE x IMAGE_SIZE ...
EXTENT = 6.0  # ... over [-EXTENT, EXTENT]^2
SPLAT_CUTOFF = 40.0  # largest exponent evaluated: exp(-40) ~ 4e-18
_SPLIT_STREAMS = {"train": 0, "test": 1}
_PAPER_SIZES = {"train": 100_000, "test": 20_000}
_RENDER_CHUNK = 4096  # images rendered at once: bounds the (chunk, 40, 32, 32) splat tensor
NORMALISATIONS = ("reference", "global")


def render_spirograph(
    factors: Mapping[str, torch.Tensor], normalisation: str = "reference"
) -> torch.Tensor:
    """Render (B, 3, 32, 32) images from the ten factors, each a (B,) tensor.

    Differentiable in every factor. Computed in float32 (float64 stays float64) and
    returned in the factors' dtype. Rows follow the curve's x coordinate and columns its
    y coordinate, both from -6 to 6, as in the reference code. ``normalisation``:
    ``"reference"`` divides each row by its own maximum (+1e-8), exactly as the reference
    code; ``"global"`` divides the image by its maximum (+1e-8), as the paper's text.
    """
    check_choice(normalisation, "normalisation", NORMALISATIONS)
    missing = [name for name in (*TARGETS, *NUISANCE) if name not in factors]
    if missing:
        raise ValueError(f"factors: missing {missing}; expected all of {[*TARGETS, *NUISANCE]}")
    first = check_tensor(factors["m"], "factors['m']", ndim=1, layout="(B,)")
    for name in (*TARGETS, *NUISANCE):
        value = check_tensor(factors[name], f"factors[{name!r}]", ndim=1, layout="(B,)")
        check_same_batch("factors['m']", first, f"factors[{name!r}]", value)
        check_same_device("factors['m']", first, f"factors[{name!r}]", value)
    out_dtype = first.dtype
    work = torch.float64 if out_dtype == torch.float64 else torch.float32
    f = {name: factors[name].to(work)[:, None] for name in (*TARGETS, *NUISANCE)}
    m, b, h, sigma = f["m"], f["b"], f["h"], f["sigma"]

    t = torch.linspace(0.0, 2.0 * math.pi, NUM_POINTS, device=first.device, dtype=work)
    # The hypotrochoid of the paper, sampled at 40 points.
    curve_x = (m - h) * torch.cos(t) + h * torch.cos((m - h) * t / b)  # (B, 40)
    curve_y = (m - h) * torch.sin(t) - h * torch.sin((m - h) * t / b)
    grid = torch.linspace(-EXTENT, EXTENT, IMAGE_SIZE, device=first.device, dtype=work)

    # Squared distances separate over the axes, so the (B, 40, 32, 32) splat is one
    # broadcast product of two (B, 40, 32) factors: exp(-dy^2/s) * exp(-dx^2/s).
    # Exponents are capped at SPLAT_CUTOFF: the capped terms are below 1e-17 of the peak,
    # and without the cap their products underflow into denormals, which are ~25x slower
    # on CPUs.
    def splat(coordinate: torch.Tensor) -> torch.Tensor:  # (B, 40) -> (B, 40, 32)
        exponent = (grid - coordinate[:, :, None]) ** 2 / sigma[:, :, None]
        return torch.exp(-exponent.clamp(max=SPLAT_CUTOFF))

    along_x, along_y = splat(curve_x), splat(curve_y)
    intensity = torch.einsum("bpi,bpj->bij", along_x, along_y) / NUM_POINTS  # (B, 32, 32)
    # The reference's v.max(-1, keepdim=True)[0].max(-1, keepdim=True)[0] is a per-row max.
    peak_dims = (2,) if normalisation == "reference" else (1, 2)
    intensity = intensity / (intensity.amax(dim=peak_dims, keepdim=True) + 1e-8)

    fore = torch.cat([f["fore_r"], f["fore_g"], f["fore_b"]], dim=1)[
        :, :, None, None
    ]  # (B, 3, 1, 1)
    back = torch.cat([f["back_r"], f["back_g"], f["back_b"]], dim=1)[:, :, None, None]
    image = intensity[:, None] * fore + (1.0 - intensity[:, None]) * back
    return image.to(out_dtype)


def stack_targets(targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The (B, 4) input of :class:`SpirographViews` from a ``{task: (B,)}`` targets dict."""
    missing = [name for name in TARGETS if name not in targets]
    if missing:
        raise ValueError(f"targets: missing {missing}; expected {list(TARGETS)}")
    return torch.stack([targets[name] for name in TARGETS], dim=1)


class SpirographViews(ParametricViewGenerator):
    """Re-renders Spirograph images with freshly drawn nuisance factors (Foster et al., 2021).

    Input ``x``: the (B, 4) targets (m, b, sigma, fore_r), e.g. ``stack_targets(targets)``.
    Output: (B, 3, 32, 32) images in ``x``'s dtype. Params: the six nuisance factors
    (h, back_r, fore_g, back_g, fore_b, back_b), each (B,) and uniform over its range in
    :data:`FACTOR_RANGES`; ``apply`` is differentiable in all of them (and in ``x``), so
    they are the ``continuous_params`` the ``gradient_invariance`` objective perturbs.
    ``normalisation``: ``"reference"`` (default, the reference code's per-row max) or
    ``"global"`` (the paper text's image max); see :func:`render_spirograph`.
    """

    input_layout = "(B, 4) targets m, b, sigma, fore_r"
    continuous_params = NUISANCE

    def __init__(self, normalisation: str = "reference"):
        super().__init__()
        self.normalisation = check_choice(normalisation, "normalisation", NORMALISATIONS)

    def extra_repr(self) -> str:
        return f"normalisation={self.normalisation!r}"

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        return check_tensor(x, "x", ndim=2, shape=(None, len(TARGETS)), layout=self.input_layout)

    def example_input(
        self, batch: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(batch, 4) targets uniform over their ranges: the input ``augplug.testing`` feeds."""
        low, high = (torch.tensor([FACTOR_RANGES[n][i] for n in TARGETS]) for i in (0, 1))
        return low + (high - low) * torch.rand(batch, len(TARGETS), generator=generator)

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        self._check_input(x)
        # Drawn in float32 (float64 for float64 x) so low-precision inputs get exact ranges.
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        return Params(
            {
                name: rng.uniform(
                    (x.shape[0],),
                    *FACTOR_RANGES[name],
                    device=x.device,
                    generator=generator,
                    dtype=dtype,
                )
                for name in NUISANCE
            }
        )

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self._check_input(x)
        missing = [name for name in NUISANCE if name not in params]
        if missing:
            raise ValueError(f"params: missing {missing}; expected {list(NUISANCE)}")
        factors = {name: x[:, i] for i, name in enumerate(TARGETS)}
        for name in NUISANCE:
            value = check_batch(params[name], f"params[{name!r}]", ndim=1, layout="(B,)")
            check_same_batch("x", x, f"params[{name!r}]", value)
            factors[name] = value  # rendered in float32 whatever x's dtype
        return render_spirograph(factors, self.normalisation)


def spirograph(
    split: str = "train",
    size: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    normalisation: str = "reference",
) -> MultiTaskDataset:
    """The Spirograph dataset (Foster et al., 2021): (N, 3, 32, 32) images, four regression tasks.

    ``split``: ``"train"`` or ``"test"`` (independent draws for the same ``seed``).
    ``size``: number of images; default the paper's 100,000 train / 20,000 test.
    Factors are drawn on the CPU from ``seed`` (so the dataset is identical on every
    device) and rendered on ``device`` in chunks. Tasks ``m``, ``b``, ``sigma``,
    ``fore_r``: (N,) raw targets. Feed ``stack_targets(targets)`` to the ``spirograph``
    views to make training views. ``normalisation``: ``"reference"`` (default) or
    ``"global"``, as :func:`render_spirograph`; give the views the same one.
    """
    check_choice(normalisation, "normalisation", NORMALISATIONS)
    check_choice(split, "split", tuple(_SPLIT_STREAMS))
    size = _PAPER_SIZES[split] if size is None else check_int(size, "size", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype!r}")
    device = check_device(device)
    # One stream per (seed, split): the two splits never share draws.
    generator = torch.Generator().manual_seed(2 * seed + _SPLIT_STREAMS[split])
    # One row of ten factors per image, so a larger dataset extends a smaller one.
    names = (*TARGETS, *NUISANCE)
    low = torch.tensor([FACTOR_RANGES[n][0] for n in names], dtype=torch.float64)
    high = torch.tensor([FACTOR_RANGES[n][1] for n in names], dtype=torch.float64)
    rows = rng.uniform(
        (size, len(names)), low, high, device="cpu", generator=generator, dtype=torch.float64
    )
    rows = rows.to(device=device, dtype=dtype)
    factors = {name: rows[:, i] for i, name in enumerate(names)}
    images = torch.cat(
        [
            render_spirograph(
                {name: value[start : start + _RENDER_CHUNK] for name, value in factors.items()},
                normalisation,
            )
            for start in range(0, size, _RENDER_CHUNK)
        ]
    )
    tasks = [Task(name, "regression", 1) for name in TARGETS]
    return MultiTaskDataset(images, {name: factors[name] for name in TARGETS}, tasks)
