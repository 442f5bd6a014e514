"""Test helpers shared across the suite."""

from __future__ import annotations

import json

import tf_keras as keras


def _is_serialized_form(obj, config) -> bool:
    """TF-MOT's schedules return ``{"class_name", "config"}`` from ``get_config`` (the Keras
    serialized form) while their ``from_config`` takes the inner ``config``."""
    return (isinstance(config, dict) and set(config) == {"class_name", "config"}
            and config["class_name"] == type(obj).__name__)


def run_serialization_test(obj, custom_objects=None):
    """Round-trips ``obj`` through ``get_config`` → JSON → ``from_config`` and through Keras
    serialization; asserts the configs are equal and returns the clone.

    Works for every Keras Loss, Layer, Callback-like and schedule object that has
    ``get_config``/``from_config``, including objects (TF-MOT schedules) whose ``get_config``
    already returns the serialized ``{"class_name", "config"}`` form; ``custom_objects`` are
    in scope while deserializing.
    """
    config = obj.get_config()
    config_json = json.loads(json.dumps(config))  # every value must be JSON-serializable
    wrapped = _is_serialized_form(obj, config_json)
    clone = type(obj).from_config(config_json["config"] if wrapped else config_json)
    assert type(clone) is type(obj)
    assert clone.get_config() == config, (clone.get_config(), config)
    with keras.utils.custom_object_scope(custom_objects or {}):
        serialized = config_json if wrapped else keras.utils.serialize_keras_object(obj)
        restored = keras.utils.deserialize_keras_object(serialized)
    assert type(restored) is type(obj)
    assert restored.get_config() == config
    return clone
