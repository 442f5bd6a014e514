"""`kdkeras run` on the user's own data and models: text folders, CSV, .npz, a keras-hub preset
teacher, a saved teacher and a saved student."""

import json

import numpy as np
import pytest

from kdkeras.data import digits
from kdkeras.pipeline import RunConfig, run

GOOD = ["good", "great", "fine", "nice", "superb", "lovely"]
BAD = ["bad", "awful", "poor", "dull", "boring", "worse"]


def _quiet(*_):
    pass


def _text_folder(root, n=40, seed=0):
    rng = np.random.default_rng(seed)
    filler = ["the", "a", "movie", "film", "was", "really", "quite", "plot"]
    for name, words in (("neg", BAD), ("pos", GOOD)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            tokens = list(rng.choice(filler, 6)) + list(rng.choice(words, 2))
            rng.shuffle(tokens)
            (root / name / f"{i}.txt").write_text(" ".join(tokens))
    return root


def _small(source, **changes):
    base = {"batch_size": 16, "min_steps": 0, "data": {"source": str(source), "sequence_length": 12},
            "teacher": {"epochs": 6}, "distill": {"epochs": 8, "learning_rate": 1e-2},
            "prune": {"epochs": 2, "sparsity": 0.5}, "qat": {"epochs": 1},
            "verify": {"latency_runs": 5}}
    for key, value in changes.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return RunConfig.from_dict(base)


def test_text_folder_end_to_end(tmp_path):
    src = _text_folder(tmp_path / "reviews")
    report = run(_small(src), tmp_path / "out", log=_quiet)
    rows = {m["name"]: m for m in report["models"]}
    assert report["dataset"] == "reviews"
    assert report["dataset_info"]["kind"] == "text" and report["dataset_info"]["input_shape"] == [12]
    assert rows["teacher"]["accuracy"] >= 0.9 and rows["student_distilled"]["accuracy"] >= 0.8
    assert rows["teacher"]["params"] >= 10 * rows["student_distilled"]["params"]
    assert report["verify"]["agreement_with_keras"] >= 0.9
    # every layer of the text student is under prune.min_params: it is pruned whole, not skipped
    assert rows["student_pruned"]["nonzero_params"] <= 0.6 * rows["student_pruned"]["params"]
    labels = (tmp_path / "out" / "android" / "labels.txt").read_text().split()
    assert labels == ["neg", "pos"]


def test_keras_hub_preset_teacher_gets_raw_text(tmp_path):
    from tests.distill.test_teachers import _tiny_bert_classifier

    task = _tiny_bert_classifier(num_classes=2)
    task.save_to_preset(str(tmp_path / "preset"))
    src = _text_folder(tmp_path / "reviews")
    cfg = _small(src, teacher={"path": str(tmp_path / "preset")}, prune={"enabled": False},
                 qat={"enabled": False})
    log = []
    report = run(cfg, tmp_path / "out", log=log.append)
    teacher = report["models"][0]
    assert teacher["format"] == "keras_hub_preset" and teacher["latency_ms"] is None
    assert teacher["path"] == str(tmp_path / "preset") and teacher["params"] > 1000
    # the cached logits are the task's own predictions on the raw strings
    cached = np.load(tmp_path / "out" / "teacher_logits.npy")
    from kdkeras.pipeline.stages import load_data

    texts = load_data(cfg).texts_train
    np.testing.assert_allclose(cached[:4], task.predict(np.asarray(texts[:4]), verbose=0),
                               atol=1e-4)
    assert [m["name"] for m in report["models"]] == [
        "teacher", "student_scratch", "student_distilled", "student_tflite_int8"]
    # no .tflite file of a teacher that takes raw text: the log and the report say why
    why = ("the teacher is a keras-hub task that takes raw text through its preprocessor "
           "(tokenizer), which a .tflite file does not hold")
    assert report["skipped"] == {"teacher_tflite_float32": why}
    assert any(line.endswith(f"teacher_tflite: skipped, {why}") for line in log)
    assert f"**Skipped:** teacher_tflite_float32: {why}." in (tmp_path / "out" / "report.md"
                                                              ).read_text()
    assert not (tmp_path / "out" / "teacher_tflite_float32.tflite").exists()
    assert "teacher_tflite" not in report["stages"]


def _digits_csv(path):
    (x, y), (xt, yt) = digits()
    x = np.concatenate([x, xt]).reshape(-1, 64)
    y = np.concatenate([y, yt])
    lines = ["label," + ",".join(f"p{i}" for i in range(64))]
    lines += [f"{label}," + ",".join(f"{v:.4f}" for v in row) for row, label in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_features_saved_teacher_and_saved_student(tmp_path):
    src = _digits_csv(tmp_path / "digits.csv")
    cfg = _small(src, batch_size=64, distill={"learning_rate": 3e-3, "epochs": 4},
                 teacher={"epochs": 4}, prune={"enabled": False}, qat={"enabled": False})
    first = run(cfg, tmp_path / "a", log=_quiet)
    rows = {m["name"]: m for m in first["models"]}
    assert first["dataset_info"]["kind"] == "features" and rows["teacher"]["accuracy"] > 0.85
    assert rows["student_distilled"]["accuracy"] > 0.6

    reuse = _small(src, batch_size=64, distill={"learning_rate": 3e-3, "epochs": 1},
                   teacher={"path": str(tmp_path / "a" / "teacher.keras")},
                   student={"path": str(tmp_path / "a" / "student_distilled.keras")},
                   prune={"enabled": False}, qat={"enabled": False})
    second = run(reuse, tmp_path / "b", log=_quiet)
    again = {m["name"]: m for m in second["models"]}
    assert again["teacher"]["accuracy"] == rows["teacher"]["accuracy"]
    assert again["teacher"]["path"] == str(tmp_path / "a" / "teacher.keras")
    # a loaded tf-keras teacher converts too: its float32 file, beside the student's
    teacher_file = again["teacher_tflite_float32"]
    assert teacher_file["path"] == str(tmp_path / "b" / "teacher_tflite_float32.tflite")
    assert teacher_file["labels"] is None and teacher_file["agreement_with_keras"] >= 0.99
    assert teacher_file["accuracy"] == rows["teacher_tflite_float32"]["accuracy"]
    # distillation starts from the saved student's weights, the scratch baseline from new ones
    assert again["student_distilled"]["accuracy"] > 0.6
    assert not (tmp_path / "b" / "teacher.keras").exists()
    from kdkeras.pipeline.stages import build_student, load_data, load_student

    data = load_data(reuse)
    saved = build_student(reuse, data).get_weights()
    fresh = build_student(reuse, data, fresh=True).get_weights()
    trained = load_student(reuse, data).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, trained))
    assert not np.array_equal(saved[0], fresh[0])


def test_npz_images(tmp_path):
    (x, y), (xt, yt) = digits()
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    cfg = _small(tmp_path / "d.npz", batch_size=64, teacher={"epochs": 3},
                 distill={"epochs": 2, "learning_rate": 3e-3}, scratch={"enabled": False},
                 prune={"enabled": False}, qat={"enabled": False})
    report = run(cfg, tmp_path / "out", log=_quiet)
    assert report["dataset"] == "d.npz" and report["dataset_info"]["n_test"] == len(xt)
    assert report["models"][0]["accuracy"] > 0.8
    spec = json.loads((tmp_path / "out" / "android" / "model.json").read_text())
    assert spec["class_names"] == [str(i) for i in range(10)]


def test_builder_kwargs_are_checked(tmp_path):
    cfg = RunConfig.from_dict({"data": {"source": "digits"}, "student": {"kwargs": {"filterz": 3}}})
    with pytest.raises(ValueError, match=r"student.kwargs: builder 'cnn' takes no argument \['filterz'\]"):
        run(cfg, tmp_path, log=_quiet)
