"""Registers the spirograph dataset and views (Foster et al., ICLR 2021)."""

import augplug


@augplug.hookimpl
def augplug_register_dataset(register):
    register("spirograph", "augplug_datasets.spirograph:spirograph")


@augplug.hookimpl
def augplug_register_views(register):
    register("spirograph", "augplug_datasets.spirograph:SpirographViews")
