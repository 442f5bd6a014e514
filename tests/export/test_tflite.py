import gzip
import os

import keras as keras3
import numpy as np
import pytest
import tf_keras as keras

from tests.export.export_models import INPUT_SHAPE, NUM_CLASSES, tiny_cnn
from kdkeras.export import (
    QUANTIZATIONS,
    benchmark_tflite,
    convert,
    evaluate_tflite,
    export_tflite,
    inspect_tflite,
    load_model,
    predict_tflite,
)
from kdkeras.export import tflite as tflite_mod

ALL_MODES = QUANTIZATIONS.names()

# Max |tflite - keras| on the logits, relative to the logits' range. float32 is exact up to
# float rounding; the quantized modes carry int8 (or int16) rounding of weights/activations.
REL_TOL = {
    "none": 1e-5,
    "float16": 5e-3,
    "dynamic": 5e-2,
    "dynamic_wi8_afp32": 5e-2,
    "int8": 5e-2,
    "int8_io": 5e-2,
    "static_wi8_ai8": 5e-2,
    "static_wi8_ai16": 5e-2,
}


def test_registry_lists_every_mode():
    assert ALL_MODES == sorted(
        ["none", "float16", "dynamic", "int8", "int8_io",
         "dynamic_wi8_afp32", "static_wi8_ai8", "static_wi8_ai16"])
    assert QUANTIZATIONS.get("int8").needs_representative_data
    assert not QUANTIZATIONS.get("dynamic").needs_representative_data


def test_float32_matches_keras_to_1e5(model, data, converted):
    x, _ = data
    ref = model.predict(x, verbose=0)
    out = predict_tflite(converted("none"), x)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ALL_MODES)
def test_every_mode_converts_runs_and_matches(mode, model, data, converted):
    x, _ = data
    path = converted(mode)
    with open(path, "rb") as f:
        assert f.read(8)[4:8] == b"TFL3"
    ref = model.predict(x, verbose=0)
    out = predict_tflite(path, x)
    assert out.shape == ref.shape == (len(x), NUM_CLASSES)
    span = float(ref.max() - ref.min())
    err = float(np.abs(out - ref).max())
    assert err <= REL_TOL[mode] * span + 1e-6, (mode, err, span)
    res = evaluate_tflite(path, x, ref.argmax(-1), keras_model=model)
    assert res["n"] == len(x)
    assert res["agreement_with_keras"] == res["accuracy"]
    assert res["accuracy"] >= (1.0 if mode in ("none", "float16") else 0.85)
    lat = benchmark_tflite(path, warmup=1, runs=3)
    assert lat.runs == 3 and lat.median_ms > 0


@pytest.mark.slow
def test_modes_produce_the_documented_tensor_types(converted):
    modes = ("none", "float16", "int8", "int8_io", "static_wi8_ai16")
    dt = {m: inspect_tflite(converted(m)) for m in modes}
    assert dt["none"]["inputs"][0]["dtype"] == "float32"
    assert dt["float16"]["tensor_dtypes"].get("float16", 0) >= 2  # conv + dense kernels
    assert dt["int8"]["inputs"][0]["dtype"] == "float32"  # float interface ...
    assert dt["int8"]["op_counts"]["QUANTIZE"] == 1  # ... quantized inside
    assert dt["int8_io"]["inputs"][0]["dtype"] == "int8"
    assert dt["int8_io"]["outputs"][0]["dtype"] == "int8"
    assert "QUANTIZE" not in dt["int8_io"]["op_counts"]
    assert dt["static_wi8_ai16"]["inputs"][0]["dtype"] == "int16"
    assert dt["int8"]["tensor_dtypes"]["int8"] >= 4  # weights and activations


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


@pytest.mark.slow
def test_qat_model_needs_no_representative_data(tmp_path, data):
    import tensorflow_model_optimization as tfmot

    x, _ = data
    qat = tfmot.quantization.keras.quantize_model(tiny_cnn())
    assert tflite_mod.is_qat_model(qat)
    path = export_tflite(qat, tmp_path / "qat.tflite", quantization="int8_io")
    info = inspect_tflite(path)
    assert info["inputs"][0]["dtype"] == "int8" and info["tensor_dtypes"]["int8"] >= 5
    ref = qat.predict(x, verbose=0)
    err = np.abs(predict_tflite(path, x) - ref).max()
    assert err <= 0.05 * float(ref.max() - ref.min())


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
        assert loaded == src  # SavedModel directories convert directly
    else:
        model.save(src)
        assert isinstance(load_model(src), keras.Model)
    path = export_tflite(src, tmp_path / "out.tflite")
    np.testing.assert_allclose(predict_tflite(path, x), model.predict(x, verbose=0), atol=1e-5)


def test_keras3_keras_file_loads_with_keras3(tmp_path):
    m = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)])
    m.save(tmp_path / "k3.keras")
    assert tflite_mod.is_keras3_model(load_model(str(tmp_path / "k3.keras")))


# ----------------------------------------------------------------------- bad input


def test_unknown_mode_lists_known_ones(model):
    with pytest.raises(ValueError) as e:
        convert(model, quantization="int9")
    msg = str(e.value)
    assert "'int9'" in msg and "Did you mean 'int8'" in msg
    for name in ALL_MODES:
        assert name in msg


@pytest.mark.parametrize("mode", ["int8", "int8_io", "static_wi8_ai8", "static_wi8_ai16"])
def test_integer_mode_without_representative_data_says_why(model, mode):
    with pytest.raises(ValueError) as e:
        convert(model, quantization=mode)
    msg = str(e.value)
    assert f"quantization='{mode}'" in msg
    assert "range" in msg and "representative_data=" in msg and "'dynamic'" in msg


def test_wrong_representative_shape_names_both_shapes(model):
    bad = np.zeros((10, 28, 28, 1), np.float32)
    with pytest.raises(ValueError) as e:
        convert(model, quantization="int8", representative_data=bad)
    msg = str(e.value)
    assert "(28, 28, 1)" in msg and "(8, 8, 1)" in msg


def test_representative_data_input_count_mismatch(model):
    x = np.zeros((4,) + INPUT_SHAPE, np.float32)
    with pytest.raises(ValueError, match=r"2 input array\(s\) but the model has 1"):
        convert(model, quantization="int8", representative_data=[x, x])


def test_bad_max_calibration_samples(model):
    with pytest.raises(ValueError, match="max_calibration_samples=0"):
        convert(model, max_calibration_samples=0)


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


def test_atomic_write_cleans_up_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"old!TFL3")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(tflite_mod.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        tflite_mod.atomic_write_bytes(target, b"new!TFL3 data")
    assert target.read_bytes() == b"old!TFL3"
    assert os.listdir(tmp_path) == ["m.tflite"]


def test_export_creates_parent_dirs_and_returns_path(tmp_path, model):
    path = export_tflite(model, tmp_path / "a" / "b" / "m.tflite")
    assert path == str(tmp_path / "a" / "b" / "m.tflite")
    data = open(path, "rb").read()
    assert len(gzip.compress(data)) < len(data)


@pytest.mark.parametrize("ids_dtype", ["int32", "int64"])
def test_int8_calibration_casts_token_ids_to_the_input_dtype(tmp_path, ids_dtype):
    # An int32 Embedding input calibrated with numpy's default int64 ids: the TFLite calibrator
    # used to fail with "Got value of type INT64 but expected type INT32".
    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.Input((6,), dtype="int32"),
        keras.layers.Embedding(12, 4),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(3),
    ])
    ids = np.random.default_rng(0).integers(0, 12, (32, 6)).astype(ids_dtype)
    path = export_tflite(m, tmp_path / "ids.tflite", "int8", representative_data=ids)
    ref = m.predict(ids.astype("int32"), verbose=0)
    out = predict_tflite(path, ids)
    assert np.abs(out - ref).max() <= 5e-2 * np.ptp(ref)
