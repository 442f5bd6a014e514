"""Representative data: checked against the model's inputs before the converter sees it."""

import numpy as np
import pytest
import tf_keras as keras

from kdkeras.export import convert, export_tflite, predict_tflite
from kdkeras.export.calibration import representative_dataset
from tests.export.export_models import INPUT_SHAPE


def test_batches_of_one_float32_capped_at_max_samples(model):
    x = np.random.default_rng(0).random((10,) + INPUT_SHAPE)  # float64
    batches = list(representative_dataset(x, model, max_samples=4)())
    assert len(batches) == 4
    assert all(len(b) == 1 and b[0].shape == (1,) + INPUT_SHAPE for b in batches)
    assert all(b[0].dtype == np.float32 for b in batches)
    np.testing.assert_allclose(np.concatenate([b[0] for b in batches]), x[:4], rtol=1e-6)
    assert len(list(representative_dataset(x, model, max_samples=None)())) == 10


def test_a_callable_is_passed_through(model):
    def gen():
        yield [np.zeros((1,) + INPUT_SHAPE, np.float32)]

    assert representative_dataset(gen, model, max_samples=1) is gen


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


def test_empty_data_and_dicts_are_refused(model):
    with pytest.raises(ValueError, match="at least one example"):
        representative_dataset(np.zeros((0,) + INPUT_SHAPE), model, None)
    with pytest.raises(TypeError, match=r"dict with keys \['x'\]"):
        representative_dataset({"x": np.zeros((2,) + INPUT_SHAPE)}, model, None)


def test_bad_max_calibration_samples(model):
    with pytest.raises(ValueError, match="max_calibration_samples=0"):
        convert(model, max_calibration_samples=0)


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
    assert next(iter(representative_dataset(ids, m, None)()))[0].dtype == np.int32
    path = export_tflite(m, tmp_path / "ids.tflite", "int8", representative_data=ids)
    ref = m.predict(ids.astype("int32"), verbose=0)
    out = predict_tflite(path, ids)
    assert np.abs(out - ref).max() <= 5e-2 * np.ptp(ref)
