"""Registers the built-in objectives: ``infonce``, ``byol`` and ``simsiam``."""

import augplug


@augplug.hookimpl
def augplug_register_objective(register):
    register("infonce", "augplug_objectives.infonce:InfoNCE")
    register("byol", "augplug_objectives.cosine:BYOLLoss")
    register("simsiam", "augplug_objectives.cosine:SimSiamLoss")
