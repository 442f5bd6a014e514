"""Accuracy of the exported ``.tflite`` file itself (not of the Keras model it came from).

The file is run with ``ai_edge_litert.interpreter.Interpreter`` (``tf.lite.Interpreter`` is
deprecated), in batches: the input tensor is resized to the batch size, and where a model cannot
be resized (a fixed batch axis baked into a reshape) it falls back to one example at a time.
Integer inputs are quantized with the file's input scale and zero point, integer outputs
dequantized, so callers always pass and receive float arrays.

Example:

>>> import numpy as np, kdkeras as kd
>>> m = kd.keras.Sequential([kd.keras.layers.Input((4,)), kd.keras.layers.Dense(3)])
>>> path = kd.export_tflite(m, "/tmp/kd_doc/eval.tflite")
>>> x = np.random.rand(8, 4).astype("float32"); y = m.predict(x, verbose=0).argmax(-1)
>>> res = kd.evaluate_tflite(path, x, y, keras_model=m)
>>> res["accuracy"], res["n"], res["agreement_with_keras"]
(1.0, 8, 1.0)
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from kdkeras.evaluation import classification_metrics
from kdkeras.export.text import TEXT_INPUTS, text_feeds, text_input_details
from kdkeras.export.tflite_file import check_tflite_file
from kdkeras.models.loading import input_shapes
from kdkeras.validation import check_int, shape_fits


def make_interpreter(path: str, num_threads: Optional[int] = None) -> Any:
    """An ``ai_edge_litert`` interpreter for the checked TFLite file ``path``, tensors allocated.

    Raises:
        ValueError: naming ``path`` when the interpreter cannot load it (truncated, overwritten).
    """
    from ai_edge_litert.interpreter import Interpreter

    path = check_tflite_file(path)
    try:
        interp = Interpreter(model_path=path, num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ValueError(f"The LiteRT interpreter cannot load {path!r}: {first}. The file is "
                         "truncated or corrupt: export it again.") from None
    return interp


def quantize_input(x: np.ndarray, detail: Dict[str, Any]) -> np.ndarray:
    """Casts float ``x`` to the input tensor's dtype, quantizing integer inputs.

    ``q = round(x / scale) + zero_point``, clipped to the dtype's range (TFLite's affine
    quantization). Float inputs are only cast.
    """
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return np.asarray(x, dtype=dtype)
    scale, zero_point = detail["quantization"]
    if not scale:
        return np.asarray(x, dtype=dtype)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(q: np.ndarray, detail: Dict[str, Any]) -> np.ndarray:
    """Float values of an output tensor: ``(q - zero_point) * scale`` for integer outputs."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return np.asarray(q, dtype=np.float32)
    scale, zero_point = detail["quantization"]
    if not scale:
        return np.asarray(q, dtype=np.float32)
    return (np.asarray(q, np.float32) - zero_point) * np.float32(scale)


def _inputs(interp: Any) -> List[Dict[str, Any]]:
    """The input details to feed: the single input, or ``ids``, ``mask``, ``segment_ids``."""
    details = interp.get_input_details()
    return text_input_details(details) or details[:1]


def _feed(interp: Any, x: np.ndarray, resize: bool) -> None:
    """Sets the inputs for the batch ``x`` (ids of a text file give all three inputs)."""
    inputs = _inputs(interp)
    values = list(text_feeds(x).values()) if len(inputs) == 3 else [x]
    if resize:
        for d, v in zip(inputs, values):
            interp.resize_tensor_input(d["index"], list(v.shape), strict=False)
        interp.allocate_tensors()
        inputs = _inputs(interp)
    for d, v in zip(inputs, values):
        interp.set_tensor(d["index"], quantize_input(v, d))


def _run_batches(path: str, x: np.ndarray, batch_size: int) -> np.ndarray:
    interp = make_interpreter(path)
    outs = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        _feed(interp, xb, resize=True)
        interp.invoke()
        out = interp.get_output_details()[0]
        y = dequantize_output(interp.get_tensor(out["index"]), out)
        if y.shape[0] != len(xb):
            raise RuntimeError(f"batch of {len(xb)} gave {y.shape[0]} outputs")
        outs.append(y)
    return np.concatenate(outs, axis=0)


def _run_one_by_one(path: str, x: np.ndarray) -> np.ndarray:
    interp = make_interpreter(path)
    shape = [1] + list(x.shape[1:])
    resize = list(_inputs(interp)[0]["shape"]) != shape  # dynamic non-batch axes
    outs = []
    for i, xi in enumerate(x):
        _feed(interp, xi.reshape(shape), resize=resize and i == 0)
        interp.invoke()
        out = interp.get_output_details()[0]
        outs.append(dequantize_output(interp.get_tensor(out["index"]), out)[0])
    return np.stack(outs, axis=0)


def predict_tflite(path: str, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Float outputs of the ``.tflite`` file for float inputs ``x`` (first output tensor).

    A text file (inputs ``ids``, ``mask``, ``segment_ids``, see :mod:`kdkeras.export.text`)
    is fed from the ids array alone: ``mask = ids != 0``, ``segment_ids = 0``.

    Args:
        path: str. A ``.tflite`` file.
        x: np.ndarray. Float inputs, shape ``(N,) + input_shape`` (int ids ``(N, T)`` for a
            text file).
        batch_size: int. Examples per interpreter call.

    Returns:
        np.ndarray of shape ``(N,) + output_shape``, float32 (dequantized for integer outputs).

    Raises:
        ValueError: not a TFLite file, a model with several inputs, or a wrong input shape.
    """
    path = check_tflite_file(path)
    check_int(batch_size, "batch_size", 1)
    interp = make_interpreter(path)
    inputs = interp.get_input_details()
    if len(inputs) != 1 and text_input_details(inputs) is None:
        raise ValueError(
            f"predict_tflite supports models with one input, or the text inputs "
            f"{list(TEXT_INPUTS)}; this file has {len(inputs)} "
            f"({[d['name'] for d in inputs]}). Received: path={path!r}."
        )
    inputs = _inputs(interp)
    x = np.asarray(x)
    if len(inputs) == 3 and x.dtype.kind not in "iu":
        raise ValueError(
            f"{path!r} is a text model (inputs {list(TEXT_INPUTS)}): pass int token ids of "
            f"shape (N, T). Received: x.dtype={x.dtype}, x.shape={x.shape}.")
    sig = inputs[0].get("shape_signature", inputs[0]["shape"])
    expected = tuple(None if int(d) < 0 else int(d) for d in sig[1:])  # None: any size
    if not shape_fits(expected, x.shape[1:]):
        raise ValueError(
            f"x has per-example shape {tuple(x.shape[1:])} (array shape {x.shape}) but the "
            f"TFLite input expects {expected}. Reshape x to (N,) + {expected}."
        )
    if len(x) == 0:
        raise ValueError(f"x is empty. Received: x.shape={x.shape}. Pass at least one example.")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)))
        raise ValueError(f"x holds {len(bad)} NaN or infinite value(s), the first in example "
                         f"{int(bad[0][0])}. Pass finite inputs, preprocessed like the training data.")
    try:
        return _run_batches(path, x, batch_size)
    except (RuntimeError, ValueError):
        # Resizing is impossible for some graphs (e.g. a reshape to a constant batch of 1).
        return _run_one_by_one(path, x)


def _labels(y: np.ndarray, num_classes: Optional[int] = None) -> np.ndarray:
    """Class indices from integer or one-hot labels, checked against the model's classes."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ValueError(f"y must hold class indices or one-hot rows. Received: y.dtype={y.dtype} "
                         f"(e.g. {y.ravel()[0].item()!r}).")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("y holds NaN or infinite labels. Received: first at index "
                         f"{int(np.argwhere(~np.isfinite(y.reshape(len(y), -1)))[0][0])}.")
    if y.ndim >= 2 and y.shape[-1] > 1:
        if num_classes is not None and y.shape[-1] != num_classes:
            raise ValueError(f"y has one-hot rows of width {y.shape[-1]} but the model has "
                             f"{num_classes} classes. Received: y.shape={y.shape}.")
        return y.argmax(-1)
    flat = y.reshape(len(y))
    if flat.dtype.kind == "f" and not np.all(np.mod(flat, 1) == 0):
        raise ValueError(f"y must hold class indices (whole numbers). Received: e.g. "
                         f"{flat[np.mod(flat, 1) != 0][0]}.")
    flat = flat.astype(np.int64)
    if num_classes is not None and len(flat) and (flat.min() < 0 or flat.max() >= num_classes):
        bad = int(flat.min() if flat.min() < 0 else flat.max())
        raise ValueError(f"Label {bad} is out of range for a model with {num_classes} classes "
                         f"(labels must be in [0, {num_classes - 1}]). Check that y belongs "
                         "to this model's data set.")
    return flat


def top1(outputs: np.ndarray) -> np.ndarray:
    """Predicted class per example: argmax, or ``> 0.5`` for a single (sigmoid) output unit."""
    outputs = np.asarray(outputs).reshape(len(outputs), -1)
    if outputs.shape[1] == 1:
        return (outputs[:, 0] > 0.5).astype(np.int64)
    return outputs.argmax(-1)


def _first_output(out: Any) -> np.ndarray:
    """The first output of a model call as numpy: lists/tuples and dicts give their first item."""
    if isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    return out.numpy() if hasattr(out, "numpy") else np.asarray(out)


def _check_input_shape(model: Any, x: Any) -> None:
    """Refuses ``x`` whose per-example shape the model's (single) input cannot take, in one line
    instead of Keras's trace."""
    shapes = input_shapes(model)
    if not shapes or len(shapes) != 1:
        return
    expected, got = shapes[0], tuple(np.shape(x)[1:])
    if not shape_fits(expected, got):
        name = getattr(model, "name", type(model).__name__)
        raise ValueError(f"The model {name!r} takes inputs of per-example shape {expected}; x has "
                         f"{got} (array shape {np.shape(x)}). Pass data preprocessed for this "
                         "model.")


def predict_keras(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Outputs of a Keras model, or of any callable taking a batch, as one numpy array.

    Models with a ``predict`` method (tf-keras, Keras 3, keras-hub tasks) are run with
    ``model.predict(x, batch_size=batch_size, verbose=0)``; other callables (a loaded SavedModel,
    a ``tf.function``) are called as ``model(x_batch)`` on batches of ``batch_size``. Models
    with several outputs give their first one (the first value of a dict output).

    Args:
        model: a Keras model, or a callable mapping a batch of inputs to outputs.
        x: np.ndarray. Inputs, shape ``(N,) + input_shape``.
        batch_size: int. Examples per call (>= 1).

    Returns:
        np.ndarray of shape ``(N,) + output_shape``.

    Raises:
        ValueError: a bad ``batch_size`` (echoed).
        TypeError: a ``model`` that is neither a model with ``predict`` nor callable.

    Example:

    >>> import numpy as np
    >>> predict_keras(lambda xb: 2 * xb, np.arange(5.0).reshape(5, 1), batch_size=2)[:, 0]
    array([0., 2., 4., 6., 8.])
    """
    check_int(batch_size, "batch_size", 1)
    _check_input_shape(model, x)
    if hasattr(model, "predict"):
        return _first_output(model.predict(x, batch_size=batch_size, verbose=0))
    if not callable(model):
        raise TypeError(
            "predict_keras needs a Keras model or a callable taking a batch of inputs. "
            f"Received: model of type {type(model).__name__}."
        )
    outs = [_first_output(model(x[start : start + batch_size]))
            for start in range(0, max(len(x), 1), batch_size)]
    return np.concatenate(outs, axis=0)


def evaluate_tflite(
    path: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    keras_model: Any = None,
    batch_size: int = 256,
    class_names: Optional[Sequence[str]] = None,
    outputs: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """Accuracy, macro-F1, per-class scores and the confusion matrix of the ``.tflite`` file on
    ``(x, y)`` (:func:`kdkeras.evaluation.classification_metrics`), and agreement with a Keras
    model.

    Args:
        path: str. A ``.tflite`` file (any quantization mode; integer input/output is scaled
            with the file's own quantization parameters).
        x: np.ndarray. Float inputs, shape ``(N,) + input_shape``, preprocessed exactly as for
            the Keras model.
        y: np.ndarray. Integer labels ``(N,)`` or one-hot ``(N, C)``.
        keras_model: optional Keras model, or a callable taking a batch (see
            :func:`predict_keras`); when given, ``agreement_with_keras`` is the fraction of
            examples where both predict the same class.
        batch_size: int. Examples per interpreter call.
        class_names: optional class names for ``per_class``.
        outputs: optional ``predict_tflite(path, x)`` already computed by the caller (the
            file is then not run again).

    Returns:
        dict with ``accuracy`` and ``macro_f1`` (floats in [0, 1]), ``n`` (int),
        ``per_class`` and ``confusion_matrix`` (the file's), ``agreement_with_keras``,
        ``keras_accuracy`` and ``keras_macro_f1`` (floats, or None without ``keras_model``).

    Raises:
        ValueError: ``x`` and ``y`` of different lengths, not a TFLite file, wrong input shape.
    """
    path = check_tflite_file(path)
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(
            f"x and y must have the same number of examples. Received: len(x)={len(x)}, "
            f"len(y)={len(y)}. Pass matching arrays (e.g. x_test, y_test from the same split)."
        )
    out = predict_tflite(path, x, batch_size=batch_size) if outputs is None else np.asarray(outputs)
    width = int(np.prod(out.shape[1:])) if out.ndim > 1 else 1
    labels = _labels(y, 2 if width == 1 else width)
    pred = top1(out)
    classes = 2 if width == 1 else width
    metrics = classification_metrics(labels, pred, classes, class_names)
    result: Dict[str, Any] = {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "n": int(len(x)),
        "agreement_with_keras": None,
        "keras_accuracy": None,
        "keras_macro_f1": None,
        "per_class": metrics["per_class"],
        "confusion_matrix": metrics["confusion_matrix"],
    }
    if keras_model is not None:
        ref = top1(predict_keras(keras_model, x if x.dtype.kind in "iu" else
                                 x.astype(np.float32), batch_size))
        keras_metrics = classification_metrics(labels, ref, classes)
        result["agreement_with_keras"] = float(np.mean(pred == ref))
        result["keras_accuracy"] = keras_metrics["accuracy"]
        result["keras_macro_f1"] = keras_metrics["macro_f1"]
    return result


__all__ = ["evaluate_tflite", "predict_tflite", "predict_keras", "quantize_input",
           "dequantize_output", "top1"]
