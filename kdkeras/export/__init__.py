"""Export to TFLite and measure the exported file: accuracy, latency, size, contents.

Modules: :mod:`~kdkeras.export.modes` (the quantization modes, each configuring the converter),
:mod:`~kdkeras.export.calibration` (representative data), :mod:`~kdkeras.export.tflite`
(conversion), :mod:`~kdkeras.export.evaluate` (accuracy of the file),
:mod:`~kdkeras.export.bench` (latency), :mod:`~kdkeras.export.tflite_info` (contents and size),
:mod:`~kdkeras.export.android` (an app-ready bundle; a MediaPipe drop-in for images through
:mod:`~kdkeras.export.mediapipe_bundle` and :mod:`~kdkeras.export.mediapipe_adapter`, for text
through :mod:`~kdkeras.export.mediapipe_text`, both run in the second environment of
:mod:`~kdkeras.export.mediapipe_env`), :mod:`~kdkeras.export.text` (text
students as int32 ``ids``, ``mask``, ``segment_ids`` inputs), :mod:`~kdkeras.export.lm`
(causal language models: ``ids`` -> ``logits``, decoding over the file, an app bundle).

>>> from kdkeras.export import QUANTIZATIONS
>>> QUANTIZATIONS.names()[:5]
['dynamic', 'dynamic_wi8_afp32', 'float16', 'int8', 'int8_io']
"""

from kdkeras.export.android import export_android
from kdkeras.export.bench import BenchmarkResult, benchmark_keras, benchmark_tflite
from kdkeras.export.evaluate import evaluate_tflite, predict_keras, predict_tflite, top1
from kdkeras.export.lm import (
    TFLiteLM,
    export_causal_lm,
    export_lm_bundle,
    tflite_next_logits,
    tflite_perplexity,
)
from kdkeras.export.litert_lm import export_litert_lm, run_litert_lm
from kdkeras.export.mediapipe_adapter import rgb_adapter
from kdkeras.export.mediapipe_bundle import check_mediapipe, read_mediapipe_metadata
from kdkeras.export.mediapipe_env import (
    MediaPipeError,
    MediaPipeUnavailable,
    create_mediapipe_env,
    mediapipe_status,
)
from kdkeras.export.mediapipe_text import check_mediapipe_text
from kdkeras.export.modes import (
    QUANTIZATIONS,
    AIEdgeQuantizerMode,
    ConverterMode,
    QuantizationMode,
)
from kdkeras.export.text import TEXT_INPUTS, text_phone_model
from kdkeras.export.tflite import check_tflite_file, convert, export_tflite, load_model
from kdkeras.export.tflite_info import (
    format_inspection,
    gzip_size,
    inspect_tflite,
    weight_sparsity,
)

__all__ = [
    "QUANTIZATIONS",
    "TEXT_INPUTS",
    "QuantizationMode",
    "ConverterMode",
    "AIEdgeQuantizerMode",
    "BenchmarkResult",
    "MediaPipeError",
    "MediaPipeUnavailable",
    "TFLiteLM",
    "benchmark_keras",
    "benchmark_tflite",
    "check_mediapipe",
    "check_mediapipe_text",
    "check_tflite_file",
    "create_mediapipe_env",
    "convert",
    "evaluate_tflite",
    "export_android",
    "export_causal_lm",
    "export_litert_lm",
    "run_litert_lm",
    "export_lm_bundle",
    "export_tflite",
    "format_inspection",
    "gzip_size",
    "inspect_tflite",
    "load_model",
    "mediapipe_status",
    "predict_keras",
    "predict_tflite",
    "read_mediapipe_metadata",
    "rgb_adapter",
    "text_phone_model",
    "tflite_next_logits",
    "tflite_perplexity",
    "top1",
    "weight_sparsity",
]
