"""Registers the photo-based multi-task datasets ``digits-on-photos`` and ``shapes-on-photos``."""

import augplug

_HINT = (
    "install the demo extra: pip install '.[demo]' in an augplug checkout, or make install"
    " (the bundled digits and photos of scikit-learn / scikit-image)"
)


@augplug.hookimpl
def augplug_register_dataset(register):
    for name, factory in (
        ("digits-on-photos", "digits_on_photos"),
        ("shapes-on-photos", "shapes_on_photos"),
    ):
        register(
            name, f"augplug_datasets.photos:{factory}", requires=("sklearn", "skimage"), hint=_HINT
        )
