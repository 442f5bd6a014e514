"""Runs the stages of ``kdkeras run`` in order, saving, reusing and reporting them.

Each finished stage leaves its artifact in ``out`` plus a manifest
``out/.kdkeras/<stage>.json`` holding the stage's *key*: a hash of the config keys it reads,
the fingerprints of the files it reads and the keys of the stages it needs. A later run with an
unchanged key reuses the artifact instead of recomputing it, as long as the stages it needs were
not redone since (each manifest records which run of its inputs it was made from); ``force``
redoes a stage and every stage after it that needs it. Artifacts are written to a temporary name and renamed, and the
manifest is written last, so an interrupted stage leaves nothing half-written: the next run
redoes exactly the unfinished stages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple


import kdkeras
from kdkeras._io import atomic_write_bytes
from kdkeras.models import load_model
from kdkeras.pipeline import stages as S
from kdkeras.pipeline.config import RunConfig
from kdkeras.distill import save_teacher_logits


class VerificationError(RuntimeError):
    """The exported file's accuracy fell more than ``verify.max_accuracy_drop`` below its model."""


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    reads: Tuple[str, ...]  # dotted config keys (or whole sections) the stage depends on
    model: Optional[str] = None  # report row / artifact stem for model stages
    ext: str = ".keras"  # QAT models: .h5 (tf-keras cannot reload QAT layers from .keras)

    @property
    def file(self) -> str:
        return f"{self.model}{self.ext}"


STAGES = [
    Stage("data", ("seed", "data")),
    Stage("teacher", ("seed", "batch_size", "min_steps", "teacher"), "teacher"),
    Stage("logits", ("batch_size",)),
    Stage("scratch", ("seed", "batch_size", "min_steps", "student", "distill.epochs",
                      "distill.learning_rate"),
          "student_scratch"),
    Stage("distill", ("seed", "batch_size", "min_steps", "student", "distill"), "student_distilled"),
    Stage("prune", ("seed", "batch_size", "min_steps", "distill.alpha", "distill.temperature",
                    "prune"),
          "student_pruned"),
    Stage("qat", ("seed", "batch_size", "min_steps", "distill.alpha", "distill.temperature",
                  "qat"),
          "student_qat", ".h5"),
    Stage("export", ("export.quantization", "export.calibration_samples")),
    Stage("verify", ("verify.max_accuracy_drop",)),
    Stage("android", ("export.android",)),
    Stage("report", ()),
]
STAGE_NAMES = [s.name for s in STAGES]
_BY_NAME = {s.name: s for s in STAGES}
_ALIASES = {s.model: s.name for s in STAGES if s.model}


def stage_name(name: str) -> str:
    """The stage called ``name`` (model names such as ``student_pruned`` work too)."""
    if name in _BY_NAME:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    if name.startswith("student_tflite"):
        return "export"
    import difflib

    close = difflib.get_close_matches(name, STAGE_NAMES + list(_ALIASES), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"Unknown stage '{name}'.{hint} Stages: {', '.join(STAGE_NAMES)}")


def enabled_stages(cfg: RunConfig) -> List[str]:
    on = {"scratch": cfg.scratch.enabled, "prune": cfg.prune.enabled, "qat": cfg.qat.enabled,
          "export": cfg.export.enabled, "verify": cfg.verify.enabled,
          "android": cfg.export.enabled and cfg.export.android}
    return [s for s in STAGE_NAMES if on.get(s, True)]


def needs(cfg: RunConfig, name: str) -> List[str]:
    """The stages whose output ``name`` reads, under ``cfg``'s enabled stages."""
    last_model = "qat" if cfg.qat.enabled else ("prune" if cfg.prune.enabled else "distill")
    return {
        "data": [],
        "teacher": ["data"],
        "logits": ["teacher"],
        "scratch": ["data"],
        "distill": ["logits"],
        "prune": ["distill"],
        "qat": ["prune" if cfg.prune.enabled else "distill"],
        "export": [last_model],
        "verify": ["export"],
        "android": ["export"],
        "report": [],
    }[name]


def _config_part(cfg: RunConfig, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _fingerprint(path: str) -> Any:
    """Size and modification time of a file, or of every file in a folder."""
    if not path or not os.path.exists(path):
        return None
    p = Path(path)
    files = S.files_in(p)
    return [(str(f.relative_to(p)) if p.is_dir() else f.name, f.stat().st_size,
             f.stat().st_mtime_ns) for f in files]


def stage_keys(cfg: RunConfig) -> Dict[str, str]:
    """The reuse key of every stage: config keys read, input files, keys of the stages needed."""
    files = {"data": cfg.data.source, "teacher": cfg.teacher.path, "scratch": cfg.student.path,
             "distill": cfg.student.path}
    keys: Dict[str, str] = {}
    for stage in STAGES:
        blob = {
            "stage": stage.name,
            "kdkeras": kdkeras.__version__,
            "config": {k: _config_part(cfg, k) for k in stage.reads},
            "files": _fingerprint(files.get(stage.name, "")),
            "needs": [keys[n] for n in needs(cfg, stage.name)],
        }
        keys[stage.name] = hashlib.sha256(json.dumps(blob, sort_keys=True, default=str)
                                          .encode()).hexdigest()[:16]
    return keys


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".kdkeras-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {out} is not writable ({e.strerror}). Choose another folder.") from e


def save_model(model, path: Path) -> Path:
    """Saves ``model`` (weights and architecture, no optimizer state) to ``path`` atomically."""
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    optimizer = getattr(model, "optimizer", None)
    try:
        model.optimizer = None  # the .keras format has no include_optimizer=False
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy")
            model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        model.optimizer = optimizer
    return path


class Runner:
    """One ``kdkeras run``: the stages of ``cfg`` into ``out``, reusing finished ones."""

    def __init__(self, cfg: RunConfig, out: str | os.PathLike, *, force: Iterable[str] = (),
                 verbose: int = 0, log: Callable[[str], None] = print):
        self.cfg, self.out, self.verbose, self.log = cfg, Path(out), verbose, log
        self.enabled = enabled_stages(cfg)
        forced = []
        for name in force:
            name = stage_name(name)
            if name not in self.enabled:
                raise ValueError(f"--force {name}: stage '{name}' is disabled in this config. "
                                 f"Enabled stages: {', '.join(self.enabled)}")
            forced.append(name)
        self.redo = self._downstream(forced)
        self.keys = stage_keys(cfg)
        self.state: Dict[str, Any] = {}  # in-memory outputs of stages (models, arrays, paths)
        self.results: Dict[str, Dict[str, Any]] = {}  # small JSON results of stages
        self.timing: Dict[str, Dict[str, Any]] = {}
        # Which run of each stage produced its artifact; data is deterministic: its key.
        self.ids: Dict[str, Optional[str]] = {"data": self.keys["data"]}
        self.start = time.time()

    # ------------------------------------------------------------------ bookkeeping
    def _downstream(self, forced: List[str]) -> set:
        redo = set(forced)
        for name in self.enabled:  # in order: a stage is redone when anything it needs is
            if any(n in redo for n in needs(self.cfg, name)):
                redo.add(name)
        return redo

    def _manifest_path(self, name: str) -> Path:
        return self.out / ".kdkeras" / f"{name}.json"

    def _manifest(self, name: str) -> Optional[Dict[str, Any]]:
        path = self._manifest_path(name)
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if m.get("key") != self.keys[name]:
            return None
        if m.get("inputs") != {n: self.ids.get(n) for n in needs(self.cfg, name)}:
            return None  # an input stage was redone since: this result is stale
        if not all((self.out / a).exists() for a in m.get("artifacts", [])):
            return None
        return m

    def _finish(self, name: str, artifacts: List[str], result: Dict[str, Any], seconds: float):
        self.ids[name] = uuid.uuid4().hex
        manifest = {"stage": name, "key": self.keys[name], "id": self.ids[name],
                    "inputs": {n: self.ids.get(n) for n in needs(self.cfg, name)},
                    "artifacts": artifacts, "result": result, "seconds": round(seconds, 1)}
        atomic_write_bytes(self._manifest_path(name), json.dumps(manifest, indent=2).encode())

    def say(self, text: str) -> None:
        self.log(f"[{time.time() - self.start:7.1f}s] {text}")

    def callbacks(self, stage: str) -> list:
        return [] if self.verbose else [S.EpochLog(self.log, stage)]

    def cleanup(self) -> None:
        """Removes temporary files an interrupted save may have left."""
        for p in list(self.out.glob("*.tmp.*")) + list(self.out.glob(".*.tmp-*")):
            if p.is_dir():
                import shutil

                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ running
    def run(self) -> Dict[str, Any]:
        check_writable(self.out)
        try:
            for name in self.enabled:
                self._stage(name)
        except KeyboardInterrupt:
            self.cleanup()
            done = [n for n in self.enabled if self._manifest(n)]
            self.log(f"interrupted: finished stages kept in {self.out} ({', '.join(done) or 'none'}); "
                     "run the same command again to resume.")
            raise
        report = self.state["report"]
        v = self.results.get("verify")
        if v and v["accuracy_drop"] > self.cfg.verify.max_accuracy_drop:
            raise VerificationError(
                f"The exported .tflite file scores {100 * v['accuracy']:.2f}% on the test split, "
                f"{100 * v['accuracy_drop']:.2f} points below its Keras model "
                f"({100 * v['keras_accuracy']:.2f}%), more than verify.max_accuracy_drop = "
                f"{self.cfg.verify.max_accuracy_drop}. The report is in {self.out}; try "
                "export.quantization = \"dynamic\" or more calibration samples."
            )
        return report

    def _stage(self, name: str) -> None:
        t0 = time.time()
        if name in ("data", "report"):  # cheap, never cached
            getattr(self, f"_run_{name}")()
            self.timing[name] = {"seconds": round(time.time() - t0, 1), "reused": False}
            return
        manifest = None if name in self.redo else self._manifest(name)
        if manifest is not None:
            self.ids[name] = manifest["id"]
            self.results[name] = manifest["result"]
            self.timing[name] = {"seconds": manifest["seconds"], "reused": True}  # when computed
            self.say(f"{name}: reused {', '.join(manifest['artifacts']) or 'result'} "
                     "(same config)")
            return
        self._manifest_path(name).unlink(missing_ok=True)  # never pair an old manifest with new files
        artifacts, result = getattr(self, f"_run_{name}")()
        seconds = time.time() - t0
        self.results[name] = result
        self._finish(name, artifacts, result, seconds)
        self.timing[name] = {"seconds": round(seconds, 1), "reused": False}
        self.say(f"{name}: done in {seconds:.1f} s")

    def get(self, name: str) -> Any:
        """The output of stage ``name``, loaded from its artifact when the stage was reused."""
        if name not in self.state:
            self.state[name] = self._load(name)
        return self.state[name]

    def _load(self, name: str) -> Any:
        if name == "teacher":
            if self.cfg.teacher.path:
                return S.load_teacher(self.cfg)
            return load_model(str(self.out / "teacher.keras"))
        if name == "logits":
            from kdkeras.distill import load_teacher_logits

            return load_teacher_logits(self.out / "teacher_logits.npy")
        if name == "export":
            return str(self.out / self.tflite_name)
        return load_model(str(self.out / _BY_NAME[name].file))

    def epochs(self, configured: int) -> str:
        """The epochs a training stage runs, and why when ``min_steps`` raised them."""
        n = S.epochs_for(self.cfg, configured, len(self.data.x))
        return str(n) if n == configured else f"{n} (min_steps = {self.cfg.min_steps})"

    @property
    def tflite_name(self) -> str:
        return f"student_tflite_{self.cfg.export.quantization}.tflite"

    def _save(self, name: str, model) -> Tuple[List[str], Dict[str, Any]]:
        self.state[name] = model
        file = _BY_NAME[name].file
        save_model(model, self.out / file)
        return [file], {}

    # ------------------------------------------------------------------ the stages
    def _run_data(self) -> None:
        self.say(f"data: load {self.cfg.data.source}")
        self.data = S.load_data(self.cfg)
        S.check_models(self.cfg, self.data)
        s = self.data.summary()
        self.say(f"data: {s['n_train']:,} training / {s['n_test']:,} test examples, "
                 f"{s['num_classes']} classes, input {tuple(s['input_shape'])} ({s['kind']})")

    def _run_teacher(self):
        t = self.cfg.teacher
        if t.path:
            self.say(f"teacher: load {t.path}")
            self.state["teacher"] = S.load_teacher(self.cfg)
            return [], {"loaded_from": t.path}
        self.say(f"teacher: train {S.builder_name('teacher', t.builder, self.data)} for "
                 f"{self.epochs(t.epochs)} epochs")
        return self._save("teacher", S.train_teacher(self.cfg, self.data, self.callbacks("teacher"),
                                                     self.verbose))

    def _run_logits(self):
        self.say("logits: cache the teacher's logits on the training split")
        logits = S.teacher_logits(self.get("teacher"), self.data, self.cfg.batch_size)
        if logits.shape != (len(self.data.x), self.data.num_classes):
            raise ValueError(f"The teacher gives logits of shape {logits.shape[1:]} per example; "
                             f"the data set has {self.data.num_classes} classes. Use a teacher "
                             "trained on these classes.")
        save_teacher_logits(self.out / "teacher_logits.npy", logits)
        self.state["logits"] = logits
        return ["teacher_logits.npy"], {}

    def _run_scratch(self):
        self.say(f"scratch: train the student on hard labels for "
                 f"{self.epochs(self.cfg.distill.epochs)} epochs")
        return self._save("scratch", S.train_scratch(self.cfg, self.data, self.callbacks("scratch"),
                                                     self.verbose))

    def _run_distill(self):
        d = self.cfg.distill
        self.say(f"distill: {self.epochs(d.epochs)} epochs, alpha {d.alpha}, "
                 f"temperature {d.temperature}")
        return self._save("distill", S.distill(self.cfg, self.data, self.get("logits"),
                                               self.callbacks("distill"), self.verbose))

    def _run_prune(self):
        p = self.cfg.prune
        kept = list(p.skip) + list(S.small_layers(self.get("distill"), p.min_params, p.skip))
        self.say(f"prune: to {p.sparsity:.0%} sparsity, {self.epochs(p.epochs)} epochs of "
                 "distillation"
                 + (f"; not pruned: {', '.join(kept)} (prune.skip, or fewer than "
                    f"prune.min_params = {p.min_params} weights)" if kept else ""))
        model = S.prune(self.cfg, self.get("distill"), self.data, self.get("logits"),
                        self.callbacks("prune"), self.verbose)
        return self._save("prune", model)

    def _run_qat(self):
        src = needs(self.cfg, "qat")[0]
        self.say(f"qat: int8 quantization-aware training of the {src} student, "
                 f"{self.epochs(self.cfg.qat.epochs)} epochs of distillation")
        model = S.quantize_aware(self.cfg, self.get(src), self.data, self.get("logits"),
                                 src == "prune", self.callbacks("qat"), self.verbose)
        return self._save("qat", model)

    def _run_export(self):
        src = needs(self.cfg, "export")[0]
        self.say(f"export: {src} student -> {self.tflite_name}")
        path = S.export(self.cfg, self.get(src), self.data, self.out / self.tflite_name)
        self.state["export"] = path
        return [self.tflite_name], {"source": src}

    def _run_verify(self):
        src = needs(self.cfg, "export")[0]
        self.say(f"verify: {self.tflite_name} on {len(self.data.x_test):,} test examples")
        result = S.verify(self.cfg, self.get("export"), self.get(src), self.data)
        self.say(f"verify: .tflite accuracy {100 * result['accuracy']:.2f}% vs Keras "
                 f"{100 * result['keras_accuracy']:.2f}%, top-1 agreement "
                 f"{100 * result['agreement_with_keras']:.2f}%")
        return [], result

    def _run_android(self):
        self.say("android: bundle model.tflite, labels.txt, model.json")
        S.android(self.cfg, self.get("export"), self.data, self.out / "android")
        return ["android/model.tflite", "android/labels.txt", "android/model.json"], {}

    def _run_report(self) -> None:
        from kdkeras.pipeline import report as R

        self.say("report: measure every model on the test split")
        runs = self.cfg.verify.latency_runs
        rows = []
        for stage in STAGES:
            if stage.model is None or stage.name not in self.enabled:
                continue
            model = self.get(stage.name)
            if stage.name == "teacher":
                rows.append(R.teacher_row(model, self.cfg, self.out, self.data, runs))
            else:
                rows.append(S.keras_row(stage.model, model, self.out / stage.file, self.data, runs))
        if "export" in self.enabled:
            src = needs(self.cfg, "export")[0]
            v = self.results.get("verify")
            acc = v["accuracy"] if v else S.verify(self.cfg, self.get("export"), self.get(src),
                                                   self.data)["accuracy"]
            name = f"student_tflite_{self.cfg.export.quantization}"
            rows.append(S.tflite_row(name, self.get("export"), self.get(src), acc, runs))
        report = R.build_report(self.cfg, self.data, rows, self.results, self.timing,
                                time.time() - self.start)
        R.write_report(report, self.out)
        self.state["report"] = report
        self.say(f"report: {self.out / 'report.md'}, report.json, report.png")


def run(cfg: RunConfig, out: str | os.PathLike, *, force: Iterable[str] = (), verbose: int = 0,
        log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Runs (or resumes) the pipeline of ``cfg`` into ``out``; returns the report dict.

    Args:
        cfg: RunConfig. The configuration (``RunConfig()`` is the built-in Fashion-MNIST job).
        out: folder of the artifacts and the report (created).
        force: stage names to redo even if finished (with every later stage that needs them).
        verbose: Keras ``fit`` verbosity (0: one log line per epoch instead).
        log: where progress lines go.

    Raises:
        ValueError: ``out`` not writable, an unknown or disabled ``force`` stage, bad data.
        VerificationError: the ``.tflite`` file lost more than ``verify.max_accuracy_drop``
            (raised after the report is written).
        KeyboardInterrupt: finished stages stay on disk; the same call resumes.
    """
    return Runner(cfg, out, force=force, verbose=verbose, log=log).run()


def progress_verbosity() -> int:
    """Keras progress bars only on a terminal and never under CI."""
    return 1 if sys.stdout.isatty() and not os.environ.get("CI") else 0
