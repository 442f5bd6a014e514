"""``kdkeras.losses``: the public names of the distillation losses (defined in
:mod:`kdkeras.distill.losses`), for ``import kdkeras.losses`` and configs.

>>> import kdkeras.losses as L
>>> L.DISTILLATION_LOSSES.names()
['kl', 'logits_mse', 'soft_target_mse']
"""

from kdkeras.distill.losses import (  # noqa: F401
    DISTILLATION_LOSSES,
    CallableLoss,
    DistillationLoss,
    HintLoss,
    KLDivergence,
    LogitsMSE,
    SoftTargetMSE,
    as_distillation_loss,
    feature_distance,
    get,
    kl_divergence,
    logits_mse,
    soft_target_mse,
)

__all__ = [
    "DistillationLoss",
    "as_distillation_loss",
    "kl_divergence",
    "soft_target_mse",
    "logits_mse",
    "feature_distance",
    "KLDivergence",
    "SoftTargetMSE",
    "LogitsMSE",
    "CallableLoss",
    "HintLoss",
    "DISTILLATION_LOSSES",
    "get",
]
