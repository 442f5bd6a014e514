"""``kdkeras.losses``: the public names of the distillation losses (defined in
:mod:`kdkeras.distill.losses` and :mod:`kdkeras.distill.hints`), for ``import kdkeras.losses`` and configs.

>>> import kdkeras.losses as L
>>> L.DISTILLATION_LOSSES.names()
['kl', 'logits_mse', 'soft_target_mse']
"""

from kdkeras.distill.hints import HintLoss, attention_kl, feature_distance, value_relation_kl  # noqa: F401
from kdkeras.distill.losses import (  # noqa: F401
    DISTILLATION_LOSSES,
    CallableLoss,
    DistillationLoss,
    KLDivergence,
    LogitsMSE,
    SoftTargetMSE,
    as_distillation_loss,
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
    "attention_kl",
    "value_relation_kl",
    "KLDivergence",
    "SoftTargetMSE",
    "LogitsMSE",
    "CallableLoss",
    "HintLoss",
    "DISTILLATION_LOSSES",
    "get",
]
