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


# --------------------------------------------------------------------------- kdkeras run


def _copy_run(first_run, tmp_path):
    import shutil

    out, report, _ = first_run
    dst = tmp_path / "run"
    shutil.copytree(out, dst)
    return dst, report


def _rerun(out, **changes):
    from kdkeras.pipeline import run
    from tests.pipeline.runs import Log, tiny

    log = Log()
    return run(tiny(**changes), out, log=log), log


def test_a_garbage_artifact_is_never_reused_and_the_log_says_why(first_run, tmp_path):
    out, first = _copy_run(first_run, tmp_path)
    (out / "android" / "model.tflite").write_bytes(b"garbage, not the file the stage wrote")
    teacher_file = out / "teacher_tflite_float32.tflite"
    good = teacher_file.read_bytes()
    teacher_file.write_bytes(good[:100])
    report, log = _rerun(out)
    assert any("android: android/model.tflite is not the file this stage wrote" in l for l in log)
    assert "android" not in log.reused() and "export" in log.reused()
    tflite = out / "student_tflite_int8.tflite"
    again, before = (kd.inspect_tflite(str(o / "android" / "model.tflite"))
                     for o in (out, first_run[0]))  # made again (MediaPipe's zip has times)
    assert (again["size_bytes"], again["op_counts"]) == (before["size_bytes"], before["op_counts"])
    assert any(f"teacher_tflite: teacher_tflite_float32.tflite is not the file this stage wrote "
               f"(100 bytes instead of {len(good):,})" in l for l in log)
    assert "teacher_tflite" not in log.reused() and "logits" in log.reused()
    assert teacher_file.stat().st_size == len(good)  # converted again
    rows = {m["name"]: m for m in report["models"]}
    assert rows["teacher_tflite_float32"]["accuracy"] == {
        m["name"]: m for m in first["models"]}["teacher_tflite_float32"]["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("artifact", ["teacher_logits.npy", "student_pruned.keras"])
def test_a_truncated_artifact_redoes_its_stage_and_what_needs_it(first_run, tmp_path, artifact):
    out, first = _copy_run(first_run, tmp_path)
    path = out / artifact
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    report, log = _rerun(out)
    stage = {"teacher_logits.npy": "logits", "student_pruned.keras": "prune"}[artifact]
    assert any(f"{stage}: {artifact} is not the file this stage wrote" in l for l in log)
    assert stage not in log.reused() and "qat" not in log.reused()
    assert [m["name"] for m in report["models"]] == [m["name"] for m in first["models"]]
    assert path.stat().st_size > 0 and np.isfinite(report["models"][-1]["accuracy"])


def test_a_second_run_on_a_held_output_folder_refuses_naming_the_holder(first_run, tmp_path):
    import json
    import os
    import socket

    from kdkeras.pipeline.lock import OutputLocked

    out, _ = _copy_run(first_run, tmp_path)
    lock = out / ".kdkeras" / "lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "started": "2026-11-28 10:00:00"}))
    with pytest.raises(OutputLocked, match=rf"in use by another kdkeras run \(pid {os.getpid()} on"):
        _rerun(out)
    assert lock.exists()  # the holder's lock is left alone


def test_the_lock_of_a_dead_run_is_taken_over_and_its_temp_files_removed(first_run, tmp_path):
    import json
    import socket
    import subprocess
    import sys

    out, _ = _copy_run(first_run, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".kdkeras" / "lock").write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"}))
    leftovers = [out / ".student_qat.h5.x1y2.tmp.h5", out / ".kdkeras" / ".prune.json.ab.tmp.json"]
    for p in leftovers:
        p.write_bytes(b"half")
    report, log = _rerun(out)
    assert any("taking over the lock of a run that ended" in l for l in log)
    assert not any(p.exists() for p in leftovers)
    assert not (out / ".kdkeras" / "lock").exists()  # released at the end


def test_the_bundle_tells_the_phone_the_preprocessing_it_was_trained_with(first_run):
    """An app that follows model.json literally on raw pixels gets the report's accuracy."""
    import json

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    out, report, _ = first_run
    meta = json.loads((out / "android" / "model.json").read_text())
    d = load_digits()
    # the raw digits (0..16) of the run's test split: the same split kd.digits(seed=0) makes
    _, raw, _, y = train_test_split(d.images[..., None].astype("float32"), d.target,
                                    test_size=0.25, random_state=0, stratify=d.target)
    norm = meta["normalization"]
    assert norm == {"mean": 0.0, "std": 16.0}
    assert meta["input"]["shape"] == [-1, 8, 8, 3]  # RGB, averaged to gray inside the file
    raw = np.repeat(raw, 3, axis=-1)
    x = (raw - np.float32(norm["mean"])) / np.float32(norm["std"])
    res = kd.evaluate_tflite(str(out / "android" / "model.tflite"), x, y)
    tflite_row = report["models"][-1]
    assert res["accuracy"] == pytest.approx(tflite_row["accuracy"], abs=1e-9)
    # what the old model.json (mean 0, std 1) made an app do: a different, wrong accuracy
    assert kd.evaluate_tflite(str(out / "android" / "model.tflite"), raw, y)["accuracy"] < res["accuracy"]


def test_the_default_job_tells_the_phone_pixels_are_divided_by_255():
    from kdkeras.data import load_builtin
    from kdkeras.data.builtin import RAW_SCALE

    assert RAW_SCALE["fashion_mnist"] == 255.0
    assert load_builtin("digits").normalization == {"mean": 0.0, "std": 16.0}


def test_a_diverging_stage_is_one_line_exit_1_and_not_recorded_as_finished(tmp_path, capsys):
    from kdkeras.cli import main

    cfg = tmp_path / "div.toml"
    cfg.write_text('min_steps = 0\nbatch_size = 64\n[data]\nsource = "digits"\n'
                   '[teacher]\nepochs = 2\nlearning_rate = 1e9\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("kdkeras run: training diverged in stage 'teacher': The loss became non-finite")
    assert not (tmp_path / "out" / ".kdkeras" / "teacher.json").exists()
    assert not (tmp_path / "out" / "teacher.keras").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**31), str(10**30)])
def test_a_seed_out_of_range_is_one_line_exit_2(tmp_path, capsys, seed):
    from kdkeras.cli import main

    assert main(["run", "--seed", seed, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed must be a number in [0, 2147483647]. Received: seed=" in err, err


@pytest.mark.parametrize("key,value", [("distill.temperature", "inf"), ("distill.learning_rate", "nan"),
                                       ("distill.alpha", "nan")])
def test_non_finite_config_values_are_one_line_exit_2(tmp_path, capsys, key, value):
    from kdkeras.cli import main

    section, name = key.split(".")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[{section}]\n{name} = {value}\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and value in err, err


def test_a_stage_that_undoes_pruning_is_flagged_in_the_report():
    from kdkeras.pipeline.report import markdown, sparsity_warnings

    rows = [{"name": "teacher", "nonzero_params": 900}, {"name": "student_scratch", "nonzero_params": 100},
            {"name": "student_distilled", "nonzero_params": 100},
            {"name": "student_pruned", "nonzero_params": 20},
            {"name": "student_qat", "nonzero_params": 70},
            {"name": "student_tflite_int8", "nonzero_params": 70}]
    warnings = sparsity_warnings(rows)
    assert warnings == ["student_qat has 70 nonzero parameters, more than student_pruned (20) it "
                        "was made from: that stage undid pruning, and the file that ships is "
                        "larger than it need be."]
    assert sparsity_warnings(rows[:4]) == []


def test_cli_run_on_a_held_output_folder_exits_2_in_one_line(tmp_path, capsys):
    import json
    import os
    import socket

    from kdkeras.cli import main

    (tmp_path / "o" / ".kdkeras").mkdir(parents=True)
    (tmp_path / "o" / ".kdkeras" / "lock").write_text(json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    assert main(["run", "--quick", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is in use by another kdkeras run" in err, err


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really"])
def test_cli_eval_with_an_empty_or_corrupt_npz_names_it(small_file, tmp_path, capsys, content):
    from kdkeras.cli import main

    path, _, _ = small_file
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    assert main(["eval", path, "--data", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.npz" in err, err


@pytest.mark.parametrize("name,content", [
    ("broken.npz", b"PK\x03\x04 cut"),
    ("latin.csv", "text,label\ncaf\xe9,a\nok,b\n".encode("latin-1")),
    ("dup.csv", b"label,a,label\n0,1,1\n1,2,0\n"),
])
def test_kdkeras_run_on_bad_data_is_one_line_exit_2_before_training(tmp_path, capsys, name, content):
    from kdkeras.cli import main

    (tmp_path / name).write_bytes(content)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[data]\nsource = "{name}"\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err, err
    assert not (tmp_path / "o" / ".kdkeras" / "teacher.json").exists()


def test_kdkeras_export_with_nan_calibration_data_is_one_line_exit_2(tmp_path, capsys):
    from kdkeras.cli import main

    _mlp().save(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((50, 6)).astype("float32")
    x[7, 1] = np.nan
    np.savez(tmp_path / "calib.npz", x=x)
    code = main(["export", str(tmp_path / "m.keras"), str(tmp_path / "m.tflite"), "-q", "int8",
                 "--calib", str(tmp_path / "calib.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "NaN or infinite" in err, err
    assert not (tmp_path / "m.tflite").exists()
