"""kdkeras's step code is called unconverted by autograph (kdkeras.distill.graph_code), while the
user code Keras converts in a plain ``fit`` is still converted."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.autograph.impl import api as autograph_api

import kdkeras as kd
from kdkeras.distill.graph_code import graph_code, is_graph_code
from kdkeras.distill.loss_means import LossMeans

keras = kd.keras


def test_autograph_honours_the_mark():
    """The private marker this module relies on: fails loudly if a TensorFlow upgrade moves it."""

    def branchy(x):
        if x > 0:  # a Python ``if`` on a tensor: only autograph makes it traceable
            return x
        return -x

    marked = graph_code(lambda x: branchy(x))
    assert is_graph_code(marked) and not is_graph_code(branchy)
    assert float(tf.function(branchy)(tf.constant(-2.0))) == 2.0  # converted
    with pytest.raises(TypeError, match="tf.Tensor` as a Python `bool`|not allowed"):
        tf.function(marked)(tf.constant(-2.0))  # left alone, so the ``if`` cannot trace


@pytest.mark.parametrize("jit", [False, True])
def test_no_kdkeras_function_is_converted_in_fit_or_evaluate(jit, trained_teacher, monkeypatch):
    """Under ``jit_compile=True`` tf-keras wraps the step in a ``tf.function`` of its own, whose
    autograph converted 60 kdkeras functions on the first fit of a process (4.1-4.5 s first fit
    against 1.7-2.9 s, offline MLP student): none are converted now."""
    converted = []
    actual = autograph_api._convert_actual  # every conversion (cached or not) passes here

    def spy(entity, program_ctx):
        converted.append(f"{getattr(entity, '__module__', '?')}.{entity.__qualname__}")
        return actual(entity, program_ctx)

    monkeypatch.setattr(autograph_api, "_convert_actual", spy)
    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    for teacher in (trained_teacher, None):  # online, and offline from cached logits
        keras.utils.set_random_seed(0)
        m = kd.Distiller(kd.build_mlp_student((8, 8, 1), 10, hidden=(16,)), teacher)
        m.compile(optimizer="adam", metrics=["accuracy"], jit_compile=jit)
        logits = None if teacher else trained_teacher.predict(x, verbose=0)
        ds = kd.data.to_dataset(x, y, 8, teacher_logits=logits)
        history = m.fit(ds, epochs=1, verbose=0)
        result = m.evaluate(ds, verbose=0, return_dict=True)
        assert np.isfinite(history.history["loss"][0]) and np.isfinite(result["loss"])
    assert converted, "the spy saw no conversion at all: it no longer sees autograph's work"
    assert [c for c in converted if c.startswith("kdkeras.")] == []
    assert is_graph_code(LossMeans.update_state)


class _SignFlip(keras.layers.Layer):
    """A user layer with a Python ``if`` on a tensor: Keras converts its ``call``."""

    def call(self, x):
        if tf.reduce_sum(x) > 0:
            return x * 2.0
        return -x


@pytest.mark.parametrize("jit", [False, True])
def test_user_layers_are_still_converted(jit):
    """The mark is not ``do_not_convert``: a student layer that needs autograph trains (with
    ``do_not_convert`` on the step it would fail to trace), and takes the branch its input
    says."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    student = keras.Model(inputs, keras.layers.Dense(3)(_SignFlip()(inputs)))
    x = np.abs(np.random.default_rng(0).normal(size=(16, 4))).astype("float32")
    y = np.zeros(16, dtype="int64")
    logits = np.random.default_rng(1).normal(size=(16, 3)).astype("float32")
    m = kd.Distiller(student, None)
    m.compile(optimizer="adam", jit_compile=jit)
    history = m.fit(kd.data.to_dataset(x, y, 8, teacher_logits=logits), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    dense = student.layers[-1]
    for sign in (1.0, -1.0):  # the traced branch matches the eager layer's
        batch = sign * x[:8]
        expected = dense(_SignFlip()(tf.constant(batch)))
        np.testing.assert_allclose(m.predict(batch, verbose=0), expected.numpy(), rtol=1e-5)
