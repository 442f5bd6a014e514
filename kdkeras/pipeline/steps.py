"""The stage bodies of ``kdkeras run``, as the stage graph (:mod:`kdkeras.pipeline.graph`) runs
them: each takes a :class:`Context` and returns the stage's output (a model, an array, a path,
a result dict, the report).

A step says what it does (one progress line), fetches what it needs with ``ctx.get(name)`` and
calls a plain function of :mod:`kdkeras.pipeline.stages`. Saving, loading and reusing are the
runner's, driven by each stage's declaration; the save and load functions, and the report row of
every model, are here beside the steps.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from kdkeras._io import atomic_path
from kdkeras.data import SplitData
from kdkeras.distill import load_teacher_logits, save_teacher_logits
from kdkeras.export.mediapipe_bundle import bundle_check
from kdkeras.export.mediapipe_env import find_python
from kdkeras.models import load_model
from kdkeras.pipeline import measure as M
from kdkeras.pipeline import report as R
from kdkeras.pipeline import stages as S
from kdkeras.pipeline.config import RunConfig


class VerificationError(RuntimeError):
    """The exported file's accuracy fell more than ``verify.max_accuracy_drop`` below its model,
    or MediaPipe's top-1 on the Android bundle differs from the file's on more than 0.5% of the
    test examples."""


@dataclasses.dataclass
class Context:
    """What a step gets: the config, the output folder, the upstream outputs and the log.

    Attributes:
        cfg: RunConfig. The run's configuration.
        out: Path. The output folder.
        get: ``get(name)`` is the output of stage ``name`` (loaded from its artifact when reused).
        say: a progress line (prefixed with the elapsed time).
        log: a raw log line (per-epoch lines).
        verbose: int. Keras ``fit`` verbosity (0: one log line per epoch instead).
        stages: the enabled stage declarations, in order.
        timing: ``{stage: {"seconds", "reused"}}`` of the stages run so far.
        start: float. When the run started (``time.time()``).
        skipped: ``{stage: why}`` of the stages skipped so far in this run (their ``skip``).
    """

    cfg: RunConfig
    out: Path
    get: Callable[[str], Any]
    say: Callable[[str], None]
    log: Callable[[str], None]
    verbose: int
    stages: Sequence[Any]
    timing: Dict[str, Dict[str, Any]]
    start: float
    skipped: Dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def data(self) -> SplitData:
        return self.get("data")

    def enabled(self, name: str) -> bool:
        """Whether stage ``name`` runs in this run (enabled by the config, not skipped)."""
        return any(s.name == name for s in self.stages) and name not in self.skipped

    def callbacks(self, stage: str) -> list:
        """Keras callbacks of a training stage: one log line per epoch when bars are off."""
        return [] if self.verbose else [S.EpochLog(self.log, stage)]

    def epochs(self, configured: int) -> str:
        """The epochs a training stage runs, and why when ``min_steps`` raised them."""
        n = S.epochs_for(self.cfg, configured, len(self.data.x_train))
        return str(n) if n == configured else f"{n} (min_steps = {self.cfg.min_steps})"


# ----------------------------------------------------------------------------- sources, files
def qat_source(cfg: RunConfig) -> str:
    """The stage whose student QAT fine-tunes: prune when it runs, else distill."""
    return "prune" if cfg.prune.enabled else "distill"


def export_source(cfg: RunConfig) -> str:
    """The stage whose student is exported: the last enabled student stage."""
    return "qat" if cfg.qat.enabled else ("prune" if cfg.prune.enabled else "distill")


def export_sources(cfg: RunConfig) -> tuple:
    """The stages export may convert, in order of preference last: the QAT student, or the one
    QAT starts from when QAT is skipped in a run (a student TF-MOT cannot make quantization-
    aware); export needs any one of them (``Stage.needs_any``)."""
    return (qat_source(cfg), "qat") if cfg.qat.enabled else (export_source(cfg),)


def exported_from(ctx: "Context") -> str:
    """The stage whose student the ``.tflite`` file is converted from in this run."""
    return [n for n in export_sources(ctx.cfg) if n not in ctx.skipped][-1]


#: The teacher's float32 file, beside the student's (its row: ``report.TEACHER_FILE``).
TEACHER_TFLITE = f"{R.TEACHER_FILE}.tflite"


def tflite_name(cfg: RunConfig) -> str:
    return f"student_tflite_{cfg.export.quantization}.tflite"


def teacher_files(cfg: RunConfig) -> tuple:
    """A teacher trained (or fine-tuned) here is saved; a loaded one stays where it is."""
    return () if S.teacher_mode(cfg) == "load" else ("teacher.keras",)


def tflite_files(cfg: RunConfig) -> tuple:
    return (tflite_name(cfg),)


def save_model(model, path: Path) -> Path:
    """Saves ``model`` (weights and architecture, no optimizer state) to ``path`` atomically."""
    optimizer = getattr(model, "optimizer", None)
    try:
        model.optimizer = None  # the .keras format has no include_optimizer=False
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy")
            with atomic_path(path) as tmp:
                model.save(tmp)
    finally:
        model.optimizer = optimizer
    return path


def save_logits(logits, path: Path) -> None:
    save_teacher_logits(path, logits)


def load_keras(ctx: Context, path: Optional[Path]):
    return load_model(str(path))


def load_teacher(ctx: Context, path: Optional[Path]):
    return S.load_teacher(ctx.cfg) if S.teacher_mode(ctx.cfg) == "load" else load_model(str(path))


def load_logits(ctx: Context, path: Optional[Path]):
    return load_teacher_logits(path)


def load_path(ctx: Context, path: Optional[Path]) -> str:
    return str(path)


# ----------------------------------------------------------------------------- the steps
def run_data(ctx: Context) -> SplitData:
    ctx.say(f"data: load {ctx.cfg.data.source}")
    data = S.load_data(ctx.cfg)
    S.check_models(ctx.cfg, data)
    s = data.summary()
    ctx.say(f"data: {s['n_train']:,} training / {s['n_test']:,} test examples, "
            f"{s['num_classes']} classes, input {tuple(s['input_shape'])} ({s['kind']})")
    if data.labelled is not None:
        why = (" (data.labels = 0 on a built-in set: 10%; set data.labels = 1 for all)"
               if not ctx.cfg.data.labels else "")
        ctx.say(f"data: label budget, the students see {data.n_labels:,} of the "
                f"{s['n_train']:,} training labels{why}")
    return data


def run_teacher(ctx: Context):
    cfg, t = ctx.cfg, ctx.cfg.teacher
    if S.teacher_mode(cfg) == "load":
        ctx.say(f"teacher: load {t.path}")
        return S.load_teacher(cfg)
    builder = S.builder_name("teacher", S.teacher_builder(cfg)[0], ctx.data)
    preset = S.teacher_preset(cfg, ctx.data)
    lr = S.teacher_learning_rate(cfg, ctx.data)
    why = ("teacher.learning_rate" if t.learning_rate else
           "automatic: fine-tuning a pretrained backbone" if preset else
           "automatic: training from scratch")
    what = (f"fine-tune {builder} on {preset} (Keras 3, AdamW)" if preset else
            f"train {builder}")
    ctx.say(f"teacher: {what} for {ctx.epochs(t.epochs)} epochs, learning rate {lr:g} ({why}, "
            f"{t.schedule} schedule)")
    return S.train_teacher(cfg, ctx.data, ctx.callbacks("teacher"), ctx.verbose)


def teacher_tflite_skip(ctx: Context) -> Optional[str]:
    """Why the teacher gets no float32 ``.tflite`` file in this run (None: it gets one)."""
    if S.teacher_mode(ctx.cfg) != "load":
        return None  # built here: a model of one input (tf-keras, or a Keras 3 BERT)
    return S.teacher_unconvertible(ctx.get("teacher"))


def run_teacher_tflite(ctx: Context) -> str:
    ctx.say(f"teacher_tflite: teacher -> {TEACHER_TFLITE} (float32, to compare file to file)")
    return S.export_teacher(ctx.cfg, ctx.get("teacher"), ctx.data, ctx.out / TEACHER_TFLITE)


def run_logits(ctx: Context):
    ctx.say("logits: cache the teacher's logits on the training split")
    data = ctx.data
    logits = S.teacher_logits(ctx.get("teacher"), data, ctx.cfg.batch_size)
    if logits.shape != (len(data.x_train), data.num_classes):
        raise ValueError(f"The teacher gives logits of shape {logits.shape[1:]} per example; "
                         f"the data set has {data.num_classes} classes. Use a teacher "
                         "trained on these classes.")
    return logits


def run_scratch(ctx: Context):
    data = ctx.data
    if data.labelled is None:
        ctx.say(f"scratch: train the student on hard labels for "
                f"{ctx.epochs(ctx.cfg.distill.epochs)} epochs")
    else:
        ctx.say(f"scratch: train the student on the {data.n_labels:,} labelled examples for "
                f"{S.scratch_epochs(ctx.cfg, data)} epochs (the distilled student's optimizer "
                "steps)")
    return S.train_scratch(ctx.cfg, ctx.data, ctx.callbacks("scratch"), ctx.verbose)


def run_distill(ctx: Context):
    d = ctx.cfg.distill
    budget = ("" if ctx.data.labelled is None else
              f", {ctx.data.n_labels:,} of {len(ctx.data.y_train):,} labels (the rest: soft "
              "targets only)")
    ctx.say(f"distill: {ctx.epochs(d.epochs)} epochs, alpha {d.alpha}, "
            f"temperature {d.temperature}{budget}")
    return S.distill(ctx.cfg, ctx.data, ctx.get("logits"), ctx.callbacks("distill"), ctx.verbose)


def run_prune(ctx: Context):
    p = ctx.cfg.prune
    kept = list(p.skip) + list(S.small_layers(ctx.get("distill"), p.min_params, p.skip))
    ctx.say(f"prune: to {p.sparsity:.0%} sparsity, {ctx.epochs(p.epochs)} epochs of "
            "distillation"
            + (f"; not pruned: {', '.join(kept)} (prune.skip, or fewer than "
               f"prune.min_params = {p.min_params} weights)" if kept else ""))
    return S.prune(ctx.cfg, ctx.get("distill"), ctx.data, ctx.get("logits"),
                   ctx.callbacks("prune"), ctx.verbose)


def qat_skip(ctx: Context) -> Optional[str]:
    """Why QAT is skipped in this run: TF-MOT cannot wrap the student (a transformer), so the
    export stage converts the student QAT would have started from (None: QAT runs)."""
    src = qat_source(ctx.cfg)
    why = S.qat_unsupported(ctx.get(src))
    if why is None:
        return None
    student = {"prune": "pruned", "distill": "distilled"}[src]
    return (f"TF-MOT cannot make the {student} student quantization-aware ({why}); the export "
            f"stage converts the {student} student with post-training "
            f"{ctx.cfg.export.quantization} quantization instead")


def run_qat(ctx: Context):
    from kdkeras.compress import float_layers

    src = qat_source(ctx.cfg)
    ctx.say(f"qat: int8 quantization-aware training of the {src} student, "
            f"{ctx.epochs(ctx.cfg.qat.epochs)} epochs of distillation")
    model = S.quantize_aware(ctx.cfg, ctx.get(src), ctx.data, ctx.get("logits"),
                             src == "prune", ctx.callbacks("qat"), ctx.verbose)
    left = float_layers(model)
    if left:
        ctx.say(f"qat: {len(left)} layer(s) TF-MOT cannot quantize stay float (the converter "
                f"quantizes them after training): {', '.join(left)}")
    return model


def run_export(ctx: Context) -> str:
    src, name = exported_from(ctx), tflite_name(ctx.cfg)
    ctx.say(f"export: {src} student -> {name}")
    return S.export(ctx.cfg, ctx.get(src), ctx.data, ctx.out / name)


def run_verify(ctx: Context) -> Dict[str, Any]:
    ctx.say(f"verify: {tflite_name(ctx.cfg)} on {len(ctx.data.x_test):,} test examples")
    result = S.verify(ctx.cfg, ctx.get("export"), ctx.get(exported_from(ctx)), ctx.data)
    ctx.say(f"verify: .tflite accuracy {100 * result['accuracy']:.2f}% vs Keras "
            f"{100 * result['keras_accuracy']:.2f}%, top-1 agreement "
            f"{100 * result['agreement_with_keras']:.2f}%")
    return result


def run_android(ctx: Context) -> str:
    tokenizer = S.bundle_vocabulary(ctx.data)[1]
    ctx.say("android: bundle model.tflite, labels.txt, model.json"
            + (f", vocab.txt ({tokenizer['type']} tokenizer in model.json)" if tokenizer else ""))
    out = S.android(ctx.cfg, ctx.get("export"), ctx.data, ctx.out / "android")
    check = bundle_check(Path(out))
    if check["status"] == "skipped":
        ctx.say(f"android: MediaPipe check skipped: {check['reason']}")
    else:
        ctx.say(f"android: MediaPipe {check['mediapipe_version']} {check['task']} gives the "
                f"file's top-1 on {100 * check['agreement']:.2f}% of {check['n']:,} test "
                f"examples ({check['status']}; required {100 * check['min_agreement']:.1f}%)")
    return out


def mediapipe_check(ctx: Context) -> Dict[str, Any]:
    """``report.json``'s ``verify.mediapipe``: the Android bundle run by MediaPipe Tasks (read
    from its ``model.json``, so a reused bundle reports the check it was made with), or why
    there is no check."""
    if not ctx.enabled("android"):
        why = ctx.skipped.get("android") or "export.android = false"
        return {"status": "skipped", "reason": f"no Android bundle in this run ({why})"}
    check = bundle_check(ctx.out / "android")
    if (check["status"] == "skipped" and ctx.timing.get("android", {}).get("reused")
            and "no MediaPipe environment" in (check["reason"] or "")
            and find_python()[0] is not None):
        check["reason"] += ("; the MediaPipe environment exists now: run again with "
                            "--force android")
    return check


def run_report(ctx: Context) -> Dict[str, Any]:
    ctx.say("report: measure every model on the test split")
    rows = [stage.row(ctx, stage) for stage in ctx.stages
            if stage.row is not None and ctx.enabled(stage.name)]
    verify = ctx.get("verify") if ctx.enabled("verify") else None
    if verify is not None:
        verify = {**verify, "mediapipe": mediapipe_check(ctx)}
    skipped = {s.model or s.name: ctx.skipped[s.name] for s in ctx.stages
               if s.name in ctx.skipped}
    models = {s.name: s.model for s in ctx.stages}
    source = models[exported_from(ctx)] if ctx.enabled("export") else None
    report = R.build_report(ctx.cfg, ctx.data, rows, verify, ctx.timing,
                            time.time() - ctx.start, skipped, exported_from=source)
    R.write_report(report, ctx.out)
    ctx.say(f"report: {ctx.out / 'report.md'}, report.json, report.png")
    return report


def check_verified(cfg: RunConfig, verify: Optional[Dict[str, Any]], out: Path) -> None:
    """Raises :class:`VerificationError` when the ``.tflite`` file lost too much accuracy, or
    when MediaPipe's top-1 on the Android bundle differs from the file's too often (as
    ``report.json``'s ``verify.mediapipe`` says)."""
    if verify and verify["accuracy_drop"] > cfg.verify.max_accuracy_drop:
        raise VerificationError(
            f"The exported .tflite file scores {100 * verify['accuracy']:.2f}% on the test split, "
            f"{100 * verify['accuracy_drop']:.2f} points below its Keras model "
            f"({100 * verify['keras_accuracy']:.2f}%), more than verify.max_accuracy_drop = "
            f"{cfg.verify.max_accuracy_drop}. The report is in {out}; try "
            "export.quantization = \"dynamic\" or more calibration samples."
        )
    check = R.reported_mediapipe(out) if verify else None
    if check and check["status"] == "failed":
        raise VerificationError(
            f"MediaPipe check of the Android bundle failed: {check['reason']}. The report is in "
            f"{out}; the bundle is {out / 'android'}.")


# ----------------------------------------------------------------------------- report rows
def teacher_row(ctx: Context, stage) -> Dict[str, Any]:
    cfg = ctx.cfg
    files = stage.files(cfg)
    path = ctx.out / files[0] if files else Path(cfg.teacher.path)
    row = M.teacher_row(ctx.get(stage.name), path, ctx.data, cfg.batch_size,
                        cfg.verify.latency_runs)
    return {**row, "labels": _teacher_labels(ctx)}


def _teacher_labels(ctx: Context) -> Optional[int]:
    """The labels the teacher was trained on here (None: a loaded teacher)."""
    return None if S.teacher_mode(ctx.cfg) == "load" else len(ctx.data.y_train)


def model_row(ctx: Context, stage) -> Dict[str, Any]:
    row = M.keras_row(stage.model, ctx.get(stage.name), ctx.out / stage.files(ctx.cfg)[0],
                      ctx.data, ctx.cfg.verify.latency_runs)
    return {**row, "labels": ctx.data.n_labels}


def teacher_tflite_row(ctx: Context, stage) -> Dict[str, Any]:
    """The teacher's float32 file, measured like the student's: accuracy, macro-F1 and
    agreement with the teacher on the test split (:func:`kdkeras.evaluate_tflite`), size,
    latency."""
    cfg, path = ctx.cfg, ctx.get(stage.name)
    teacher = ctx.get("teacher")
    model = getattr(teacher, "model", teacher)
    metrics = S.verify(cfg, path, model, ctx.data)
    row = M.tflite_row(stage.model, path, model, metrics, cfg.verify.latency_runs)
    return {**row, "labels": _teacher_labels(ctx)}


def tflite_row(ctx: Context, stage) -> Dict[str, Any]:
    cfg, path = ctx.cfg, ctx.get(stage.name)
    source = ctx.get(exported_from(ctx))
    verify = ctx.get("verify") if ctx.enabled("verify") else None
    metrics = verify if verify else S.verify(cfg, path, source, ctx.data)
    row = M.tflite_row(Path(tflite_name(cfg)).stem, path, source, metrics,
                       cfg.verify.latency_runs)
    return {**row, "labels": ctx.data.n_labels}
