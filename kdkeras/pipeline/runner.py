"""Runs the stages of ``kdkeras run`` in order, saving, reusing and reporting them.

The runner walks the stage graph (:mod:`kdkeras.pipeline.graph`) and knows no stage by name.
Each finished stage leaves its artifacts in ``out`` plus a manifest ``out/.kdkeras/<stage>.json``
holding the stage's *key*: a hash of the config keys it reads, the fingerprints of the files it
reads and the keys of the stages it needs. A later run with an unchanged key reuses the
artifacts instead of recomputing them, as long as the stages it needs were not redone since
(each manifest records which run of its inputs it was made from); ``force`` redoes a stage and
every stage after it that needs it. Artifacts are written to a temporary name and renamed, and
the manifest is written last, so an interrupted stage leaves nothing half-written: the next run
redoes exactly the unfinished stages. A stage whose declared ``skip`` gives a reason when the
run reaches it (the teacher's ``.tflite`` file, for a teacher that takes raw text) is skipped,
with every stage that needs it; the log and the report say why.

The manifest also records the size and SHA-256 of every artifact: a file changed, truncated or
replaced since its stage wrote it is never reused; the stage is redone and the log says why. A
run holds ``out/.kdkeras/lock`` (:mod:`kdkeras.pipeline.lock`), so two runs never interleave
their files in one folder; a stage whose training diverges raises
:class:`~kdkeras.TrainingDivergedError` naming the stage, and is not recorded as finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional

from kdkeras._io import atomic_write_bytes
from kdkeras.distill import TrainingDivergedError
from kdkeras.pipeline.config import RunConfig
from kdkeras.pipeline.graph import (STAGE_NAMES, Stage, check_run, downstream, enabled_stages,
                                    stage_keys, stage_name)
from kdkeras.pipeline.lock import lock_output
from kdkeras.pipeline.strategy import (describe, make_strategy, remove_worker_folder,
                                       worker_count, worker_folder)
from kdkeras.pipeline.steps import Context, VerificationError

__all__ = ["run", "Runner", "VerificationError", "STAGE_NAMES", "stage_keys"]

# Temporary files an interrupted write may leave: kdkeras._io.atomic_path names them
# ".<name>.<random>.tmp<suffix>"; older versions wrote "<stem>.tmp<suffix>" and ".*.tmp-*".
TEMPORARY = (".*.tmp*", "*.tmp.*", ".*.tmp-*", ".kdkeras/.*.tmp*", "android/.*.tmp*")


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".kdkeras-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {out} is not writable ({e.strerror}). Choose another folder.") from e


def digest(path: Path) -> Dict[str, Any]:
    """``{"size", "sha256"}`` of a file: what a manifest records of each artifact."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


class Runner:
    """One ``kdkeras run``: the stages of ``cfg`` into ``out``, reusing finished ones."""

    def __init__(self, cfg: RunConfig, out: str | os.PathLike, *, force: Iterable[str] = (),
                 verbose: int = 0, log: Callable[[str], None] = print):
        self.cfg, self.out, self.log = cfg, Path(out), log
        # The run's first TensorFlow work: multi-worker and TPU strategies set up the runtime.
        # A worker that is not the chief writes into a temporary folder (see strategy.py).
        self.strategy = make_strategy(cfg.strategy)
        self.chief_out, self.out = self.out, worker_folder(self.strategy, self.out)
        self.stages = enabled_stages(cfg)
        enabled = [s.name for s in self.stages]
        forced = []
        for name in force:
            name = stage_name(name)
            if name not in enabled:
                raise ValueError(f"--force {name}: stage '{name}' is disabled in this config. "
                                 f"Enabled stages: {', '.join(enabled)}")
            forced.append(name)
        self.redo = downstream(cfg, forced)
        if worker_count(self.strategy) > 1:  # every worker must take the same steps
            self.redo = set(enabled)
        self.keys = stage_keys(cfg)
        self.state: Dict[str, Any] = {}  # outputs of the stages (models, arrays, paths, dicts)
        self.ids: Dict[str, Optional[str]] = {}  # which run of each stage made its artifacts
        self.timing: Dict[str, Dict[str, Any]] = {}
        self.skipped: Dict[str, str] = {}  # stages skipped in this run, and why
        self.start = time.time()
        self.ctx = Context(cfg, self.out, self.get, self.say, log, verbose, self.stages,
                           self.timing, self.start, self.skipped)

    def say(self, text: str) -> None:
        self.log(f"[{time.time() - self.start:7.1f}s] {text}")

    # ------------------------------------------------------------------ manifests
    def _manifest_path(self, stage: Stage) -> Path:
        return self.out / ".kdkeras" / f"{stage.name}.json"

    def _inputs(self, stage: Stage) -> Dict[str, Optional[str]]:
        return {n: self.ids.get(n) for n in stage.needs_for(self.cfg)}

    def _manifest(self, stage: Stage, quiet: bool = False) -> Optional[Dict[str, Any]]:
        """The manifest of a finished run of ``stage`` that is still valid, else None.

        Valid: same key, made from the current runs of its inputs, and every artifact is the
        very file the stage wrote (size and SHA-256); otherwise the log says which file changed.
        """
        try:
            m = json.loads(self._manifest_path(stage).read_text())
        except (OSError, ValueError):
            return None
        if m.get("key") != self.keys[stage.name]:
            return None
        if m.get("inputs") != self._inputs(stage):
            return None  # an input stage was redone since: this result is stale
        if not all((self.out / a).exists() for a in m.get("artifacts", [])):
            return None
        recorded = m.get("files")
        if recorded is None or set(recorded) != set(m.get("artifacts", [])):
            return None  # written by an older kdkeras: no hashes to check against
        for name, want in recorded.items():
            have = digest(self.out / name)
            if have != want:
                if not quiet:
                    why = (f"{have['size']:,} bytes instead of {want['size']:,}"
                           if have["size"] != want["size"] else "same size, different content")
                    self.say(f"{stage.name}: {name} is not the file this stage wrote ({why}); "
                             f"redoing {stage.name}")
                return None
        return m

    def cleanup(self) -> None:
        """Removes temporary files an interrupted save may have left."""
        for p in {p for pattern in TEMPORARY for p in self.out.glob(pattern)}:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ running
    def run(self) -> Dict[str, Any]:
        check_writable(self.out)
        if self.cfg.strategy != "default":
            self.say(describe(self.strategy, self.cfg.strategy))
        try:
            # Every model is built, compiled and fitted in the strategy's scope.
            with lock_output(self.out, self.say), self.strategy.scope():
                # No live run writes here (we hold the lock): temporary files are a dead run's.
                self.cleanup()
                self._run_stages()
            check_run(self.cfg, self.state.get("verify"), self.out)
        finally:
            remove_worker_folder(self.out, self.chief_out)
        return self.state["report"]

    def _run_stages(self) -> None:
        try:
            for stage in self.stages:
                try:
                    self._stage(stage)
                except TrainingDivergedError as e:
                    raise TrainingDivergedError(f"stage '{stage.name}': {e}", epoch=e.epoch,
                                                step=e.step, loss=e.loss) from None
        except KeyboardInterrupt:
            self.cleanup()
            done = [s.name for s in self.stages if s.cached and self._manifest(s, quiet=True)]
            self.log(f"interrupted: finished stages kept in {self.out} ({', '.join(done) or 'none'}); "
                     "run the same command again to resume.")
            raise

    def _why_skip(self, stage: Stage) -> Optional[str]:
        """Why ``stage`` is skipped in this run: a stage it needs was (every one of them, for a
        stage that ``needs_any``), or its own ``skip``."""
        needs = stage.needs_for(self.cfg)
        skipped = [n for n in needs if n in self.skipped]
        if skipped and (not stage.needs_any or len(skipped) == len(needs)):
            return f"it needs stage '{skipped[0]}', which was skipped"
        return stage.skip(self.ctx) if stage.skip is not None else None

    def _stage(self, stage: Stage) -> None:
        name, t0 = stage.name, time.time()
        why = self._why_skip(stage)
        if why:
            self.skipped[name] = why
            self.say(f"{name}: skipped, {why}")
            return
        if not stage.cached:  # cheap: run every time; deterministic, so its key names its run
            self.state[name] = stage.run(self.ctx)
            self.ids[name] = self.keys[name]
            self.timing[name] = {"seconds": round(time.time() - t0, 1), "reused": False}
            return
        manifest = None if name in self.redo else self._manifest(stage)
        if manifest is not None:
            self.ids[name] = manifest["id"]
            if stage.json_result:
                self.state[name] = manifest["result"]
            self.timing[name] = {"seconds": manifest["seconds"], "reused": True}  # when computed
            self.say(f"{name}: reused {', '.join(manifest['artifacts']) or 'result'} "
                     "(same config)")
            return
        # never pair an old manifest with new files
        self._manifest_path(stage).unlink(missing_ok=True)
        output = stage.run(self.ctx)
        self.state[name] = output
        artifacts = list(stage.files(self.cfg))
        if stage.save is not None and artifacts:
            stage.save(output, self.out / artifacts[0])
        seconds = time.time() - t0
        self.ids[name] = uuid.uuid4().hex
        manifest = {"stage": name, "key": self.keys[name], "id": self.ids[name],
                    "inputs": self._inputs(stage), "artifacts": artifacts,
                    "files": {a: digest(self.out / a) for a in artifacts},
                    "result": output if stage.json_result else {}, "seconds": round(seconds, 1)}
        atomic_write_bytes(self._manifest_path(stage), json.dumps(manifest, indent=2).encode())
        self.timing[name] = {"seconds": round(seconds, 1), "reused": False}
        self.say(f"{name}: done in {seconds:.1f} s")

    def get(self, name: str) -> Any:
        """The output of stage ``name``, loaded from its artifact when the stage was reused."""
        if name not in self.state:
            stage = {s.name: s for s in self.stages}[name]
            if stage.load is None:
                raise RuntimeError(f"Stage '{name}' was reused and its output cannot be loaded.")
            files = stage.files(self.cfg)
            self.state[name] = stage.load(self.ctx, self.out / files[0] if files else None)
        return self.state[name]


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
