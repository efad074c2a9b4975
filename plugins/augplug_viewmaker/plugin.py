"""Registers the viewmaker view generator (kind ``"views"``, name ``"viewmaker"``)."""

import augplug


@augplug.hookimpl
def augplug_register_views(register):
    register("viewmaker", "augplug_viewmaker.viewmaker:Viewmaker")
