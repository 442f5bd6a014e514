"""Export to TFLite and measure the exported file: accuracy, latency, size, contents.

>>> from kdkeras.export import QUANTIZATIONS
>>> QUANTIZATIONS.names()[:5]
['dynamic', 'dynamic_wi8_afp32', 'float16', 'int8', 'int8_io']
"""

from kdkeras.export.android import export_android
from kdkeras.export.bench import BenchmarkResult, benchmark_keras, benchmark_tflite
from kdkeras.export.evaluate import evaluate_tflite, predict_tflite
from kdkeras.export.tflite_info import format_inspection, inspect_tflite
from kdkeras.export.tflite import (
    QUANTIZATIONS,
    QuantizationMode,
    check_tflite_file,
    convert,
    export_tflite,
    load_model,
)

__all__ = [
    "QUANTIZATIONS",
    "QuantizationMode",
    "BenchmarkResult",
    "benchmark_keras",
    "benchmark_tflite",
    "check_tflite_file",
    "convert",
    "evaluate_tflite",
    "export_android",
    "export_tflite",
    "format_inspection",
    "inspect_tflite",
    "load_model",
    "predict_tflite",
]
