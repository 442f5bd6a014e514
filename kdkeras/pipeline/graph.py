"""The stage graph of ``kdkeras run``, declared once: :data:`STAGES`.

Each :class:`Stage` says what it is called, when it is enabled, which stages it needs, which
config keys and input files its reuse key covers, what it writes into the output folder, how
its output is saved and loaded, and its report row. The runner (:mod:`kdkeras.pipeline.runner`)
only walks this table; adding a stage is one declaration here plus its step function in
:mod:`kdkeras.pipeline.steps`. A ``task = "causal_lm"`` run walks :data:`LM_STAGES` (the same
stage names over token windows, steps in :mod:`kdkeras.pipeline.lm_steps`); :data:`TASKS`
maps each task to its table.

Example:

>>> from kdkeras.pipeline.config import RunConfig
>>> cfg = RunConfig.from_dict({"prune": {"enabled": False}})
>>> [s.name for s in enabled_stages(cfg)][:7]
['data', 'teacher', 'teacher_tflite', 'logits', 'scratch', 'distill', 'qat']
>>> needs(cfg, "qat"), stage_name("student_tflite_int8")
(('distill',), 'export')
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import kdkeras
from kdkeras.pipeline import config, lm_steps, steps
from kdkeras.pipeline.config import CAUSAL_LM, CLASSIFICATION, RunConfig
from kdkeras.pipeline.measure import files_in
from kdkeras.pipeline.report import TEACHER_FILE

Names = Union[Tuple[str, ...], Callable[[RunConfig], Tuple[str, ...]]]


def _always(cfg: RunConfig) -> bool:
    return True


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of ``kdkeras run``.

    Attributes:
        name: str. The stage (``--force NAME``, manifests, progress lines).
        run: ``run(ctx) -> output``: the step (:mod:`kdkeras.pipeline.steps`).
        reads: config keys (dotted, or whole sections) its reuse key covers.
        needs: the stages whose outputs it reads; a tuple or a function of the config.
        enabled: ``enabled(cfg) -> bool``.
        inputs: config keys holding paths of files or folders it reads (fingerprinted).
        artifacts: files it leaves in the output folder; a tuple or a function of the config.
        save: ``save(output, path)`` writes the output to the first artifact (None: the step
            writes its files itself).
        load: ``load(ctx, path)`` gives the output of a reused stage from its first artifact.
        model: the model it makes: its report row name, also a ``--force`` name.
        aliases: more ``--force`` names (fnmatch patterns).
        row: ``row(ctx, stage) -> dict``: its ``report.json`` row (None: no row).
        cached: False for cheap stages that run every time (no manifest).
        json_result: the output is a small JSON dict kept in the manifest (nothing to load).
        skip: ``skip(ctx) -> reason or None``, asked when the run reaches the stage, before it
            runs or is reused: a reason skips it (and every stage that needs it) in this run,
            and the log and ``report.json``'s ``skipped`` say why; None runs it. For what only
            the run can know (what a loaded teacher is); the config's switches are ``enabled``.
        needs_any: the stage needs one of its ``needs``, not all: it is skipped only when every
            one was, and uses the last that ran (export converts the pruned student when QAT
            was skipped for a student TF-MOT cannot wrap).
    """

    name: str
    run: Callable[[steps.Context], Any]
    reads: Tuple[str, ...] = ()
    needs: Names = ()
    enabled: Callable[[RunConfig], bool] = _always
    inputs: Tuple[str, ...] = ()
    artifacts: Names = ()
    save: Optional[Callable[[Any, Path], Any]] = None
    load: Optional[Callable[[steps.Context, Optional[Path]], Any]] = None
    model: Optional[str] = None
    aliases: Tuple[str, ...] = ()
    row: Optional[Callable[[steps.Context, "Stage"], Dict[str, Any]]] = None
    cached: bool = True
    json_result: bool = False
    skip: Optional[Callable[[steps.Context], Optional[str]]] = None
    needs_any: bool = False

    def needs_for(self, cfg: RunConfig) -> Tuple[str, ...]:
        return tuple(self.needs(cfg) if callable(self.needs) else self.needs)

    def files(self, cfg: RunConfig) -> Tuple[str, ...]:
        return tuple(self.artifacts(cfg) if callable(self.artifacts) else self.artifacts)


TRAINING = ("seed", "batch_size", "min_steps")
KD = TRAINING + ("distill.alpha", "distill.temperature")

STAGES: Tuple[Stage, ...] = (
    Stage("data", steps.run_data, reads=("seed", "data"), inputs=("data.source",), cached=False),
    Stage("teacher", steps.run_teacher, reads=TRAINING + ("teacher",), needs=("data",),
          inputs=("teacher.path",), artifacts=steps.teacher_files, save=steps.save_model,
          load=steps.load_teacher, model="teacher", row=steps.teacher_row),
    Stage("teacher_tflite", steps.run_teacher_tflite, reads=("export.calibration_samples",),
          needs=("teacher",), enabled=lambda cfg: cfg.export.enabled and cfg.export.teacher_tflite,
          artifacts=(steps.TEACHER_TFLITE,), load=steps.load_path, model=TEACHER_FILE,
          row=steps.teacher_tflite_row, skip=steps.teacher_tflite_skip),
    Stage("logits", steps.run_logits, reads=("batch_size",), needs=("teacher",),
          artifacts=("teacher_logits.npy",), save=steps.save_logits, load=steps.load_logits),
    Stage("scratch", steps.run_scratch,
          reads=TRAINING + ("student", "distill.epochs", "distill.learning_rate"),
          needs=("data",), enabled=lambda cfg: cfg.scratch.enabled, inputs=("student.path",),
          artifacts=("student_scratch.keras",), save=steps.save_model, load=steps.load_keras,
          model="student_scratch", row=steps.model_row),
    Stage("distill", steps.run_distill, reads=TRAINING + ("student", "distill"),
          needs=("logits",), inputs=("student.path",), artifacts=("student_distilled.keras",),
          save=steps.save_model, load=steps.load_keras, model="student_distilled",
          row=steps.model_row),
    Stage("prune", steps.run_prune, reads=KD + ("prune",), needs=("distill",),
          enabled=lambda cfg: cfg.prune.enabled, artifacts=("student_pruned.keras",),
          save=steps.save_model, load=steps.load_keras, model="student_pruned",
          row=steps.model_row),
    # .h5: tf-keras cannot reload QAT layers from .keras
    Stage("qat", steps.run_qat, reads=KD + ("qat",), needs=lambda cfg: (steps.qat_source(cfg),),
          enabled=lambda cfg: cfg.qat.enabled, artifacts=("student_qat.h5",),
          save=steps.save_model, load=steps.load_keras, model="student_qat",
          row=steps.model_row, skip=steps.qat_skip),
    Stage("export", steps.run_export, reads=("export.quantization", "export.calibration_samples"),
          needs=steps.export_sources, needs_any=True, enabled=lambda cfg: cfg.export.enabled,
          artifacts=steps.tflite_files, load=steps.load_path, aliases=("student_tflite*",),
          row=steps.tflite_row),
    Stage("verify", steps.run_verify, reads=("verify.max_accuracy_drop",), needs=("export",),
          enabled=lambda cfg: cfg.verify.enabled, json_result=True),
    Stage("android", steps.run_android, reads=("export.android",), needs=("export",),
          enabled=lambda cfg: cfg.export.enabled and cfg.export.android,
          artifacts=("android/model.tflite", "android/labels.txt", "android/model.json")),
    Stage("report", steps.run_report, cached=False),
)

def _lm_export_source(cfg: RunConfig) -> tuple:
    return ("prune",) if cfg.prune.enabled else ("distill",)


LM_WINDOWS = ("data.sequence_length", "data.train_tokens")
#: ``task = "causal_lm"``: the same runner and stage names over token windows; the logits
#: stage writes the teacher's top-k cache, no QAT and no teacher file, ``android`` is the LM
#: bundle (:mod:`kdkeras.pipeline.lm_steps`).
LM_STAGES: Tuple[Stage, ...] = (
    Stage("data", lm_steps.run_data, reads=("data.source", "data.wordpiece",
                                            "data.vocabulary_size", "data.test_every"),
          inputs=("data.source", "data.wordpiece"), artifacts=(lm_steps.VOCABULARY,),
          save=lm_steps.save_vocabulary, load=lm_steps.load_data),
    Stage("teacher", lm_steps.run_teacher, reads=TRAINING + ("teacher", "data.sequence_length",
                                                             "data.teacher_tokens"),
          needs=("data",), inputs=("teacher.path",), artifacts=lm_steps.teacher_files,
          save=steps.save_model, load=lm_steps.load_teacher, model="teacher",
          row=lm_steps.keras_row),
    Stage("logits", lm_steps.run_logits, reads=("batch_size", "distill.top_k",
                                                "distill.temperature") + LM_WINDOWS,
          needs=("data", "teacher"), artifacts=(lm_steps.CACHE_META,), load=lm_steps.load_cache),
    Stage("scratch", lm_steps.run_scratch,
          reads=TRAINING + ("student", "distill.epochs", "distill.learning_rate") + LM_WINDOWS,
          needs=("data",), enabled=lambda cfg: cfg.scratch.enabled,
          artifacts=("student_scratch.keras",), save=steps.save_model, load=steps.load_keras,
          model="student_scratch", row=lm_steps.keras_row),
    Stage("distill", lm_steps.run_distill, reads=TRAINING + ("student", "distill"),
          needs=("data", "logits"), artifacts=("student_distilled.keras",),
          save=steps.save_model, load=steps.load_keras, model="student_distilled",
          row=lm_steps.keras_row),
    Stage("prune", lm_steps.run_prune, reads=KD + ("prune",), needs=("distill", "logits"),
          enabled=lambda cfg: cfg.prune.enabled, artifacts=("student_pruned.keras",),
          save=steps.save_model, load=steps.load_keras, model="student_pruned",
          row=lm_steps.keras_row),
    Stage("export", lm_steps.run_export, reads=("export.quantization",
                                                "export.calibration_samples") + LM_WINDOWS,
          needs=_lm_export_source, enabled=lambda cfg: cfg.export.enabled,
          artifacts=steps.tflite_files, load=steps.load_path, aliases=("student_tflite*",),
          row=lm_steps.tflite_row),
    Stage("verify", lm_steps.run_verify, reads=("verify.max_perplexity_increase",
                                                "verify.greedy_tokens", "data.test_tokens"),
          needs=("export",), enabled=lambda cfg: cfg.verify.enabled, json_result=True),
    Stage("android", lm_steps.run_bundle, reads=("export.android",), needs=("export",),
          enabled=lambda cfg: cfg.export.enabled and cfg.export.android,
          artifacts=("android/model.tflite", "android/vocab.txt", "android/model.json")),
    Stage("report", lm_steps.run_report, cached=False),
)

#: Each ``task``'s stage table and the check that fails a run whose file lost too much.
TASKS: Dict[str, Tuple[Tuple[Stage, ...], Callable[..., None]]] = {
    CLASSIFICATION: (STAGES, steps.check_verified),
    CAUSAL_LM: (LM_STAGES, lm_steps.check_verified),
}
assert tuple(TASKS) == config.TASKS, "every task of the config has its stage table"
STAGE_NAMES = [s.name for s in STAGES]
BY_NAME = {s.name: s for s in STAGES}


def stages_for(cfg: RunConfig) -> Tuple[Stage, ...]:
    """The stage table of ``cfg.task``."""
    return TASKS[cfg.task][0]


def check_run(cfg: RunConfig, verify: Optional[Dict[str, Any]], out: Path) -> None:
    """Raises :class:`~kdkeras.pipeline.steps.VerificationError` when the run's exported file
    failed its task's verification (after the report is written)."""
    TASKS[cfg.task][1](cfg, verify, out)


def stage_name(name: str) -> str:
    """The stage called ``name``; model names (``student_pruned``, ``student_tflite_int8``) too.

    Raises:
        ValueError: an unknown name, with the nearest one and the list of stages.
    """
    if name in BY_NAME:
        return name
    every = [s for table, _ in TASKS.values() for s in table]
    for stage in every:
        if name == stage.name or name == stage.model or any(
                fnmatch.fnmatchcase(name, p) for p in stage.aliases):
            return stage.name
    models = [s.model for s in STAGES if s.model]
    close = difflib.get_close_matches(name, STAGE_NAMES + models, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"Unknown stage '{name}'.{hint} Stages: {', '.join(STAGE_NAMES)}")


def enabled_stages(cfg: RunConfig) -> List[Stage]:
    """The stages ``cfg`` runs, in order."""
    return [s for s in stages_for(cfg) if s.enabled(cfg)]


def needs(cfg: RunConfig, name: str) -> Tuple[str, ...]:
    """The stages whose output ``name`` reads, under ``cfg``'s enabled stages."""
    return {s.name: s for s in stages_for(cfg)}[name].needs_for(cfg)


def downstream(cfg: RunConfig, names: Iterable[str]) -> set:
    """``names`` and every enabled stage that needs one of them, directly or not."""
    redo = set(names)
    for stage in enabled_stages(cfg):  # in order: a stage is redone when anything it needs is
        if any(n in redo for n in stage.needs_for(cfg)):
            redo.add(stage.name)
    return redo


def _config_part(cfg: RunConfig, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def fingerprint(path: str) -> Any:
    """Size and modification time of a file, or of every file in a folder (None: no such path)."""
    if not path or not os.path.exists(path):
        return None
    p = Path(path)
    return [(str(f.relative_to(p)) if p.is_dir() else f.name, f.stat().st_size,
             f.stat().st_mtime_ns) for f in files_in(p)]


def stage_keys(cfg: RunConfig) -> Dict[str, str]:
    """The reuse key of every stage: config keys read, input files, keys of the stages needed."""
    keys: Dict[str, str] = {}
    for stage in stages_for(cfg):
        blob = {
            "stage": stage.name,
            "kdkeras": kdkeras.__version__,
            "config": {k: _config_part(cfg, k) for k in stage.reads},
            "files": {k: fingerprint(_config_part(cfg, k)) for k in stage.inputs},
            "needs": [keys[n] for n in stage.needs_for(cfg)],
        }
        keys[stage.name] = hashlib.sha256(json.dumps(blob, sort_keys=True, default=str)
                                          .encode()).hexdigest()[:16]
    return keys
