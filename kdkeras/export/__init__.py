"""Export to TFLite and measure the exported file: accuracy, latency, size, contents.

Modules: :mod:`~kdkeras.export.modes` (the quantization modes, each configuring the converter),
:mod:`~kdkeras.export.calibration` (representative data), :mod:`~kdkeras.export.tflite`
(conversion), :mod:`~kdkeras.export.evaluate` (accuracy of the file),
:mod:`~kdkeras.export.bench` (latency), :mod:`~kdkeras.export.tflite_info` (contents and size),
:mod:`~kdkeras.export.android` (an app-ready bundle), :mod:`~kdkeras.export.text` (text
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
    "TFLiteLM",
    "benchmark_keras",
    "benchmark_tflite",
    "check_tflite_file",
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
    "predict_keras",
    "predict_tflite",
    "text_phone_model",
    "tflite_next_logits",
    "tflite_perplexity",
    "top1",
    "weight_sparsity",
]
