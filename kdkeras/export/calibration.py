"""Representative (calibration) data for integer quantization, checked against the model.

Full-integer modes measure the range of every activation on real inputs. The user passes an
array ``(N,) + input_shape`` (or one array per model input, or the ``tf.lite`` callable);
:func:`representative_dataset` checks it against the model's inputs, so a wrong shape fails
here with both shapes named instead of deep inside the converter, and returns the callable the
converter and ai-edge-quantizer take.

Example:

>>> import numpy as np, kdkeras as kd
>>> m = kd.keras.Sequential([kd.keras.layers.Input((4,)), kd.keras.layers.Dense(3)])
>>> rep = representative_dataset(np.zeros((10, 4)), m, max_samples=3)
>>> [(b[0].shape, b[0].dtype.name) for b in rep()]
[((1, 4), 'float32'), ((1, 4), 'float32'), ((1, 4), 'float32')]
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional

import numpy as np

from kdkeras.models.loading import input_shapes
from kdkeras.validation import shape_fits


def _model_input_dtypes(model: Any) -> Optional[List[np.dtype]]:
    """Numpy dtypes of a Keras model's inputs, or None when unknown (e.g. a SavedModel path)."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return None
    try:
        # tf-keras tensors carry a tf.DType (``as_numpy_dtype``), Keras 3 ones a string.
        return [np.dtype(getattr(t.dtype, "as_numpy_dtype", t.dtype)) for t in inputs]
    except Exception:  # noqa: BLE001
        return None


def _as_input_list(data: Any) -> List[np.ndarray]:
    if isinstance(data, (list, tuple)):
        return [np.asarray(a) for a in data]
    if isinstance(data, dict):
        raise TypeError(
            "representative_data as a dict is not supported. Received: dict with keys "
            f"{sorted(data)}. Pass an array (or a list of arrays, one per model input)."
        )
    return [np.asarray(data)]


def representative_dataset(data: Any, model: Any, max_samples: Optional[int]) -> Callable:
    """A callable yielding ``[x_i]`` batches of one example, the ``tf.lite`` convention.

    Float arrays become float32; integer arrays (token ids) take the model input's integer
    dtype when it is known (the calibrator refuses int64 ids for an int32 input).

    Args:
        data: an array ``(N,) + input_shape``, a list of such arrays (one per model input), or
            a callable, returned as it is.
        model: the model to be converted (a Keras model or a
            :class:`~kdkeras.models.SavedModelFunction`); its inputs give the expected shapes.
        max_samples: Optional[int]. Keep at most this many examples.

    Raises:
        ValueError: a wrong number of arrays, a per-example shape the model does not take,
            arrays of different lengths or no examples (naming both shapes).
        TypeError: a dict.
    """
    if callable(data):
        return data
    arrays = _as_input_list(data)
    expected = input_shapes(model)
    if expected is not None and len(expected) != len(arrays):
        raise ValueError(
            f"representative_data has {len(arrays)} input array(s) but the model has "
            f"{len(expected)} input(s) with per-example shapes {expected}. Pass one array per "
            "model input."
        )
    n = None
    for i, a in enumerate(arrays):
        if a.ndim == 0 or a.shape[0] == 0:
            raise ValueError(
                f"representative_data must hold at least one example. Received: shape={a.shape}."
            )
        if expected is not None:
            exp = expected[i]
            got = tuple(a.shape[1:])
            if not shape_fits(exp, got):
                raise ValueError(
                    f"representative_data has the wrong shape: per-example shape {got} (array "
                    f"shape {a.shape}) but the model input expects {exp} (batch axis first: "
                    f"(N,) + {exp}). Reshape your calibration data to (N,) + {exp}."
                )
        if n is not None and a.shape[0] != n:
            raise ValueError(
                "representative_data arrays have different lengths. Received: "
                f"{[x.shape[0] for x in arrays]}. Pass arrays with the same number of examples."
            )
        n = a.shape[0]
    if max_samples is not None:
        arrays = [a[:max_samples] for a in arrays]
    for i, a in enumerate(arrays):
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            bad = np.argwhere(~np.isfinite(a))
            where = f" (array {i})" if len(arrays) > 1 else ""
            raise ValueError(
                f"representative_data{where} holds {len(bad)} NaN or infinite value(s), the "
                f"first in example {int(bad[0][0])}. Calibration would give the file broken "
                "int8 ranges: pass finite examples, preprocessed like the training data.")
    arrays = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in arrays]
    # The calibrator feeds the arrays as they are and refuses a dtype other than the input's:
    # int64 token ids (numpy's default integer) for an int32 Embedding input fail with
    # "Got value of type INT64 but expected type INT32". Integer data takes the input's
    # integer dtype.
    dtypes = _model_input_dtypes(model)
    if dtypes is not None and len(dtypes) == len(arrays):
        arrays = [
            a.astype(d) if a.dtype.kind in "iu" and d.kind in "iu" and a.dtype != d else a
            for a, d in zip(arrays, dtypes)
        ]

    def gen() -> Iterable[List[np.ndarray]]:
        for j in range(arrays[0].shape[0]):
            yield [a[j : j + 1] for a in arrays]

    return gen


def check_inputs(data: Any, model: Any) -> Optional[np.ndarray]:
    """The calibration examples the converted file is checked on: the single input array of
    ``data`` as float32 (or its integer dtype), None for a callable, several inputs or none."""
    if data is None or callable(data) or isinstance(data, dict):
        return None
    arrays = _as_input_list(data)
    if len(arrays) != 1 or arrays[0].ndim == 0:
        return None
    a = arrays[0]
    return a.astype(np.float32) if a.dtype.kind == "f" else a


__all__ = ["representative_dataset", "check_inputs"]
