"""Quantization modes: the registry, what each mode does to the converter and to the file."""

import types

import numpy as np
import pytest
import tensorflow as tf

from kdkeras.export import (
    QUANTIZATIONS,
    AIEdgeQuantizerMode,
    ConverterMode,
    QuantizationMode,
    benchmark_tflite,
    convert,
    evaluate_tflite,
    export_tflite,
    inspect_tflite,
    predict_tflite,
)
from kdkeras.export import tflite as tflite_mod
from kdkeras.export.modes import get_mode
from kdkeras.registry import Registry
from tests.export.export_models import NUM_CLASSES, tiny_cnn

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
    assert all(isinstance(QUANTIZATIONS.get(n), QuantizationMode) for n in ALL_MODES)
    assert {n for n in ALL_MODES if QUANTIZATIONS.get(n).backend == "ai_edge_quantizer"} == {
        "dynamic_wi8_afp32", "static_wi8_ai8", "static_wi8_ai16"}


def _fake_converter():
    return types.SimpleNamespace(target_spec=types.SimpleNamespace())


def _rep():
    yield [np.zeros((1, 2), np.float32)]


@pytest.mark.parametrize("qat", [False, True])
def test_converter_modes_set_the_documented_options(qat):
    """What each built-in converter mode sets, read off a stand-in converter (no conversion)."""
    settings = {}
    for name in ("none", "float16", "dynamic", "int8", "int8_io"):
        conv = _fake_converter()
        QUANTIZATIONS.get(name).configure(conv, _rep, qat)
        settings[name] = {**vars(conv), **vars(conv.target_spec)}
        settings[name].pop("target_spec")
    default = [tf.lite.Optimize.DEFAULT]
    assert settings["none"] == {}
    assert settings["float16"] == {"optimizations": default, "supported_types": [tf.float16]}
    assert settings["dynamic"] == {"optimizations": default}  # no calibration data given
    int8 = {"optimizations": default, "representative_dataset": _rep}
    if not qat:  # QAT graphs carry their ranges; integer-only ops are not forced on them
        int8["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    assert settings["int8"] == int8
    assert settings["int8_io"] == {**int8, "inference_input_type": tf.int8,
                                   "inference_output_type": tf.int8}


def test_only_converter_modes_exempt_qat_models_from_calibration():
    for name in ("int8", "int8_io"):
        mode = QUANTIZATIONS.get(name)
        assert mode.requires_representative_data(qat=False)
        assert not mode.requires_representative_data(qat=True)
    for name in ("static_wi8_ai8", "static_wi8_ai16"):
        assert QUANTIZATIONS.get(name).requires_representative_data(qat=True)
    for name in ("none", "float16", "dynamic", "dynamic_wi8_afp32"):
        assert not QUANTIZATIONS.get(name).requires_representative_data(qat=False)


def test_ai_edge_quantizer_modes_convert_to_float32_then_quantize():
    conv = _fake_converter()
    mode = QUANTIZATIONS.get("static_wi8_ai8")
    assert isinstance(mode, AIEdgeQuantizerMode) and mode.recipe == "static_wi8_ai8"
    mode.configure(conv, _rep, False)
    assert vars(conv) == {"target_spec": conv.target_spec} and vars(conv.target_spec) == {}
    assert QuantizationMode("plain", "float32").quantize(b"abcdTFL3", None) == b"abcdTFL3"


HALF = ConverterMode("half_test", "float16 weights, registered by a test",
                     optimize=True, supported_types=("float16",))


def test_a_newly_registered_mode_is_honoured_by_name(model, tmp_path):
    """One registration makes a mode usable by name: convert runs its configure, nothing else."""
    QUANTIZATIONS.register(HALF.name, HALF)
    try:
        assert HALF.name in QUANTIZATIONS.names()
        f32 = export_tflite(model, tmp_path / "f32.tflite", "none")
        half = export_tflite(model, tmp_path / "half.tflite", HALF.name)
        info = inspect_tflite(half)
        assert info["tensor_dtypes"].get("float16", 0) >= 2  # conv + dense kernels
        assert info["op_counts"]["DEQUANTIZE"] >= 2
        assert "float16" not in inspect_tflite(f32)["tensor_dtypes"]
    finally:
        assert QUANTIZATIONS.unregister(HALF.name) is HALF
    assert HALF.name not in QUANTIZATIONS


def test_a_mode_from_a_fresh_registry_is_passed_as_an_object(model, tmp_path):
    class Recording(ConverterMode):
        calls = []

        def configure(self, converter, representative_dataset, qat):
            type(self).calls.append((hasattr(converter, "convert"), representative_dataset, qat))
            super().configure(converter, representative_dataset, qat)

    registry = Registry("quantization")
    registry.register("recording", Recording("recording", "float16 and a call log",
                                             optimize=True, supported_types=("float16",)))
    path = export_tflite(model, tmp_path / "rec.tflite", registry.get("recording"))
    assert Recording.calls == [(True, None, False)]
    assert inspect_tflite(path)["tensor_dtypes"].get("float16", 0) >= 2
    assert "recording" not in QUANTIZATIONS
    assert get_mode(HALF) is HALF and get_mode("int8") is QUANTIZATIONS.get("int8")


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
