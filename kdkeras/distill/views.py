"""Consistent views: one augmentation per batch, seen by both teacher and student.

Distillation pays when the student matches the teacher on the very view it is shown ("function
matching", Beyer et al. 2022): the batch is augmented once inside ``train_step``, then the
teacher labels that augmented view and the student learns it. Cached logits label the original
inputs, so an augmentation needs a teacher that runs online.

Example:

>>> import numpy as np, kdkeras as kd
>>> flip = as_augmentation(kd.keras.layers.RandomFlip("horizontal", seed=0))
>>> tuple(augment_batch(flip, np.zeros((4, 8, 8, 1), "float32")).shape)
(4, 8, 8, 1)

References:
    Beyer et al. "Knowledge distillation: A good teacher is patient and consistent", 2022.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import tensorflow as tf
import tf_keras as keras

__all__ = ["as_augmentation", "augment_batch"]


def as_augmentation(augment: Any) -> Optional[Callable]:
    """``fn(x) -> x`` from a tf-keras preprocessing layer or model (called with
    ``training=True``) or a function of a batch; None stays None.

    Raises:
        TypeError: anything else (naming it).
    """
    if augment is None:
        return None
    if isinstance(augment, keras.layers.Layer):
        return lambda x: augment(x, training=True)
    if callable(augment):
        return augment
    raise TypeError("augment must be a tf-keras preprocessing layer or model, or a function of "
                    f"a batch of inputs. Received: augment={augment!r}")


def augment_batch(augment: Callable, x):
    """``augment(x)``, checked to keep the batch size and the per-example shape.

    Raises:
        ValueError: an augmentation that changes the shape (both shapes named).
        TypeError: inputs that are not one tensor (dict or list inputs are not augmented).
    """
    if isinstance(x, (dict, list, tuple)):
        raise TypeError("augment works on a single input tensor; this student takes "
                        f"{type(x).__name__} inputs. Augment them in the tf.data pipeline.")
    out = augment(x)
    x_shape, out_shape = tf.TensorShape(x.shape), tf.TensorShape(out.shape)
    if x_shape.rank is not None and out_shape.rank is not None and not (
            out_shape.is_compatible_with(x_shape)):
        raise ValueError(f"augment must keep the batch shape: it turned {x_shape} into "
                         f"{out_shape}. Crop or resize back to the input shape inside it.")
    return tf.cast(out, x.dtype) if out.dtype != x.dtype else out
