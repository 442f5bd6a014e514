"""Which Keras a model belongs to: tf-keras (Keras 2, what TF-MOT takes) or Keras 3."""

from __future__ import annotations

from typing import Any

import tf_keras


def is_tf_keras_model(obj: Any) -> bool:
    """True for a tf-keras (Keras 2) layer or model."""
    return isinstance(obj, tf_keras.layers.Layer)


def is_keras3_model(obj: Any) -> bool:
    """True for a Keras 3 (``keras`` package) layer or model, including keras-hub models."""
    if is_tf_keras_model(obj):
        return False
    try:
        import keras as keras3
    except ImportError:  # pragma: no cover
        return False
    if not getattr(keras3, "__version__", "0").startswith("3"):
        return False
    return isinstance(obj, keras3.layers.Layer)
