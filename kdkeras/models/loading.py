"""The one model loader: ``.keras`` / ``.h5`` files, SavedModel folders, keras-hub preset folders.

Every place that opens a saved model (teachers, export, ``kdkeras eval``, the pipeline) calls
:func:`load_model`, so each format is read one way and fails with one message.

* ``.keras`` / ``.h5`` / ``.hdf5``: tf-keras first (inside TF-MOT's pruning and quantization
  scopes, so pruned and QAT students load), then Keras 3.
* A folder with ``metadata.json``: a keras-hub preset written by ``task.save_to_preset(dir)``,
  loaded offline with the task class named in its ``task.json``.
* A folder with ``saved_model.pb``: a :class:`SavedModelFunction` (its ``serving_default``
  signature as a callable; export converts the folder itself).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

__all__ = ["load_model", "SavedModelFunction", "KERAS_SUFFIXES", "model_format", "input_shapes"]

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
PathLike = Union[str, os.PathLike]


class SavedModelFunction:
    """A SavedModel folder, called through its ``serving_default`` signature.

    Attributes:
        path: str. The folder (what the TFLite converter reads).
        name: str. The folder name, for messages and reports.
    """

    def __init__(self, path: PathLike):
        import tensorflow as tf

        self.path = os.fspath(path)
        self.name = Path(self.path).name
        self._loaded = tf.saved_model.load(self.path)
        self._signature = getattr(self._loaded, "signatures", {}).get("serving_default")
        if self._signature is None and not callable(self._loaded):
            raise ValueError(
                f"The SavedModel has no serving_default signature and is not callable. "
                f"Received: path={self.path!r}. Save it with tf.saved_model.save(model, path) "
                "or model.export(path).")

    @property
    def input_specs(self) -> Optional[List[Tuple[str, Any]]]:
        """``[(name, tf.TensorSpec)]`` of the serving signature, sorted by name (None: none)."""
        if self._signature is None:
            return None
        return sorted(self._signature.structured_input_signature[1].items())

    @property
    def input_shapes(self) -> Optional[List[tuple]]:
        """Per-example input shapes (no batch axis)."""
        specs = self.input_specs
        return None if specs is None else [tuple(s.shape[1:]) for _, s in specs]

    def __call__(self, x):
        import tensorflow as tf

        if self._signature is None:
            return self._loaded(x)
        (name, spec), *rest = self.input_specs
        if rest:
            raise ValueError(
                f"The SavedModel at {self.path!r} takes {len(rest) + 1} inputs; kdkeras calls "
                "single-input SavedModels. Load it with tf.saved_model.load and wrap it in a "
                "function of one argument.")
        out = self._signature(**{name: tf.cast(tf.convert_to_tensor(x), spec.dtype)})
        return out if len(out) != 1 else next(iter(out.values()))

    def __repr__(self) -> str:
        return f"SavedModelFunction({self.path!r})"


def input_shapes(model: Any) -> Optional[List[tuple]]:
    """Per-example input shapes (no batch axis, ``None`` for any size) of a Keras model or a
    :class:`SavedModelFunction`; None when unknown."""
    if isinstance(model, SavedModelFunction):
        return model.input_shapes
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return None
    try:
        return [tuple(None if d is None else int(d) for d in t.shape[1:]) for t in inputs]
    except (TypeError, ValueError):
        return None


def model_format(path: PathLike) -> str:
    """``"keras_hub_preset"``, ``"saved_model"``, or the file suffix without its dot."""
    p = Path(path)
    if p.is_dir():
        return "keras_hub_preset" if (p / "metadata.json").exists() else "saved_model"
    return p.suffix.lstrip(".") or "keras"


def load_model(path: PathLike) -> Any:
    """Loads a saved model (uncompiled) from a file or a folder.

    Args:
        path: str or PathLike. A ``.keras`` / ``.h5`` file, a SavedModel folder or a keras-hub
            preset folder.

    Returns:
        A tf-keras model, a Keras 3 model, a keras-hub task, or a :class:`SavedModelFunction`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unsupported file type, a folder that is neither a SavedModel nor a
            keras-hub preset, a preset holding only a backbone, or a file neither Keras reads
            (with each one's reason).

    Example:

    >>> import os, tempfile, kdkeras as kd
    >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
    >>> kd.build_mlp_student((4,), 3, hidden=()).save(path)
    >>> type(load_model(path)).__module__.split(".")[0]
    'tf_keras'
    """
    p = Path(path)
    where = f"path={os.fspath(path)!r}"
    if not p.exists():
        raise FileNotFoundError(
            f"Model not found. Received: {where}. Pass a .keras or .h5 file, a SavedModel "
            "folder or a keras-hub preset folder.")
    if p.is_dir():
        if (p / "metadata.json").is_file():
            return _load_keras_hub_preset(p)
        if (p / "saved_model.pb").is_file():
            return SavedModelFunction(p)
        raise ValueError(
            f"The folder is neither a SavedModel (no saved_model.pb) nor a keras-hub preset (no "
            f"metadata.json). Received: {where}. Pass a .keras / .h5 file, a SavedModel folder "
            "or a keras-hub preset folder.")
    if p.suffix.lower() not in KERAS_SUFFIXES:
        raise ValueError(
            f"Unsupported model file type {p.suffix or '(none)'!r}. Received: {where}. Pass a "
            ".keras or .h5 file, a SavedModel folder or a keras-hub preset folder.")
    errors = []
    for loader in (_load_tf_keras, _load_keras3):
        try:
            return loader(str(p))
        except Exception as e:  # noqa: BLE001 - the next format is tried, then all reasons shown
            errors.append(f"{loader.__doc__}: {type(e).__name__}: {str(e)[:200]}")
    raise ValueError(f"Could not load a model from {p}. " + " | ".join(errors))


def _load_tf_keras(path: str):
    """tf-keras"""
    import tf_keras

    scopes = []
    try:
        import tensorflow_model_optimization as tfmot

        scopes = [tfmot.sparsity.keras.prune_scope(), tfmot.quantization.keras.quantize_scope()]
    except ImportError:  # pragma: no cover - TF-MOT is in install_requires
        pass
    with contextlib.ExitStack() as stack:
        for s in scopes:
            stack.enter_context(s)
        return tf_keras.models.load_model(path, compile=False)


def _load_keras3(path: str):
    """Keras 3"""
    import keras

    return keras.saving.load_model(path, compile=False)


def _load_keras_hub_preset(path: Path):
    """The keras-hub task saved in the preset folder ``path`` (no download).

    ``task.json`` names the task class by its registered Keras name; importing keras_hub
    registers every class, so public Keras API finds it (``Task.from_preset`` refuses the base
    class, the concrete class loads locally).
    """
    where = f"path={str(path)!r}"
    try:
        import keras
        import keras_hub  # noqa: F401  (registers the task classes)
    except ImportError as e:  # pragma: no cover - keras-hub is in install_requires
        raise ValueError(
            f"{path} is a keras-hub preset folder (it has metadata.json), but keras-hub is not "
            f"installed: pip install keras-hub. Received: {where}") from e
    task_json = path / "task.json"
    if task_json.is_file():
        name = json.loads(task_json.read_text()).get("registered_name", "")
        task_cls = keras.saving.get_registered_object(name)
        if task_cls is None:
            raise ValueError(
                f"The keras-hub preset names task class {name!r}, which this keras-hub does not "
                f"know. Received: {where}. Upgrade keras-hub or re-save the preset.")
        return task_cls.from_preset(str(path))
    backbone = "a backbone"
    config = path / "config.json"
    if config.is_file():
        backbone = json.loads(config.read_text()).get("registered_name", backbone)
    raise ValueError(
        f"The keras-hub preset at {path} holds only a backbone ({backbone}), which returns "
        "features, not logits. A teacher needs a classifier task preset: build one with "
        "task = keras_hub.models.XClassifier(backbone=backbone, num_classes=..., "
        "preprocessor=...) (e.g. TextClassifier, ImageClassifier), fine-tune it, then "
        f"task.save_to_preset(dir). Received: {where}")
