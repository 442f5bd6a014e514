"""How a batch reaches the :class:`~kdkeras.Distiller`: the forms it accepts, with or without
cached teacher logits, and the masked, weighted mean of per-example losses.

Forms: ``(x, y)`` / ``(x, y, sample_weight)`` with a teacher; without one, the third element is
the teacher's logits; ``x`` may be a dict with a ``"teacher_logits"`` key; or each element is a
dict with keys ``x`` (or ``inputs``), ``y``, ``teacher_logits`` and optionally
``sample_weight``."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

TEACHER_LOGITS_KEY = "teacher_logits"
NO_TEACHER_MESSAGE = (
    "No teacher and no teacher logits: pass teacher= to the Distiller, or feed "
    "(x, y, teacher_logits) / {'x', 'y', 'teacher_logits'} batches "
    "(see kdkeras.cache_teacher_logits)."
)


def is_dict_batch(data) -> bool:
    """A ``{"x" (or "inputs"), "y", "teacher_logits", "sample_weight"}`` batch."""
    return isinstance(data, dict) and TEACHER_LOGITS_KEY in data and ("x" in data or "inputs" in data)


def dict_batch_inputs(data: dict):
    return data.get("x", data.get("inputs"))


def split_logits(x: dict, n_inputs: int):
    """``(inputs, teacher_logits)`` from a dict ``x`` holding a ``"teacher_logits"`` key."""
    x = dict(x)
    logits = x.pop(TEACHER_LOGITS_KEY)
    if len(x) == 1 and n_inputs == 1:
        x = next(iter(x.values()))
    return x, logits


def unpack(data, has_teacher: bool, n_inputs: int) -> Tuple[Any, Any, Any, Any]:
    """Returns ``(x, y, sample_weight, teacher_logits)`` from one batch."""
    if is_dict_batch(data):
        x = dict_batch_inputs(data)
        y = data.get("y", data.get("labels"))
        return x, y, data.get("sample_weight"), data[TEACHER_LOGITS_KEY]
    x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
    logits = None
    if isinstance(x, dict) and TEACHER_LOGITS_KEY in x:
        x, logits = split_logits(x, n_inputs)
    elif not has_teacher:
        logits, sw = sw, None
    return x, y, sw, logits


def weighted_mean(per_example: tf.Tensor, weight: Optional[tf.Tensor], mask: Optional[tf.Tensor]):
    """``Σ loss·mask·weight / Σ mask``: padding (mask 0) leaves numerator and denominator alike."""
    per_example = tf.cast(per_example, tf.float32)
    if weight is None and mask is None:  # the common case, in three ops; an empty batch (a
        # replica's share of a short last batch) gives 0, as below, not reduce_mean's NaN
        return tf.math.divide_no_nan(tf.reduce_sum(per_example),
                                     tf.cast(tf.size(per_example), tf.float32))
    w = tf.ones_like(per_example)
    denom_w = w
    if mask is not None:
        m = match_rank(tf.cast(mask, tf.float32), per_example)
        w = w * m
        denom_w = w
    if weight is not None:
        weight = tf.convert_to_tensor(weight)
        per_step = per_example.shape.rank >= 2 and weight.shape.rank == per_example.shape.rank
        sw = match_rank(tf.cast(weight, tf.float32), per_example)
        w = w * sw
        if mask is None and per_step:
            # Per-time-step weights are a mask: zero-weight steps are padding.
            denom_w = denom_w * tf.cast(tf.not_equal(sw, 0), tf.float32)
    num = tf.reduce_sum(per_example * w)
    den = tf.reduce_sum(denom_w * tf.ones_like(per_example))
    return tf.math.divide_no_nan(num, den)


def match_rank(w: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    while w.shape.rank is not None and w.shape.rank > like.shape.rank and w.shape[-1] == 1:
        w = tf.squeeze(w, axis=-1)
    while w.shape.rank is not None and w.shape.rank < like.shape.rank:
        w = tf.expand_dims(w, axis=-1)
    return tf.broadcast_to(w, tf.shape(like))


def take(a, n: int):
    if a is None:
        return None
    if isinstance(a, dict):
        return {k: take(v, n) for k, v in a.items()}
    if isinstance(a, (list, tuple)):
        return type(a)(take(v, n) for v in a)
    return a[:n]


def peek(x, y, sample_weight, n: int = 16):
    """A small batch in the form ``train_step`` receives it, or None if it cannot be peeked."""
    if isinstance(x, tf.data.Dataset):
        for batch in x.take(1):
            return take(batch, n)
        return None
    if isinstance(x, (np.ndarray, tf.Tensor)) or isinstance(x, (dict, list, tuple)):
        parts = tuple(p for p in (take(x, n), take(y, n), take(sample_weight, n)))
        while parts and parts[-1] is None:
            parts = parts[:-1]
        return parts if len(parts) > 1 else parts[0]
    return None


def labelled(y, s_logits, mask, ignore_class):
    """``(y, mask)`` with the examples labelled ``ignore_class`` masked out of the hard-label
    loss and the metrics (their label replaced by 0, which the mask then ignores); unchanged
    when ``ignore_class`` is None."""
    if ignore_class is None:
        return y, mask
    y = tf.convert_to_tensor(y)
    keep = tf.not_equal(y, tf.cast(ignore_class, y.dtype))
    like = s_logits[..., 0]  # the per-example shape of the losses
    m = match_rank(tf.cast(keep, tf.float32), like)
    if mask is not None:
        m = m * match_rank(tf.cast(mask, tf.float32), like)
    return tf.where(keep, y, tf.zeros_like(y)), m


def metric_inputs(y, s_logits, sw, mask, drop_masked: bool):
    """``(y, y_pred, sample_weight)`` for the compiled metrics.

    Metrics given as ``metrics=`` are unweighted in tf-keras, so examples without a label
    (``drop_masked``) are removed rather than weighted 0; a Keras mask becomes the weight.
    """
    if drop_masked and mask is not None:
        like = s_logits[..., 0]
        keep = match_rank(tf.cast(mask, tf.float32), like) > 0
        w = None if sw is None else tf.boolean_mask(match_rank(tf.cast(sw, tf.float32), like), keep)
        return tf.boolean_mask(match_rank(y, like), keep), tf.boolean_mask(s_logits, keep), w
    w = sw
    if mask is not None:
        m = tf.cast(mask, s_logits.dtype)
        w = m if w is None else match_rank(tf.cast(w, m.dtype), m) * m
    return y, s_logits, w
