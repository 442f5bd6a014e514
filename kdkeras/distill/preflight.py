"""The checks :meth:`Distiller.fit` runs on one small batch before training: teacher and
student output shapes, logits rather than probabilities, labels in range. They cost one forward
pass of at most 16 examples.

A ``tf.data.Dataset`` is peeked with ``take(1)``, which is one iteration of it: a dataset that
reshuffles each iteration (``shuffle``'s default) then starts training at its next order, and a
shuffle buffer is filled once more to draw that batch. A seeded run stays reproducible, but is
not batch for batch the run a plain ``model.fit`` of the same dataset object makes; draw one
batch of the baseline's dataset too to compare the two on the same batches
(``benchmarks/kd_speed_vs_peers.py`` does)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import tensorflow as tf

from kdkeras.distill.batches import NO_TEACHER_MESSAGE, peek, unpack
from kdkeras.distill.topk import CLASSES, IDS, TAIL, TEMPERATURE, is_top_k


def vocabulary_mismatch(teacher_classes: int, student_classes: int) -> str:
    """Why sequence (token-level) KD between two vocabularies is refused."""
    return (f"teacher vocabulary V={teacher_classes} != student V={student_classes}: token-level "
            "KD needs one tokenizer shared by teacher and student (logit i must be the same "
            "token for both). Build the student with the teacher's tokenizer and vocab_size.")


def shape_mismatch(source: str, t_shape, student_name: str, s_shape) -> ValueError:
    fmt = lambda shape: str(("batch",) + tuple(shape)[1:])
    t_shape, s_shape = tuple(t_shape), tuple(s_shape)
    why = "Both must produce logits over the same classes."
    if len(t_shape) == len(s_shape) == 3 and t_shape[1:-1] == s_shape[1:-1]:
        why = vocabulary_mismatch(t_shape[-1], s_shape[-1])  # [batch, T, V]: token-level KD
    return ValueError(
        f"Teacher and student outputs differ: {source} gives shape {fmt(t_shape)} but student "
        f"'{student_name}' gives {fmt(s_shape)}. {why}"
    )


def preflight(distiller: Any, x, y=None, sample_weight=None) -> Optional[Tuple[Any, Any, Any, tf.Tensor]]:
    """Checks one small batch: output shapes, logits vs probabilities, label range.

    Called by :meth:`fit`; data it cannot peek at (generators) is checked at trace time.

    Returns:
        ``(x, y, sample_weight, student_logits)`` of the checked batch (None when it could not
        be peeked), which :func:`kdkeras.distill.step_state.build_step_state` reuses.

    Raises:
        ValueError: naming the bad shapes or values and how to fix them.
    """
    sample = peek(x, y, sample_weight)
    if sample is None:
        return None
    xs, ys, sws, logits = unpack(sample, distiller.teacher is not None, len(distiller.student.inputs or [None]))
    if logits is None and distiller.teacher is None:
        raise ValueError(NO_TEACHER_MESSAGE)
    s_logits = distiller.student(xs, training=False)
    s = np.asarray(s_logits, dtype=np.float32)
    if is_top_k(logits):
        check_top_k_batch(logits, s.shape, distiller.temperature)
    else:
        check_logits(distiller, xs, logits, s)
    check_labels(y if y is not None and not isinstance(x, tf.data.Dataset) else ys, s.shape[-1],
                 getattr(distiller, "ignore_class", None))
    return xs, ys, sws, s_logits


def check_logits(distiller: Any, xs, logits, s: np.ndarray) -> None:
    """Teacher logits (given, or the teacher's on ``xs``) and student outputs ``s`` that fit:
    one row per example over the same classes, logits rather than probabilities."""
    if logits is not None:
        raw = logits
    else:
        raw = distiller.teacher(xs, temperature=distiller.temperature)
    t = np.asarray(tf.cast(raw, tf.float32))
    atol = 2e-2  # loose enough for bfloat16 softmax rows; logits essentially never pass
    source = "teacher logits" if logits is not None else f"teacher '{distiller.teacher.name}'"
    if t.ndim < s.ndim:
        raise ValueError(
            f"The {source} have shape {t.shape}, not one row of logits per example "
            f"(student: {s.shape}). Without a teacher the third element of a batch is the "
            "teacher's logits, not a sample weight."
        )
    if t.shape[1:] != s.shape[1:]:
        raise shape_mismatch(source, t.shape, distiller.student.name, s.shape)
    if t.size and np.all(t >= 0) and np.all(t <= 1) and np.allclose(t.sum(-1), 1.0, atol=atol):
        raise ValueError(
            f"The {source} outputs look like probabilities (every row is in [0, 1] and sums "
            "to 1), but distillation needs logits. Remove the final softmax (build the last "
            "layer with activation=None) or select the pre-softmax output with "
            "kd.Teacher(model, output=...)."
        )
    if np.all((s >= 0) & (s <= 1)) and np.allclose(s.sum(-1), 1.0, atol=1e-3) and s.shape[-1] > 1:
        raise ValueError(
            f"The student '{distiller.student.name}' outputs look like probabilities; the losses "
            "take logits. Give its last layer activation=None."
        )


def check_top_k_batch(targets, student_shape, temperature: float) -> None:
    """Top-k targets that fit the student: one per example, class ids in range, a tail
    probability, and made at the Distiller's temperature (the tail depends on it)."""
    ids = np.asarray(targets[IDS])
    want = tuple(student_shape[:-1])
    if ids.shape[:-1] != want:
        raise ValueError(f"The top-k teacher targets have ids of shape {ids.shape}; the student "
                         f"gives logits of shape {tuple(student_shape)}: one row of k ids per "
                         "example (and time step) is needed.")
    n = student_shape[-1]
    if CLASSES in targets:  # optional key (top_k_targets adds it; older caches lack it)
        made_for = np.unique(np.asarray(targets[CLASSES], np.int64))
        if made_for.size and np.any(made_for != n):
            bad = int(made_for[made_for != n][0])
            if len(want) >= 2:  # one target per token: a language model
                raise ValueError("The top-k teacher targets were made for another vocabulary: "
                                 + vocabulary_mismatch(bad, n))
            raise ValueError(f"The top-k teacher targets were made by a teacher with {bad} "
                             f"classes, but the student has {n}. Cache the targets of a teacher "
                             "over the student's classes.")
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        bad = int(ids.min() if ids.min() < 0 else ids.max())
        raise ValueError(f"The top-k teacher targets hold class id {bad}, out of range for the "
                         f"student's {n} classes. Were they made for another model?")
    tail = np.asarray(targets[TAIL], np.float32)
    if not np.all((tail >= 0) & (tail <= 1)):
        raise ValueError("The top-k teacher targets hold a tail mass outside [0, 1] (or NaN); "
                         "the cache is corrupt: rebuild it.")
    made_at = np.unique(np.asarray(targets[TEMPERATURE], np.float32))
    if made_at.size and not np.allclose(made_at, np.float32(temperature)):
        raise ValueError(
            f"The top-k teacher targets were made at temperature={made_at[0]:g}, but the "
            f"Distiller is compiled with temperature={temperature:g}; their tail mass holds only "
            "at the temperature they were made with. Compile with that temperature or rebuild "
            "the cache with this one.")


def check_labels(y, num_classes: int, ignore_class=None) -> None:
    if y is None or isinstance(y, tf.data.Dataset):
        return
    if isinstance(y, dict):  # the student has one output: one array of labels
        raise ValueError(
            f"Labels must be one array (class indices or one-hot rows of width {num_classes}) "
            f"for the student's one output; received a dict with keys {sorted(y)}. Pass the "
            f"array itself, e.g. y[{sorted(y)[0]!r}].")
    y = np.asarray(y)
    if y.size == 0:
        return
    if y.dtype.kind not in "biuf":
        raise ValueError(
            f"Labels must be numbers: class indices or one-hot rows of width {num_classes}. "
            f"Received labels of dtype {y.dtype} (e.g. {y.ravel()[0].item()!r}). Encode them first, "
            "e.g. with kdkeras.data.load_files or sklearn's LabelEncoder.")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"Labels hold NaN or infinite values (e.g. at index "
                         f"{int(np.argwhere(~np.isfinite(y.ravel()))[0, 0])}). Drop or fill them.")
    if y.ndim >= 1 and y.shape[-1] == num_classes and y.ndim > 1 and not np.issubdtype(y.dtype, np.integer):
        return  # one-hot / soft labels
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0):
        raise ValueError(
            f"Labels must be class indices or one-hot rows of width {num_classes}. Received "
            f"labels of shape {y.shape} with non-integer values (e.g. {y.ravel()[0]})."
        )
    if ignore_class is not None:
        y = y[y != ignore_class]  # examples without a label (see Distiller.compile)
        if y.size == 0:
            return
    lo, hi = int(np.min(y)), int(np.max(y))
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"Label {bad} is out of range for {num_classes} classes (labels must be in "
            f"[0, {num_classes - 1}]). Check the labels or the student's number of outputs."
        )
