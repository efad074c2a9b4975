"""Registers the image views (kind ``views``): the SimCLR / BYOL / colour recipes and single ops.

The implementation is plain batched torch with Kornia's semantics (see
:mod:`augplug_image.functional`), so creating these needs no Kornia at run time.
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
}


@augplug.hookimpl
def augplug_register_views(register):
    for name, attribute in _VIEWS.items():
        register(name, f"augplug_image.views:{attribute}")
