"""Teacher adapters and the teacher-logit cache.

A teacher is anything that turns inputs into logits: a tf-keras model, a Keras 3 model
(including keras-hub models, on the TensorFlow backend), a SavedModel, a ``.keras`` / ``.h5``
file, a keras-hub preset directory of a classifier task, a plain callable, or a weighted list of
those (an ensemble). :func:`as_teacher` wraps each into a :class:`Teacher`, a plain Python
object (not a Keras layer), so the teacher's variables never join the distiller's trainable
weights; it is always called with ``training=False``.

Offline distillation runs the teacher once: :func:`cache_teacher_logits` returns a
``tf.data.Dataset`` of ``(x, y, teacher_logits)`` and can save the logits to a ``.npy`` file
(:func:`load_teacher_logits` reads it back). :func:`teacher_logits_for` returns the logits
alone as a numpy array; it is what the pipeline's logit cache calls.

A keras-hub task with a preprocessor (e.g. a ``TextClassifier`` loaded from a preset) takes raw
inputs, strings for text, only through ``task.predict``: calling the task, as the
:class:`~kdkeras.Distiller` does inside its ``tf.function``, skips the preprocessor.
:func:`cache_teacher_logits` and :func:`teacher_logits_for` therefore run such a teacher with
``task.predict``, so its logits are computed once, offline, from the raw inputs.
"""

from __future__ import annotations

import io
import os
import sys
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
    "teacher_logits_for",
    "load_teacher_logits",
    "save_teacher_logits",
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
    """Loads a teacher from a file or a directory.

    A directory with a ``metadata.json`` is a keras-hub preset (written by
    ``task.save_to_preset(dir)``) and is loaded with the task class named in its ``task.json``,
    offline. Any other directory is a SavedModel, loaded with ``tf.saved_model.load`` and called
    through its ``serving_default`` signature. Files are tried as tf-keras ``.keras`` / ``.h5``
    first, then as Keras 3 files.

    Args:
        path: str or PathLike. A ``.keras`` / ``.h5`` file, a keras-hub preset directory or a
            SavedModel directory.
        output: None, str, int or callable. Passed to :class:`Teacher`.

    Returns:
        A :class:`Teacher`. For a keras-hub task with a preprocessor, get its logits for raw
        inputs with :func:`teacher_logits_for` (or :func:`cache_teacher_logits`).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if no loader can read it (with each loader's reason), or if it is a
            keras-hub preset of a backbone alone (a backbone gives features, not logits).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Teacher path does not exist: {path}")
    errors = []
    if path.is_dir() and (path / "metadata.json").is_file():
        return Teacher(_load_keras_hub_preset(path), output=output, name=path.name)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ValueError(
                f"The teacher folder is neither a SavedModel (no saved_model.pb) nor a keras-hub "
                f"preset (no metadata.json). Received: path={str(path)!r}. Pass a .keras / .h5 "
                "file, a SavedModel folder or a keras-hub preset folder."
            )
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


def _load_keras_hub_preset(path: Path):
    """Loads the keras-hub task saved in the preset directory ``path`` (no download)."""
    try:
        from keras_hub.src.utils.preset_utils import check_config_class, load_json
    except ImportError as e:  # pragma: no cover - keras-hub is in install_requires
        raise ValueError(
            f"{path} is a keras-hub preset directory (it has metadata.json), but keras-hub is not "
            f"installed: pip install keras-hub. Received: path={str(path)!r}"
        ) from e
    preset = str(path)
    if (path / "task.json").is_file():
        task_cls = check_config_class(load_json(preset, "task.json"))
        # Task.from_preset refuses the Task base class; the concrete class loads locally.
        return task_cls.from_preset(preset)
    backbone = "a backbone"
    if (path / "config.json").is_file():
        backbone = load_json(preset, "config.json").get("registered_name", backbone)
    raise ValueError(
        f"The keras-hub preset at {path} holds only a backbone ({backbone}), which returns "
        "features, not logits. A teacher needs a classifier task preset: build one with "
        "task = keras_hub.models.XClassifier(backbone=backbone, num_classes=..., "
        "preprocessor=...) (e.g. TextClassifier, ImageClassifier), fine-tune it, then "
        f"task.save_to_preset(dir). Received: path={str(path)!r}"
    )


def _preprocessing_task(teacher: Teacher):
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


def _teacher_pass(teacher, data, batch_size: int, temperature, caller: str):
    """Runs the teacher once over ``data`` in order: ``(x, y or None, float32 logits)``."""
    is_int = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
    if not is_int or batch_size <= 0:
        raise ValueError(f"batch_size must be an integer > 0. Received: batch_size={batch_size!r}")
    t = as_teacher(teacher)
    if t is None:
        raise ValueError(f"{caller} needs a teacher. Received: teacher=None")
    if isinstance(t, EnsembleTeacher) and temperature is None:
        raise ValueError(
            "An ensemble's cached logits depend on the temperature: pass the Distiller's "
            f"temperature, e.g. {caller}(teachers, data, temperature=4.0)."
        )
    task = _preprocessing_task(t)
    xs, ys, logits = [], [], []
    for xb, yb in _batches(data, batch_size):
        if task is None:
            logits.append(np.asarray(t(xb, temperature=temperature)))
        xs.append(np.asarray(xb))
        if yb is not None:
            ys.append(np.asarray(yb))
    if not xs:
        raise ValueError(f"{caller} received no data (an empty array or dataset).")
    x_all = np.concatenate(xs)
    y_all = np.concatenate(ys) if ys else None
    if task is not None:
        # predict() runs the preprocessor (tokenizer, image converter) on the raw inputs.
        out = task.predict(x_all, batch_size=int(batch_size), verbose=0)
        logits = [np.asarray(tf.cast(_select(out, t.output), tf.float32))]
    return x_all, y_all, np.concatenate(logits).astype("float32")


def teacher_logits_for(
    teacher: Any,
    x,
    batch_size: int = 256,
    *,
    temperature: Optional[float] = None,
) -> np.ndarray:
    """Returns the teacher's logits for ``x``, computed in batches, as a float32 array.

    The pipeline fills its teacher-logit cache with this function. A keras-hub task with a
    preprocessor (e.g. a ``TextClassifier`` loaded by :func:`load_teacher` from a preset) is
    run with ``task.predict``, which preprocesses raw inputs such as strings; any other teacher
    is called on each batch, like :func:`cache_teacher_logits` does.

    Args:
        teacher: anything :func:`as_teacher` accepts (an ensemble needs ``temperature``).
        x: numpy array of inputs (raw strings for a text task) or a tf.data.Dataset of
            ``(x, y)`` / ``x`` batches, iterated once in order.
        batch_size: int. Batch size of the teacher pass (> 0).
        temperature: float or None. Passed to the teacher; only ensembles depend on it.

    Returns:
        ``np.ndarray`` of float32 logits, one row per input, in the input order.

    Raises:
        ValueError: bad ``batch_size``, no teacher, no data, or an ensemble without
            ``temperature``.

    Example:

    >>> import kdkeras as kd, numpy as np
    >>> teacher = kd.build_mlp_student((4,), 3, hidden=())
    >>> teacher_logits_for(teacher, np.zeros((5, 4), "float32"), batch_size=2).shape
    (5, 3)
    """
    return _teacher_pass(teacher, x, batch_size, temperature, "teacher_logits_for")[2]


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

    A keras-hub task with a preprocessor is run with ``task.predict`` on the raw inputs (see
    :func:`teacher_logits_for`).

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
    x_all, y_all, l_all = _teacher_pass(
        teacher, data, batch_size, temperature, "cache_teacher_logits"
    )
    if path is not None:
        save_teacher_logits(path, l_all)
    parts = (x_all, y_all, l_all) if y_all is not None else {"x": x_all, "teacher_logits": l_all}
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        ds = ds.shuffle(min(len(x_all), 60_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def save_teacher_logits(path: Union[str, os.PathLike], logits: np.ndarray) -> None:
    """Writes logits to a ``.npy`` file atomically (read back with :func:`load_teacher_logits`)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(logits))
    atomic_write_bytes(path, buf.getvalue())


def load_teacher_logits(path: Union[str, os.PathLike]) -> np.ndarray:
    """Reads logits saved by :func:`cache_teacher_logits` (a ``.npy`` file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No teacher-logit cache at {path}. Create it with cache_teacher_logits(..., path=...).")
    return np.load(path)
