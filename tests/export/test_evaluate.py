import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from kdkeras.export import evaluate_tflite, export_tflite, predict_keras, predict_tflite
from kdkeras.export import evaluate as evaluate_mod


def test_accuracy_matches_numpy_on_the_file_outputs(model, data, converted):
    x, y = data
    path = converted("none")
    logits = model.predict(x, verbose=0)
    res = evaluate_tflite(path, x, y)
    assert res["n"] == len(x)
    assert res["accuracy"] == pytest.approx(float(np.mean(logits.argmax(-1) == y)))
    assert res["agreement_with_keras"] is None


def test_one_hot_labels_give_the_same_accuracy(data, converted):
    x, y = data
    one_hot = np.eye(4)[y]
    assert evaluate_tflite(converted("none"), x, one_hot)["accuracy"] == \
        evaluate_tflite(converted("none"), x, y)["accuracy"]


def test_agreement_with_keras_counts_top1_matches(model, data, converted):
    x, _ = data
    pred = model.predict(x, verbose=0).argmax(-1)
    # A "keras model" that agrees on exactly the first half of the examples.
    flipped = np.where(np.arange(len(x)) < len(x) // 2, pred, (pred + 1) % 4)

    class Fake:
        def predict(self, xb, batch_size=None, verbose=0):
            return np.eye(4)[flipped]

    res = evaluate_tflite(converted("none"), x, pred, keras_model=Fake())
    assert res["accuracy"] == 1.0
    assert res["agreement_with_keras"] == pytest.approx(0.5)


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_batch_size_does_not_change_outputs(model, data, converted, batch_size):
    x, _ = data
    out = predict_tflite(converted("none"), x, batch_size=batch_size)
    np.testing.assert_allclose(out, model.predict(x, verbose=0), atol=1e-5)


def test_int8_io_inputs_are_quantized_and_outputs_dequantized(model, data, converted):
    x, _ = data
    path = converted("int8_io")
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
    q = np.clip(np.round(x[:1] / s_in) + z_in, -128, 127).astype(np.int8)  # numpy reference
    interp.set_tensor(inp["index"], q)
    interp.invoke()
    expected = (interp.get_tensor(out["index"]).astype(np.float32) - z_out) * s_out
    np.testing.assert_allclose(predict_tflite(path, x[:1]), expected, rtol=1e-6)
    # and the dequantized outputs are close to the float model
    ref = model.predict(x, verbose=0)
    assert np.abs(predict_tflite(path, x) - ref).max() <= 0.05 * (ref.max() - ref.min())


def test_quantize_input_matches_numpy_and_clips():
    detail = {"dtype": np.int8, "quantization": (0.5, -10)}
    x = np.array([-100.0, -1.0, 0.0, 0.26, 1.0, 100.0], np.float32)
    expected = np.clip(np.round(x / 0.5) - 10, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(evaluate_mod.quantize_input(x, detail), expected)
    back = evaluate_mod.dequantize_output(expected, detail)
    np.testing.assert_allclose(back, (expected.astype(np.float32) + 10) * 0.5)
    u8 = {"dtype": np.uint8, "quantization": (1 / 255, 0)}
    u = evaluate_mod.quantize_input(np.array([0.0, 1.0]), u8)
    np.testing.assert_array_equal(u, [0, 255])


def test_falls_back_to_one_example_at_a_time_when_resizing_fails(tmp_path, data, monkeypatch):
    x, _ = data
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1), batch_size=1)
    flat = keras.layers.Lambda(lambda t: tf.reshape(t, [1, 64]))(inputs)  # batch of 1 baked in
    m = keras.Model(inputs, keras.layers.Dense(4)(flat))
    path = export_tflite(m, tmp_path / "fixed.tflite")
    with pytest.raises((RuntimeError, ValueError)):
        evaluate_mod._run_batches(path, x[:8], 8)
    calls = []
    real = evaluate_mod._run_one_by_one
    monkeypatch.setattr(evaluate_mod, "_run_one_by_one",
                        lambda p, xx: calls.append(len(xx)) or real(p, xx))
    out = predict_tflite(path, x[:8], batch_size=8)
    assert calls == [8]
    ref = np.concatenate([m.predict(x[i : i + 1], verbose=0) for i in range(8)])
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_sigmoid_output_is_thresholded_at_half():
    np.testing.assert_array_equal(evaluate_mod.top1(np.array([[0.2], [0.7], [0.5]])), [0, 1, 0])


def test_predict_keras_runs_models_and_plain_callables_alike(model, data):
    x, _ = data
    ref = model.predict(x, verbose=0)
    np.testing.assert_allclose(predict_keras(model, x, batch_size=7), ref, atol=1e-6)
    sizes = []

    def fn(xb):  # a plain callable returning a tensor, called per batch
        sizes.append(len(xb))
        return model(xb)

    out = predict_keras(fn, x, batch_size=20)
    assert isinstance(out, np.ndarray) and sizes == [20, 20, 8]
    np.testing.assert_allclose(out, ref, atol=1e-5)
    as_dict = predict_keras(lambda xb: {"logits": model(xb), "other": xb}, x)
    np.testing.assert_allclose(as_dict, ref, atol=1e-5)  # first output of a dict


def test_predict_keras_calls_a_saved_model_folder(model, data, tmp_path):
    from kdkeras.models import load_model

    x, _ = data
    model.save(str(tmp_path / "sm"), save_format="tf")
    loaded = load_model(str(tmp_path / "sm"))
    assert not hasattr(loaded, "predict")
    np.testing.assert_allclose(predict_keras(loaded, x), model.predict(x, verbose=0), atol=1e-5)


def test_predict_keras_bad_arguments(model, data):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1. Received: "
                                         "batch_size=0"):
        predict_keras(model, data[0], batch_size=0)
    with pytest.raises(TypeError, match="Received: model of type int"):
        predict_keras(3, data[0])


# ----------------------------------------------------------------------- bad input


def test_xy_length_mismatch_names_both_lengths(data, converted):
    x, y = data
    with pytest.raises(ValueError, match=r"len\(x\)=48, len\(y\)=47"):
        evaluate_tflite(converted("none"), x, y[:-1])


def test_not_a_tflite_file(tmp_path, data):
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"PK\x03\x04 this is a zip, not a flatbuffer")
    with pytest.raises(ValueError) as e:
        evaluate_tflite(str(fake), *data)
    assert "TFL3" in str(e.value) and str(fake) in str(e.value)
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        evaluate_tflite(str(tmp_path / "missing.tflite"), *data)


def test_wrong_input_shape_names_both(converted):
    with pytest.raises(ValueError) as e:
        predict_tflite(converted("none"), np.zeros((2, 28, 28, 1), np.float32))
    assert "(28, 28, 1)" in str(e.value) and "(8, 8, 1)" in str(e.value)


def test_bad_batch_size(converted, data):
    with pytest.raises(ValueError, match="batch_size=0"):
        predict_tflite(converted("none"), data[0], batch_size=0)


@pytest.mark.slow
def test_int8_accuracy_on_digits_within_one_point_of_keras(tmp_path, digits_data):
    """Real data: an int8 .tflite of a trained digits CNN keeps its accuracy (within 1 point)."""
    (x, y), (xt, yt) = digits_data
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    m = keras.Model(inputs, keras.layers.Dense(10)(h))
    m.compile(keras.optimizers.Adam(3e-3),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    m.fit(x, y, epochs=8, batch_size=64, verbose=0)
    keras_acc = float(np.mean(m.predict(xt, verbose=0).argmax(-1) == yt))
    assert keras_acc > 0.9
    f32 = export_tflite(m, tmp_path / "f32.tflite")
    q = export_tflite(m, tmp_path / "int8.tflite", quantization="int8", representative_data=x[:300])
    assert evaluate_tflite(f32, xt, yt)["accuracy"] == pytest.approx(keras_acc, abs=1e-9)
    res = evaluate_tflite(q, xt, yt, keras_model=m)
    assert res["n"] == len(xt) == 450
    assert abs(res["accuracy"] - keras_acc) <= 0.01, (res, keras_acc)
    assert res["agreement_with_keras"] >= 0.98


def test_dynamic_non_batch_axis_is_accepted(tmp_path):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((None, 3))  # variable-length sequences
    m = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(inputs)))
    path = export_tflite(m, tmp_path / "seq.tflite")
    x = np.random.default_rng(0).random((5, 7, 3), dtype=np.float32)
    np.testing.assert_allclose(predict_tflite(path, x), m.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_allclose(evaluate_mod._run_one_by_one(path, x), m.predict(x, verbose=0),
                               atol=1e-5)


def test_macro_f1_per_class_and_confusion_are_the_files_own(model, data, converted):
    from sklearn.metrics import confusion_matrix, f1_score

    x, y = data
    path = converted("none")
    res = evaluate_tflite(path, x, y, keras_model=model, class_names=["a", "b", "c", "d"])
    pred = predict_tflite(path, x).argmax(-1)
    assert res["macro_f1"] == pytest.approx(
        f1_score(y, pred, labels=range(4), average="macro", zero_division=0))
    assert res["confusion_matrix"] == confusion_matrix(y, pred, labels=range(4)).tolist()
    assert [c["class"] for c in res["per_class"]] == ["a", "b", "c", "d"]
    ref = model.predict(x, verbose=0).argmax(-1)
    assert res["keras_macro_f1"] == pytest.approx(
        f1_score(y, ref, labels=range(4), average="macro", zero_division=0))
