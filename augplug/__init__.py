"""augplug: composable augmentation, feature augmentation and objectives for self-supervised learning.

The verbs::

    views = augplug.create("views", "simclr", size=32)
    loss_fn = augplug.create("objective", "infonce", temperature=0.2)
    augplug.available("views"); augplug.describe("views", "simclr")
    pipeline = augplug.build(recipe_dict)   # or augplug.load_recipe("recipe.toml")

Every component is a plugin found through the ``augplug`` entry-point group; see
:mod:`augplug.hookspecs` for writing one.
"""

from augplug.components import (
    ComposedViews,
    FeatureAugmenter,
    MultiTaskDataset,
    Objective,
    ParametricViewGenerator,
    Params,
    Task,
    ViewGenerator,
)
from augplug.hookspecs import hookimpl
from augplug.recipe import Pipeline, PipelineOutput, RecipeError, build, load_recipe
from augplug.registry import (
    ComponentNotFoundError,
    DuplicateComponentError,
    available,
    create,
    describe,
    plugins,
    register_plugin,
)

__version__ = "0.1.0"

__all__ = [
    "ComponentNotFoundError",
    "ComposedViews",
    "DuplicateComponentError",
    "FeatureAugmenter",
    "MultiTaskDataset",
    "Objective",
    "ParametricViewGenerator",
    "Params",
    "Pipeline",
    "PipelineOutput",
    "RecipeError",
    "Task",
    "ViewGenerator",
    "__version__",
    "available",
    "build",
    "create",
    "describe",
    "hookimpl",
    "load_recipe",
    "plugins",
    "register_plugin",
]
