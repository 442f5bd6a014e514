"""The teacher-logit cache: run the teacher once, distill offline from its logits.

:func:`cache_teacher_logits` returns a ``tf.data.Dataset`` of ``(x, y, teacher_logits)`` and can
save the logits to a ``.npy`` file (:func:`load_teacher_logits` reads it back). With
``top_k=k`` it keeps only the teacher's k largest logits, their ids and the tail mass
(:mod:`kdkeras.distill.topk`; saved as ``.npz``).
:func:`teacher_logits_for` returns the logits alone as a numpy array; it is what the pipeline's
logit cache calls. A keras-hub task with a preprocessor is run with ``task.predict`` on the raw
inputs, so its logits are computed once, offline.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import tensorflow as tf

from kdkeras._io import atomic_write_bytes
from kdkeras.distill.teachers import EnsembleTeacher, as_teacher, preprocessing_task, select_output
from kdkeras.distill.topk import CLASSES, KEYS, is_top_k, top_k_targets
from kdkeras.validation import check_int

__all__ = ["cache_teacher_logits", "teacher_logits_for", "save_teacher_logits",
           "load_teacher_logits"]


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
    check_int(batch_size, "batch_size", 1)
    t = as_teacher(teacher)
    if t is None:
        raise ValueError(f"{caller} needs a teacher. Received: teacher=None")
    if isinstance(t, EnsembleTeacher) and temperature is None:
        raise ValueError(
            "An ensemble's cached logits depend on the temperature: pass the Distiller's "
            f"temperature, e.g. {caller}(teachers, data, temperature=4.0)."
        )
    task = preprocessing_task(t)
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
        logits = [np.asarray(tf.cast(select_output(out, t.output), tf.float32))]
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
    top_k: Optional[int] = None,
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
        temperature: float or None. Passed to the teacher; only ensembles and ``top_k``
            depend on it, and then it must equal the Distiller's temperature.
        shuffle: bool. Shuffle the returned dataset every epoch.
        seed: int or None. Shuffle seed.
        top_k: int or None. Keep only the teacher's ``top_k`` largest logits per example, their
            class ids and the probability of the rest (the tail), at ``temperature``:
            ``top_k·6 + 4`` bytes per example instead of ``classes·4``. The third element of
            each batch is then a top-k target dict (:mod:`kdkeras.distill.topk`); the
            Distiller's KL loss uses it. None keeps every logit.

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
    >>> ds = kd.cache_teacher_logits(teacher, (x[:64], y[:64]), top_k=3, temperature=2.0)
    >>> sorted(next(iter(ds))[2])
    ['classes', 'ids', 'logits', 'tail', 'temperature']
    """
    if top_k is not None and temperature is None:
        raise ValueError(
            "Top-k targets hold the tail mass at one temperature: pass the Distiller's "
            f"temperature, e.g. cache_teacher_logits(teacher, data, top_k={top_k!r}, "
            "temperature=3.0).")
    x_all, y_all, l_all = _teacher_pass(
        teacher, data, batch_size, temperature, "cache_teacher_logits"
    )
    if top_k is not None:
        l_all = top_k_targets(l_all, top_k, temperature)
    if path is not None:
        save_teacher_logits(path, l_all)
    parts = (x_all, y_all, l_all) if y_all is not None else {"x": x_all, "teacher_logits": l_all}
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        ds = ds.shuffle(min(len(x_all), 60_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def save_teacher_logits(path: Union[str, os.PathLike], logits) -> None:
    """Writes logits atomically: an array as ``.npy``, top-k targets as ``.npz`` (read back
    with :func:`load_teacher_logits`)."""
    buf = io.BytesIO()
    if is_top_k(logits):
        keys = KEYS + ((CLASSES,) if CLASSES in logits else ())  # classes: optional
        np.savez(buf, **{key: np.asarray(logits[key]) for key in keys})
    else:
        np.save(buf, np.asarray(logits))
    atomic_write_bytes(path, buf.getvalue())


def load_teacher_logits(path: Union[str, os.PathLike]):
    """Reads what :func:`save_teacher_logits` wrote: an array, or a top-k target dict.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a file that is not a logit cache (truncated, or another format), named.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No teacher-logit cache at {path}. Create it with cache_teacher_logits(..., path=...).")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                out = {key: loaded[key] for key in loaded.files}
            if not is_top_k(out):
                raise ValueError(f"holds {sorted(out)}, not the top-k keys {list(KEYS)}")
            return out
        return loaded
    except Exception as err:  # numpy raises several types for a damaged file
        raise ValueError(f"{path} is not a readable teacher-logit cache ({err}). Delete it and "
                         "create it again with cache_teacher_logits(..., path=...).") from None
