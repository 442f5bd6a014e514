"""Feature hints: match an intermediate student layer to a teacher layer, through a learned
projection when the widths differ (FitNets), and the transformer metrics of TinyBERT and MiniLM.

The metrics are pure functions on tensors, one value per example:

* :func:`feature_distance` -- ``"mse"`` / ``"cosine"`` between features (hidden states,
  embeddings, feature maps);
* :func:`attention_kl` -- ``KL(teacher ‖ student)`` of attention distributions ``[B, H, T, T]``
  per head (TinyBERT's attention loss uses MSE on scores; MiniLM's KL on probabilities is used
  here because the contract exposes probabilities);
* :func:`value_relation_kl` -- MiniLM's value-relation transfer: ``KL`` between
  ``softmax(V Vᵀ / √d_r)`` of teacher and student, ``R`` relation heads each.

Each takes an optional ``mask`` ``[B, T]`` (True for real tokens): padded positions are left out
of every sum and mean, so the loss does not depend on how much padding a batch carries.
:class:`HintLoss` gets that mask from the batch's token ids when it has a ``padding_id``.

References:
    Romero et al. "FitNets: Hints for Thin Deep Nets", 2015.
    Jiao et al. "TinyBERT: Distilling BERT for Natural Language Understanding", 2020.
    Wang et al. "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of
    Pre-Trained Transformers", 2020.
"""

from __future__ import annotations

import math

from typing import Optional

import tensorflow as tf
import tf_keras as keras

__all__ = ["feature_distance", "attention_kl", "value_relation_kl", "HintLoss", "HINT_METRICS"]

#: Hint metrics: name -> what the two features must be.
HINT_METRICS = {
    "mse": "features of any shape, same size (project the student's first if not)",
    "cosine": "features of any shape, same size (project the student's first if not)",
    "attention_kl": "attention probabilities [B, H, T, T], same H and T",
    "value_relation": "values [B, T, d] (heads concatenated), relation_heads dividing both widths",
}
_NEG = -1e9  # logit of a masked key: exp() of it is exactly 0 in float32


def _unknown_metric(metric: str) -> ValueError:
    return ValueError(f"Unknown feature metric '{metric}'. Known: {', '.join(sorted(HINT_METRICS))}")


def _mask(mask, dtype=tf.float32):
    return None if mask is None else tf.cast(mask, dtype)


def feature_distance(teacher_features, student_features, metric: str = "mse", mask=None) -> tf.Tensor:
    """Distance between intermediate features, per example (every non-batch axis reduced).

    Args:
        teacher_features: tensor ``[batch, ...]``.
        student_features: tensor ``[batch, ...]`` of the same size (project it first if not).
        metric: ``"mse"`` (mean squared error) or ``"cosine"`` (``1 − cosine similarity`` of
            the flattened features, so 0 when aligned and 2 when opposite).
        mask: None or ``[batch, T]`` (True for real tokens) for features ``[batch, T, ...]``:
            padded positions are left out (the MSE is the mean over real positions only).

    Returns:
        Tensor ``[batch]``.

    Example:

    >>> import numpy as np
    >>> a = np.array([[1.0, 0.0]], "float32")
    >>> float(feature_distance(a, -a, metric="cosine")[0])
    2.0
    """
    if metric not in ("mse", "cosine"):
        raise _unknown_metric(metric)
    t, s = tf.cast(teacher_features, tf.float32), tf.cast(student_features, tf.float32)
    batch = tf.shape(t)[0]
    if mask is not None:
        if t.shape.rank is not None and t.shape.rank < 2 or (
                t.shape[1] is not None and mask.shape[-1] is not None and t.shape[1] != mask.shape[-1]):
            raise ValueError(f"A token mask [batch, T] needs features [batch, T, ...]. Received "
                             f"features {t.shape} and mask {mask.shape}")
        m = _mask(mask)
        m = tf.reshape(m, tf.concat([tf.shape(m), tf.ones([t.shape.rank - 2], tf.int32)], 0))
        t, s = t * m, s * m
        # Per example: number of real positions times the size of one position's features.
        per_position = tf.cast(tf.reduce_prod(tf.shape(t)[2:]), tf.float32)
        count = tf.reduce_sum(_mask(mask), axis=-1) * per_position
    t = tf.reshape(t, [batch, -1])
    s = tf.reshape(s, [batch, -1])
    if metric == "mse":
        if mask is None:
            return tf.reduce_mean(tf.square(t - s), axis=-1)
        return tf.math.divide_no_nan(tf.reduce_sum(tf.square(t - s), axis=-1), count)
    t = tf.math.l2_normalize(t, axis=-1)
    s = tf.math.l2_normalize(s, axis=-1)
    return 1.0 - tf.reduce_sum(t * s, axis=-1)


def _masked_row_kl(terms, mask):
    """``terms [B, H, T, T]`` of ``p_t·(log p_t − log p_s)`` -> mean over heads and real queries."""
    heads = tf.cast(tf.shape(terms)[1], tf.float32)
    if mask is None:
        return tf.reduce_mean(tf.reduce_sum(terms, axis=-1), axis=[1, 2])
    m = tf.cast(mask, tf.bool)
    terms = tf.where(m[:, None, None, :], terms, 0.0)  # padded keys
    rows = tf.reduce_sum(terms, axis=-1) * tf.cast(m, tf.float32)[:, None, :]  # padded queries
    count = heads * tf.reduce_sum(tf.cast(m, tf.float32), axis=-1)
    return tf.math.divide_no_nan(tf.reduce_sum(rows, axis=[1, 2]), count)


def attention_kl(teacher_probs, student_probs, mask=None, epsilon: float = 1e-8) -> tf.Tensor:
    """``KL(teacher ‖ student)`` of attention distributions, per example.

    The KL is taken over the keys (last axis) of each head and query, then averaged over heads
    and query positions. It is computed in log space on probabilities clipped at ``epsilon``, so
    a masked key (probability 0 in both) contributes exactly 0 and no log is ever ``-inf``.

    Args:
        teacher_probs: tensor ``[batch, heads, T, T]``, rows summing to 1 (a softmax).
        student_probs: tensor of the same shape. Head counts must match: no projection maps
            one set of attention distributions onto another.
        mask: None or ``[batch, T]`` (True for real tokens). Padded queries are left out of
            the mean and padded keys out of each KL sum; None averages over all ``T`` queries.
        epsilon: float > 0. Floor of the probabilities before the log.

    Returns:
        Tensor ``[batch]``.

    Example:

    >>> import numpy as np
    >>> p = np.full((1, 2, 3, 3), 1 / 3, "float32")
    >>> float(attention_kl(p, p)[0])
    0.0
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0. Received: epsilon={epsilon}")
    t = tf.cast(teacher_probs, tf.float32)
    s = tf.cast(student_probs, tf.float32)
    if t.shape.rank is not None and t.shape.rank != 4:
        raise ValueError(f"attention_kl needs probabilities [batch, heads, T, T]. Received shape {t.shape}")
    check_heads(t.shape, s.shape)
    log_t = tf.math.log(tf.maximum(t, epsilon))
    log_s = tf.math.log(tf.maximum(s, epsilon))
    return _masked_row_kl(t * (log_t - log_s), mask)


def check_heads(teacher_shape, student_shape) -> None:
    """Refuses attention maps whose head counts or lengths differ (shapes ``[B, H, T, T]``)."""
    th, sh = tf.TensorShape(teacher_shape)[1], tf.TensorShape(student_shape)[1]
    if th is not None and sh is not None and th != sh:
        raise ValueError(
            f"Attention KD needs the same number of heads: the teacher has {th} and the student "
            f"{sh}; no projection maps one set of attention distributions onto another. Map "
            "layers with matching head counts (or build the student with "
            f"{th} heads), or use value-relation / hidden-state KD instead.")
    tt, st = tf.TensorShape(teacher_shape)[-1], tf.TensorShape(student_shape)[-1]
    if tt is not None and st is not None and tt != st:
        raise ValueError(f"Sequence lengths differ: the teacher's attention covers {tt} tokens and "
                         f"the student's {st}. Use the same sequence_length for both.")


def check_relation_heads(relation_heads, teacher_width, student_width) -> int:
    """Returns ``relation_heads`` if it divides both widths, else raises naming all three."""
    if isinstance(relation_heads, bool) or not isinstance(relation_heads, int) or relation_heads < 1:
        raise ValueError(f"relation_heads must be an int >= 1. Received: relation_heads={relation_heads!r}")
    for width in (teacher_width, student_width):
        if width is not None and int(width) % relation_heads:
            raise ValueError(
                f"relation_heads={relation_heads} must divide both value widths: teacher "
                f"{teacher_width}, student {student_width}. Pick a common divisor (e.g. "
                f"relation_heads={math.gcd(int(teacher_width), int(student_width)) or 1}).")
    return relation_heads


def _relation_logits(values, relation_heads: int):
    """``V Vᵀ / √d_r`` per relation head: ``[B, T, d]`` -> ``[B, R, T, T]``."""
    v = tf.cast(values, tf.float32)
    width = v.shape[-1]
    check_relation_heads(relation_heads, width, width)
    d_r = width // relation_heads
    v = tf.reshape(v, tf.concat([tf.shape(v)[:2], [relation_heads, d_r]], 0))
    v = tf.transpose(v, [0, 2, 1, 3])
    return tf.matmul(v, v, transpose_b=True) / tf.sqrt(float(d_r))


def value_relation_kl(teacher_values, student_values, relation_heads: int, mask=None) -> tf.Tensor:
    """MiniLM's value-relation loss, per example.

    Values ``[B, T, d]`` (heads concatenated) are split into ``relation_heads`` = R chunks of
    ``d / R``; each gives a relation ``softmax(V Vᵀ / √(d/R))`` ``[B, R, T, T]``. The loss is
    ``KL(teacher ‖ student)`` over the last axis, averaged over relation heads and queries,
    computed with ``log_softmax`` (no probabilities are clipped). Widths may differ: the
    relations are ``T × T`` for both, as long as R divides both widths.

    Args:
        teacher_values: tensor ``[batch, T, d_teacher]``.
        student_values: tensor ``[batch, T, d_student]``.
        relation_heads: int >= 1 dividing both widths.
        mask: None or ``[batch, T]`` (True for real tokens): padded keys are masked out of the
            softmax (as the attention itself does) and padded queries out of the mean.

    Returns:
        Tensor ``[batch]``.

    Example:

    >>> import numpy as np
    >>> v = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    >>> round(float(value_relation_kl(v, v, relation_heads=2)[0]), 6)
    0.0
    """
    check_relation_heads(relation_heads, teacher_values.shape[-1], student_values.shape[-1])
    lt = _relation_logits(teacher_values, relation_heads)
    ls = _relation_logits(student_values, relation_heads)
    if mask is not None:
        keys = tf.cast(mask, tf.bool)[:, None, None, :]
        lt, ls = tf.where(keys, lt, _NEG), tf.where(keys, ls, _NEG)
    log_t = tf.nn.log_softmax(lt, axis=-1)
    log_s = tf.nn.log_softmax(ls, axis=-1)
    return _masked_row_kl(tf.exp(log_t) * (log_t - log_s), mask)


@keras.utils.register_keras_serializable(package="kdkeras")
class HintLoss(keras.layers.Layer):
    """A feature hint: match a student layer's output to a teacher layer's output.

    Give hints to :class:`kdkeras.Distiller` (``hints=[HintLoss(...)]``); the Distiller reads
    both layers' outputs during the forward pass and adds ``weight · distance`` to the loss.
    When the two feature sizes differ, ``projection=True`` learns a linear map from the
    student's features to the teacher's (trained with the student, discarded after
    distillation: it is not part of ``distiller.student``). For transformers,
    :func:`kdkeras.distill.transformer_hints` builds the whole TinyBERT/MiniLM set.

    Args:
        teacher_layer: str. Name of the teacher layer whose output is the target.
        student_layer: str. Name of the student layer whose output is matched.
        metric: str. A key of :data:`HINT_METRICS`: ``"mse"``, ``"cosine"``,
            ``"attention_kl"`` (:func:`attention_kl`) or ``"value_relation"``
            (:func:`value_relation_kl`).
        weight: float >= 0. Weight of this hint in the total loss.
        projection: bool. Learn a ``Dense`` projection of the student features (on the last
            axis) to the teacher's feature size (``"mse"`` and ``"cosine"`` only).
        relation_heads: int or None. R of ``"value_relation"`` (required there, must divide
            both widths).
        padding_id: int or None. When set, the batch's inputs are token ids ``[B, T]`` and
            positions holding ``padding_id`` are left out of the distance (see
            :meth:`input_mask`); None compares every position.

    Example:

    >>> import numpy as np
    >>> hint = HintLoss("t_dense", "s_dense", metric="mse", projection=False)
    >>> float(hint(np.ones((2, 4), "float32"), np.zeros((2, 4), "float32"))[0])
    1.0
    """

    def __init__(
        self,
        teacher_layer: str,
        student_layer: str,
        metric: str = "mse",
        weight: float = 1.0,
        projection: bool = False,
        relation_heads: Optional[int] = None,
        padding_id: Optional[int] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if metric not in HINT_METRICS:
            raise _unknown_metric(metric)
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0. Received: weight={weight}")
        if projection and metric not in ("mse", "cosine"):
            raise ValueError(f"projection=True maps features for 'mse' or 'cosine' hints; metric="
                             f"'{metric}' compares T×T distributions, which need no projection. "
                             "Pass projection=False.")
        if metric == "value_relation":
            if relation_heads is None:
                raise ValueError("metric='value_relation' needs relation_heads=R (an int dividing "
                                 "both value widths).")
            check_relation_heads(relation_heads, None, None)
        elif relation_heads is not None:
            raise ValueError(f"relation_heads is for metric='value_relation' only. Received: "
                             f"relation_heads={relation_heads} with metric='{metric}'")
        if padding_id is not None and (isinstance(padding_id, bool) or not isinstance(padding_id, int)):
            raise ValueError(f"padding_id must be an int or None. Received: padding_id={padding_id!r}")
        self.teacher_layer = teacher_layer
        self.student_layer = student_layer
        self.metric = metric
        self.weight = float(weight)
        self.projection = bool(projection)
        self.relation_heads = relation_heads
        self.padding_id = padding_id
        self._proj = None

    def build(self, input_shape):
        teacher_shape, student_shape = (tf.TensorShape(s) for s in input_shape)
        if self.metric == "attention_kl":
            check_heads(teacher_shape, student_shape)
        elif self.metric == "value_relation":
            check_relation_heads(self.relation_heads, teacher_shape[-1], student_shape[-1])
        if self.projection:
            units = int(teacher_shape[-1])
            self._proj = keras.layers.Dense(units, use_bias=False, name="projection")
            self._proj.build(student_shape)
        super().build(input_shape)

    def input_mask(self, inputs) -> Optional[tf.Tensor]:
        """``inputs != padding_id`` ``[B, T]`` for a batch of token ids, or None without ``padding_id``."""
        if self.padding_id is None:
            return None
        if isinstance(inputs, (dict, list, tuple)):
            raise ValueError(
                f"HintLoss(padding_id={self.padding_id}) reads the padding from the batch's token "
                f"ids, one [batch, T] tensor; received {type(inputs).__name__} inputs. Pass "
                "padding_id=None to compare every position.")
        return tf.not_equal(inputs, tf.cast(self.padding_id, tf.convert_to_tensor(inputs).dtype))

    def call(self, teacher_features, student_features, token_mask=None):
        """Returns the per-example distance (unweighted); ``token_mask`` ``[B, T]`` leaves padding out."""
        if self._proj is not None:
            student_features = self._proj(student_features)
        if self.metric == "attention_kl":
            return attention_kl(teacher_features, student_features, mask=token_mask)
        if self.metric == "value_relation":
            return value_relation_kl(teacher_features, student_features, self.relation_heads, mask=token_mask)
        return feature_distance(teacher_features, student_features, metric=self.metric, mask=token_mask)

    def __call__(self, teacher_features, student_features, **kwargs):
        # Keras builds a Layer from its first input's shape only; give it both.
        if not self.built:
            self.build((tf.TensorShape(teacher_features.shape), tf.TensorShape(student_features.shape)))
        return super().__call__(teacher_features, student_features, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            teacher_layer=self.teacher_layer,
            student_layer=self.student_layer,
            metric=self.metric,
            weight=self.weight,
            projection=self.projection,
            relation_heads=self.relation_heads,
            padding_id=self.padding_id,
        )
        return config
