"""Conversion and the written file: model kinds, saved files, atomic writes, bad models."""

import gzip
import os

import keras as keras3
import numpy as np
import pytest
import tf_keras as keras

from kdkeras.export import (
    convert,
    evaluate_tflite,
    export_tflite,
    inspect_tflite,
    load_model,
    predict_tflite,
)
from kdkeras.export import tflite as tflite_mod
from kdkeras.models import SavedModelFunction
from tests.export.export_models import INPUT_SHAPE, NUM_CLASSES, tiny_cnn


def test_float32_matches_keras_to_1e5(model, data, converted):
    x, _ = data
    ref = model.predict(x, verbose=0)
    out = predict_tflite(converted("none"), x)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_keras3_model_converts_via_saved_model(tmp_path, data):
    x, _ = data
    keras3.utils.set_random_seed(0)
    m = keras3.Sequential([
        keras3.Input(INPUT_SHAPE), keras3.layers.Conv2D(3, 3, activation="relu"),
        keras3.layers.Flatten(), keras3.layers.Dense(NUM_CLASSES)])
    assert tflite_mod.is_keras3_model(m) and not tflite_mod.is_tf_keras_model(m)
    path = export_tflite(m, tmp_path / "k3.tflite")
    np.testing.assert_allclose(predict_tflite(path, x), m.predict(x, verbose=0), atol=1e-5)
    q = export_tflite(m, tmp_path / "k3_int8.tflite", quantization="int8", representative_data=x)
    assert inspect_tflite(q)["op_counts"]["QUANTIZE"] == 1
    agree = evaluate_tflite(q, x, np.zeros(len(x)), keras_model=m)["agreement_with_keras"]
    assert agree >= 0.85


def test_pruned_model_is_stripped_automatically_and_caller_untouched(tmp_path, data):
    from kdkeras.compress import prune

    x, _ = data
    pruned = prune(tiny_cnn(), target_sparsity=0.5, end_step=2)
    assert tflite_mod.is_pruned_model(pruned)
    names_before = [type(l).__name__ for l in pruned.layers]
    path = export_tflite(pruned, tmp_path / "pruned.tflite")
    assert [type(l).__name__ for l in pruned.layers] == names_before  # not mutated
    ops = inspect_tflite(path)["op_counts"]
    assert ops.get("CONV_2D") == 1 and ops.get("FULLY_CONNECTED") == 1
    ref = pruned.predict(x, verbose=0)  # masks all ones before training: same function
    np.testing.assert_allclose(predict_tflite(path, x), ref, atol=1e-5)


@pytest.mark.parametrize("suffix", [".keras", ".h5", "savedmodel"])
def test_export_from_saved_files(tmp_path, model, data, suffix):
    x, _ = data
    src = str(tmp_path / ("m" + suffix if suffix != "savedmodel" else "sm"))
    if suffix == "savedmodel":
        model.save(src, save_format="tf")
        loaded = load_model(src)
        assert isinstance(loaded, SavedModelFunction)  # the folder converts directly
        assert loaded.path == src
    else:
        model.save(src)
        assert isinstance(load_model(src), keras.Model)
    path = export_tflite(src, tmp_path / "out.tflite")
    np.testing.assert_allclose(predict_tflite(path, x), model.predict(x, verbose=0), atol=1e-5)


def test_keras3_keras_file_loads_with_keras3(tmp_path):
    m = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)])
    m.save(tmp_path / "k3.keras")
    assert tflite_mod.is_keras3_model(load_model(str(tmp_path / "k3.keras")))


def test_model_kinds_are_asked_of_compress_not_read_from_class_names():
    from kdkeras.compress import prune, quantize_aware

    class QuantizeWrapperLookalike(keras.layers.Layer):
        def call(self, x):
            return x

    lookalike = keras.Sequential([keras.Input((4,)), QuantizeWrapperLookalike(),
                                  keras.layers.Dense(2)])
    assert not tflite_mod.is_qat_model(lookalike) and not tflite_mod.is_pruned_model(lookalike)
    assert tflite_mod.is_qat_model(quantize_aware(tiny_cnn()))
    pruned = prune(tiny_cnn(), target_sparsity=0.5, end_step=2)
    assert tflite_mod.is_pruned_model(pruned) and not tflite_mod.is_qat_model(pruned)


# ----------------------------------------------------------------------- bad input


def test_not_a_model_is_a_type_error():
    with pytest.raises(TypeError, match="Cannot convert an object of type dict"):
        convert({"not": "a model"})


def test_missing_and_unsupported_model_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        load_model(str(tmp_path / "nope.keras"))
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"m\.onnx.*\.keras or \.h5"):
        load_model(str(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match="no saved_model.pb"):
        load_model(str(tmp_path))


def test_failing_conversion_keeps_previous_file_byte_identical(tmp_path):
    import tensorflow as tf

    target = tmp_path / "model.tflite"
    ok = export_tflite(
        keras.Sequential([keras.Input((4, 4)), keras.layers.Flatten(), keras.layers.Dense(2)]),
        target)
    before = open(ok, "rb").read()
    # tf.linalg.det has no TFLite builtin kernel: the converter fails.
    bad = keras.Sequential([keras.Input((4, 4)), keras.layers.Lambda(tf.linalg.det)])
    with pytest.raises(Exception, match="MatrixDeterminant"):
        export_tflite(bad, target)
    assert open(target, "rb").read() == before
    assert os.listdir(tmp_path) == ["model.tflite"]  # no temp file left behind


def test_export_creates_parent_dirs_and_returns_path(tmp_path, model):
    path = export_tflite(model, tmp_path / "a" / "b" / "m.tflite")
    assert path == str(tmp_path / "a" / "b" / "m.tflite")
    data = open(path, "rb").read()
    assert len(gzip.compress(data)) < len(data)
