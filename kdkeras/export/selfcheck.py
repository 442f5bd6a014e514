"""What :func:`~kdkeras.export.convert` checks on the file it made, before anyone writes it:
it loads in the LiteRT interpreter, gives finite outputs, and agrees with its Keras model.

Sequence outputs ``[N, T, V]`` (a causal language model's logits) are compared per position:
the top-1 token at every real position (int ids ``x`` that are not padding id 0) counts as one
prediction.

Int8 calibration on broken data (one NaN pixel in a hundred images) gives a file that loads
and runs but agrees with its model on no example; this check turns that into an error instead
of a file that ships.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Optional

import numpy as np

from kdkeras.export.evaluate import predict_keras, predict_tflite, top1

__all__ = ["ExportCheckError", "check_exported", "MIN_AGREEMENT"]

#: Default minimum top-1 agreement between the file and its model on the check batch.
MIN_AGREEMENT = 0.8
#: Examples of the calibration data used for the check.
CHECK_EXAMPLES = 64


class ExportCheckError(ValueError):
    """The converted file does not load, gives NaN/inf, or disagrees with its model."""


def _confident(ref: np.ndarray) -> np.ndarray:
    """Examples whose Keras top-1 is not a near-tie (a tie may flip under any quantization)."""
    ref = ref.reshape(len(ref), -1)
    if ref.shape[1] < 2:
        return np.ones(len(ref), bool)
    part = np.sort(ref, axis=1)
    margin = part[:, -1] - part[:, -2]
    spread = float(np.ptp(ref)) or 1.0
    return margin > 0.05 * spread


def _predictions(out: np.ndarray, ref: np.ndarray, x: np.ndarray):
    """Rows to compare and what they are: one per example, or one per real position for
    outputs ``[N, T, V]``."""
    if out.ndim < 3 or out.shape != ref.shape:
        return out, ref, "examples"
    real = np.ones(out.shape[:2], bool)
    if x.ndim == 2 and x.dtype.kind in "iu" and x.shape == out.shape[:2]:
        real = x != 0  # padding id 0: not a token the model is asked about
    width = int(np.prod(out.shape[2:]))
    rows = out.shape[:2] + (width,)
    return out.reshape(rows)[real], ref.reshape(rows)[real], "token positions"


def check_exported(data: bytes, model: Any = None, x: Optional[np.ndarray] = None, *,
                   min_agreement: float = MIN_AGREEMENT, name: str = "the converted model",
                   ) -> Dict[str, Any]:
    """Checks freshly converted ``.tflite`` bytes.

    Args:
        data: bytes. The converted file.
        model: the Keras model (or callable) it came from; None skips the agreement check.
        x: np.ndarray or None. Inputs to run (the first calibration examples); None skips the
            output checks (only loading is checked).
        min_agreement: float. Minimum top-1 agreement with ``model`` on the confident examples
            of ``x`` (near-ties are not counted); per real position for outputs ``[N, T, V]``.
        name: str. What the messages call the model.

    Returns:
        dict with ``n`` (examples run), ``agreement`` (None when not measured).

    Raises:
        ExportCheckError: the file does not load, an output is NaN/inf, or the agreement is
            below ``min_agreement``; the message says what to check.
    """
    fd, path = tempfile.mkstemp(suffix=".tflite", prefix="kdkeras-check-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            from ai_edge_litert.interpreter import Interpreter

            Interpreter(model_path=path).allocate_tensors()
        except Exception as e:  # noqa: BLE001 - the interpreter raises several types
            raise ExportCheckError(f"The file converted from {name} does not load in the LiteRT "
                                   f"interpreter: {str(e).splitlines()[0][:200]}") from None
        if x is None or len(x) == 0:
            return {"n": 0, "agreement": None}
        x = x[:CHECK_EXAMPLES]
        out = predict_tflite(path, x)
    finally:
        os.unlink(path)
    bad = ~np.isfinite(out)
    if bad.any():
        raise ExportCheckError(
            f"The file converted from {name} gives NaN or infinite outputs on "
            f"{int(bad.reshape(len(out), -1).any(1).sum())} of {len(out)} calibration examples. "
            "Check the model and the calibration data for NaN/inf, or export with "
            "quantization='none' to see whether quantization causes it.")
    if model is None:
        return {"n": int(len(x)), "agreement": None}
    ref = np.asarray(predict_keras(model, x), np.float32)
    out, ref, what = _predictions(out, ref, x)
    keep = _confident(ref)
    if keep.sum() < 8:
        return {"n": int(len(x)), "agreement": None}
    agreement = float(np.mean(top1(out)[keep] == top1(ref)[keep]))
    if agreement < min_agreement:
        raise ExportCheckError(
            f"The file converted from {name} agrees with its model on only "
            f"{100 * agreement:.1f}% of {int(keep.sum())} calibration {what} (minimum "
            f"{100 * min_agreement:.0f}%). The quantization broke it: check the calibration "
            "data (preprocessed like the training data, no NaN/inf), use more of it, or try "
            "quantization='dynamic'.")
    return {"n": int(len(x)), "agreement": agreement}
