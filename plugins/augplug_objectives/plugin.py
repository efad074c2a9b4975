"""Registers the built-in objectives.

``infonce``, ``dcl``/``dclw`` and ``moco`` (contrastive); ``byol`` and ``simsiam``
(negative cosine to a stop-gradient target); ``barlow_twins`` and ``vicreg`` (redundancy
reduction / variance-invariance-covariance); ``dino`` and ``swav`` (cross-entropy to a
centred teacher or to Sinkhorn codes). Modules are imported only when a component is built.
"""

import augplug


@augplug.hookimpl
def augplug_register_objective(register):
    register("infonce", "augplug_objectives.infonce:InfoNCE")
    register("dcl", "augplug_objectives.dcl:DCL")
    register("dclw", "augplug_objectives.dcl:DCLW")
    register("moco", "augplug_objectives.moco:MoCo")
    register("byol", "augplug_objectives.cosine:BYOLLoss")
    register("simsiam", "augplug_objectives.cosine:SimSiamLoss")
    register("barlow_twins", "augplug_objectives.barlow_twins:BarlowTwins")
    register("vicreg", "augplug_objectives.vicreg:VICReg")
    register("dino", "augplug_objectives.dino:DINOLoss")
    register("swav", "augplug_objectives.swav:SwAV")
