"""Teacher adapters: anything that turns inputs into logits, frozen.

A teacher is a tf-keras model, a Keras 3 model (including keras-hub models, on the TensorFlow
backend), a SavedModel, a ``.keras`` / ``.h5`` file, a keras-hub preset directory of a
classifier task, a plain callable, or a weighted list of those (an ensemble). :func:`as_teacher`
wraps each into a :class:`Teacher`, a plain Python object (not a Keras layer), so the teacher's
variables never join the distiller's trainable weights; it is always called with
``training=False``. Files and folders are opened by the one loader,
:func:`kdkeras.models.loading.load_model`.

A keras-hub task with a preprocessor (e.g. a ``TextClassifier`` loaded from a preset) takes raw
inputs, strings for text, only through ``task.predict``: calling the task, as the
:class:`~kdkeras.Distiller` does inside its ``tf.function``, skips the preprocessor. The logit
cache (:mod:`kdkeras.distill.logit_cache`) therefore runs such a teacher with ``task.predict``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
import tf_keras as keras

from kdkeras._keras_kind import is_keras3_model
from kdkeras.models.loading import load_model

__all__ = ["Teacher", "EnsembleTeacher", "as_teacher", "load_teacher", "feature_model",
           "preprocessing_task", "select_output"]


def select_output(out: Any, output: Union[None, str, int, Callable]) -> tf.Tensor:
    """The logits in a model's raw output: a key, an index, a function of it, or the obvious one."""
    if callable(output):
        return output(out)
    if output is not None:
        return out[output]
    if isinstance(out, dict):
        if len(out) == 1:
            return next(iter(out.values()))
        for key in ("logits", "output", "outputs"):
            if key in out:
                return out[key]
        raise ValueError(
            f"The teacher returns a dict with keys {sorted(out)}; say which one holds the logits "
            "with Teacher(model, output='<key>')."
        )
    if isinstance(out, (list, tuple)):
        if len(out) == 1:
            return out[0]
        raise ValueError(
            f"The teacher returns {len(out)} outputs; say which one holds the logits with "
            "Teacher(model, output=<index>)."
        )
    return out


class Teacher:
    """A frozen source of logits.

    Args:
        model: a tf-keras or Keras 3 model, a loaded SavedModel, or a callable ``x -> logits``.
        output: None, str, int or callable. Picks the logits when the model returns a dict or a
            list (a key, an index, or a function of the raw output).
        name: str. Used in messages and reports.

    Calling a teacher runs ``model(x, training=False)``: a keras-hub task gets already
    preprocessed inputs this way (token ids, not strings). Get a task's logits for raw inputs
    with :func:`teacher_logits_for`.

    Example:

    >>> import kdkeras as kd, numpy as np
    >>> t = Teacher(kd.build_mlp_student((4,), 3, hidden=()))
    >>> t(np.zeros((2, 4), "float32")).shape
    TensorShape([2, 3])
    """

    def __init__(self, model: Any, output: Union[None, str, int, Callable] = None, name=None):
        if model is None or not callable(model):
            raise TypeError(
                "A teacher must be a Keras model, a SavedModel or a callable returning logits. "
                f"Received: {type(model).__name__}"
            )
        self.model = model
        self.output = output
        self.name = name or getattr(model, "name", None) or type(model).__name__
        self.is_keras_model = isinstance(model, keras.layers.Layer) or is_keras3_model(model)
        self._feature_models = {}

    def __call__(self, x, temperature: Optional[float] = None) -> tf.Tensor:
        """Returns the teacher's logits for ``x`` (no gradient, ``training=False``)."""
        if self.is_keras_model:
            out = self.model(x, training=False)
        else:
            out = self.model(x)
        # float32 always: 16-bit logits (mixed precision, bfloat16) lose too much in softmax.
        return tf.stop_gradient(tf.cast(select_output(out, self.output), tf.float32))

    def features(self, x, layer_names: Sequence[str]) -> List[tf.Tensor]:
        """Returns ``[logits, *outputs of layer_names]`` in one forward pass.

        Raises:
            ValueError: when the teacher is not a functional Keras model or a layer is unknown.
        """
        key = tuple(layer_names)
        if key not in self._feature_models:
            self._feature_models[key] = feature_model(self.model, layer_names, "teacher")
        outs = self._feature_models[key](x, training=False)
        return [tf.stop_gradient(o) for o in outs]

    def __repr__(self) -> str:
        return f"Teacher({self.name})"


def feature_model(model, layer_names: Sequence[str], role: str):
    """A model sharing ``model``'s weights that returns its output and the named layers'."""
    if not hasattr(model, "get_layer") or not getattr(model, "inputs", None):
        raise ValueError(
            f"Feature hints need a functional or Sequential Keras {role} (one with .inputs); "
            f"received {type(model).__name__}."
        )
    names = [layer.name for layer in model.layers]
    outputs = [model.outputs[0] if len(model.outputs) == 1 else model.outputs]
    for n in layer_names:
        if n not in names:
            raise ValueError(f"The {role} has no layer named '{n}'. Its layers: {', '.join(names)}")
        outputs.append(model.get_layer(n).output)
    if is_keras3_model(model):
        import keras as keras3

        return keras3.Model(model.inputs, outputs)
    return keras.Model(model.inputs, outputs)


class EnsembleTeacher(Teacher):
    """A weighted ensemble: its soft targets are the weighted mean of the members'.

    At temperature ``T`` it returns ``T · log Σ_i w_i softmax(z_i / T)``: logits whose
    ``softmax(· / T)`` is exactly the weighted average of the members' soft targets, so any
    distillation loss on logits works unchanged. The result depends on ``T``, which the
    :class:`~kdkeras.Distiller` passes in.

    Args:
        teachers: a list of teachers (anything :func:`as_teacher` accepts).
        weights: list of floats >= 0, or None for equal weights. Normalized to sum to 1.
    """

    def __init__(self, teachers: Sequence[Any], weights: Optional[Sequence[float]] = None):
        members = [as_teacher(t) for t in teachers]
        if not members:
            raise ValueError("An ensemble needs at least one teacher. Received an empty list.")
        if weights is None:
            weights = [1.0] * len(members)
        weights = [float(w) for w in weights]
        if len(weights) != len(members):
            raise ValueError(
                f"teacher_weights must have one weight per teacher: {len(members)} teachers, "
                f"received {len(weights)} weights: {weights}"
            )
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"teacher_weights must be >= 0 with a positive sum. Received: {weights}")
        total = sum(weights)
        self.members = members
        self.weights = [w / total for w in weights]
        self.name = "ensemble(" + ", ".join(m.name for m in members) + ")"
        self.model = None
        self.output = None
        self.is_keras_model = False
        self._feature_models = {}

    def __call__(self, x, temperature: Optional[float] = None) -> tf.Tensor:
        t = float(temperature or 1.0)
        logs = []
        for w, m in zip(self.weights, self.members):
            if w == 0:
                continue
            z = tf.cast(m(x), tf.float32)
            logs.append(tf.nn.log_softmax(z / t, axis=-1) + np.log(w))
        return t * tf.reduce_logsumexp(tf.stack(logs, axis=0), axis=0)

    def features(self, x, layer_names):
        raise ValueError("Feature hints need a single teacher, not an ensemble.")


def load_teacher(path: Union[str, os.PathLike], output=None) -> Teacher:
    """Loads a teacher from a file or a folder with :func:`kdkeras.models.loading.load_model`.

    Args:
        path: str or PathLike. A ``.keras`` / ``.h5`` file, a keras-hub preset folder (a
            classifier task) or a SavedModel folder (called through ``serving_default``).
        output: None, str, int or callable. Passed to :class:`Teacher`.

    Returns:
        A :class:`Teacher`. For a keras-hub task with a preprocessor, get its logits for raw
        inputs with :func:`kdkeras.distill.logit_cache.teacher_logits_for`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if no loader can read it, or a keras-hub preset of a backbone alone.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"Teacher path does not exist: {path}")
    model = load_model(path)
    name = Path(path).name if Path(path).is_dir() else None
    return Teacher(model, output=output, name=name)


def preprocessing_task(teacher: Teacher):
    """The keras-hub task inside ``teacher`` if it has a preprocessor, else None."""
    model = getattr(teacher, "model", None)
    if "keras_hub" not in sys.modules or not is_keras3_model(model):
        return None  # keras-hub was never imported, so this cannot be one of its tasks
    from keras_hub.models import Task

    if isinstance(model, Task) and model.preprocessor is not None:
        return model
    return None


def as_teacher(teacher: Any, weights: Optional[Sequence[float]] = None) -> Optional[Teacher]:
    """Wraps anything that gives logits into a :class:`Teacher` (None stays None).

    A list or tuple becomes an :class:`EnsembleTeacher` (with ``weights``); a path is loaded
    with :func:`load_teacher`.
    """
    if teacher is None:
        if weights is not None:
            raise ValueError("teacher_weights were given but there is no teacher.")
        return None
    if isinstance(teacher, (list, tuple)):
        return EnsembleTeacher(teacher, weights)
    if weights is not None:
        raise ValueError("teacher_weights need a list of teachers; received a single teacher.")
    if isinstance(teacher, Teacher):
        return teacher
    if isinstance(teacher, (str, os.PathLike)):
        return load_teacher(teacher)
    return Teacher(teacher)
