"""Model and layer plumbing shared by the compression modules.

Input checks (:func:`check_tf_keras_model`), walks over nested models (:func:`walk_layers`),
copies layer by layer (:func:`clone_layers`, :func:`rebuild`) and the ``skip=`` argument of
:func:`kdkeras.compress.prune` and :func:`kdkeras.compress.cluster` (:func:`resolve_skip`).
TF-MOT is not imported here.

>>> import tf_keras as keras
>>> inner = keras.Sequential([keras.layers.Dense(2, input_shape=(3,), name="d")], name="inner")
>>> inputs = keras.Input((3,))
>>> outer = keras.Model(inputs, keras.layers.Dense(1, name="head")(inner(inputs)))
>>> [layer.name for layer in walk_layers(outer)][1:]
['inner', 'd', 'head']
>>> resolve_skip(outer, ("d", keras.layers.Dense))[0]
{'d'}
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Tuple, Union

import tf_keras as keras
from kdkeras._keras_kind import is_keras3_model

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


def walk_layers(model) -> Iterator[keras.layers.Layer]:
    """Yields every layer of ``model``, descending into nested models (depth first)."""
    for layer in getattr(model, "layers", []):
        yield layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)


def clone_layers(model: keras.Model, fn: Callable) -> keras.Model:
    """``keras.models.clone_model(model)`` with ``fn(layer)`` giving each layer of the copy.

    Nested models are cloned the same way, so ``fn`` only ever sees layers that are not
    models; it returns the layer to use (the layer itself, a wrapper around it, a new one).
    """
    def _clone(layer):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=_clone)
        return fn(layer)

    return keras.models.clone_model(model, clone_function=_clone)


def rebuild(model: keras.Model, unwrap: Callable) -> keras.Model:
    """A copy of ``model`` made of fresh layers, each given weights chosen by ``unwrap``.

    ``unwrap(layer)`` returns ``(template, weights)``: the new layer is
    ``template.__class__.from_config(template.get_config())`` and receives ``weights`` once the
    copy is built. Rebuilding from the config of plain layers (not of wrappers) is what lets a
    ``MultiHeadAttention``, whose weights only exist after its first call, be copied; the copy
    shares no variable with ``model``. Nested models are rebuilt recursively.
    """
    pending = []

    def _fresh(layer):
        template, weights = unwrap(layer)
        fresh = template.__class__.from_config(template.get_config())
        pending.append((fresh, weights))
        return fresh

    copy = clone_layers(model, _fresh)
    for fresh, weights in pending:
        fresh.set_weights(weights)
    return copy


def resolve_skip(model: keras.Model,
                 skip: Union[None, str, type, Iterable[Union[str, type]]]) -> Tuple[set, tuple]:
    """Splits ``skip`` into layer names and layer classes, checking each entry matches a layer.

    Args:
        model: tf_keras.Model. The model the entries refer to (nested models included).
        skip: layer names (str), tf-keras layer classes, an iterable of them, or None.

    Returns:
        ``(names, classes)``: a set of layer names and a tuple of classes for ``isinstance``.

    Raises:
        ValueError: an entry names no layer, or a class matches no layer of ``model``.
        TypeError: an entry is neither a str nor a tf-keras layer class (e.g. a Keras 3 one).
    """
    if skip is None:
        return set(), ()
    if isinstance(skip, (str, type)):
        skip = (skip,)
    names, classes = set(), []
    all_layers = list(walk_layers(model))
    known = [layer.name for layer in all_layers]
    for entry in skip:
        if isinstance(entry, str):
            if entry not in known:
                raise ValueError(
                    f"skip entry {entry!r} names no layer of model {model.name!r}. Use layer "
                    f"names from `[l.name for l in model.layers]` or layer classes such as "
                    f"`kd.keras.layers.Embedding`. Known layer names: {', '.join(known)}. "
                    f"Received: skip={tuple(skip)!r}")
            names.add(entry)
        elif isinstance(entry, type) and issubclass(entry, keras.layers.Layer):
            if not any(isinstance(layer, entry) for layer in all_layers):
                raise ValueError(
                    f"skip entry {entry.__name__} matches no layer of model {model.name!r} "
                    f"(its layer types: {', '.join(sorted({type(l).__name__ for l in all_layers}))}"
                    f"). Remove it or check it is a tf-keras (`kd.keras.layers`) class. "
                    f"Received: skip={tuple(skip)!r}")
            classes.append(entry)
        else:
            hint = (" (a Keras 3 class never matches a tf-keras layer: use "
                    f"`kd.keras.layers.{entry.__name__}`)" if isinstance(entry, type) else "")
            raise TypeError(
                f"skip entries must be layer names (str) or tf-keras layer classes{hint}. "
                f"Received: skip entry {entry!r} of type {type(entry).__name__}")
    return names, tuple(classes)
