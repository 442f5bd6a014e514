"""Keep feature probes in a functional model: :func:`anchor` and its :class:`Anchor` layer.

A functional model (tf-keras and Keras 3 alike) keeps only the layers its outputs depend on.
A transformer block's attention probabilities and value projection do not lead to its output,
so named probes on them (``attention_{i}``, ``values_{i}``, read by
:func:`kdkeras.distill.transformer_hints`) would be dropped. ``anchor(x, *features)`` returns
``x`` unchanged through a layer that also takes ``features``: the probes become ancestors of
the output at no cost (the layer ignores them; TFLite conversion drops the unused branches).

Example:

>>> import numpy as np, tf_keras as keras
>>> ids = keras.Input((4,))
>>> probe = keras.layers.Activation("linear", name="probe")(ids * 2.0)
>>> model = keras.Model(ids, anchor(keras.layers.Dense(1, name="out")(ids), probe))
>>> "probe" in [layer.name for layer in model.layers]
True
"""

from __future__ import annotations

from typing import Optional

import keras as keras3  # Keras 3, for keras-hub teachers
import tf_keras as keras

__all__ = ["Anchor", "Keras3Anchor", "anchor"]


class _PassFirst:
    """What both Keras's anchors do: return ``x`` (the first input) and its mask."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        # A one-element list may come back as the bare tensor when Keras rebuilds the graph
        # (clone_model, from_config): then it *is* x, not a list to index.
        return inputs[0] if isinstance(inputs, (list, tuple)) else inputs

    def compute_mask(self, inputs, mask=None):
        return mask[0] if isinstance(mask, (list, tuple)) else mask


@keras.utils.register_keras_serializable(package="kdkeras")
class Anchor(_PassFirst, keras.layers.Layer):
    """``[x, *features] -> x``: a no-op that keeps ``features``' layers in a tf-keras model.

    The Keras mask of ``x`` passes through; the features' masks are dropped.
    """

    def compute_output_shape(self, input_shape):
        return input_shape[0] if isinstance(input_shape, list) else input_shape


@keras3.saving.register_keras_serializable(package="kdkeras", name="Anchor")
class Keras3Anchor(_PassFirst, keras3.layers.Layer):
    """The Keras 3 twin of :class:`Anchor`, for Keras 3 models such as keras-hub teachers
    (registered at import, so a saved teacher loads in a fresh process)."""

    def compute_output_shape(self, input_shape):
        nested = isinstance(input_shape, list) and isinstance(input_shape[0], (list, tuple))
        return tuple(input_shape[0]) if nested else tuple(input_shape)


def anchor(x, *features, name: Optional[str] = None):
    """Returns ``x`` unchanged, through an :class:`Anchor` that also takes ``features``, so the
    layers producing them stay in the functional model.

    Args:
        x: a symbolic tensor (tf-keras or Keras 3) that leads to the model's output.
        *features: symbolic tensors of the same Keras, e.g. an ``attention_{i}`` probe's output.
        name: str or None. Name of the anchor layer (e.g. ``"hidden_0"``: the block output).

    Returns:
        The anchored tensor (``x`` itself when there are no features and no name).
    """
    if not features and name is None:
        return x
    keras3_tensor = type(x).__module__.split(".")[0] == "keras"  # tf-keras tensors: "tf_keras"
    cls = Keras3Anchor if keras3_tensor else Anchor
    return cls(name=name)([x, *features])
