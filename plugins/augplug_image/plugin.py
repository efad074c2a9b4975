"""Registers the image views (kind ``views``): the SimCLR / BYOL / colour recipes and single ops.

Kornia semantics, fused plain-torch kernels (see :mod:`augplug_image.functional`): creating
or running these imports no Kornia. Each single op is one :class:`augplug_image.views.ImageOp`
class, registered as is.
"""

import augplug

_VIEWS = {
    "simclr": "SimCLRViews",
    "byol": "BYOLViews",
    "colour": "ColourViews",
    "random_resized_crop": "RandomResizedCrop",
    "horizontal_flip": "HorizontalFlip",
    "colour_jitter": "ColourJitter",
    "grayscale": "Grayscale",
    "gaussian_blur": "GaussianBlur",
    "solarize": "Solarize",
    "random_affine": "RandomAffine",
    "random_erasing": "RandomErasing",
    "posterize": "Posterize",
}


@augplug.hookimpl
def augplug_register_views(register):
    for name, attribute in _VIEWS.items():
        register(name, f"augplug_image.views:{attribute}")
    register("multicrop", "augplug_image.multicrop:MultiCropViews")
