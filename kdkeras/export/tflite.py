"""Convert a Keras model to a ``.tflite`` file, in one of the quantization modes.

:func:`convert` makes a ``tf.lite.TFLiteConverter`` for the model and lets the mode (looked up in
:data:`~kdkeras.export.modes.QUANTIZATIONS`, see :mod:`kdkeras.export.modes`) configure it and
post-process the result; :func:`export_tflite` writes the bytes to a file.

Models may be tf-keras models (converted with ``from_keras_model``), Keras 3 models (exported
with ``model.export(dir)`` and converted ``from_saved_model``), or a path to a ``.keras`` /
``.h5`` file or a SavedModel directory (read by :func:`kdkeras.models.load_model`). Pruned and
clustered models (TF-MOT ``PruneLowMagnitude`` / ``ClusterWeights`` wrappers) are stripped first
with :func:`kdkeras.compress.strip` (masks applied, wrappers removed, the caller's model
untouched). QAT models (``QuantizeWrapper``) already carry their quantization ranges, so
``int8`` and ``int8_io`` need no representative data for them.

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

import os
import tempfile
from typing import Any, Callable, Optional, Union

import numpy as np

from kdkeras._io import atomic_write_bytes
from kdkeras._keras_kind import is_keras3_model, is_tf_keras_model
from kdkeras.export.calibration import check_inputs, representative_dataset
from kdkeras.export.modes import QUANTIZATIONS, QuantizationMode, get_mode
from kdkeras.export.selfcheck import MIN_AGREEMENT, check_exported
from kdkeras.export.text import (
    finalize_text_file,
    resolve_text_inputs,
    text_feeds,
    text_phone_model,
    text_representative_dataset,
)
from kdkeras.export.tflite_file import TFLITE_IDENTIFIER, check_tflite_file
from kdkeras.models.loading import SavedModelFunction, load_model
from kdkeras.validation import check_int

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------- model kinds


def is_pruned_model(model: Any) -> bool:
    """True when the model holds TF-MOT pruning or clustering wrappers (stripped before export)."""
    from kdkeras.compress import has_clustering_wrappers, has_pruning_wrappers

    return has_pruning_wrappers(model) or has_clustering_wrappers(model)


def is_qat_model(model: Any) -> bool:
    """True when the model holds TF-MOT quantization-aware-training wrappers."""
    from kdkeras.compress import has_quantization_wrappers

    return has_quantization_wrappers(model)


def _strip_pruning(model: Any) -> Any:
    from kdkeras.compress import strip

    return strip(model)


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


def _convert_with(model: Any, mode: QuantizationMode, rep: Optional[Callable], qat: bool) -> bytes:
    """The mode configures the converter, the converter runs, the mode post-processes."""
    with tempfile.TemporaryDirectory(prefix="kdkeras-convert-") as workdir:
        converter = _converter_for(model, workdir)
        mode.configure(converter, rep, qat)
        data = bytes(converter.convert())
    return mode.quantize(data, rep)


def convert(
    model: Any,
    quantization: Union[str, QuantizationMode] = "none",
    representative_data: Any = None,
    *,
    max_calibration_samples: Optional[int] = 500,
    min_agreement: Optional[float] = MIN_AGREEMENT,
    text_inputs: Optional[bool] = None,
) -> bytes:
    """Converts ``model`` to TFLite flatbuffer bytes (no file written).

    Args:
        model: a tf-keras or Keras 3 model, or a path (see :func:`load_model`). Never modified.
        quantization: str or QuantizationMode. A name from :data:`QUANTIZATIONS` (see
            :mod:`kdkeras.export.modes`), or a mode object.
        representative_data: calibration inputs: an array of shape ``(N,) + input_shape``, a list
            of such arrays (one per model input), or a callable yielding lists of batches of one
            (the ``tf.lite`` convention). Required by ``int8``, ``int8_io`` and the static
            ai-edge-quantizer recipes, except for QAT models in the converter modes (see
            :meth:`QuantizationMode.requires_representative_data`).
        max_calibration_samples: Optional[int]. Use at most this many examples (default 500).
        min_agreement: float or None. The converted file is checked before it is returned
            (:mod:`kdkeras.export.selfcheck`): it must load in the LiteRT interpreter, give
            finite outputs on the first calibration examples and agree with ``model``'s top-1
            on at least this share of them (None: only the loading is checked).
        text_inputs: None, True or False. A text student (one int32 ids input ``[batch, T]``,
            see :mod:`kdkeras.export.text`) is exported with the three int32 inputs ``ids``,
            ``mask``, ``segment_ids`` Android text runtimes expect: automatically when None,
            required when True, never when False (the file keeps the single ids input).
            Its ``representative_data`` is the ids array ``(N, T)``.

    Returns:
        The ``.tflite`` bytes.

    Raises:
        ValueError: unknown mode, missing, mis-shaped or non-finite representative data.
        ExportCheckError: (a ValueError) the converted file fails its check.
        TypeError: an object that is not a Keras model or a path.
    """
    mode = get_mode(quantization)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    qat = is_qat_model(model)
    if representative_data is None and mode.requires_representative_data(qat):
        raise ValueError(
            f"quantization={mode.name!r} needs representative_data: full-integer "
            "quantization must measure the range (min/max) of every activation on real "
            "inputs to choose its int8 scale and zero point. Pass "
            "representative_data=x_calib (100-500 training examples, shape (N,) + "
            "input_shape), or use quantization='dynamic' which needs none."
        )
    if max_calibration_samples is not None:
        check_int(max_calibration_samples, "max_calibration_samples", 1)
    if is_pruned_model(model):
        model = _strip_pruning(model)
    layout = resolve_text_inputs(model, text_inputs)
    file_model, reference = model, model
    if layout == "ids":
        file_model = text_phone_model(model)
    elif layout == "phone":  # already three inputs: check it through the ids array
        reference = lambda ids: model(text_feeds(ids), training=False)  # noqa: E731
    rep = None
    if representative_data is not None:
        if layout == "phone" and not callable(representative_data):
            representative_data = np.asarray(representative_data)
            rep = representative_dataset([representative_data] * 3, model,
                                         max_calibration_samples)
        else:
            rep = representative_dataset(representative_data, model, max_calibration_samples)
        if layout is not None:
            rep = text_representative_dataset(rep)
    data = _convert_with(file_model, mode, rep, qat)
    if data[4:8] != TFLITE_IDENTIFIER:  # pragma: no cover - converter contract
        raise RuntimeError(f"The converter returned bytes that are not a TFLite file: {data[:8]!r}")
    if layout is not None:
        data = finalize_text_file(data)
    check_x = (check_inputs(representative_data, model) if layout != "phone" else
               None if callable(representative_data) or representative_data is None
               else np.asarray(representative_data))
    check_exported(data, None if min_agreement is None else reference,
                   None if min_agreement is None else check_x,
                   min_agreement=min_agreement or 0.0,
                   name=f"model {getattr(model, 'name', type(model).__name__)!r} ({mode.name})")
    return data


def export_tflite(
    model: Any,
    path: PathLike,
    quantization: Union[str, QuantizationMode] = "none",
    representative_data: Any = None,
    *,
    max_calibration_samples: Optional[int] = 500,
    min_agreement: Optional[float] = MIN_AGREEMENT,
    text_inputs: Optional[bool] = None,
) -> str:
    """Converts ``model`` and writes the ``.tflite`` file atomically.

    Args:
        model: a tf-keras or Keras 3 model (pruned and QAT models included), or the path of a
            ``.keras`` / ``.h5`` file or SavedModel directory. Never modified.
        path: str. Output file; parent directories are created. An existing file is replaced
            only when the conversion succeeded.
        quantization: str or QuantizationMode. One of :data:`QUANTIZATIONS` names:
            ``"none"``, ``"float16"``, ``"dynamic"``, ``"int8"``, ``"int8_io"``,
            ``"dynamic_wi8_afp32"``, ``"static_wi8_ai8"``, ``"static_wi8_ai16"``; or a mode.
        representative_data: calibration inputs, see :func:`convert`.
        max_calibration_samples: Optional[int]. Use at most this many calibration examples.
        min_agreement: float or None. The check of the converted file, see :func:`convert`;
            a file that fails it is never written.
        text_inputs: None, True or False. Export a text student with the int32 inputs
            ``ids``, ``mask``, ``segment_ids`` (None: when detected), see :func:`convert`.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: unknown mode, missing, mis-shaped or non-finite representative data, a
            ``path`` that is a folder, or a converted file that fails its check.
        OSError: ``path``'s folder cannot be written (naming ``path``).

    Example:

    >>> import numpy as np, kdkeras as kd
    >>> m = kd.keras.Sequential([kd.keras.layers.Input((4,)), kd.keras.layers.Dense(2)])
    >>> kd.export_tflite(m, "/tmp/kd_doc/f32.tflite")
    '/tmp/kd_doc/f32.tflite'
    """
    if os.path.isdir(path):
        raise ValueError(f"path is a folder. Received: path={os.fspath(path)!r}. Give a file name, "
                         f"e.g. {os.path.join(os.fspath(path), 'model.tflite')!r}.")
    data = convert(
        model,
        quantization,
        representative_data,
        max_calibration_samples=max_calibration_samples,
        min_agreement=min_agreement,
        text_inputs=text_inputs,
    )
    return atomic_write_bytes(path, data)


__all__ = [
    "QUANTIZATIONS",  # re-exported from kdkeras.export.modes
    "check_tflite_file",
    "convert",
    "export_tflite",
    "is_keras3_model",
    "is_pruned_model",
    "is_qat_model",
    "is_tf_keras_model",
    "load_model",
]
