"""The hooks a plugin implements, one per component kind (register-callback style).

A plugin is any module or object with functions marked ``@augplug.hookimpl``::

    import augplug

    @augplug.hookimpl
    def augplug_register_views(register):
        register("my-views", MyViews)                      # a class or factory
        register("lazy-views", "my_pkg.views:LazyViews")   # imported on first use

``register(name, factory, *, requires=(), hint=None)``: ``factory`` is a callable
returning the component, or a ``"module:attribute"`` string imported only when the
component is first described or created. ``requires`` lists importable module names
the component needs; when one is missing the component is listed as unavailable and
creating it raises ``ImportError`` with ``hint`` (e.g. ``pip install 'augplug[audio]'``).
"""

from __future__ import annotations

import pluggy

PROJECT = "augplug"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def augplug_register_views(register):
    """Register view generators (kind ``"views"``)."""


@hookspec
def augplug_register_features(register):
    """Register feature augmenters (kind ``"features"``)."""


@hookspec
def augplug_register_objective(register):
    """Register objectives (kind ``"objective"``)."""


@hookspec
def augplug_register_dataset(register):
    """Register datasets (kind ``"dataset"``)."""
