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

FIELDS = {"name", "format", "labels", "accuracy", "macro_f1", "params", "nonzero_params", "size_bytes",
          "gzip_bytes", "latency_ms", "path"}


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
    assert on_disk["dataset"] == "digits" and on_disk["dataset_info"]["n_test"] == 450
    assert on_disk["config"] == tiny().to_dict()


def test_markdown_and_plot(first_run):
    out, report, _ = first_run
    md = (out / "report.md").read_text()
    for name in NAMES:
        assert f"| {name} |" in md
    assert "[prune]" in md and "sparsity = 0.8" in md
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 800 and height > 300
    assert not list(out.glob(".*.tmp*"))  # the plot was written through a temporary file


def _row(name, fmt, acc, params, latency):
    return {"name": name, "format": fmt, "labels": 20, "accuracy": acc, "macro_f1": acc - 0.05,
            "params": params, "nonzero_params": params // 2, "size_bytes": 10 * params,
            "gzip_bytes": 4 * params, "latency_ms": latency, "path": f"/gone/{name}.{fmt}",
            "per_class": [{"class": c, "precision": 0.8, "recall": 0.8, "f1": f1, "support": 4}
                          for c, f1 in (("no", 0.75), ("yes", 0.85))],
            "confusion_matrix": [[3, 1], [1, 3]]}


def _synthetic_report(source: str):
    """A report as a run on the user's file ``source`` writes it (numbers made up)."""
    cfg = RunConfig.from_dict({"seed": 7, "data": {"source": source, "n_train": 20},
                               "prune": {"skip": ["output"]}})
    data = SplitData(np.zeros((20, 3), "float32"), np.arange(20) % 2, np.zeros((8, 3), "float32"),
                     np.arange(8) % 2, ["no", "yes"], "features", name="mine.npz")
    rows = [_row("teacher", "keras", 0.875, 120_000, 2.5),
            _row("student_distilled", "keras", 0.8125, 3_000, None),
            _row("student_tflite_int8", "tflite", 0.8, 3_000, 0.0625)]
    verify = {"accuracy": 0.8, "keras_accuracy": 0.8125, "agreement_with_keras": 0.99, "n": 8,
              "accuracy_drop": 0.0125}
    timing = {"data": {"seconds": 0.1, "reused": False},
              "teacher": {"seconds": 12.0, "reused": True}}
    return R.build_report(cfg, data, rows, verify, timing, 42.0)


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
