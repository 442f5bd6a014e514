"""FitNets hints: match an intermediate student layer to a teacher layer, through a learned
projection when the widths differ.

References:
    Romero et al. "FitNets: Hints for Thin Deep Nets", 2015.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

__all__ = ["feature_distance", "HintLoss"]


def feature_distance(teacher_features, student_features, metric: str = "mse") -> tf.Tensor:
    """Distance between intermediate features, per example (every non-batch axis reduced).

    Args:
        teacher_features: tensor ``[batch, ...]``.
        student_features: tensor ``[batch, ...]`` of the same size (project it first if not).
        metric: ``"mse"`` (mean squared error) or ``"cosine"`` (``1 − cosine similarity`` of
            the flattened features, so 0 when aligned and 2 when opposite).

    Returns:
        Tensor ``[batch]``.

    Example:

    >>> import numpy as np
    >>> a = np.array([[1.0, 0.0]], "float32")
    >>> float(feature_distance(a, -a, metric="cosine")[0])
    2.0
    """
    t, s = tf.cast(teacher_features, tf.float32), tf.cast(student_features, tf.float32)
    batch = tf.shape(t)[0]
    t = tf.reshape(t, [batch, -1])
    s = tf.reshape(s, [batch, -1])
    if metric == "mse":
        return tf.reduce_mean(tf.square(t - s), axis=-1)
    if metric == "cosine":
        t = tf.math.l2_normalize(t, axis=-1)
        s = tf.math.l2_normalize(s, axis=-1)
        return 1.0 - tf.reduce_sum(t * s, axis=-1)
    raise _unknown_metric(metric)


def _unknown_metric(metric: str) -> ValueError:
    return ValueError(f"Unknown feature metric '{metric}'. Known: cosine, mse")



@keras.utils.register_keras_serializable(package="kdkeras")
class HintLoss(keras.layers.Layer):
    """A FitNets hint: match a student layer's output to a teacher layer's output.

    Give hints to :class:`kdkeras.Distiller` (``hints=[HintLoss(...)]``); the Distiller reads
    both layers' outputs during the forward pass and adds ``weight · distance`` to the loss.
    When the two feature sizes differ, ``projection=True`` learns a linear map from the
    student's features to the teacher's (trained with the student, discarded after
    distillation: it is not part of ``distiller.student``).

    Args:
        teacher_layer: str. Name of the teacher layer whose output is the target.
        student_layer: str. Name of the student layer whose output is matched.
        metric: str. ``"mse"`` or ``"cosine"``.
        weight: float >= 0. Weight of this hint in the total loss.
        projection: bool. Learn a ``Dense`` projection of the student features (on the last
            axis) to the teacher's feature size.

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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if metric not in ("mse", "cosine"):
            raise _unknown_metric(metric)
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0. Received: weight={weight}")
        self.teacher_layer = teacher_layer
        self.student_layer = student_layer
        self.metric = metric
        self.weight = float(weight)
        self.projection = bool(projection)
        self._proj = None

    def build(self, input_shape):
        teacher_shape, student_shape = input_shape
        if self.projection:
            units = int(teacher_shape[-1])
            self._proj = keras.layers.Dense(units, use_bias=False, name="projection")
            self._proj.build(student_shape)
        super().build(input_shape)

    def call(self, teacher_features, student_features):
        """Returns the per-example distance (unweighted)."""
        if self._proj is not None:
            student_features = self._proj(student_features)
        return feature_distance(teacher_features, student_features, metric=self.metric)

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
        )
        return config
