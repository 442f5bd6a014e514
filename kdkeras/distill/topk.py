"""Top-k soft targets: the teacher's k largest logits, their class ids, and the tail mass.

A full soft-target cache costs one float per class per example (per token, for a language
model: corpus × vocabulary). Keeping only the teacher's top-k logits and folding the rest of
its probability into one *tail* bucket (as FKD does for ImageNet, Shen & Xing 2022) costs
``k · (4 + 2) + 4`` bytes per example: int32 ids, float16 logits, a float32 tail mass.

A top-k target is a dict of tensors, the form batches carry in place of teacher logits::

    {"ids": int32 [..., k], "logits": float16 [..., k],     # logits minus the top-1 logit
     "tail": float32 [...], "temperature": float32 [...],
     "classes": int32 [...]}                                # optional: the teacher's classes

``tail`` is the teacher's probability outside the top k *at the temperature the targets were
made with*; that temperature travels with the targets, and :func:`top_k_kl` (the Distiller's
KL loss on such targets) refuses a different one. With ``k`` equal to the number of classes the
tail is exactly 0 and the loss equals the full :func:`~kdkeras.losses.kl_divergence`.

``classes`` is the width of the teacher's logits (its vocabulary size, for a language model).
:func:`top_k_targets` adds it and the Distiller's preflight refuses a student of another width:
ids below both sizes would otherwise pass, and token-level KD between two vocabularies compares
unrelated tokens. It is optional (:func:`is_top_k` needs only the other four keys), so targets
cached before it existed still load; the loss never reads it.

Example:

>>> import numpy as np
>>> t = top_k_targets(np.array([[3.0, 1.0, 0.0, -2.0]], "float32"), k=2, temperature=1.0)
>>> t["ids"].tolist(), round(float(t["tail"][0]), 4)
([[0, 1]], 0.0474)

References:
    Shen, Xing. "A Fast Knowledge Distillation Framework for Visual Recognition", 2022 (FKD).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf

from kdkeras.validation import check_int, check_temperature

__all__ = ["IDS", "LOGITS", "TAIL", "TEMPERATURE", "CLASSES", "top_k_targets", "is_top_k", "top_k_kl",
           "check_top_k", "check_finite_logits", "bytes_per_target", "narrow_top_k"]

IDS, LOGITS, TAIL, TEMPERATURE = "ids", "logits", "tail", "temperature"
KEYS = (IDS, LOGITS, TAIL, TEMPERATURE)
CLASSES = "classes"  # optional: the teacher's number of classes (see the module docstring)


def is_top_k(targets: Any) -> bool:
    """True for a top-k target dict (keys ``ids``, ``logits``, ``tail``, ``temperature``;
    ``classes`` is optional)."""
    return isinstance(targets, dict) and all(key in targets for key in KEYS)


def bytes_per_target(k: int) -> int:
    """Bytes one example (or token) costs in a top-k cache: ``k·(4 + 2) + 4``."""
    return int(k) * 6 + 4


def top_k_targets(logits, k: int, temperature: float) -> Dict[str, np.ndarray]:
    """The top-k targets of a batch of teacher logits (numpy in, numpy out).

    Args:
        logits: array ``[..., classes]`` of teacher logits (finite; ``-inf`` marks a class the
            teacher rules out).
        k: int in [1, classes]. How many logits to keep per example.
        temperature: float > 0. The distillation temperature: the tail mass is computed at it,
            and only a Distiller with this temperature may use the targets.

    Returns:
        dict ``ids`` (int32 ``[..., k]``, largest first), ``logits`` (float16 ``[..., k]``, each
        minus the largest, so the first is 0), ``tail`` (float32 ``[...]``, the probability of
        the other classes at ``temperature``; exactly 0 when ``k`` = classes), ``temperature``
        (float32 ``[...]``) and ``classes`` (int32 ``[...]``, the number of classes).

    Raises:
        ValueError: ``k`` outside [1, classes], a bad temperature, or NaN / ``+inf`` logits.
    """
    temperature = check_temperature(temperature)
    z = np.asarray(logits, dtype=np.float32)
    if z.ndim < 1 or z.shape[-1] < 1:
        raise ValueError(f"logits must have a class axis. Received shape {z.shape}")
    k = check_top_k(k, z.shape[-1])
    check_finite_logits(z)
    if k < z.shape[-1]:  # O(classes) selection, then sort only the k (large vocabularies)
        ids = np.argpartition(-z, k - 1, axis=-1)[..., :k]
    else:
        ids = np.broadcast_to(np.arange(k), z.shape).copy()
    order = np.argsort(-np.take_along_axis(z, ids, axis=-1), axis=-1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=-1)
    top = np.take_along_axis(z, ids, axis=-1)
    # The normaliser over the whole vocabulary in float32 (the O(classes) part: float64 made a
    # 4,096-token × 6k-vocabulary batch 10× slower), the top-k masses in float64; the tail
    # is 1 − Σ top-k probabilities.
    peak = np.max(z, axis=-1, keepdims=True)
    norm = np.sum(np.exp((z - peak) / np.float32(temperature)), axis=-1, keepdims=True)
    log_norm = peak.astype(np.float64) / temperature + np.log(norm.astype(np.float64))
    top_mass = np.sum(np.exp(top.astype(np.float64) / temperature - log_norm), axis=-1)
    # Every class kept: no tail (the float32 normaliser would leave ~1e-7 of rounding).
    tail = np.clip(1.0 - top_mass, 0.0, 1.0) if k < z.shape[-1] else np.zeros_like(top_mass)
    return {
        IDS: ids.astype(np.int32),
        LOGITS: (top - top[..., :1]).astype(np.float16),
        TAIL: tail.astype(np.float32),
        TEMPERATURE: np.full(tail.shape, temperature, np.float32),
        CLASSES: np.full(tail.shape, z.shape[-1], np.int32),
    }


def narrow_top_k(targets: Dict[str, np.ndarray], k: int,
                 top_logits: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Top-k targets derived from top-K ones (K >= k): the first k ids and logits, and the
    tail plus the probability of ranks k..K-1.

    Equals :func:`top_k_targets` with ``k`` on the full logits (barring ties at rank k).
    ``top_logits``, the teacher's float32 logits at ``targets["ids"]``, makes the tail exact;
    without it the stored float16 logits are used. Used by
    :func:`~kdkeras.distill.topk_shards.cache_top_k_shards` to cache several k at once.

    Args:
        targets: a top-K target dict (numpy).
        k: int in [1, K].
        top_logits: float array ``[..., K]`` or None.

    Returns:
        A top-k target dict.
    """
    ids = np.asarray(targets[IDS])
    k = check_top_k(k, ids.shape[-1])
    z = np.asarray(targets[LOGITS] if top_logits is None else top_logits, np.float64)
    temperature = np.asarray(targets[TEMPERATURE], np.float64)[..., None]
    tail = np.asarray(targets[TAIL], np.float64)
    rel = np.exp((z - z[..., :1]) / temperature)  # p_r / p_0 for each of the K ranks
    p0 = (1.0 - tail) / np.sum(rel, axis=-1)
    tail_k = np.clip(tail + p0 * np.sum(rel[..., k:], axis=-1), 0.0, 1.0)
    out = {IDS: ids[..., :k].copy(), LOGITS: np.asarray(targets[LOGITS])[..., :k].copy(),
           TAIL: tail_k.astype(np.float32)}
    return {**out, **{key: np.array(targets[key]) for key in (TEMPERATURE, CLASSES)
                      if key in targets}}


def check_finite_logits(z: np.ndarray) -> None:
    """A ValueError for teacher logits with NaN, ``+inf`` or a row of ``-inf`` (``-inf`` alone
    rules a class out and is fine)."""
    if np.isnan(z).any() or np.isposinf(z).any() or np.isneginf(z.max(axis=-1)).any():
        raise ValueError("The teacher's logits hold NaN or +inf values, or a row of -inf; top-k "
                         "targets need finite logits. Check the teacher and its inputs.")


def check_top_k(k: Any, num_classes: int) -> int:
    """``k`` as an int in [1, num_classes], or a ValueError naming it."""
    k = check_int(k, "top_k", 1)
    if k > num_classes:
        raise ValueError(f"top_k must be at most the number of classes ({num_classes}). "
                         f"Received: top_k={k}")
    return k


def top_k_kl(targets: Dict[str, Any], student_logits, temperature: float) -> tf.Tensor:
    """``T² · KL(p_teacher ‖ q_student)`` over the k+1 buckets of a top-k target, per example.

    The teacher's distribution is its top-k probabilities (from the stored logits, scaled so
    they sum to ``1 − tail``) plus the tail; the student's is its softmax at ``T`` gathered at
    the same ids, plus everything else it puts outside them. With ``k`` = classes this is
    Hinton's loss (:func:`~kdkeras.losses.kl_divergence`), computed in log space.

    Args:
        targets: a top-k target dict (see the module docstring).
        student_logits: tensor ``[..., classes]``.
        temperature: float > 0; must equal the targets' temperature (checked by the
            Distiller's preflight on a first batch).

    Returns:
        Tensor ``[...]``.
    """
    temperature = check_temperature(temperature)
    s = tf.cast(student_logits, tf.float32)
    ids = tf.cast(targets[IDS], tf.int32)
    t_top = tf.cast(targets[LOGITS], tf.float32)
    tail = tf.cast(targets[TAIL], tf.float32)
    log_q = tf.nn.log_softmax(s / temperature, axis=-1)
    log_q_top = tf.gather(log_q, ids, batch_dims=ids.shape.rank - 1)
    # The student's mass outside the teacher's top k: 1 − Σ q_top, via expm1 for precision.
    q_rest = -tf.math.expm1(tf.reduce_logsumexp(log_q_top, axis=-1))
    log_q_tail = tf.math.log(tf.maximum(q_rest, 1e-30))
    log_p_top = tf.nn.log_softmax(t_top / temperature, axis=-1) + tf.expand_dims(
        tf.math.log1p(-tf.minimum(tail, 1.0 - 1e-7)), -1)
    kl_top = tf.reduce_sum(tf.math.multiply_no_nan(log_p_top - log_q_top, tf.exp(log_p_top)), -1)
    # multiply_no_nan: a zero tail contributes 0, not 0·(−inf) = NaN.
    kl_tail = tf.math.multiply_no_nan(tf.math.log(tail) - log_q_tail, tail)
    return (kl_top + kl_tail) * (temperature**2)
