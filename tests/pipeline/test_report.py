"""The report: report.json's schema, report.md (table and config), report.png, the terminal
table, and rendering a report.json copied away from its data."""

import io
import json
import shutil
import struct

import numpy as np

from kdkeras.data import SplitData
from kdkeras.pipeline import RunConfig, report_markdown
from kdkeras.pipeline import report as R
from tests.pipeline.runs import NAMES, tiny

FIELDS = {"name", "format", "labels", "accuracy", "macro_f1", "agreement_with_keras", "params",
          "nonzero_params", "size_bytes", "gzip_bytes", "latency_ms", "path"}


def test_report_has_the_contract_schema(first_run):
    out, report, _ = first_run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["models"] == report["models"]
    assert {"kdkeras_version", "dataset", "config", "models"} <= set(on_disk)
    assert [m["name"] for m in on_disk["models"]] == NAMES
    for m in on_disk["models"]:
        assert set(m) == FIELDS, m["name"]
        assert 0 <= m["accuracy"] <= 1 and m["params"] > 0 and m["latency_ms"] > 0
        assert m["gzip_bytes"] > 0 and (out / m["name"]).with_suffix("").parent == out
        # agreement with the Keras model it came from: only a .tflite file has one
        assert (m["agreement_with_keras"] is None) == (m["format"] != "tflite"), m["name"]
    assert on_disk["dataset"] == "digits" and on_disk["dataset_info"]["n_test"] == 450
    assert on_disk["config"] == tiny().to_dict()


def test_markdown_and_plot(first_run):
    out, report, _ = first_run
    md = (out / "report.md").read_text()
    for name in NAMES:
        assert f"| {name} |" in md
    assert "[prune]" in md and "sparsity = 0.8" in md
    rows = {m["name"]: m for m in report["models"]}
    t, s = rows["teacher_tflite_float32"], rows["student_tflite_int8"]
    smaller = f"{t['gzip_bytes'] / s['gzip_bytes']:.1f}× smaller"
    assert (f"File to file: the shipped student_tflite_int8 is {smaller} ({s['gzip_bytes']:,} vs "
            f"{t['gzip_bytes']:,} gzip bytes, {s['size_bytes']:,} vs {t['size_bytes']:,} bytes)"
            ) in md
    assert (f"than the teacher's float32 file teacher_tflite_float32, at "
            f"{100 * s['accuracy']:.2f}% vs {100 * t['accuracy']:.2f}% test accuracy.") in md
    assert "Confusion matrix of student_tflite_int8" in md  # the shipped file, not the teacher's
    assert "**Skipped:**" not in md
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 800 and height > 300
    assert not list(out.glob(".*.tmp*"))  # the plot was written through a temporary file


def _row(name, fmt, acc, params, latency):
    return {"name": name, "format": fmt, "labels": 20, "accuracy": acc, "macro_f1": acc - 0.05,
            "agreement_with_keras": 0.99 if fmt == "tflite" else None,
            "params": params, "nonzero_params": params // 2, "size_bytes": 10 * params,
            "gzip_bytes": 4 * params, "latency_ms": latency, "path": f"/gone/{name}.{fmt}",
            "per_class": [{"class": c, "precision": 0.8, "recall": 0.8, "f1": f1, "support": 4}
                          for c, f1 in (("no", 0.75), ("yes", 0.85))],
            "confusion_matrix": [[3, 1], [1, 3]]}


def _synthetic_report(source: str, rows=None, skipped=None):
    """A report as a run on the user's file ``source`` writes it (numbers made up)."""
    cfg = RunConfig.from_dict({"seed": 7, "data": {"source": source, "n_train": 20},
                               "prune": {"skip": ["output"]}})
    data = SplitData(np.zeros((20, 3), "float32"), np.arange(20) % 2, np.zeros((8, 3), "float32"),
                     np.arange(8) % 2, ["no", "yes"], "features", name="mine.npz")
    rows = rows or [_row("teacher", "keras", 0.875, 120_000, 2.5),
                    _row("student_distilled", "keras", 0.8125, 3_000, None),
                    _row("student_tflite_int8", "tflite", 0.8, 3_000, 0.0625)]
    verify = {"accuracy": 0.8, "keras_accuracy": 0.8125, "agreement_with_keras": 0.99, "n": 8,
              "accuracy_drop": 0.0125}
    timing = {"data": {"seconds": 0.1, "reused": False},
              "teacher": {"seconds": 12.0, "reused": True}}
    return R.build_report(cfg, data, rows, verify, timing, 42.0, skipped)


def test_a_report_copied_elsewhere_renders_without_its_data(tmp_path):
    source = tmp_path / "job" / "mine.npz"
    source.parent.mkdir()
    np.savez(source, x=np.zeros((30, 3)), y=np.arange(30) % 2)
    R.write_report(_synthetic_report(str(source)), tmp_path / "job")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tmp_path / "job" / "report.json", elsewhere)
    shutil.rmtree(tmp_path / "job")  # the data source is gone

    report = json.loads((elsewhere / "report.json").read_text())
    assert report["config"]["data"]["source"] == str(source)
    md = report_markdown(report)
    assert md.startswith("# kdkeras run: mine.npz (20 train / 8 test, 2 classes)")
    assert "| teacher | keras | 20 | 87.50 | 82.50 | 120,000 | 60,000 | 1,200,000 | 480,000 | 2.500 |" in md
    assert "| student_distilled | keras | 20 | 81.25 | 76.25 | 3,000 | 1,500 | 30,000 | 12,000 | – |" in md
    assert "| student_tflite_int8 | tflite | 20 | 80.00 |" in md
    assert "| no | 75.0 | 75.0 | 75.0 |" in md  # per-class F1 of every model
    assert "Confusion matrix of student_tflite_int8" in md and "| yes | 1 | 3 |" in md
    assert "agrees with its Keras model on 99.00% of 8 test examples" in md
    assert "teacher 12 s (reused)" in md and "This run took 42 s" in md
    config = md.split("```toml\n", 1)[1].split("```", 1)[0]
    assert config.startswith("seed = 7\n")
    assert f'[data]\nsource = "{source}"\nn_train = 20\n' in config
    assert '[prune]' in config and 'skip = ["output"]' in config
    R.write_report(report, elsewhere)  # report.md and report.png, from the copy alone
    assert (elsewhere / "report.md").read_text() == md
    assert (elsewhere / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_a_report_of_another_version_renders_its_keys_as_stored():
    report = _synthetic_report("digits")
    report["config"]["distill"]["future_key"] = "x"  # RunConfig.from_dict would refuse it
    del report["config"]["qat"]
    md = report_markdown(report)
    assert 'future_key = "x"' in md and "[qat]" not in md and "[export]" in md


def test_table_rows_format_every_column():
    report = _synthetic_report("digits")
    rows = R.table_rows(report)
    assert rows[0] == ["teacher", "keras", "20", "87.50", "82.50", "120,000", "60,000",
                       "1,200,000", "480,000", "2.500"]
    assert rows[1][-1] == "–" and rows[2][3] == "80.00"
    for m in report["models"]:  # a report.json of a version without macro-F1
        del m["macro_f1"]
    assert R.table_rows(report)[0][4] == "–"


def test_print_table_shows_every_model():
    buf = io.StringIO()
    R.print_table(_synthetic_report("digits"), file=buf)
    text = buf.getvalue()
    assert "kdkeras run: mine.npz (8 test examples)" in text
    for name in ("teacher", "student_distilled", "student_tflite_int8", "87.50", "120,000"):
        assert name in text


def test_the_teachers_float32_file_is_measured_like_the_students(first_run):
    from kdkeras.export import evaluate_tflite, gzip_size
    from kdkeras.models import load_model
    from kdkeras.pipeline import stages as S
    from kdkeras.pipeline.runner import digest

    out, report, log = first_run
    rows = {m["name"]: m for m in report["models"]}
    row, path = rows["teacher_tflite_float32"], out / "teacher_tflite_float32.tflite"
    assert row["format"] == "tflite" and row["path"] == str(path)
    assert row["size_bytes"] == path.stat().st_size
    assert row["gzip_bytes"] == gzip_size(path.read_bytes())
    data = S.load_data(tiny())
    on_file = evaluate_tflite(str(path), data.x_test, data.y_test,
                              keras_model=load_model(out / "teacher.keras"))
    assert row["accuracy"] == on_file["accuracy"] and row["macro_f1"] == on_file["macro_f1"]
    assert report["evaluation"][row["name"]]["confusion_matrix"] == on_file["confusion_matrix"]
    assert row["agreement_with_keras"] == on_file["agreement_with_keras"] >= 0.99  # float32
    teacher = rows["teacher"]
    assert abs(row["accuracy"] - teacher["accuracy"]) <= 0.01 and row["latency_ms"] > 0
    assert (row["params"], row["labels"]) == (teacher["params"], teacher["labels"])
    # file to file: the shipped int8 student is much smaller than the teacher's float32 file
    assert rows["student_tflite_int8"]["gzip_bytes"] * 5 < row["gzip_bytes"]
    assert report["skipped"] == {} and report["warnings"] == []
    assert any("teacher_tflite: teacher -> teacher_tflite_float32.tflite" in line for line in log)
    # its artifact goes through the manifests like every other: size and SHA-256 recorded
    manifest = json.loads((out / ".kdkeras" / "teacher_tflite.json").read_text())
    assert manifest["files"] == {"teacher_tflite_float32.tflite": digest(path)}


def test_reference_rows_stay_out_of_the_chain_the_distillation_line_and_the_shipped_file():
    teacher_file = _row("teacher_tflite_float32", "tflite", 0.875, 1_000, 0.5)  # 500 nonzero
    students = [_row("student_scratch", "keras", 0.7, 3_000, None),
                _row("student_distilled", "keras", 0.8125, 3_000, None),  # 1,500 nonzero
                _row("student_tflite_int8", "tflite", 0.8, 3_000, 0.0625)]
    with_it = _synthetic_report("digits", [_row("teacher", "keras", 0.875, 120_000, 2.5),
                                           teacher_file] + students)
    assert with_it["warnings"] == []  # 1,500 nonzero after 500 would warn in the chain
    assert R.sparsity_warnings([teacher_file, students[1]]) == []
    pruned = {**teacher_file, "name": "student_pruned"}  # the same numbers, in the chain: warns
    assert len(R.sparsity_warnings([pruned, students[1]])) == 1
    md = report_markdown(with_it)
    without = report_markdown(_synthetic_report("digits", students))
    line = ("Distillation: student_distilled 81.25% vs student_scratch 70.00% (+11.25 points)")
    assert line in md and line in without
    # the teacher's file: a row of the table, compared file to file with the shipped one
    assert "| teacher_tflite_float32 | tflite | 20 | 87.50 |" in md
    assert ("File to file: the shipped student_tflite_int8 is 3.0× larger (12,000 vs 4,000 gzip "
            "bytes, 30,000 vs 10,000 bytes) and 8.0× faster (0.062 vs 0.500 ms) than the "
            "teacher's float32 file teacher_tflite_float32, at 80.00% vs 87.50% test accuracy."
            ) in md
    assert "File to file" not in without
    # the shipped file's confusion matrix, even with the teacher's file listed last
    last = _synthetic_report("digits", students + [teacher_file])
    assert "Confusion matrix of student_tflite_int8" in report_markdown(last)


def test_a_skipped_row_is_said_in_the_report():
    why = "the teacher is a keras-hub task that takes raw text through its preprocessor"
    report = _synthetic_report("digits", skipped={"teacher_tflite_float32": why})
    assert report["skipped"] == {"teacher_tflite_float32": why}
    assert f"**Skipped:** teacher_tflite_float32: {why}." in report_markdown(report)
    assert "teacher_tflite_float32 |" not in report_markdown(report)
