"""Bad input and faults: each case fails in one clear line that names the file or the value
(and the fix), or gives a correct result; never a silent wrong result or a deep traceback.

One module for every such case across the package, so the list of what is checked is in one
place (README's "What kdkeras checks" table points here).
"""

import csv
import math

import numpy as np
import pytest

import kdkeras as kd
from kdkeras.data import load_files

keras = kd.keras


def _write_csv(path, header, rows, encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


# --------------------------------------------------------------------------- labels


def test_integer_labels_beyond_float64_precision_stay_distinct(tmp_path):
    big = 2**53
    y = np.array([big, big + 1] * 10, dtype=np.int64)
    path = tmp_path / "big.npz"
    np.savez(path, x=np.random.default_rng(0).random((20, 3)), y=y)
    d = load_files(path, test_fraction=0.5)
    assert d.class_names == [str(big), str(big + 1)]
    assert sorted(set(d.y_train.tolist() + d.y_test.tolist())) == [0, 1]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_float_label_nan_is_refused_not_a_class(tmp_path, bad):
    y = np.array([0.0, 1.0] * 5)
    y[3] = bad
    path = tmp_path / "nan.npz"
    np.savez(path, x=np.ones((10, 2)), y=y)
    with pytest.raises(ValueError, match=r"Label 3 is (nan|inf), a missing value"):
        load_files(path)


def test_csv_label_nan_string_is_refused(tmp_path):
    path = _write_csv(tmp_path / "l.csv", ["a", "label"], [[1, "cat"], [2, "NaN"], [3, "dog"]])
    with pytest.raises(ValueError, match=r"Label 1 is 'NaN', which reads as a missing value.*l\.csv"):
        load_files(path)


def test_csv_with_a_column_named_twice_is_refused(tmp_path):
    path = _write_csv(tmp_path / "dup.csv", ["label", "a", "label"], [[0, 1, 1], [1, 2, 0]] * 4)
    with pytest.raises(ValueError, match=r"names column\(s\) \['label'\] more than once.*dup\.csv"):
        load_files(path)


def test_string_labels_to_distiller_fit_name_the_fix(digits_data, trained_teacher):
    (x, _), _ = digits_data
    d = kd.Distiller(kd.build_mlp_student((8, 8, 1), 10, hidden=(4,)), teacher=trained_teacher)
    d.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"Labels must be numbers.*dtype <U3 \(e.g. 'cat'\)"):
        d.fit(x[:16], np.array(["cat"] * 16), epochs=1, verbose=0)


def test_nan_labels_to_distiller_are_refused(digits_data, trained_teacher):
    (x, y), _ = digits_data
    d = kd.Distiller(kd.build_mlp_student((8, 8, 1), 10, hidden=(4,)), teacher=trained_teacher)
    d.compile(optimizer="adam")
    bad = y[:32].astype("float32")
    bad[5] = np.nan
    with pytest.raises(ValueError, match="Labels hold NaN or infinite values .*index 5"):
        d.fit(x[:32], bad, epochs=1, verbose=0)


# --------------------------------------------------------------------------- data files


def test_non_utf8_csv_names_the_file_and_the_byte(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9 ok,a\nbad,b\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not UTF-8 text: byte \d+ is b'\\xe9'.*latin\.csv"):
        load_files(path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip"])
def test_empty_or_corrupt_npz_names_the_file(tmp_path, content):
    path = tmp_path / "broken.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"broken\.npz.*empty, truncated or not a \.npz"):
        load_files(path)


def test_truncated_npz_names_the_file(tmp_path):
    path = tmp_path / "cut.npz"
    np.savez(path, x=np.ones((50, 4)), y=np.arange(50) % 2)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut\.npz"):
        load_files(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused_with_their_position(tmp_path, bad):
    x = np.ones((10, 3))
    x[4, 2] = bad
    path = tmp_path / "nanx.npz"
    np.savez(path, x=x, y=np.arange(10) % 2)
    with pytest.raises(ValueError, match=r"x holds 1 NaN or infinite value\(s\), the first at index \(4, 2\)"):
        load_files(path)


def test_text_folder_with_no_words_says_no_text_found(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "d" / cls / f"{i}.txt").write_text("" if i else "  !!  ")
    with pytest.raises(ValueError, match=r"No text found in source=.*\bd'"):
        load_files(tmp_path / "d")


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("temperature", [math.inf, math.nan])
def test_non_finite_temperature_is_refused(temperature):
    d = kd.Distiller(kd.build_mlp_student((4,), 3, hidden=()), teacher=None)
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0. Received: temperature=(inf|nan)"):
        d.compile(optimizer="adam", temperature=temperature)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        kd.losses.kl_divergence(np.zeros((1, 3)), np.zeros((1, 3)), temperature=temperature)


def test_nan_alpha_is_refused():
    d = kd.Distiller(kd.build_mlp_student((4,), 3, hidden=()), teacher=None)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]. Received: alpha=nan"):
        d.compile(optimizer="adam", alpha=math.nan)


# --------------------------------------------------------------------------- export


def _mlp(seed=0, inputs=6, classes=3):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(classes)])


@pytest.mark.parametrize("where", ["one", "all"])
def test_int8_export_refuses_non_finite_calibration_data(tmp_path, where):
    x = np.random.default_rng(0).random((100, 6)).astype("float32")
    if where == "one":
        x[37, 2] = np.nan
    else:
        x[:] = np.nan
    with pytest.raises(ValueError, match=r"representative_data holds \d+ NaN or infinite value\(s\), the first in example (37|0)"):
        kd.export_tflite(_mlp(), tmp_path / "m.tflite", "int8", representative_data=x)
    assert not (tmp_path / "m.tflite").exists()


class _SwapMode(kd.export.QuantizationMode):
    """A mode whose post-processing returns another model's file: what a broken quantizer
    would ship. The self-check must refuse it."""

    other: bytes = b""

    def quantize(self, tflite_bytes, representative_dataset):
        return type(self).other


def test_export_refuses_a_file_that_disagrees_with_its_model_and_keeps_the_old_one(tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32") * 3
    _SwapMode.other = kd.export.convert(_mlp(seed=7), "none", x)
    target = tmp_path / "m.tflite"
    target.write_bytes(b"old file")
    with pytest.raises(ValueError, match=r"agrees with its model on only \d+\.\d% of \d+ calibration examples"):
        kd.export_tflite(_mlp(seed=0), target, _SwapMode("swap", "broken"), representative_data=x)
    assert target.read_bytes() == b"old file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]
    # the same file passes when the check is off on purpose
    kd.export_tflite(_mlp(seed=0), target, _SwapMode("swap", "broken"), representative_data=x,
                     min_agreement=None)


def test_export_refuses_a_model_with_non_finite_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    import tensorflow as tf

    m = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: tf.sqrt(t - 2.0))])
    x = np.ones((16, 4), "float32")
    with pytest.raises(ValueError, match="gives NaN or infinite outputs on 16 of 16"):
        kd.export_tflite(m, tmp_path / "inf.tflite", "none", representative_data=x)


def test_export_to_a_folder_or_under_a_file_names_the_requested_path(tmp_path):
    with pytest.raises(ValueError, match=r"path is a folder.*model\.tflite"):
        kd.export_tflite(_mlp(), tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match=r"Cannot write '.*file/m\.tflite'"):
        kd.export_tflite(_mlp(), blocker / "m.tflite")


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_tflite")
    m = _mlp()
    x = np.random.default_rng(1).random((40, 6)).astype("float32")
    path = kd.export_tflite(m, root / "m.tflite")
    return path, m, x


def test_evaluate_tflite_refuses_labels_outside_the_models_classes(small_file):
    path, m, x = small_file
    y = np.zeros(40, int)
    y[3] = 7
    with pytest.raises(ValueError, match="Label 7 is out of range for a model with 3 classes"):
        kd.evaluate_tflite(path, x, y)
    with pytest.raises(ValueError, match="one-hot rows of width 5 but the model has 3 classes"):
        kd.evaluate_tflite(path, x, np.eye(5)[np.zeros(40, int)])


def test_evaluate_tflite_refuses_nan_inputs(small_file):
    path, m, x = small_file
    with pytest.raises(ValueError, match=r"x holds 240 NaN or infinite value\(s\), the first in example 0"):
        kd.evaluate_tflite(path, np.full_like(x, np.nan), np.zeros(40, int))


def test_truncated_tflite_is_refused_naming_the_file(small_file, tmp_path):
    path, _, x = small_file
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(open(path, "rb").read()[:200])
    for call in (lambda: kd.inspect_tflite(cut), lambda: kd.benchmark_tflite(cut, runs=1),
                 lambda: kd.evaluate_tflite(cut, x, np.zeros(40, int))):
        with pytest.raises(ValueError, match=r"cannot load '.*cut\.tflite'.*truncated or corrupt"):
            call()
    tiny = tmp_path / "tiny.tflite"
    tiny.write_bytes(b"TF")
    with pytest.raises(ValueError, match=r"Not a TFLite file: it holds 2 byte\(s\).*tiny\.tflite"):
        kd.inspect_tflite(tiny)


@pytest.mark.parametrize("cmd", ["inspect", "bench", "eval"])
def test_cli_on_a_truncated_tflite_exits_2_in_one_line(small_file, tmp_path, capsys, cmd):
    from kdkeras.cli import main

    path, _, x = small_file
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(open(path, "rb").read()[:200])
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(40, int))
    extra = ["--data", str(tmp_path / "d.npz")] if cmd == "eval" else []
    assert main([cmd, str(cut), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cut.tflite" in err, err


def test_cli_eval_with_a_keras_model_that_does_not_fit_the_data(small_file, tmp_path, capsys):
    from kdkeras.cli import main

    path, _, x = small_file
    other = _mlp(inputs=9)
    other.save(tmp_path / "other.keras")
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(40, int))
    code = main(["eval", path, "--data", str(tmp_path / "d.npz"), "--keras-model",
                 str(tmp_path / "other.keras")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "takes inputs of per-example shape (9,); x has (6,)" in err


def test_android_bundle_is_world_readable(small_file, tmp_path):
    import os
    import stat

    path, m, x = small_file
    out = kd.export_android(path, tmp_path / "android", ["a", "b", "c"], "none")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o755
