"""Test helpers shared across the suite."""

from __future__ import annotations

import json

import tf_keras as keras


def run_serialization_test(obj):
    """Round-trips ``obj`` through ``get_config`` → JSON → ``from_config`` and through
    ``keras.utils.serialize_keras_object``; asserts the configs are equal and returns the clone.

    Works for every Keras Loss, Layer, Callback-like and schedule object that has
    ``get_config``/``from_config``.
    """
    config = obj.get_config()
    config_json = json.loads(json.dumps(config))  # every value must be JSON-serializable
    clone = type(obj).from_config(config_json)
    assert clone.get_config() == config, (clone.get_config(), config)
    restored = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(obj))
    assert type(restored) is type(obj)
    assert restored.get_config() == config
    return clone
