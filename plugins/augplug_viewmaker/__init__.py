"""augplug built-in plugin: learned adversarial views (Viewmaker, Tamkin et al. 2021)."""

from augplug_viewmaker.viewmaker import (
    Viewmaker,
    ViewmakerNetwork,
    alternating_step,
    viewmaker_parameters,
)

__all__ = ["Viewmaker", "ViewmakerNetwork", "alternating_step", "viewmaker_parameters"]
