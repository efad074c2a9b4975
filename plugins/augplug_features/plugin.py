"""Registers the feature-space augmenters (kind ``features``); see ``docs/features.md``."""

import augplug


@augplug.hookimpl
def augplug_register_features(register):
    register("noise", "augplug_features.augmenters:GaussianNoise")
    register("mask", "augplug_features.augmenters:DimensionMask")
    register("mixup", "augplug_features.augmenters:FeatureMixup")
    register("extrapolate", "augplug_features.augmenters:PositiveExtrapolation")
    register("nearest_neighbour", "augplug_features.support_queue:NearestNeighbour")
    register("neighbour_mean", "augplug_features.support_queue:NeighbourMean")
