"""The report of ``kdkeras run``: ``report.json``, ``report.md``, ``report.png``, a terminal table.

``report.json`` = ``{"kdkeras_version", "dataset", "config", "models": [{"name", "format",
"labels", "accuracy", "macro_f1", "agreement_with_keras", "params", "nonzero_params",
"size_bytes", "gzip_bytes", "latency_ms", "path"}]}``
(``dataset``: the built-in name or the file/folder name) plus ``dataset_info`` (kind, sizes,
classes, input shape; for text also ``tokenizer``, the tokenizer type, and ``truncated``, how
many texts were cut to the sequence length), ``exported_from`` (the model row the shipped
``.tflite`` file was converted from), ``evaluation`` (per model: ``per_class`` precision / recall / F1 and
the ``confusion_matrix``), ``warnings`` (a compression stage that raised the nonzero count of the
model it was made from), ``skipped`` (``{row or stage: why}`` of the stages skipped at run time,
e.g. no ``teacher_tflite_float32`` row for a teacher that takes raw text), ``verify`` (with
``mediapipe``: the Android bundle run by MediaPipe Tasks, or why it was skipped), ``stages``
(seconds, reused) and ``seconds``. Every accuracy is measured on the held-out test split; the
``.tflite`` rows (the shipped student's and the teacher's float32 file) on the files themselves,
with their top-1 ``agreement_with_keras`` (None for Keras rows). The rows are measured by
:mod:`kdkeras.pipeline.measure`; this module only writes and renders them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

import kdkeras
from kdkeras._io import atomic_path, atomic_write_bytes
from kdkeras.data import SplitData
from kdkeras.pipeline.config import RunConfig
from kdkeras.pipeline.toml_format import config_toml

MODEL_FIELDS = ("name", "format", "labels", "accuracy", "macro_f1", "agreement_with_keras",
                "params", "nonzero_params", "size_bytes", "gzip_bytes", "latency_ms", "path")
#: Per model, beside its row: the scores of each class and the confusion matrix.
DETAIL_FIELDS = ("per_class", "confusion_matrix")
#: The row of the teacher's float32 ``.tflite`` file (and its file name without ``.tflite``).
TEACHER_FILE = "teacher_tflite_float32"
#: Rows to compare against, outside the chain of models the shipped file is made from.
REFERENCES = ("teacher", TEACHER_FILE, "student_scratch")


def build_report(cfg: RunConfig, data: SplitData, rows: List[Dict[str, Any]],
                 verify: Optional[Dict[str, Any]], timing: Dict[str, Any],
                 seconds: float, skipped: Optional[Dict[str, str]] = None,
                 exported_from: Optional[str] = None) -> Dict[str, Any]:
    """The ``report.json`` dict of a run: its data, config, model rows, verification, times,
    why each stage ``skipped`` at run time was skipped, and which model the ``.tflite`` file
    was ``exported_from``."""
    return {
        "kdkeras_version": kdkeras.__version__,
        "dataset": data.name,
        "dataset_info": data.summary(),
        "config": cfg.to_dict(),
        "models": [{k: row[k] for k in MODEL_FIELDS} for row in rows],
        "evaluation": {row["name"]: {k: row[k] for k in DETAIL_FIELDS} for row in rows
                       if all(k in row for k in DETAIL_FIELDS)},
        "warnings": sparsity_warnings(rows),
        "skipped": dict(skipped or {}),
        "exported_from": exported_from,
        "verify": verify,
        "stages": timing,
        "seconds": round(seconds, 1),
    }


def sparsity_warnings(rows: List[Dict[str, Any]]) -> List[str]:
    """A line for every compression stage whose model has more nonzero parameters than the
    model it was made from (a stage that undid pruning). The :data:`REFERENCES` (the teacher,
    its float32 file and the scratch baseline) are not in that chain."""
    chain = [r for r in rows if r["name"] not in REFERENCES
             and r.get("nonzero_params") is not None]
    return [f"{b['name']} has {b['nonzero_params']:,} nonzero parameters, more than "
            f"{a['name']} ({a['nonzero_params']:,}) it was made from: that stage undid "
            "pruning, and the file that ships is larger than it need be."
            for a, b in zip(chain, chain[1:]) if b["nonzero_params"] > a["nonzero_params"]]


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "acc":
        return f"{100 * value:.2f}"
    if kind == "ms":
        return f"{value:.3f}"
    return f"{value:,}"


COLUMNS = [("model", "name", "str"), ("format", "format", "str"), ("labels", "labels", "int"),
           ("test acc. (%)", "accuracy", "acc"), ("macro-F1 (%)", "macro_f1", "acc"),
           ("params", "params", "int"),
           ("nonzero params", "nonzero_params", "int"), ("file bytes", "size_bytes", "int"),
           ("gzip bytes", "gzip_bytes", "int"), ("latency ms", "latency_ms", "ms")]


def table_rows(report: Dict[str, Any]) -> List[List[str]]:
    """The model rows as formatted strings, in ``COLUMNS`` order."""
    return [[m[key] if kind == "str" else _fmt(m.get(key), kind) for _, key, kind in COLUMNS]
            for m in report["models"]]


def markdown(report: Dict[str, Any]) -> str:
    """The report table and the config as Markdown.

    Only reads ``report`` (a ``report.json`` dict): its config is rendered as stored, not
    rebuilt, so a report copied elsewhere renders without its data or models.
    """
    ds = report["dataset_info"]
    lines = [
        f"# kdkeras run: {ds['name']} ({ds['n_train']:,} train / {ds['n_test']:,} test, "
        f"{ds['num_classes']} classes)",
        "",
        "| " + " | ".join(c[0] for c in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(r) + " |" for r in table_rows(report)),
        "",
        "Accuracy on the held-out test split; the .tflite rows are measured on the files "
        "themselves (LiteRT interpreter, 1 thread). Latency: median ms of batch-1 calls on this "
        "machine (Keras rows: one traced tf.function call).",
    ]
    lines += _text_lines(ds)
    lines += _distillation_lines(report)
    lines += _file_to_file_lines(report)
    shipped = [m["name"] for m in report["models"] if m["format"] == "tflite"
               and m["name"] not in REFERENCES]
    if report.get("exported_from") and shipped:
        lines += ["", f"The shipped {shipped[-1]} was converted from {report['exported_from']}."]
    for name, why in (report.get("skipped") or {}).items():
        lines += ["", f"**Skipped:** {name}: {why}."]
    for warning in report.get("warnings") or []:
        lines += ["", f"**Warning:** {warning}"]
    v = report.get("verify")
    if v:
        lines += ["", f"Verified: the .tflite file agrees with its Keras model on "
                      f"{100 * v['agreement_with_keras']:.2f}% of {v['n']:,} test examples "
                      f"(accuracy {100 * v['accuracy']:.2f}% vs {100 * v['keras_accuracy']:.2f}%)."]
        lines += _mediapipe_lines(v.get("mediapipe"))
    stages = ", ".join(f"{k} {t['seconds']:.0f} s" + (" (reused)" if t["reused"] else "")
                       for k, t in report["stages"].items())
    lines += _per_class_markdown(report)
    lines += ["", f"This run took {report['seconds']:.0f} s. Stage times, as computed (reused: "
                  f"in an earlier run): {stages}.", "", "## Config", "",
              "```toml"]
    lines += config_toml(report["config"])
    lines += ["```", ""]
    return "\n".join(lines)


def _mediapipe_lines(check: Optional[Dict[str, Any]]) -> List[str]:
    """The Android bundle run by MediaPipe Tasks (``verify.mediapipe``), or why it was not.

    >>> _mediapipe_lines({"status": "skipped", "reason": "no MediaPipe environment"})
    ['', 'MediaPipe check of android/model.tflite: skipped: no MediaPipe environment.']
    """
    if not check:
        return []
    if check["status"] == "skipped":
        return ["", f"MediaPipe check of android/model.tflite: skipped: {check['reason']}."]
    verdict = ("passed" if check["status"] == "passed" else
               f"**FAILED** (required {100 * check['min_agreement']:.1f}%)")
    return ["", f"MediaPipe check of android/model.tflite: MediaPipe "
                f"{check['mediapipe_version']} Tasks' {check['task']} gives the same top-1 as "
                f"the LiteRT interpreter on {100 * check['agreement']:.2f}% of {check['n']:,} "
                f"test examples ({check['disagreements']} differ): {verdict}."]


def reported_mediapipe(out: Path) -> Optional[Dict[str, Any]]:
    """``verify.mediapipe`` of the ``report.json`` in ``out`` (None: no report or no check)."""
    try:
        report = json.loads((Path(out) / "report.json").read_text())
    except (OSError, ValueError):
        return None
    return (report.get("verify") or {}).get("mediapipe")


def _shipped(report: Dict[str, Any]):
    """``(name, confusion matrix)`` of the last model with an evaluation that is not one of the
    :data:`REFERENCES` (the shipped file)."""
    evaluation = report.get("evaluation") or {}
    for m in reversed(report["models"]):
        if m["name"] in evaluation and m["name"] not in REFERENCES:
            return m["name"], evaluation[m["name"]]["confusion_matrix"]
    return None


def _ratio(reference: Optional[float], value: Optional[float], less: str, more: str) -> str:
    """``"12.3× smaller"`` (``value`` below ``reference``) or ``"1.5× larger"``; "" unknown."""
    if not reference or not value:
        return ""
    r = reference / value
    return f"{r:.1f}× {less}" if r >= 1 else f"{1 / r:.1f}× {more}"


def _text_lines(ds: Dict[str, Any]) -> List[str]:
    """Text: the tokenizer and how many texts were cut to the sequence length.

    >>> _text_lines({"kind": "text", "tokenizer": "wordpiece", "truncated": 3, "n_train": 8,
    ...              "n_test": 2, "input_shape": [16]})[1]
    'Text: wordpiece tokenizer, sequence length 16; 3 of the 10 texts (train + test) were longer and cut to fit.'
    """
    if ds.get("kind") != "text":
        return []
    length = ds["input_shape"][0]
    tokenizer = ds.get("tokenizer") or "word-level (vocabulary of the training split)"
    cut = ds.get("truncated")
    total = ds["n_train"] + ds["n_test"]
    tail = (f"; {cut:,} of the {total:,} texts (train + test) were longer and cut to fit"
            if cut is not None else "")
    return ["", f"Text: {tokenizer} tokenizer, sequence length {length}{tail}."]


def _file_to_file_lines(report: Dict[str, Any]) -> List[str]:
    """The shipped ``.tflite`` file against the teacher's float32 one: size, latency, accuracy."""
    rows = {m["name"]: m for m in report["models"]}
    teacher = rows.get(TEACHER_FILE)
    shipped = [m for m in report["models"] if m["format"] == "tflite"
               and m["name"] not in REFERENCES]
    if teacher is None or not shipped:
        return []
    s, t = shipped[-1], teacher
    size = _ratio(t["gzip_bytes"], s["gzip_bytes"], "smaller", "larger")
    speed = _ratio(t["latency_ms"], s["latency_ms"], "faster", "slower")
    parts = [f"{size} ({s['gzip_bytes']:,} vs {t['gzip_bytes']:,} gzip bytes, "
             f"{s['size_bytes']:,} vs {t['size_bytes']:,} bytes)"] if size else []
    if speed:
        parts.append(f"{speed} ({s['latency_ms']:.3f} vs {t['latency_ms']:.3f} ms)")
    if not parts:
        return []
    acc = (f", at {100 * s['accuracy']:.2f}% vs {100 * t['accuracy']:.2f}% test accuracy"
           if s["accuracy"] is not None and t["accuracy"] is not None else "")
    return ["", f"File to file: the shipped {s['name']} is {' and '.join(parts)} than the "
                f"teacher's float32 file {TEACHER_FILE}{acc}."]


def _distillation_lines(report: Dict[str, Any]) -> List[str]:
    """What distillation bought (distilled minus scratch) and what each model was given."""
    rows = {m["name"]: m for m in report["models"]}
    lines = []
    ds = report["dataset_info"]
    n_labels = ds.get("n_labels", ds["n_train"])
    if n_labels < ds["n_train"]:
        lines += ["", f"Label budget: the students saw {n_labels:,} of the {ds['n_train']:,} "
                      "training labels; the distilled ones also learned the other examples from "
                      "the teacher's soft targets, and the scratch baseline trained on the "
                      "labelled ones alone for as many optimizer steps."]
    s, d = rows.get("student_scratch"), rows.get("student_distilled")
    if s and d and s["accuracy"] is not None and d["accuracy"] is not None:
        gain = 100 * (d["accuracy"] - s["accuracy"])
        lines += ["", f"Distillation: student_distilled {100 * d['accuracy']:.2f}% vs "
                      f"student_scratch {100 * s['accuracy']:.2f}% ({gain:+.2f} points), the same "
                      "architecture, optimizer, learning rate, batch size and optimizer steps."]
    return lines


def _per_class_markdown(report: Dict[str, Any]) -> List[str]:
    """Per-class F1 of every model, and the confusion matrix of the shipped one."""
    evaluation = report.get("evaluation") or {}
    names = [m["name"] for m in report["models"] if m["name"] in evaluation]
    if not names:
        return []
    classes = [c["class"] for c in evaluation[names[0]]["per_class"]]
    lines = ["", "## Per-class F1 (%) on the test split", "",
             "| class | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i, c in enumerate(classes):
        lines.append(f"| {c} | " + " | ".join(
            f"{100 * evaluation[n]['per_class'][i]['f1']:.1f}" for n in names) + " |")
    name, cm = _shipped(report)
    lines += ["", f"Confusion matrix of {name} (rows: true class, columns: predicted):", "",
              "| | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    lines += [f"| {c} | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(classes, cm)]
    return lines


def plot(report: Dict[str, Any], path: Path) -> Path:
    """``report.png``: test accuracy vs gzip size and vs latency, one point per model, and the
    confusion matrix of the shipped model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in report["models"] if m["accuracy"] is not None]
    shipped = _shipped(report)
    fig, axes = plt.subplots(1, 3 if shipped else 2, figsize=(17 if shipped else 12, 5.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key, label in ((axes[0], "gzip_bytes", "gzip size (bytes, log scale)"),
                           (axes[1], "latency_ms", "latency (ms, batch 1, log scale)")):
        for i, m in enumerate(models):
            if m[key] is None:
                continue
            ax.scatter(m[key], 100 * m["accuracy"], s=60, color=colors[i % len(colors)],
                       marker="s" if m["format"] == "tflite" else "o",
                       label=f"{m['name']} ({m['format']})")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    if shipped:
        name, cm = shipped
        cm = np.asarray(cm, dtype=float)
        rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax = axes[2]
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        classes = [c["class"] for c in report["evaluation"][name]["per_class"]]
        ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion matrix of {name} (share of each true class)", fontsize=9)
        if len(classes) <= 12:
            for (i, j), v in np.ndenumerate(rates):
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if v > 0.5 else "black")
    ds = report["dataset_info"]
    fig.suptitle(f"kdkeras run: {ds['name']}, test accuracy vs size and vs latency")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    """Writes a matplotlib figure to ``path`` atomically (110 dpi) and closes it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path


def write_report(report: Dict[str, Any], out: Path) -> None:
    """``report.json``, ``report.md`` and ``report.png`` in ``out``, each written atomically."""
    atomic_write_bytes(out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    atomic_write_bytes(out / "report.md", markdown(report).encode())
    plot(report, out / "report.png")


def print_table(report: Dict[str, Any], file: Optional[Any] = None) -> None:
    """The report table in the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    ds = report["dataset_info"]
    table = Table(title=f"kdkeras run: {ds['name']} ({ds['n_test']:,} test examples)")
    for title, _, kind in COLUMNS:
        table.add_column(title, justify="left" if kind == "str" else "right",
                         no_wrap=kind == "str")
    for row in table_rows(report):
        table.add_row(*row)
    Console(file=file, width=max(120, Console().width)).print(table)
