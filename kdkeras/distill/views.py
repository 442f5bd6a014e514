"""Consistent views: one augmentation per batch, seen by both teacher and student.

Distillation pays when the student matches the teacher on the very view it is shown ("function
matching", Beyer et al. 2022): the batch is augmented once inside ``train_step``, then the
teacher labels that augmented view and the student learns it. Cached logits label the original
inputs, so an augmentation needs a teacher that runs online.

:class:`ShiftFlip` is a preprocessing layer whose random draws are explicit parameters: the
same layer augments online, and replays stored views exactly for the cached-view teacher
(:mod:`kdkeras.distill.view_cache`).

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

import numpy as np
import tensorflow as tf
import tf_keras as keras

from kdkeras.validation import check_number

__all__ = ["as_augmentation", "augment_batch", "ShiftFlip"]

FILL_MODES = ("reflect", "nearest", "wrap", "constant")


@keras.utils.register_keras_serializable(package="kdkeras")
class ShiftFlip(keras.layers.Layer):
    """Random whole-pixel shift (and horizontal flip) whose draws can be stored and replayed.

    In training it acts like ``RandomTranslation(height_factor, width_factor)`` (plus
    ``RandomFlip("horizontal")`` with ``flip=True``), with the same transform op Keras uses
    (``ImageProjectiveTransformV3``); in inference it is the identity. Its draws are explicit:
    :meth:`sample` returns ``[n, 3]`` parameters (vertical shift, horizontal shift, flip) and
    :meth:`apply` makes exactly that view, so a view labelled once by a teacher can be shown
    again to the student (:func:`kdkeras.distill.view_cache.cache_teacher_views`).

    Args:
        height_factor: float in [0, 1). Largest vertical shift, as a fraction of the height.
        width_factor: float in [0, 1). Largest horizontal shift, as a fraction of the width.
        flip: bool. Also flip left-right with probability 1/2 (only where the classes allow it:
            not for digits or text).
        fill_mode: ``"reflect"`` (Keras's default), ``"nearest"``, ``"wrap"`` or ``"constant"``
            (zeros).

    Example:

    >>> import numpy as np
    >>> layer = ShiftFlip(0.25, 0.25)
    >>> x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    >>> layer.apply(x, np.array([[0, 1, 0]], "float32"))[0, :, :, 0].numpy()[0].tolist()
    [0.0, 0.0, 1.0, 2.0]
    """

    n_params = 3

    def __init__(self, height_factor: float = 0.1, width_factor: float = 0.1, flip: bool = False,
                 fill_mode: str = "reflect", **kwargs):
        super().__init__(**kwargs)
        for name, value in (("height_factor", height_factor), ("width_factor", width_factor)):
            check_number(value, name, low=0.0, high=1.0, high_open=True)
        if fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {', '.join(FILL_MODES)}. Received: "
                             f"fill_mode={fill_mode!r}")
        self.height_factor, self.width_factor = float(height_factor), float(width_factor)
        self.flip, self.fill_mode = bool(flip), fill_mode

    def _limits(self, shape):
        if len(shape) != 4:
            raise ValueError(f"ShiftFlip works on image batches [batch, height, width, channels]. "
                             f"Received shape {tuple(shape)}")
        return round(self.height_factor * shape[1]), round(self.width_factor * shape[2])

    def sample(self, n: int, shape, rng: np.random.Generator) -> np.ndarray:
        """``[n, 3]`` float32 draws (shift down, shift right, flip) for images of ``shape``."""
        dy, dx = self._limits(shape)
        return np.stack([rng.integers(-dy, dy + 1, n), rng.integers(-dx, dx + 1, n),
                         rng.integers(0, 2, n) * self.flip], axis=1).astype(np.float32)

    def sample_tf(self, x) -> tf.Tensor:
        """The same draws in the graph, one row per example of ``x``."""
        dy, dx = self._limits(x.shape)
        n = tf.shape(x)[:1]
        draw = lambda hi: tf.random.uniform(n, -hi, hi + 1, tf.int32)  # noqa: E731
        flip = tf.random.uniform(n, 0, 2, tf.int32) * int(self.flip)
        return tf.cast(tf.stack([draw(dy), draw(dx), flip], axis=1), tf.float32)

    def apply(self, x, params) -> tf.Tensor:
        """The view of ``x`` that ``params`` (from :meth:`sample`) describe."""
        x = tf.convert_to_tensor(x)
        self._limits(x.shape)
        params = tf.cast(params, tf.float32)
        flipped = tf.where(params[:, 2:3, None, None] > 0.5, tf.reverse(x, axis=[2]), x)
        n = tf.shape(x)[0]
        one, zero = tf.ones([n]), tf.zeros([n])
        # Output pixel (row, col) reads input (row − dy, col − dx), as Keras's translation does.
        transforms = tf.stack([one, zero, -params[:, 1], zero, one, -params[:, 0], zero, zero], 1)
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=tf.cast(flipped, tf.float32), transforms=transforms,
            output_shape=tf.shape(x)[1:3], fill_value=0.0, interpolation="NEAREST",
            fill_mode=self.fill_mode.upper())
        return tf.cast(out, x.dtype)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        return self.apply(inputs, self.sample_tf(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(height_factor=self.height_factor, width_factor=self.width_factor,
                      flip=self.flip, fill_mode=self.fill_mode)
        return config


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
