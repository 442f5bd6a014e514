"""Models: student (and teacher) builders, and the one loader of saved models."""

from kdkeras.models.loading import SavedModelFunction, load_model
from kdkeras.models.students import (
    BUILDERS,
    build_cnn_student,
    build_cnn_teacher,
    build_mlp_student,
    build_resnet_teacher,
    build_text_student,
    build_text_teacher,
)

__all__ = [
    "BUILDERS",
    "SavedModelFunction",
    "build_cnn_student",
    "build_cnn_teacher",
    "build_mlp_student",
    "build_resnet_teacher",
    "build_text_student",
    "build_text_teacher",
    "load_model",
]
