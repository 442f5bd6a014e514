"""Convert a Keras model to a ``.tflite`` file, in one of the quantization modes.

Modes (the names a config or the ``--quantization`` flag takes, looked up in
:data:`QUANTIZATIONS`):

* ``none``: float32; numerically the Keras model (to ~1e-6).
* ``float16``: float16 weights (half the size), float32 compute.
* ``dynamic``: int8 weights, activations quantized on the fly; no calibration.
* ``int8``: full integer ops, float32 input/output; needs representative data (not for QAT).
* ``int8_io``: full integer ops *and* int8 input/output, for microcontrollers; needs
  representative data (not for QAT models).
* ``dynamic_wi8_afp32``: ai-edge-quantizer recipe, int8 weights, float32 activations.
* ``static_wi8_ai8``: ai-edge-quantizer recipe, int8 weights and activations, int8
  input/output; needs representative data.
* ``static_wi8_ai16``: ai-edge-quantizer recipe, int8 weights, int16 activations (and int16
  input/output); needs representative data.

The first five go through :class:`tf.lite.TFLiteConverter`; the last three convert to float32
first, then quantize the flatbuffer with ai-edge-quantizer (``pip install ai-edge-quantizer``).

Models may be tf-keras models (converted with ``from_keras_model``), Keras 3 models (exported
with ``model.export(dir)`` and converted ``from_saved_model``), or a path to a ``.keras`` /
``.h5`` file or a SavedModel directory. Pruned and clustered models (TF-MOT
``PruneLowMagnitude`` / ``ClusterWeights`` wrappers) are stripped first with
:func:`kdkeras.compress.strip` (masks applied, wrappers removed, the caller's model untouched).
QAT models (``QuantizeWrapper``) already carry their quantization ranges, so ``int8`` and
``int8_io`` need no representative data for them.

Files are written atomically: a temporary file in the target directory is renamed over the
target only once the conversion succeeded, so a failure never leaves a broken or half file.

Example:

>>> import numpy as np, kdkeras as kd
>>> from kdkeras.export import export_tflite
>>> m = kd.keras.Sequential([kd.keras.layers.Input((4,)), kd.keras.layers.Dense(3)])
>>> path = export_tflite(m, "/tmp/kd_doc/model.tflite", quantization="int8",
...                      representative_data=np.random.rand(16, 4).astype("float32"))
>>> open(path, "rb").read()[4:8]
b'TFL3'
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, Callable, Iterable, List, Optional, Union

import numpy as np

from kdkeras.registry import Registry
from kdkeras._io import atomic_write_bytes
from kdkeras._keras_kind import is_keras3_model, is_tf_keras_model
from kdkeras.models.loading import SavedModelFunction, load_model

TFLITE_IDENTIFIER = b"TFL3"

PathLike = Union[str, "os.PathLike[str]"]


@dataclasses.dataclass(frozen=True)
class QuantizationMode:
    """One named way to produce a ``.tflite`` file.

    Attributes:
        name: str. The registry name (``"int8"``).
        description: str. One line for ``--help`` and docs.
        backend: str. ``"tflite_converter"`` or ``"ai_edge_quantizer"``.
        needs_representative_data: bool. Whether calibration data is required (QAT models are
            exempt for the converter backend: they carry their own ranges).
        integer_io: bool. Whether the file's input/output tensors are integers.
        recipe: Optional[str]. ai-edge-quantizer recipe function name.
    """

    name: str
    description: str
    backend: str = "tflite_converter"
    needs_representative_data: bool = False
    integer_io: bool = False
    recipe: Optional[str] = None


QUANTIZATIONS = Registry("quantization")
"""Registry of :class:`QuantizationMode` by name; ``QUANTIZATIONS.names()`` lists them."""

for _mode in (
    QuantizationMode("none", "float32, no quantization"),
    QuantizationMode("float16", "float16 weights (2x smaller), float32 compute"),
    QuantizationMode("dynamic", "int8 weights, activations quantized on the fly"),
    QuantizationMode(
        "int8", "full integer ops, float32 input/output", needs_representative_data=True
    ),
    QuantizationMode(
        "int8_io",
        "full integer ops and int8 input/output (microcontrollers)",
        needs_representative_data=True,
        integer_io=True,
    ),
    QuantizationMode(
        "dynamic_wi8_afp32",
        "ai-edge-quantizer: int8 weights, float32 activations",
        backend="ai_edge_quantizer",
        recipe="dynamic_wi8_afp32",
    ),
    QuantizationMode(
        "static_wi8_ai8",
        "ai-edge-quantizer: int8 weights and activations, int8 input/output",
        backend="ai_edge_quantizer",
        needs_representative_data=True,
        integer_io=True,
        recipe="static_wi8_ai8",
    ),
    QuantizationMode(
        "static_wi8_ai16",
        "ai-edge-quantizer: int8 weights, int16 activations",
        backend="ai_edge_quantizer",
        needs_representative_data=True,
        recipe="static_wi8_ai16",
    ),
):
    QUANTIZATIONS.register(_mode.name, _mode)


# --------------------------------------------------------------------------- model kinds


def _layer_class_names(model: Any) -> List[str]:
    names = []
    for layer in getattr(model, "layers", []):
        names.append(type(layer).__name__)
        names.extend(_layer_class_names(layer))
    return names


def is_pruned_model(model: Any) -> bool:
    """True when the model holds TF-MOT pruning or clustering wrappers (stripped before export)."""
    from kdkeras.compress import has_clustering_wrappers, has_pruning_wrappers

    return has_pruning_wrappers(model) or has_clustering_wrappers(model)


def is_qat_model(model: Any) -> bool:
    """True when the model holds TF-MOT quantization-aware-training wrappers."""
    names = _layer_class_names(model)
    return any(n.startswith(("QuantizeWrapper", "QuantizeLayer")) for n in names)


def _strip_pruning(model: Any) -> Any:
    from kdkeras.compress import strip

    return strip(model)


# --------------------------------------------------------------------------- validation


def check_tflite_file(path: PathLike) -> str:
    """Checks that ``path`` is a TFLite flatbuffer ("TFL3" at bytes 4..8) and returns it.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the path, when it is not a TFLite file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"TFLite file not found. Received: path={path!r}. Export one first with "
            "kdkeras.export_tflite(model, path) or `kdkeras export`."
        )
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(
            f"Not a TFLite file: bytes 4..8 are {head[4:8]!r}, expected {TFLITE_IDENTIFIER!r}. "
            f"Received: path={path!r}. Pass a .tflite file written by the TFLite converter "
            "(kdkeras.export_tflite)."
        )
    return path


def _model_input_shapes(model: Any) -> Optional[List[tuple]]:
    """Per-example input shapes (no batch axis), or None when unknown."""
    if isinstance(model, SavedModelFunction):
        return model.input_shapes
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return None
    try:
        return [tuple(None if d is None else int(d) for d in t.shape[1:]) for t in inputs]
    except Exception:  # noqa: BLE001
        return None


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


def _validate_representative_data(data: Any, model: Any, max_samples: Optional[int]) -> Any:
    """Returns a callable yielding ``[x_i]`` batches of one; checks shapes.

    Float arrays become float32; integer arrays (token ids) take the model input's integer
    dtype when it is known.
    """
    if callable(data):
        return data
    arrays = _as_input_list(data)
    expected = _model_input_shapes(model)
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
            ok = len(exp) == len(got) and all(e is None or e == g for e, g in zip(exp, got))
            if not ok:
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


# --------------------------------------------------------------------------- conversion


def _converter_for(model: Any, workdir: str) -> Any:
    import tensorflow as tf

    if isinstance(model, SavedModelFunction):
        return tf.lite.TFLiteConverter.from_saved_model(model.path)
    if is_tf_keras_model(model):
        return tf.lite.TFLiteConverter.from_keras_model(model)
    if is_keras3_model(model):
        saved = os.path.join(workdir, "saved_model")
        model.export(saved, format="tf_saved_model", verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(saved)
    raise TypeError(
        f"Cannot convert an object of type {type(model).__name__}. Pass a tf-keras model, a "
        "Keras 3 model, or the path of a .keras / .h5 file or SavedModel directory."
    )


def _converter_bytes(
    model: Any, mode: QuantizationMode, rep: Optional[Callable], qat: bool
) -> bytes:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="kdkeras-convert-") as workdir:
        conv = _converter_for(model, workdir)
        if mode.name == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif mode.name == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif mode.name in ("int8", "int8_io"):
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if rep is not None:
                conv.representative_dataset = rep
            if not qat:
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if mode.name == "int8_io":
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
        return bytes(conv.convert())


def _aeq_calibration_data(float_bytes: bytes, rep: Callable) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    sigs = Interpreter(model_content=float_bytes).get_signature_list()
    if len(sigs) != 1:
        raise ValueError(
            f"ai-edge-quantizer calibration needs a model with one signature. Received: "
            f"signatures={sorted(sigs)}."
        )
    key = next(iter(sigs))
    names = sigs[key]["inputs"]
    batches = [list(b) for b in rep()]
    # One calibration step over all examples: ai-edge-quantizer 0.10 merges the min/max of
    # successive steps with a moving average, which under-estimates the ranges when each step
    # holds a single example (measured on a Dense(5) model: max output error 0.64-0.79 with
    # one example per step, < 0.01 with one step over all 64).
    merged = {
        n: np.concatenate([np.asarray(b[i]) for b in batches], axis=0) for i, n in enumerate(names)
    }
    return {key: [merged]}


def _aeq_bytes(float_bytes: bytes, mode: QuantizationMode, rep: Optional[Callable]) -> bytes:
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as e:
        raise ImportError(
            f"quantization={mode.name!r} needs ai-edge-quantizer. Install it with "
            "`pip install ai-edge-quantizer` (0.10 works with TF 2.21 and ai-edge-litert 2.3)."
        ) from e
    qt = quantizer.Quantizer(bytearray(float_bytes), getattr(recipe, mode.recipe)())
    calibration = None
    if qt.need_calibration:
        calibration = qt.calibrate(_aeq_calibration_data(float_bytes, rep))
    result = qt.quantize(calibration, enable_progress_report=False)
    return bytes(result.quantized_model)


def convert(
    model: Any,
    quantization: str = "none",
    representative_data: Any = None,
    *,
    max_calibration_samples: Optional[int] = 500,
) -> bytes:
    """Converts ``model`` to TFLite flatbuffer bytes (no file written).

    Args:
        model: a tf-keras or Keras 3 model, or a path (see :func:`load_model`). Never modified.
        quantization: str. A name from :data:`QUANTIZATIONS` (see the module docstring).
        representative_data: calibration inputs: an array of shape ``(N,) + input_shape``, a list
            of such arrays (one per model input), or a callable yielding lists of batches of one
            (the ``tf.lite`` convention). Required by ``int8``, ``int8_io`` and the static
            ai-edge-quantizer recipes, except for QAT models with the converter backend.
        max_calibration_samples: Optional[int]. Use at most this many examples (default 500).

    Returns:
        The ``.tflite`` bytes.

    Raises:
        ValueError: unknown mode, missing or mis-shaped representative data.
        TypeError: an object that is not a Keras model or a path.
    """
    mode = QUANTIZATIONS.get(quantization)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    qat = is_qat_model(model)
    if mode.needs_representative_data and representative_data is None:
        if not (qat and mode.backend == "tflite_converter"):
            raise ValueError(
                f"quantization={quantization!r} needs representative_data: full-integer "
                "quantization must measure the range (min/max) of every activation on real "
                "inputs to choose its int8 scale and zero point. Pass "
                "representative_data=x_calib (100-500 training examples, shape (N,) + "
                "input_shape), or use quantization='dynamic' which needs none."
            )
    if max_calibration_samples is not None and max_calibration_samples < 1:
        raise ValueError(
            "max_calibration_samples must be >= 1 or None. Received: "
            f"max_calibration_samples={max_calibration_samples}"
        )
    if is_pruned_model(model):
        model = _strip_pruning(model)
    rep = None
    if representative_data is not None:
        rep = _validate_representative_data(representative_data, model, max_calibration_samples)
    if mode.backend == "ai_edge_quantizer":
        float_bytes = _converter_bytes(model, QUANTIZATIONS.get("none"), None, qat)
        data = _aeq_bytes(float_bytes, mode, rep)
    else:
        data = _converter_bytes(model, mode, rep, qat)
    if data[4:8] != TFLITE_IDENTIFIER:  # pragma: no cover - converter contract
        raise RuntimeError(f"The converter returned bytes that are not a TFLite file: {data[:8]!r}")
    return data


def export_tflite(
    model: Any,
    path: PathLike,
    quantization: str = "none",
    representative_data: Any = None,
    *,
    max_calibration_samples: Optional[int] = 500,
) -> str:
    """Converts ``model`` and writes the ``.tflite`` file atomically.

    Args:
        model: a tf-keras or Keras 3 model (pruned and QAT models included), or the path of a
            ``.keras`` / ``.h5`` file or SavedModel directory. Never modified.
        path: str. Output file; parent directories are created. An existing file is replaced
            only when the conversion succeeded.
        quantization: str. One of :data:`QUANTIZATIONS` names: ``"none"``, ``"float16"``,
            ``"dynamic"``, ``"int8"``, ``"int8_io"``, ``"dynamic_wi8_afp32"``,
            ``"static_wi8_ai8"``, ``"static_wi8_ai16"``.
        representative_data: calibration inputs, see :func:`convert`.
        max_calibration_samples: Optional[int]. Use at most this many calibration examples.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: unknown mode, missing or mis-shaped representative data.

    Example:

    >>> import numpy as np, kdkeras as kd
    >>> m = kd.keras.Sequential([kd.keras.layers.Input((4,)), kd.keras.layers.Dense(2)])
    >>> kd.export_tflite(m, "/tmp/kd_doc/f32.tflite")
    '/tmp/kd_doc/f32.tflite'
    """
    data = convert(
        model,
        quantization,
        representative_data,
        max_calibration_samples=max_calibration_samples,
    )
    return atomic_write_bytes(path, data)
