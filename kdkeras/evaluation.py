"""Classification metrics from predicted and true class indices: accuracy, macro-F1,
per-class precision / recall / F1 and the confusion matrix.

The one evaluation function of kdkeras: :func:`kdkeras.evaluate_tflite`, ``kdkeras eval`` and
the report of ``kdkeras run`` all call :func:`classification_metrics`, so a number means the
same everywhere. A class that is never predicted has precision 0 (and never present, recall 0),
as scikit-learn's ``zero_division=0``; macro-F1 averages the F1 of every class of the model.

Example:

>>> m = classification_metrics([0, 0, 1, 2], [0, 1, 1, 2], num_classes=3)
>>> m["accuracy"], round(m["macro_f1"], 4), m["confusion_matrix"]
(0.75, 0.7778, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from kdkeras.validation import check_int

__all__ = ["classification_metrics"]


def classification_metrics(y_true, y_pred, num_classes: int,
                           class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Accuracy, macro-F1, per-class scores and the confusion matrix.

    Args:
        y_true: class indices ``(N,)`` in ``[0, num_classes)``.
        y_pred: predicted class indices ``(N,)``.
        num_classes: int >= 2. Classes of the model (rows and columns of the matrix).
        class_names: optional names, one per class, echoed in ``per_class``.

    Returns:
        dict with ``accuracy``, ``macro_f1`` (floats), ``per_class`` (one dict per class:
        ``class``, ``precision``, ``recall``, ``f1``, ``support``) and ``confusion_matrix``
        (``[true][predicted]`` counts, lists of ints); JSON-ready.

    Raises:
        ValueError: different lengths, no examples, or an index outside the classes.
    """
    num_classes = check_int(num_classes, "num_classes", 2)
    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(y_pred).reshape(-1).astype(np.int64)
    if len(t) != len(p) or len(t) == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and of the same length. Received: "
                         f"{len(t)} and {len(p)}.")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.min() < 0 or a.max() >= num_classes:
            bad = int(a.min() if a.min() < 0 else a.max())
            raise ValueError(f"{name} holds class {bad}, outside [0, {num_classes - 1}].")
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} entries for {num_classes} classes.")
    cm = np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, -1)
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "accuracy": float(tp.sum() / len(t)),
        "macro_f1": float(f1.mean()),
        "per_class": [{"class": names[i], "precision": float(precision[i]),
                       "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
                      for i in range(num_classes)],
        "confusion_matrix": cm.astype(int).tolist(),
    }
