"""kdkeras: distill a big Keras model into a small one, compress it, export it to TFLite.

``kdkeras.keras`` is tf-keras (Keras 2), the Keras that the TensorFlow Model Optimization
Toolkit accepts. Build students with it:

>>> import kdkeras as kd
>>> keras = kd.keras
>>> keras.__name__
'tf_keras'
"""

__version__ = "0.1.0"

import tf_keras as keras  # noqa: E402  (explicit: never depends on TF_USE_LEGACY_KERAS)

from kdkeras import losses  # noqa: E402
from kdkeras.data import digits, fashion_mnist, load_corpus  # noqa: E402
from kdkeras.distill import (  # noqa: E402
    Distiller,
    Teacher,
    TrainingDivergedError,
    TopKShards,
    cache_teacher_logits,
    cache_top_k_shards,
    load_teacher_logits,
    transformer_hints,
)
from kdkeras.models import (  # noqa: E402
    build_bert_classifier,
    build_cnn_student,
    build_cnn_teacher,
    build_gpt_student,
    build_gpt_teacher,
    build_mlp_student,
    build_transformer_student,
    init_from_teacher,
)
from kdkeras import compress  # noqa: E402
from kdkeras.compress import cluster, prune, quantize_aware, sparsity_report, strip  # noqa: E402
from kdkeras import export  # noqa: E402
from kdkeras.export import (  # noqa: E402
    benchmark_tflite,
    evaluate_tflite,
    export_android,
    export_tflite,
    export_causal_lm,
    inspect_tflite,
)
from kdkeras.generation import generate, perplexity  # noqa: E402

__all__ = [
    "__version__",
    "keras",
    "losses",
    "Distiller",
    "TrainingDivergedError",
    "Teacher",
    "cache_teacher_logits",
    "load_teacher_logits",
    "cache_top_k_shards",
    "TopKShards",
    "fashion_mnist",
    "digits",
    "load_corpus",
    "build_cnn_teacher",
    "build_cnn_student",
    "build_mlp_student",
    "build_transformer_student",
    "build_gpt_student",
    "build_gpt_teacher",
    "build_bert_classifier",
    "init_from_teacher",
    "transformer_hints",
    "compress",
    "prune",
    "strip",
    "cluster",
    "quantize_aware",
    "sparsity_report",
    "export",
    "export_tflite",
    "evaluate_tflite",
    "benchmark_tflite",
    "inspect_tflite",
    "export_android",
    "export_causal_lm",
    "perplexity",
    "generate",
]
