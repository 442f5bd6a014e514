"""The hard-label side of distillation: the student's loss on true labels, per example."""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf
import tf_keras as keras

from kdkeras.distill.losses import is_keras_loss


def per_example(loss_fn: Any) -> Callable:
    """Turns a Keras loss (object, function or name) into an unreduced ``fn(y, pred)``."""
    if isinstance(loss_fn, str):
        # The Distiller works on logits: a crossentropy given by name is taken from logits.
        from_logits = FROM_LOGITS.get(loss_fn)
        loss_fn = from_logits(from_logits=True) if from_logits else keras.losses.get(loss_fn)
        return loss_fn.call if isinstance(loss_fn, keras.losses.Loss) else loss_fn
    if is_keras_loss(loss_fn):
        return loss_fn.call
    if callable(loss_fn):
        return loss_fn
    raise TypeError(f"student_loss_fn must be a Keras loss or a callable. Received: {loss_fn!r}")


FROM_LOGITS = {
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
}


def default_student_loss(y_true, logits):
    """Cross-entropy on logits: categorical for one-hot ``y``, sparse for class indices."""
    y_rank, p_rank = y_true.shape.rank, logits.shape.rank
    if y_rank == p_rank and y_true.shape[-1] == logits.shape[-1] and y_true.shape[-1] != 1:
        return keras.losses.categorical_crossentropy(
            tf.cast(y_true, logits.dtype), logits, from_logits=True
        )
    return keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)
