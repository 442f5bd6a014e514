"""Models: student (and teacher) builders, transformer students and BERT-family teachers,
GPT-style causal language models (tf-keras student, keras-hub teacher), initialisation of a
student from its teacher, and the one loader of saved models."""

from kdkeras.models.anchor import anchor
from kdkeras.models.bert import build_bert_classifier
from kdkeras.models.gpt import (
    ReversibleEmbedding,
    build_gpt_student,
    build_gpt_teacher,
    gpt_teacher_from_preset,
)
from kdkeras.models.init_from_teacher import InitReport, init_from_teacher
from kdkeras.models.loading import SavedModelFunction, load_model
from kdkeras.models.students import (
    BUILDERS,
    build_bigru_student,
    build_cnn_student,
    build_cnn_teacher,
    build_mlp_student,
    build_resnet_teacher,
    build_text_student,
    build_text_teacher,
)
from kdkeras.models.transformer import build_transformer_student, vocabulary_cut

__all__ = [
    "BUILDERS",
    "InitReport",
    "anchor",
    "build_bert_classifier",
    "build_bigru_student",
    "build_gpt_student",
    "build_gpt_teacher",
    "gpt_teacher_from_preset",
    "ReversibleEmbedding",
    "build_transformer_student",
    "init_from_teacher",
    "vocabulary_cut",
    "SavedModelFunction",
    "build_cnn_student",
    "build_cnn_teacher",
    "build_mlp_student",
    "build_resnet_teacher",
    "build_text_student",
    "build_text_teacher",
    "load_model",
]
