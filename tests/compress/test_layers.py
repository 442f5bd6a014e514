"""Layer walks, layer-by-layer copies and the skip resolver shared by prune and cluster."""

import numpy as np
import pytest
import tf_keras as keras

from kdkeras.compress.layers import (
    check_tf_keras_model,
    clone_layers,
    rebuild,
    resolve_skip,
    walk_layers,
)
from tests.compress.compress_models import build


def _nested():
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.layers.Dense(4, input_shape=(3,), name="in_dense")],
                             name="inner")
    inputs = keras.Input((3,), name="x")
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)), name="outer")


def test_walk_layers_descends_into_nested_models():
    assert [l.name for l in walk_layers(_nested())] == ["x", "inner", "in_dense", "head"]
    assert list(walk_layers(object())) == []


def test_clone_layers_gives_fn_every_plain_layer_of_nested_models():
    model = _nested()
    seen = []

    def fn(layer):
        seen.append(layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = clone_layers(model, fn)
    assert sorted(seen) == ["head", "in_dense"]  # never a model, never an input layer
    assert [l.name for l in walk_layers(copy)][1:] == ["inner", "in_dense", "head"]
    assert isinstance(copy.get_layer("inner"), keras.Sequential)
    assert copy.get_layer("head") is not model.get_layer("head")


def test_rebuild_copies_weights_without_sharing_variables():
    model = _nested()
    copy = rebuild(model, lambda layer: (layer, layer.get_weights()))
    x = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(copy.predict(x, verbose=0), model.predict(x, verbose=0))
    assert not {id(v) for v in copy.weights} & {id(v) for v in model.weights}


def test_resolve_skip_splits_names_and_classes():
    model = build("transformer")
    assert resolve_skip(model, None) == (set(), ())
    assert resolve_skip(model, "ffn") == ({"ffn"}, ())
    assert resolve_skip(model, keras.layers.Embedding) == (set(), (keras.layers.Embedding,))
    assert resolve_skip(model, ["ffn", keras.layers.Dense]) == ({"ffn"}, (keras.layers.Dense,))
    # names inside nested models count
    assert resolve_skip(_nested(), ("in_dense",)) == ({"in_dense"}, ())
    with pytest.raises(ValueError, match=r"skip entry 'fnn' names no layer.*Known layer names"):
        resolve_skip(model, ("fnn",))
    with pytest.raises(TypeError, match=r"Received: skip entry 3 of type int"):
        resolve_skip(model, (3,))


def test_check_tf_keras_model_accepts_only_built_graph_models():
    check_tf_keras_model(_nested())
    with pytest.raises(TypeError, match=r"Received: student=3"):
        check_tf_keras_model(3, "student")
    with pytest.raises(ValueError, match=r"not built"):
        check_tf_keras_model(keras.Sequential([keras.layers.Dense(2)]))
