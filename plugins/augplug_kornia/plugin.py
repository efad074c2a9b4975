"""Registers the Kornia adapter (kind ``views``, name ``kornia``).

Registration names a ``module:attribute`` path only, so listing plugins imports neither this
adapter's module nor Kornia; Kornia is imported when a ``kornia`` view is first created.
"""

import augplug


@augplug.hookimpl
def augplug_register_views(register):
    register(
        "kornia",
        "augplug_kornia.views:KorniaViews",
        requires=("kornia",),
        hint="pip install '.[kornia]' in an augplug checkout (kornia)",
    )
