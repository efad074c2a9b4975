"""Multi-crop views (SwAV, Caron et al. 2020; DINO, Caron et al. 2021): a few large global crops
and several small local crops of every image, all per sample and batched.

One call returns the list of views, globals first. Views that share their settings are made
together: their crops are cut from the batch in one warp (``k`` boxes per image, no copy of the
batch) and their colour ops run once over the ``k * B`` crops, so a call costs three pipeline
passes whatever ``n_local`` is (first global, second global, all locals).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch

from augplug import rng
from augplug.checks import check_int, check_interval, check_probability
from augplug.components import Params
from augplug_image.views import (
    ColourJitter,
    GaussianBlur,
    Grayscale,
    HorizontalFlip,
    ImageOp,
    ImageViews,
    RandomResizedCrop,
    Size,
    Solarize,
    _CheckedParams,
    _from_working,
    _size,
    _to_working,
)

__all__ = ["MultiCropViews"]


class MultiCropViews(ImageOp):
    """Multi-crop views: ``n_global`` crops at ``global_size``, then ``n_local`` at ``local_size``.

    Every crop is RandomResizedCrop (ratio 3/4-4/3) + horizontal flip p 0.5 + colour jitter
    0.4/0.4/0.2/0.1 with p 0.8 (fixed order) + grayscale p 0.2 + Gaussian blur sigma 0.1-2 (13
    taps: +-3 sigma at sigma 2), as DINO's ``DataAugmentationDINO``: the first global crop is always
    blurred (p 1.0), the second is blurred with p 0.1 and solarized with p 0.2, local crops are
    blurred with p 0.5; further global crops alternate between the first two settings. The
    defaults (2 x 224 px at scale 0.4-1, 6 x 96 px at scale 0.05-0.4) are lightly's
    ``DINOTransform``; SwAV's split is ``global_scale=(0.14, 1)``, ``local_scale=(0.05, 0.14)``.

    Interface:

    * ``forward(x, *, generator=None) -> list[Tensor]``: ``n_global + n_local`` views, globals
      first; view ``v`` is (B, C, *size of v*), in the input's dtype and memory format.
    * ``sample(x, generator=None) -> Params``: every view's params under ``"<v>.<name>"`` (the
      names of :class:`~augplug_image.views.ImageViews`), each with B rows.
    * ``apply(x, params) -> list[Tensor]``: the views of ``params``; ``forward`` is
      ``apply(x, sample(x, generator))``.
    * ``n_global``, ``n_local``, ``global_size``, ``local_size``, and ``view_sizes`` (the
      (height, width) of every view, in order) to group views by resolution.

    ``continuous_params`` is empty: each crop is differentiable in its params as in
    :class:`~augplug_image.views.ImageViews`, but no regulariser here differentiates a list.

    Args:
        n_global: global crops (default 2).
        n_local: local crops (default 6).
        global_size, local_size: crop sizes, an int or (height, width) (224, 96).
        global_scale, local_scale: area ranges ((0.4, 1), (0.05, 0.4)).
        solarize_p: solarization probability of the second global crop (0.2).

    Examples:
        >>> views = augplug.create("views", "multicrop", global_size=32, local_size=16, n_local=4)
        >>> crops = views(x, generator=torch.Generator().manual_seed(0))  # 2 x 32 px, 4 x 16 px
    """

    needs_rgb = True
    example_kwargs: ClassVar[dict[str, int]] = {"global_size": 12, "local_size": 6, "n_local": 2}

    def __init__(
        self,
        n_global: int = 2,
        n_local: int = 6,
        global_size: Size = 224,
        local_size: Size = 96,
        global_scale: tuple[float, float] = (0.4, 1.0),
        local_scale: tuple[float, float] = (0.05, 0.4),
        solarize_p: float = 0.2,
    ):
        super().__init__()
        self.n_global = check_int(n_global, "n_global", minimum=1)
        self.n_local = check_int(n_local, "n_local", minimum=0)
        self.global_size = _size(global_size, "global_size")
        self.local_size = _size(local_size, "local_size")
        global_scale = check_interval(global_scale, "global_scale", low=1e-6, high=1.0)
        local_scale = check_interval(local_scale, "local_scale", low=1e-6, high=1.0)
        solarize_p = check_probability(solarize_p, "solarize_p")
        settings = [
            (self.global_size, global_scale, 1.0, 0.0),
            (self.global_size, global_scale, 0.1, solarize_p),
            (self.local_size, local_scale, 0.5, 0.0),
        ]
        groups = [list(range(0, self.n_global, 2)), list(range(1, self.n_global, 2))]
        groups.append(list(range(self.n_global, self.n_global + self.n_local)))
        self._groups = [(views, _crop_views(*s)) for views, s in zip(groups, settings) if views]
        self.pipelines = torch.nn.ModuleList(pipeline for _, pipeline in self._groups)

    @property
    def view_sizes(self) -> list[tuple[int, int]]:
        return [self.global_size] * self.n_global + [self.local_size] * self.n_local

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """Every view's params, one RNG call per group of views with equal settings."""
        x = self._check_input(x)
        batch = x.shape[0]
        params = Params()
        for views, pipeline in self._groups:
            shape = (len(views) * batch, pipeline.num_draws)
            draws = rng.uniform(shape, 0.0, 1.0, device=x.device, generator=generator)
            for name, value in pipeline.params_from(draws, x).items():
                for i, view in enumerate(views):
                    params[f"{view}.{name}"] = value[i * batch : (i + 1) * batch]
        return params

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """The views of ``params`` (from :meth:`sample`), globals first."""
        x = self._check_input(x)
        batch = x.shape[0]
        working = _to_working(x)
        out: list[torch.Tensor | None] = [None] * (self.n_global + self.n_local)
        for views, pipeline in self._groups:
            names = [k.split(".", 1)[1] for k in params if k.startswith(f"{views[0]}.")]
            stacked = {
                name: torch.cat([_CheckedParams(params, batch)[f"{v}.{name}"] for v in views])
                for name in names
            }
            rendered = pipeline.render(working, _CheckedParams(stacked, len(views) * batch))
            for view, crops in zip(views, rendered.split(batch)):
                out[view] = _from_working(crops, x)
        return out

    def forward(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        return self.apply(x, self.sample(x, generator=generator))


def _crop_views(
    size: tuple[int, int], scale: tuple[float, float], blur_p: float, solarize_p: float
) -> ImageViews:
    ops: list[ImageOp] = [
        RandomResizedCrop(size, scale),
        HorizontalFlip(0.5),
        ColourJitter(0.4, 0.4, 0.2, 0.1, 0.8),
        Grayscale(0.2),
        # DINO blurs with PIL's radius-sigma Gaussian, which has no kernel size: 13 taps cover
        # +-3 sigma at the largest sigma (2), capped for crops too small for reflect padding.
        GaussianBlur((0.1, 2.0), blur_p, kernel_size=min(13, 2 * min(size) - 1)),
    ]
    if solarize_p > 0:
        ops.append(Solarize(solarize_p))
    return ImageViews(ops)
