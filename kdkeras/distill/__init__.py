"""The core of kdkeras: the :class:`Distiller`, its losses, teachers and the teacher-logit cache.

This package never imports the extensions (:mod:`kdkeras.compress`, :mod:`kdkeras.export`);
they plug into ``Distiller.fit`` through :mod:`kdkeras.distill.hooks`.
"""

from kdkeras.distill import losses
from kdkeras.distill.distiller import Distiller
from kdkeras.distill.guard import TrainingDivergedError
from kdkeras.distill.hooks import register_fit_callbacks
from kdkeras.distill.logit_cache import (
    cache_teacher_logits,
    load_teacher_logits,
    save_teacher_logits,
    teacher_logits_for,
)
from kdkeras.distill.topk_shards import (
    TopKShards,
    cache_top_k_shards,
    fingerprint_arrays,
    fingerprint_tokens,
    fingerprint_weights,
)
from kdkeras.distill.topk_sampled import sampled_top_k_targets
from kdkeras.distill.sequence_kd import teacher_continuations
from kdkeras.distill.teachers import EnsembleTeacher, Teacher, as_teacher, load_teacher
from kdkeras.distill.mixing import CutMix, MixUp
from kdkeras.distill.transformer_kd import transformer_hints, uniform_layer_map
from kdkeras.distill.view_cache import ViewCache, cache_teacher_views
from kdkeras.distill.views import ShiftFlip

__all__ = [
    "Distiller",
    "TrainingDivergedError",
    "Teacher",
    "EnsembleTeacher",
    "as_teacher",
    "load_teacher",
    "cache_teacher_logits",
    "teacher_logits_for",
    "save_teacher_logits",
    "load_teacher_logits",
    "register_fit_callbacks",
    "ShiftFlip",
    "MixUp",
    "CutMix",
    "ViewCache",
    "cache_teacher_views",
    "TopKShards",
    "cache_top_k_shards",
    "sampled_top_k_targets",
    "fingerprint_weights",
    "fingerprint_tokens",
    "fingerprint_arrays",
    "teacher_continuations",
    "transformer_hints",
    "uniform_layer_map",
    "losses",
]
