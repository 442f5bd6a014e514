"""How a :class:`~kdkeras.Distiller` is saved as configs, the Keras way.

``get_config`` / ``from_config`` hold what the Distiller is made of: the student's
architecture, a tf-keras teacher's, and the hints. ``get_compile_config`` /
``compile_from_config`` hold how it trains: the optimizer, ``alpha``, ``temperature``,
``ignore_class`` and the distillation loss. ``student_loss_fn`` and metrics are not kept (pass
them to ``compile`` again when they are not the defaults); weights are never part of a config.
A teacher that is not a plain tf-keras model (Keras 3, SavedModel, callable, ensemble, a
selected output) is not serialized: give it to ``from_config(config, teacher=...)``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import tf_keras as keras

__all__ = ["distiller_config", "distiller_from_config", "compile_config", "compile_kwargs"]


def _architecture(model) -> dict:
    """A model's serialized architecture, without its own compile() settings (not the
    Distiller's concern: it compiles itself)."""
    config = keras.utils.serialize_keras_object(model)
    config.pop("compile_config", None)
    return config


def distiller_config(d) -> Dict[str, Any]:
    """``{"name", "student", "teacher", "hints"}`` of a Distiller."""
    teacher = getattr(d.teacher, "model", None)
    plain_teacher = isinstance(teacher, keras.Model) and d.teacher.output is None
    return {
        "name": d.name,
        "student": _architecture(d.student),
        "teacher": _architecture(teacher) if plain_teacher else None,
        "hints": [keras.utils.serialize_keras_object(h) for h in d.hints],
    }


def distiller_from_config(cls, config, custom_objects=None, teacher=None):
    """A new ``cls`` (Distiller) from :func:`distiller_config` (new, untrained weights)."""
    config = dict(config)
    with keras.utils.custom_object_scope(custom_objects or {}):
        student = keras.utils.deserialize_keras_object(config["student"])
        if teacher is None and config.get("teacher") is not None:
            teacher = keras.utils.deserialize_keras_object(config["teacher"])
        hints = [keras.utils.deserialize_keras_object(h) for h in config.get("hints", [])]
    return cls(student=student, teacher=teacher, hints=hints or None,
               name=config.get("name", "distiller"))


def compile_config(d) -> Optional[Dict[str, Any]]:
    """The compile settings of a compiled Distiller, serialized (None before ``compile``)."""
    if not d._compiled_kd:  # noqa: SLF001 - the Distiller's own state, read by its helper
        return None
    return {
        "optimizer": keras.utils.serialize_keras_object(d.optimizer),
        "alpha": d.alpha,
        "temperature": d.temperature,
        "ignore_class": d.ignore_class,
        "distillation_loss": keras.utils.serialize_keras_object(d.distillation_loss),
    }


def compile_kwargs(config: Dict[str, Any]) -> Dict[str, Any]:
    """``Distiller.compile`` arguments from :func:`compile_config`."""
    return {
        "optimizer": keras.optimizers.deserialize(config["optimizer"]),
        "distillation_loss_fn": keras.utils.deserialize_keras_object(config["distillation_loss"]),
        "alpha": config["alpha"],
        "temperature": config["temperature"],
        "ignore_class": config.get("ignore_class"),
    }
