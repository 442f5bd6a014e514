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
