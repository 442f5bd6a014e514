"""Helpers shared by the compression modules: input checks, copies, layer walks.

Private: the public names live in :mod:`kdkeras.compress`.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator

import tf_keras as keras
from kdkeras._keras_kind import is_keras3_model

logger = logging.getLogger("kdkeras.compress")

_BUILD_TF_KERAS_HINT = (
    "TF-MOT only accepts tf-keras (Keras 2) models. Build the student with `kdkeras.keras` "
    "(tf-keras), e.g. `import kdkeras as kd; inputs = kd.keras.Input(shape); ... ; "
    "student = kd.keras.Model(inputs, outputs)` or a builder such as "
    "`kd.build_cnn_student(...)`; a Keras 3 model can stay the *teacher*."
)


def check_tf_keras_model(model, arg: str = "model") -> None:
    """Raises a clear error unless ``model`` is a built Functional or Sequential tf-keras model.

    Args:
        model: object. What the caller passed.
        arg: str. The argument name, echoed in the message.

    Raises:
        TypeError: for a Keras 3 model (with how to build a tf-keras one) or a non-model.
        ValueError: for a subclassed or unbuilt model (both cannot be cloned layer by layer).
    """
    if is_keras3_model(model):
        raise TypeError(
            f"`{arg}` is a Keras 3 model ({type(model).__module__}.{type(model).__name__}), "
            f"not a tf-keras model. {_BUILD_TF_KERAS_HINT} Received: {arg}={model!r}"
        )
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`{arg}` must be a tf-keras `Model` (Functional or Sequential). "
            f"{_BUILD_TF_KERAS_HINT} Received: {arg}={model!r} of type {type(model).__name__}"
        )
    is_graph = getattr(model, "_is_graph_network", False) or isinstance(model, keras.Sequential)
    if not is_graph:
        raise ValueError(
            f"`{arg}` is a subclassed model ({type(model).__name__}); compression clones the "
            "model layer by layer, which needs the Functional or Sequential API. Rebuild the "
            f"student as `kd.keras.Model(inputs, outputs)`. Received: {arg}={model!r}"
        )
    if not model.built:
        raise ValueError(
            f"`{arg}` is not built, so it has no weights to compress. Give the first layer an "
            f"input shape (e.g. `kd.keras.Input(shape)`) or call the model once on data. "
            f"Received: {arg}={model.name!r}"
        )


def rebuild(model: keras.Model, unwrap: Callable) -> keras.Model:
    """A copy of ``model`` made of fresh layers, each given weights chosen by ``unwrap``.

    ``unwrap(layer)`` returns ``(template, weights)``: the new layer is
    ``template.__class__.from_config(template.get_config())`` and receives ``weights`` once the
    copy is built. Rebuilding from the config of plain layers (not of wrappers) is what lets a
    ``MultiHeadAttention``, whose weights only exist after its first call, be copied; the copy
    shares no variable with ``model``. Nested models are rebuilt recursively.
    """
    pending = []

    def _clone(layer):
        if isinstance(layer, keras.Model):
            return rebuild(layer, unwrap)
        template, weights = unwrap(layer)
        fresh = template.__class__.from_config(template.get_config())
        pending.append((fresh, weights))
        return fresh

    copy = keras.models.clone_model(model, clone_function=_clone)
    for fresh, weights in pending:
        fresh.set_weights(weights)
    return copy


def walk_layers(model) -> Iterator[keras.layers.Layer]:
    """Yields every layer of ``model``, descending into nested models (depth first)."""
    for layer in getattr(model, "layers", []):
        yield layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)
