"""Measurements of the report rows: accuracy, parameters, file sizes, latency."""

import gzip

import numpy as np
import pytest
import tf_keras as keras

from kdkeras.data import SplitData
from kdkeras.export import evaluate_tflite
from kdkeras.pipeline import measure as M
from kdkeras.pipeline import stages as S
from tests.pipeline.runs import tiny

FIELDS = ["name", "format", "accuracy", "macro_f1", "per_class", "confusion_matrix",
          "agreement_with_keras", "params", "nonzero_params", "size_bytes", "gzip_bytes",
          "latency_ms", "path"]


def _identity(n=3):
    """A model whose logits are its inputs: its accuracy is known exactly."""
    inputs = keras.Input((n,))
    dense = keras.layers.Dense(n, kernel_initializer="identity", bias_initializer="zeros")
    return keras.Model(inputs, dense(inputs))


def _data(n=3):
    x = np.eye(n, dtype="float32")[[0, 1, 2, 0, 1, 2, 0, 1]]
    y = np.array([0, 1, 2, 0, 1, 0, 0, 2])  # 6 of 8 right
    return SplitData(x, y, x, y, ["a", "b", "c"], "features")


def test_accuracy_is_top1_on_the_given_split():
    assert M.accuracy(_identity(), *(_data().x_test, _data().y_test)) == 0.75
    assert M.accuracy(lambda x: np.asarray(x)[:, ::-1], _data().x_test, _data().y_test) == 0.375


def test_param_counts_count_zeros():
    model = _identity()
    assert M.param_counts(model) == {"params": 12, "nonzero_params": 3}

    class Weights:
        weights = [np.zeros((2, 2)), np.ones(3)]

    assert M.param_counts(Weights()) == {"params": 7, "nonzero_params": 3}
    assert M.param_counts(object()) == {"params": None, "nonzero_params": None}


def test_file_sizes_of_a_file_and_of_a_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    a, b = tmp_path / "a.bin", tmp_path / "sub" / "b.bin"
    a.write_bytes(b"\0" * 5000)
    b.write_bytes(bytes(range(256)) * 4)
    assert M.files_in(tmp_path) == [a, b] and M.files_in(a) == [a]
    one = M.file_sizes(a)
    assert one["size_bytes"] == 5000 and 0 < one["gzip_bytes"] < 100
    assert one["gzip_bytes"] == len(gzip.compress(a.read_bytes(), 9, mtime=0))
    both = M.file_sizes(tmp_path)
    assert both["size_bytes"] == 5000 + 1024
    assert both["gzip_bytes"] == one["gzip_bytes"] + M.file_sizes(b)["gzip_bytes"]


def test_keras_row_measures_the_model_and_its_file(tmp_path):
    model, data = _identity(), _data()
    model.save(tmp_path / "m.keras")
    row = M.keras_row("m", model, tmp_path / "m.keras", data, runs=3)
    assert list(row) == FIELDS
    assert row["format"] == "keras" and row["accuracy"] == 0.75 and row["params"] == 12
    assert row["agreement_with_keras"] is None  # a Keras model: no file to compare with it
    assert row["size_bytes"] == (tmp_path / "m.keras").stat().st_size and row["latency_ms"] > 0
    assert row["confusion_matrix"] == M.scores(model.predict(data.x_test, verbose=0).argmax(-1),
                                               data)["confusion_matrix"]
    known = M.scores(np.zeros(len(data.y_test), int), data)
    assert M.keras_row("m", model, tmp_path / "m.keras", data, 3, metrics=known)["accuracy"] == \
        known["accuracy"]


def test_no_keras_latency_for_a_model_of_raw_strings():
    class Task:
        preprocessor = object()
        inputs = []

    assert M.keras_latency_ms(Task(), runs=3) is None
    assert M.keras_latency_ms(lambda x: x, runs=3) is None


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_teacher_row_takes_the_format_of_its_file(tmp_path):
    model, data = _identity(), _data()
    model.save(tmp_path / "t.h5")
    row = M.teacher_row(model, tmp_path / "t.h5", data, batch_size=4, runs=3)
    assert row["name"] == "teacher" and row["format"] == "h5" and row["accuracy"] == 0.75


def test_tflite_row_is_measured_on_the_file(first_run):
    out, report, _ = first_run
    row = report["models"][-1]
    assert row["format"] == "tflite" and row["path"] == str(out / "student_tflite_int8.tflite")
    data = S.load_data(tiny())
    on_file = evaluate_tflite(row["path"], data.x_test, data.y_test)
    assert row["accuracy"] == on_file["accuracy"] and row["macro_f1"] == on_file["macro_f1"]
    assert report["evaluation"][row["name"]]["confusion_matrix"] == on_file["confusion_matrix"]
    v = report["verify"]
    assert v["accuracy"] == row["accuracy"] and v["agreement_with_keras"] >= 0.9
    assert row["agreement_with_keras"] == v["agreement_with_keras"]
    assert row["size_bytes"] == (out / "student_tflite_int8.tflite").stat().st_size
    qat = report["models"][-2]
    assert row["size_bytes"] < qat["size_bytes"] / 3
