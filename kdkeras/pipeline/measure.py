"""Measurements of ``kdkeras run``: test accuracy, parameter counts, file sizes and latency of
every model, as the rows of ``report.json``.

Every score is measured on the held-out test split; a ``.tflite`` row on the file itself. A row
is ``{"name", "format", "accuracy", "macro_f1", "agreement_with_keras", "params",
"nonzero_params", "size_bytes", "gzip_bytes", "latency_ms", "path"}`` plus its ``per_class``
scores and ``confusion_matrix`` (:func:`kdkeras.evaluation.classification_metrics`, the one
evaluation function); ``agreement_with_keras`` is the top-1 agreement of a ``.tflite`` file with
the Keras model it was converted from (None for a Keras row).

Example:

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "a.bin").write_bytes(b"0" * 1000)
>>> file_sizes(folder)["size_bytes"]
1000
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from kdkeras.data import SplitData
from kdkeras.evaluation import classification_metrics
from kdkeras.models.loading import model_format
from kdkeras.pipeline import stages as S


SCORES = ("accuracy", "macro_f1", "per_class", "confusion_matrix")


def accuracy(model, x, y, batch_size: int = 1024) -> float:
    """Top-1 test accuracy of a Keras model (or a callable returning logits)."""
    from kdkeras.export import predict_keras, top1

    return float(np.mean(top1(predict_keras(model, x, batch_size)) == np.reshape(y, -1)))


def scores(predicted, data: SplitData) -> Dict[str, Any]:
    """Accuracy, macro-F1, per-class scores and confusion matrix of predicted class indices on
    the test split."""
    return classification_metrics(np.reshape(data.y_test, -1), predicted, data.num_classes,
                                  data.class_names)


def keras_scores(model, data: SplitData, batch_size: int = 1024) -> Dict[str, Any]:
    """:func:`scores` of a Keras model (or a callable returning logits) on the test split."""
    from kdkeras.export import predict_keras, top1

    return scores(top1(predict_keras(model, data.x_test, batch_size)), data)


def files_in(path: Path) -> List[Path]:
    """``path`` itself, or every file under the folder ``path``, sorted."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def file_sizes(path: str | os.PathLike) -> Dict[str, int]:
    """``size_bytes`` and ``gzip_bytes`` (level 9) of a file, or summed over a folder."""
    from kdkeras.export import gzip_size

    size = gz = 0
    for f in files_in(Path(path)):
        raw = f.read_bytes()
        size += len(raw)
        gz += gzip_size(raw)
    return {"size_bytes": size, "gzip_bytes": gz}


def param_counts(model) -> Dict[str, Optional[int]]:
    """``params`` and ``nonzero_params``: the model's own weights (TF-MOT bookkeeping excluded)."""
    try:
        from kdkeras.compress import sparsity_report

        rep = sparsity_report(model)
        return {"params": rep.total_params, "nonzero_params": rep.total_nonzeros}
    except TypeError:  # not a tf-keras model: count every weight
        weights = [np.asarray(w) for w in getattr(model, "weights", [])]
        if not weights:
            return {"params": None, "nonzero_params": None}
        return {"params": int(sum(w.size for w in weights)),
                "nonzero_params": int(sum(np.count_nonzero(w) for w in weights))}


def keras_latency_ms(model, runs: int, input_shape=None) -> Optional[float]:
    """Median batch-1 latency of a Keras model (None when it takes raw strings)."""
    from kdkeras.export import benchmark_keras

    if getattr(model, "preprocessor", None) is not None or not hasattr(model, "inputs"):
        return None
    try:
        return float(benchmark_keras(model, input_shape=input_shape, warmup=5, runs=runs).median_ms)
    except ValueError:  # e.g. several inputs: the report says "–" rather than failing
        return None


def keras_row(name: str, model, path: str | os.PathLike, data: SplitData, runs: int,
              metrics: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """One ``report.json`` row for a Keras model, measured on the test split (``metrics``:
    its :func:`scores` when already known)."""
    metrics = keras_scores(model, data) if metrics is None else metrics
    return {
        "name": name,
        "format": Path(path).suffix.lstrip(".") or "keras",
        **{k: metrics[k] for k in SCORES},
        "agreement_with_keras": None,
        **param_counts(model),
        **file_sizes(path),
        "latency_ms": keras_latency_ms(model, runs, tuple(data.x_train.shape[1:])),
        "path": str(path),
    }


def teacher_row(teacher, path: str | os.PathLike, data: SplitData, batch_size: int,
                runs: int) -> Dict[str, Any]:
    """The teacher's row: its file ``path`` (saved, or the one it was loaded from), its test
    accuracy from its logits (raw strings for a keras-hub task)."""
    model = getattr(teacher, "model", teacher)
    logits = S.teacher_logits(teacher, data, batch_size, test=True)
    row = keras_row("teacher", model, path, data, runs, metrics=scores(logits.argmax(-1), data))
    row["format"] = model_format(path)
    return row


def tflite_row(name: str, path: str, source_model, metrics: Dict[str, Any],
               runs: int) -> Dict[str, Any]:
    """One ``report.json`` row for a ``.tflite`` file: the scores (``metrics``, from
    :func:`kdkeras.evaluate_tflite` on the file, with its ``agreement_with_keras`` with
    ``source_model``) and latency of the file itself."""
    from kdkeras.export import benchmark_tflite

    return {
        "name": name,
        "format": "tflite",
        **{k: metrics[k] for k in SCORES},
        "agreement_with_keras": metrics["agreement_with_keras"],
        **param_counts(source_model),
        **file_sizes(path),
        "latency_ms": float(benchmark_tflite(path, num_threads=1, warmup=10, runs=runs).median_ms),
        "path": str(path),
    }
