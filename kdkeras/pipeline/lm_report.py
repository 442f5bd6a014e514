"""The report of a causal-LM ``kdkeras run``: ``report.json``, ``report.md``, ``report.png``, a
terminal table.

``report.json`` = ``{"kdkeras_version", "task": "causal_lm", "dataset", "dataset_info"
(documents, tokens and [UNK] share per split, vocabulary size, context), "config", "models":
[{"name", "format", "perplexity", "params", "nonzero_params", "size_bytes", "gzip_bytes",
"tokens_per_s", "path"}], "cache" (the top-k cache: k, tokens, bytes, full-logit bytes),
"verify", "samples" (greedy continuations of a held-out prompt), "skipped", "stages",
"seconds"}``. Every perplexity is measured on the same held-out windows (``data.test_tokens``);
the ``.tflite`` row on the file itself (ai-edge-litert, 1 thread); ``tokens_per_s`` is greedy
generation at batch 1, one model call per token.

Example:

>>> r = {"dataset": "t", "dataset_info": {"context": 8, "vocabulary_size": 50,
...      "train": {"documents": 3, "tokens": 90}, "test": {"documents": 1, "tokens": 20}},
...      "models": [{"name": "student_scratch", "perplexity": 40.0},
...                 {"name": "student_distilled", "perplexity": 30.0}]}
>>> distillation_line(r)
'Distillation: student_distilled perplexity 30.00 vs student_scratch 40.00 (25.0% lower), the same architecture, token budget, epochs and optimizer.'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import kdkeras
from kdkeras._io import atomic_write_bytes
from kdkeras.pipeline.config import RunConfig
from kdkeras.pipeline.report import save_figure
from kdkeras.pipeline.toml_format import config_toml

MODEL_FIELDS = ("name", "format", "perplexity", "params", "nonzero_params", "size_bytes",
                "gzip_bytes", "tokens_per_s", "path")
CACHE_FIELDS = ("top_k", "tail", "tokens", "bytes", "full_logit_bytes", "identity")
COLUMNS = [("model", "name", "str"), ("format", "format", "str"),
           ("perplexity", "perplexity", "ppl"), ("params", "params", "int"),
           ("nonzero params", "nonzero_params", "int"), ("file bytes", "size_bytes", "int"),
           ("gzip bytes", "gzip_bytes", "int"), ("tokens/s", "tokens_per_s", "speed")]


def build_report(cfg: RunConfig, dataset: str, info: Dict[str, Any], rows: List[Dict[str, Any]],
                 verify: Optional[Dict[str, Any]], samples: Dict[str, Dict[str, str]],
                 timing: Dict[str, Any], seconds: float, skipped: Optional[Dict[str, str]] = None,
                 cache: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The ``report.json`` dict of a causal-LM run."""
    return {
        "kdkeras_version": kdkeras.__version__,
        "task": "causal_lm",
        "dataset": dataset,
        "dataset_info": {"name": dataset, **info},
        "config": cfg.to_dict(),
        "models": [{k: row[k] for k in MODEL_FIELDS} for row in rows],
        "cache": {k: (cache or {}).get(k) for k in CACHE_FIELDS},
        "verify": verify,
        "samples": samples,
        "skipped": dict(skipped or {}),
        "stages": timing,
        "seconds": round(seconds, 1),
    }


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "ppl":
        return f"{value:.2f}"
    if kind == "speed":
        return f"{value:.1f}"
    return f"{value:,}"


def table_rows(report: Dict[str, Any]) -> List[List[str]]:
    """The model rows as formatted strings, in ``COLUMNS`` order."""
    return [[m[key] if kind == "str" else _fmt(m.get(key), kind) for _, key, kind in COLUMNS]
            for m in report["models"]]


def distillation_line(report: Dict[str, Any]) -> Optional[str]:
    """What distillation bought: the distilled student's perplexity against the scratch one's."""
    rows = {m["name"]: m for m in report["models"]}
    s, d = rows.get("student_scratch"), rows.get("student_distilled")
    if not (s and d):
        return None
    change = 1 - d["perplexity"] / s["perplexity"]
    return (f"Distillation: student_distilled perplexity {d['perplexity']:.2f} vs "
            f"student_scratch {s['perplexity']:.2f} ({100 * abs(change):.1f}% "
            f"{'lower' if change >= 0 else 'higher'}), the same architecture, token budget, "
            "epochs and optimizer.")


def markdown(report: Dict[str, Any]) -> str:
    """The report table, the verification, the samples and the config as Markdown."""
    ds = report["dataset_info"]
    lines = [
        f"# kdkeras run (causal LM): {ds['name']} ({ds['train']['documents']} / "
        f"{ds['test']['documents']} documents, {ds['train']['tokens']:,} / "
        f"{ds['test']['tokens']:,} train / held-out tokens, {ds['vocabulary_size']:,} pieces, "
        f"context {ds['context']})",
        "",
        "| " + " | ".join(c[0] for c in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(r) + " |" for r in table_rows(report)),
        "",
        "Perplexity on the held-out windows (lower is better); the .tflite row is measured on "
        "the file itself (LiteRT interpreter, 1 thread). tokens/s: greedy generation, batch 1, "
        "one model call per token, on this machine.",
    ]
    line = distillation_line(report)
    if line:
        lines += ["", line]
    cache = report.get("cache") or {}
    if cache.get("bytes"):
        k = cache["top_k"][0]
        size = cache["bytes"][str(k)]
        what = (f"the teacher's top-{k // 2} probabilities and {k - k // 2} tokens drawn from "
                "the rest of its distribution" if cache.get("tail") == "sampled" else
                f"the teacher's top-{k} logits and their tail mass")
        lines += ["", f"Top-k cache: {what} per token, {size:,} bytes for "
                      f"{cache['tokens']:,.0f} tokens ({cache['full_logit_bytes'] / size:.0f}x "
                      f"less than the full logits, {cache['full_logit_bytes']:,} bytes)."]
    v = report.get("verify")
    if v:
        lines += ["", f"Verified: the .tflite file's perplexity is {v['perplexity']:.3f} vs "
                      f"{v['keras_perplexity']:.3f} in Keras "
                      f"({100 * v['perplexity_increase']:+.2f}%) on {v['tokens']:,} held-out "
                      "tokens" + (f"; greedy decoding over the file equals Keras's for "
                                  f"{v['greedy_equal']} of {v['greedy_tokens']} tokens."
                                  if v["greedy_tokens"] else ".")]
    for name, why in (report.get("skipped") or {}).items():
        lines += ["", f"**Skipped:** {name}: {why}."]
    samples = report.get("samples") or {}
    if samples:
        lines += ["", "## Samples (greedy, from a held-out prompt)", ""]
        first = next(iter(samples.values()))
        lines += [f"Prompt: `{_one_line(first['prompt'])}`", ""]
        lines += [f"- **{name}**: {_one_line(s['continuation'])}" for name, s in samples.items()]
    stages = ", ".join(f"{k} {t['seconds']:.0f} s" + (" (reused)" if t["reused"] else "")
                       for k, t in report["stages"].items())
    lines += ["", f"This run took {report['seconds']:.0f} s. Stage times, as computed (reused: "
                  f"in an earlier run): {stages}.", "", "## Config", "", "```toml"]
    lines += config_toml(report["config"])
    lines += ["```", ""]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return text.replace("\n", " ⏎ ").replace("`", "'").strip()


def plot(report: Dict[str, Any], path: Path) -> Path:
    """``report.png``: held-out perplexity vs gzip size and vs generation speed, one point per
    model (Keras circles, ``.tflite`` squares); lower is better on the y axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in report["models"] if m.get("perplexity") is not None]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key, label in ((axes[0], "gzip_bytes", "gzip size (bytes, log scale)"),
                           (axes[1], "tokens_per_s", "greedy generation (tokens/s, 1 thread, "
                                                     "log scale)")):
        for i, m in enumerate(models):
            if not m.get(key):
                continue
            ax.scatter(m[key], m["perplexity"], s=60, color=colors[i % len(colors)],
                       marker="s" if m.get("format") == "tflite" else "o",
                       label=f"{m['name']} ({m.get('format', 'keras')})")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out perplexity (lower is better)")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(f"kdkeras run (causal LM): {report['dataset']}, perplexity vs size and speed")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return save_figure(fig, path)


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
    table = Table(title=f"kdkeras run (causal LM): {ds['name']} "
                        f"({ds['test']['tokens']:,} held-out tokens)")
    for title, _, kind in COLUMNS:
        table.add_column(title, justify="left" if kind == "str" else "right",
                         no_wrap=kind == "str")
    for row in table_rows(report):
        table.add_row(*row)
    Console(file=file, width=max(120, Console().width)).print(table)
