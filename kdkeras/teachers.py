"""Teacher adapters and the teacher-logit cache.

A teacher is anything that turns inputs into logits: a tf-keras model, a Keras 3 model
(including keras-hub models, on the TensorFlow backend), a SavedModel, a ``.keras`` / ``.h5``
file, a plain callable, or a weighted list of those (an ensemble). :func:`as_teacher` wraps each
into a :class:`Teacher`, a plain Python object (not a Keras layer), so the teacher's variables
never join the distiller's trainable weights; it is always called with ``training=False``.

Offline distillation runs the teacher once: :func:`cache_teacher_logits` returns a
``tf.data.Dataset`` of ``(x, y, teacher_logits)`` and can save the logits to a ``.npy`` file
(:func:`load_teacher_logits` reads it back).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
import tf_keras as keras

from kdkeras._io import atomic_write_bytes
from kdkeras._keras_kind import is_keras3_model

__all__ = [
    "Teacher",
    "EnsembleTeacher",
    "as_teacher",
    "load_teacher",
    "cache_teacher_logits",
    "load_teacher_logits",
    "is_keras3_model",
]


def _select(out: Any, output: Union[None, str, int, Callable]) -> tf.Tensor:
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
        return tf.stop_gradient(tf.cast(_select(out, self.output), tf.float32))

    def features(self, x, layer_names: Sequence[str]) -> List[tf.Tensor]:
        """Returns ``[logits, *outputs of layer_names]`` in one forward pass.

        Raises:
            ValueError: when the teacher is not a functional Keras model or a layer is unknown.
        """
        key = tuple(layer_names)
        if key not in self._feature_models:
            self._feature_models[key] = _feature_model(self.model, layer_names, "teacher")
        outs = self._feature_models[key](x, training=False)
        return [tf.stop_gradient(o) for o in outs]

    def __repr__(self) -> str:
        return f"Teacher({self.name})"


def _feature_model(model, layer_names: Sequence[str], role: str):
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
    """Loads a teacher from a ``.keras`` / ``.h5`` file or a SavedModel directory.

    tf-keras files are tried first, then Keras 3 files; a SavedModel directory is loaded with
    ``tf.saved_model.load`` and called through its ``serving_default`` signature.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if no loader can read it (with each loader's reason).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Teacher path does not exist: {path}")
    errors = []
    if path.is_dir():
        loaded = tf.saved_model.load(str(path))
        sig = getattr(loaded, "signatures", {}).get("serving_default")
        if sig is not None:
            (arg_name,) = sig.structured_input_signature[1].keys() or [None]

            def call(x, _sig=sig, _arg=arg_name):
                return _sig(**{_arg: tf.convert_to_tensor(x, tf.float32)})

            return Teacher(call, output=output, name=path.name)
        if callable(loaded):
            return Teacher(loaded, output=output, name=path.name)
        raise ValueError(f"The SavedModel at {path} has no serving_default signature and is not callable.")
    for loader in (keras.models.load_model, _load_keras3):
        try:
            return Teacher(loader(str(path), compile=False), output=output)
        except Exception as e:  # try the next format
            errors.append(f"{loader.__module__}: {type(e).__name__}: {str(e)[:200]}")
    raise ValueError(f"Could not load a teacher from {path}. " + " | ".join(errors))


def _load_keras3(path, compile=False):
    import keras as keras3

    return keras3.models.load_model(path, compile=compile)


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


def _batches(data, batch_size: int):
    """Yields numpy ``(x, y)`` batches from ``(x, y)`` arrays, ``x`` alone, or a tf.data.Dataset."""
    if isinstance(data, tf.data.Dataset):
        for batch in data.as_numpy_iterator():
            if isinstance(batch, tuple):
                yield batch[0], (batch[1] if len(batch) > 1 else None)
            else:
                yield batch, None
        return
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
    else:
        x, y = data, None
    if y is not None and len(x) != len(y):
        raise ValueError(f"x and y must have the same length. Received: {len(x)} and {len(y)}")
    for i in range(0, len(x), batch_size):
        yield x[i: i + batch_size], (None if y is None else y[i: i + batch_size])


def cache_teacher_logits(
    teacher: Any,
    data,
    path: Union[None, str, os.PathLike] = None,
    batch_size: int = 256,
    temperature: Optional[float] = None,
    shuffle: bool = True,
    seed: Optional[int] = None,
) -> tf.data.Dataset:
    """Runs the teacher once over ``data`` and returns a dataset of ``(x, y, teacher_logits)``.

    Feed the result to a ``Distiller(student, teacher=None)``: later epochs skip the teacher's
    forward pass entirely (offline distillation). The triples are shuffled together, so the
    logits always stay aligned with their inputs.

    Args:
        teacher: anything :func:`as_teacher` accepts (an ensemble needs ``temperature``).
        data: ``(x, y)`` numpy arrays, ``x`` alone, or a tf.data.Dataset of ``(x, y)`` batches
            (iterated once, in order: do not shuffle it).
        path: str or None. Also save the logits there (``.npy``, written atomically); reuse them
            with :func:`load_teacher_logits` as long as the data and its order are the same.
        batch_size: int. Batch size of the teacher pass and of the returned dataset.
        temperature: float or None. Passed to the teacher; only ensembles depend on it, and
            then it must equal the Distiller's temperature.
        shuffle: bool. Shuffle the returned dataset every epoch.
        seed: int or None. Shuffle seed.

    Returns:
        A batched ``tf.data.Dataset`` of ``(x, y, teacher_logits)`` (``(x, teacher_logits)``
        pairs become ``(x, None)``-free triples only when labels exist; without labels it
        yields ``{"x": x, "teacher_logits": logits}`` dicts).

    Example:

    >>> import kdkeras as kd
    >>> (x, y), _ = kd.digits()
    >>> teacher = kd.build_mlp_student((8, 8, 1), 10)
    >>> ds = kd.cache_teacher_logits(teacher, (x[:64], y[:64]), batch_size=32)
    >>> [tuple(t.shape) for t in next(iter(ds))]
    [(32, 8, 8, 1), (32,), (32, 10)]
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0. Received: batch_size={batch_size}")
    t = as_teacher(teacher)
    if t is None:
        raise ValueError("cache_teacher_logits needs a teacher. Received: teacher=None")
    if isinstance(t, EnsembleTeacher) and temperature is None:
        raise ValueError(
            "An ensemble's cached logits depend on the temperature: pass the Distiller's "
            "temperature, e.g. cache_teacher_logits(teachers, data, temperature=4.0)."
        )
    xs, ys, logits = [], [], []
    for xb, yb in _batches(data, batch_size):
        logits.append(np.asarray(t(xb, temperature=temperature)))
        xs.append(np.asarray(xb))
        if yb is not None:
            ys.append(np.asarray(yb))
    if not xs:
        raise ValueError("cache_teacher_logits received no data (an empty array or dataset).")
    x_all = np.concatenate(xs)
    l_all = np.concatenate(logits).astype("float32")
    y_all = np.concatenate(ys) if ys else None
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, l_all)
        atomic_write_bytes(path, buf.getvalue())
    parts = (x_all, y_all, l_all) if y_all is not None else {"x": x_all, "teacher_logits": l_all}
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        ds = ds.shuffle(min(len(x_all), 60_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_teacher_logits(path: Union[str, os.PathLike]) -> np.ndarray:
    """Reads logits saved by :func:`cache_teacher_logits` (a ``.npy`` file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No teacher-logit cache at {path}. Create it with cache_teacher_logits(..., path=...).")
    return np.load(path)
