"""`kdkeras run` end to end on tiny data: artifacts, reuse, --force, Ctrl-C, determinism."""

import json
import shutil

import numpy as np
import pytest

import kdkeras as kd
from kdkeras import cli
from kdkeras.pipeline import VerificationError, run
from kdkeras.pipeline import stages as S
from tests.pipeline.runs import CACHED, KERAS, NAMES, Log, tiny


def _copy(first_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(first_run[0], out)
    return out


def test_every_artifact_is_written_and_measured(first_run):
    out, report, _ = first_run
    rows = {m["name"]: m for m in report["models"]}
    for name in KERAS:
        file = out / (name + (".h5" if name == "student_qat" else ".keras"))
        assert rows[name]["path"] == str(file) and rows[name]["format"] == file.suffix[1:]
        assert rows[name]["size_bytes"] == file.stat().st_size
    teacher, student = rows["teacher"], rows["student_distilled"]
    assert teacher["params"] >= 10 * student["params"]
    pruned = rows["student_pruned"]
    assert pruned["nonzero_params"] <= 0.35 * pruned["params"]  # 80% of the prunable weights
    assert rows["student_qat"]["nonzero_params"] <= pruned["nonzero_params"] + 5  # PQAT keeps zeros
    assert teacher["accuracy"] > 0.8


def test_android_bundle_holds_the_verified_file(first_run):
    out, report, _ = first_run
    bundle = out / "android"
    from kdkeras.export import predict_tflite

    x = S.load_data(tiny()).x_test  # the verified file behind the bundle's RGB input adapter
    np.testing.assert_array_equal(predict_tflite(str(bundle / "model.tflite"),
                                                 np.repeat(x, 3, axis=-1)),
                                  predict_tflite(str(out / "student_tflite_int8.tflite"), x))
    assert (bundle / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    spec = json.loads((bundle / "model.json").read_text())
    assert spec["accuracy"] == report["models"][-1]["accuracy"] and spec["quantization"] == "int8"


def test_rerun_reuses_every_finished_stage(first_run, tmp_path):
    out = _copy(first_run, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("student_*")}
    log = Log()
    report = run(tiny(), out, log=log)
    assert log.reused() == CACHED
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("student_*")} == before
    for key in ("accuracy", "params", "nonzero_params", "size_bytes"):  # reloaded, same numbers
        assert [m[key] for m in report["models"]] == [m[key] for m in first_run[1]["models"]], key
    assert all(report["stages"][s]["reused"] for s in CACHED)
    # reused stages report the time they took when they were computed
    assert report["stages"]["teacher"]["seconds"] == first_run[1]["stages"]["teacher"]["seconds"] > 0


def test_changed_setting_redoes_that_stage_and_the_later_ones(first_run, tmp_path):
    out = _copy(first_run, tmp_path)
    log = Log()
    report = run(tiny(prune={"sparsity": 0.5}), out, log=log)
    assert log.reused() == ["teacher", "teacher_tflite", "logits", "scratch", "distill"]
    pruned = {m["name"]: m for m in report["models"]}["student_pruned"]
    assert 0.4 < pruned["nonzero_params"] / pruned["params"] < 0.7


def test_force_redoes_a_stage_and_what_needs_it(first_run, tmp_path):
    out = _copy(first_run, tmp_path)
    log = Log()
    run(tiny(), out, force=["student_qat"], log=log)
    assert log.reused() == ["teacher", "teacher_tflite", "logits", "scratch", "distill", "prune"]
    log = Log()
    run(tiny(), out, force=["logits"], log=log)
    assert log.reused() == ["teacher", "teacher_tflite", "scratch"]


def test_toggling_stages_across_runs(first_run, tmp_path):
    out = _copy(first_run, tmp_path)
    log = Log()
    off = tiny(prune={"enabled": False}, export={"enabled": False}, verify={"enabled": False})
    report = run(off, out, log=log)
    assert log.reused() == ["teacher", "logits", "scratch", "distill"]  # qat's input changed
    # no export: no .tflite file of the student, nor of the teacher to compare it with
    assert [m["name"] for m in report["models"]] == KERAS[:3] + ["student_qat"]
    assert report["verify"] is None and report["skipped"] == {}
    log = Log()
    report = run(tiny(), out, log=log)  # prune is still on disk for this input: reused
    assert log.reused() == ["teacher", "teacher_tflite", "logits", "scratch", "distill", "prune"]
    assert [m["name"] for m in report["models"]] == NAMES


def test_a_changed_input_file_redoes_what_reads_it(tmp_path):
    from kdkeras.data import digits

    (x, y), (xt, yt) = digits()
    src = tmp_path / "d.npz"
    np.savez(src, x_train=x, y_train=y, x_test=xt, y_test=yt)
    cfg = tiny(data={"source": str(src)}, teacher={"epochs": 1}, distill={"epochs": 1},
               scratch={"enabled": False}, prune={"enabled": False}, qat={"enabled": False},
               export={"enabled": False}, verify={"enabled": False})
    run(cfg, tmp_path / "out", log=lambda *_: None)
    np.savez(src, x_train=x[:900], y_train=y[:900], x_test=xt, y_test=yt)
    log = Log()
    report = run(cfg, tmp_path / "out", log=log)
    assert log.reused() == [] and report["dataset_info"]["n_train"] == 900


def test_force_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown stage 'prunee'. Did you mean 'prune'"):
        run(tiny(), tmp_path, force=["prunee"])
    cfg = tiny(prune={"enabled": False})
    with pytest.raises(ValueError, match="stage 'prune' is disabled"):
        run(cfg, tmp_path, force=["prune"])


def test_out_that_cannot_be_a_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is not writable"):
        run(tiny(), f / "sub", log=lambda *_: None)
    assert cli.main(["run", "--out", str(f / "sub")]) == 2


class _Interrupted(Exception):
    pass


def test_ctrl_c_keeps_finished_stages_and_no_half_written_file(first_run, tmp_path, monkeypatch):
    out = _copy(first_run, tmp_path)
    for p in [out / ".kdkeras" / "qat.json", out / "student_qat.h5"]:
        p.unlink()
    real = S.quantize_aware

    def interrupted_qat(*args, **kwargs):
        model = real(*args, **kwargs)

        def save(path, *a, **k):  # Ctrl-C in the middle of writing the file
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04 half")
            raise KeyboardInterrupt

        model.save = save
        return model

    monkeypatch.setattr(S, "quantize_aware", interrupted_qat)
    log = Log()
    with pytest.raises(KeyboardInterrupt):
        run(tiny(), out, force=[], log=log)
    assert not (out / "student_qat.h5").exists()
    assert not list(out.glob("*.tmp*")) and not list(out.glob(".*.tmp*"))
    assert not (out / ".kdkeras" / "qat.json").exists()
    assert "interrupted: finished stages kept" in log[-1] and "prune" in log[-1]
    monkeypatch.setattr(S, "quantize_aware", real)
    log = Log()
    report = run(tiny(), out, log=log)
    assert log.reused() == ["teacher", "teacher_tflite", "logits", "scratch", "distill",
                            "prune"]  # qat on: redone
    assert [m["name"] for m in report["models"]] == NAMES


def test_cleanup_removes_every_kind_of_temporary_file(tmp_path):
    from kdkeras.pipeline.runner import Runner

    leftovers = [".student_qat.h5.k2j3.tmp.h5", "student_pruned.tmp.keras", ".android.tmp-x1"]
    kept = ["student_pruned.keras", "teacher_logits.npy"]
    for name in leftovers + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / ".report.png.ab.tmp.png").mkdir()  # a folder of that name goes too
    Runner(tiny(), tmp_path, log=lambda *_: None).cleanup()
    assert sorted(p.name for p in tmp_path.iterdir()) == kept


def test_cli_config_file_seed_force_and_relative_paths(tmp_path, monkeypatch, capsys):
    from kdkeras.data import digits

    (x, y), (xt, yt) = digits()
    job = tmp_path / "job"
    job.mkdir()
    np.savez(job / "d.npz", x_train=x[:600], y_train=y[:600], x_test=xt[:200], y_test=yt[:200])
    (job / "c.toml").write_text(
        'batch_size = 64\nmin_steps = 0\n[data]\nsource = "d.npz"\n[teacher]\nepochs = 1\n'
        '[distill]\nepochs = 1\n[prune]\nepochs = 1\n[qat]\nepochs = 1\n'
        '[verify]\nlatency_runs = 3\n')
    monkeypatch.chdir(tmp_path)  # the data path is relative to the config file, not the cwd
    out = tmp_path / "out"
    assert cli.main(["run", "job/c.toml", "--out", str(out), "--seed", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["seed"] == 3 and report["dataset"] == "d.npz"
    assert report["config"]["data"]["source"] == str(job / "d.npz")
    capsys.readouterr()
    assert cli.main(["run", "job/c.toml", "--out", str(out), "--seed", "3",
                     "--force", "student_pruned"]) == 0
    text = capsys.readouterr().out
    assert "distill: reused" in text and "prune: done" in text and "qat: done" in text
    assert "student_tflite_int8" in text  # the final table


def test_cli_bad_model_paths_are_one_line_errors(tmp_path, capsys):
    from kdkeras import build_mlp_student

    (tmp_path / "empty").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[data]\nsource = "digits"\n[teacher]\npath = "{tmp_path / "empty"}"\n')
    assert cli.main(["run", str(cfg), "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert "neither a SavedModel" in err and "Traceback" not in err
    build_mlp_student((8, 8, 1), 3).save(tmp_path / "s.keras")
    cfg.write_text(f'[data]\nsource = "digits"\n[student]\npath = "{tmp_path / "s.keras"}"\n')
    assert cli.main(["run", str(cfg), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "gives 3 outputs; the data has inputs (8, 8, 1) and 10 classes" in err
    assert not (tmp_path / "o2" / "teacher.keras").exists()  # refused before any training


def test_ctrl_c_from_the_cli_exits_130(monkeypatch, tmp_path, capsys):
    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(S, "load_data", stop)
    assert cli.main(["run", "--out", str(tmp_path)]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_failed_verification_exits_1_after_writing_the_report(first_run, tmp_path, monkeypatch,
                                                              capsys):
    out = _copy(first_run, tmp_path)
    real = S.verify
    monkeypatch.setattr(S, "verify", lambda *a: {**real(*a), "accuracy_drop": 0.5})
    with pytest.raises(VerificationError, match="more than verify.max_accuracy_drop"):
        run(tiny(), out, force=["verify"], log=lambda *_: None)
    assert (out / "report.json").exists()


def test_same_seed_same_teacher_and_structure(first_run, tmp_path):
    log = Log()
    cfg = tiny(scratch={"enabled": False}, prune={"enabled": False})
    report = run(cfg, tmp_path, log=log)
    assert [m["name"] for m in report["models"]] == ["teacher", "teacher_tflite_float32",
                                                     "student_distilled", "student_qat",
                                                     "student_tflite_int8"]
    first = {m["name"]: m for m in first_run[1]["models"]}
    again = {m["name"]: m for m in report["models"]}
    assert abs(again["teacher"]["accuracy"] - first["teacher"]["accuracy"]) <= 0.01
    assert abs(again["student_distilled"]["accuracy"] - first["student_distilled"]["accuracy"]) <= 0.02
    assert report["verify"]["accuracy"] > 0.5


@pytest.mark.slow
def test_cli_quick_default(tmp_path, capsys):
    assert cli.main(["run", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dataset"] == "fashion_mnist"
    info = report["dataset_info"]
    assert (info["n_train"], info["n_test"], info["input_shape"]) == (3000, 500, [28, 28, 1])
    rows = {m["name"]: m for m in report["models"]}
    assert list(rows) == NAMES
    # the default teacher is resnet_teacher (174,850 params), 6.5x the CNN student
    assert rows["teacher"]["params"] == kd.models.build_resnet_teacher((28, 28, 1), 10).count_params()
    assert rows["teacher"]["params"] >= 5 * rows["student_distilled"]["params"]
    assert rows["teacher"]["accuracy"] > 0.75 and rows["student_distilled"]["accuracy"] > 0.65
    assert rows["student_tflite_int8"]["gzip_bytes"] * 20 < rows["teacher"]["gzip_bytes"]
    assert (tmp_path / "android" / "model.tflite").exists()
    out = capsys.readouterr().out
    assert "student_tflite_int8" in out and "report:" in out  # the rich table and the paths


def test_min_steps_raises_the_epochs_on_a_small_data_set(tmp_path):
    log = Log()
    cfg = tiny(min_steps=300, teacher={"epochs": 1}, distill={"epochs": 1}, prune={"enabled": False},
               qat={"enabled": False}, export={"enabled": False}, verify={"enabled": False})
    report = run(cfg, tmp_path, log=log)
    # 1,347 examples in batches of 64: 22 steps per epoch, so 14 epochs reach 300 steps
    assert any("teacher: train resnet_teacher for 14 (min_steps = 300) epochs" in line for line in log)
    assert sum("distill: epoch" in line for line in log) == 14
    rows = {m["name"]: m for m in report["models"]}
    assert rows["student_distilled"]["accuracy"] > 0.8 and rows["student_scratch"]["accuracy"] > 0.8


def test_epoch_lines_replace_the_bars(tmp_path):
    log = Log()
    cfg = tiny(teacher={"epochs": 2}, scratch={"enabled": False}, prune={"enabled": False},
               qat={"enabled": False}, export={"enabled": False}, verify={"enabled": False},
               distill={"epochs": 1})
    run(cfg, tmp_path, log=log)
    assert sum("teacher: epoch" in line for line in log) == 2
    assert any(line.strip().startswith("distill: epoch 1/1 loss") for line in log)
    assert all(line.startswith("[") or line.startswith("    ") for line in log)
