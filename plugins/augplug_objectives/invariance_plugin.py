"""Registers the gradient_invariance objective (Foster, Pukdee & Rainforth, ICLR 2021)."""

import augplug


@augplug.hookimpl
def augplug_register_objective(register):
    register("gradient_invariance", "augplug_objectives.invariance:GradientInvariance")
