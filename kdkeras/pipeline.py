"""The stages of ``kdkeras run``: plain functions composed by :func:`run`.

data → teacher (train or load) → teacher-logit cache → student from scratch (the baseline) →
distilled student → report. Each stage takes and returns arrays, models or paths, so each is
usable alone from Python; :func:`run` only composes them and writes the artifacts.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import tf_keras as keras

import kdkeras
from kdkeras import data as kd_data
from kdkeras._io import atomic_write_bytes
from kdkeras.distiller import Distiller, _check_alpha
from kdkeras.losses import _check_temperature
from kdkeras.students import BUILDERS


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Settings of ``kdkeras run`` (the TOML file's keys; all optional).

    Attributes:
        dataset: built-in data set name (``fashion_mnist``, ``digits``).
        n_train: training subset size (0: all).
        n_test: test subset size (0: all).
        seed: random seed of data subsets and initialisation.
        teacher: model builder name of the teacher.
        teacher_path: load the teacher from this ``.keras`` / ``.h5`` / SavedModel path instead
            of training it.
        teacher_epochs: epochs to train the teacher.
        student: model builder name of the student (``cnn``, ``mlp``).
        student_kwargs: extra arguments of the student builder (``{"hidden": [32]}``).
        epochs: epochs of the scratch and the distilled student (the same for both).
        batch_size: batch size of every training stage.
        learning_rate: Adam learning rate of the students.
        alpha: weight of the hard-label loss.
        temperature: distillation temperature.
    """

    dataset: str = "fashion_mnist"
    n_train: int = 0
    n_test: int = 0
    seed: int = 0
    teacher: str = "cnn_teacher"
    teacher_path: str = ""
    teacher_epochs: int = 8
    student: str = "cnn"
    student_kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 1e-3
    # The best-measured recipe for small students (README, "Does distillation pay?").
    alpha: float = 0.1
    temperature: float = 1.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            want = {"int": int, "float": (int, float), "str": str}.get(str(f.type))
            if want and (isinstance(value, bool) or not isinstance(value, want)):
                raise TypeError(
                    f"Config key '{f.name}' must be {str(f.type)}. Received: {f.name}={value!r}"
                )
        kd_data.DATASETS.get(self.dataset)
        BUILDERS.get(self.teacher)
        BUILDERS.get(self.student)
        for key in ("n_train", "n_test"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0 (0: all). Received: {key}={getattr(self, key)}")
        for key in ("teacher_epochs", "epochs", "batch_size"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be > 0. Received: {key}={getattr(self, key)}")
        _check_alpha(self.alpha)
        _check_temperature(self.temperature)
        if self.teacher_path and not Path(self.teacher_path).exists():
            raise FileNotFoundError(f"teacher_path does not exist: {self.teacher_path}")

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "RunConfig":
        """Builds a config, rejecting unknown keys with the nearest valid one."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ValueError(f"Unknown config key '{key}'.{hint} Valid keys: {', '.join(names)}")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "RunConfig":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"Config file does not exist: {path}")
        with open(path, "rb") as f:
            return cls.from_dict(tomllib.load(f))

    def quick(self) -> "RunConfig":
        """A smoke-test sized copy: small subsets, few epochs."""
        return dataclasses.replace(
            self, n_train=self.n_train or 3000, n_test=self.n_test or 500, teacher_epochs=5, epochs=3
        )


# ----------------------------------------------------------------------------- stages
def load_data(cfg: RunConfig):
    """``((x, y), (x_test, y_test))`` of the configured data set."""
    loader = kd_data.DATASETS.get(cfg.dataset)
    if cfg.dataset == "fashion_mnist":
        return loader(n_train=cfg.n_train or None, n_test=cfg.n_test or None, seed=cfg.seed)
    (x, y), (xt, yt) = loader(seed=cfg.seed)
    return (x[: cfg.n_train or None], y[: cfg.n_train or None]), (xt[: cfg.n_test or None], yt[: cfg.n_test or None])


def train_teacher(cfg: RunConfig, x, y, verbose: int = 0) -> keras.Model:
    """Builds and trains the teacher (hard labels, Adam), or loads ``cfg.teacher_path``."""
    if cfg.teacher_path:
        return keras.models.load_model(cfg.teacher_path, compile=False)
    keras.utils.set_random_seed(cfg.seed)
    teacher = BUILDERS.get(cfg.teacher)(x.shape[1:], int(y.max()) + 1)
    teacher.compile(
        keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    teacher.fit(x, y, epochs=cfg.teacher_epochs, batch_size=cfg.batch_size, verbose=verbose)
    return teacher


def build_student(cfg: RunConfig, input_shape, num_classes: int) -> keras.Model:
    keras.utils.set_random_seed(cfg.seed + 1)
    return BUILDERS.get(cfg.student)(input_shape, num_classes, **cfg.student_kwargs)


def train_scratch(cfg: RunConfig, x, y, num_classes: int, verbose: int = 0) -> keras.Model:
    """The baseline: the same student, epochs and optimizer, hard labels only."""
    student = build_student(cfg, x.shape[1:], num_classes)
    student.compile(
        keras.optimizers.Adam(cfg.learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    student.fit(x, y, epochs=cfg.epochs, batch_size=cfg.batch_size, verbose=verbose)
    return student


def distill(cfg: RunConfig, x, y, teacher_logits, num_classes: int, verbose: int = 0) -> keras.Model:
    """Distills a fresh student offline from cached teacher logits."""
    student = build_student(cfg, x.shape[1:], num_classes)
    d = Distiller(student=student, teacher=None)
    d.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        alpha=cfg.alpha,
        temperature=cfg.temperature,
    )
    ds = kd_data.to_dataset(x, y, cfg.batch_size, shuffle=True, seed=cfg.seed, teacher_logits=teacher_logits)
    d.fit(ds, epochs=cfg.epochs, verbose=verbose)
    return student


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, batch_size=1024, verbose=0), -1) == np.reshape(y, -1)))


def _save_atomic(model: keras.Model, path: Path) -> Path:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    plain = keras.models.clone_model(model)  # weights only: no optimizer state in the file
    plain.set_weights(model.get_weights())
    plain.save(tmp)
    os.replace(tmp, path)
    return path


def run(cfg: RunConfig, out: str | os.PathLike, verbose: int = 0, log=print) -> Dict[str, Any]:
    """Runs every stage, writes models and ``report.json`` / ``report.md`` into ``out``.

    Returns:
        The report dict (also written to ``out/report.json``).
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {out} is not writable ({e.strerror}). Choose another folder.") from e
    start = time.time()

    def stage(name):
        log(f"[{time.time() - start:7.1f}s] {name}")

    stage(f"data: {cfg.dataset}")
    (x, y), (xt, yt) = load_data(cfg)
    num_classes = int(max(y.max(), yt.max())) + 1
    stage(f"teacher: {'load ' + cfg.teacher_path if cfg.teacher_path else 'train ' + cfg.teacher} on {len(x):,} examples")
    teacher = train_teacher(cfg, x, y, verbose)
    stage("teacher logits: cache")
    logits = teacher.predict(x, batch_size=1024, verbose=0).astype("float32")
    stage(f"student_scratch: train {cfg.student} for {cfg.epochs} epochs")
    scratch = train_scratch(cfg, x, y, num_classes, verbose)
    stage(f"student_distilled: distill {cfg.student} for {cfg.epochs} epochs")
    student = distill(cfg, x, y, logits, num_classes, verbose)
    stage("report")
    models = []
    for name, model in (("teacher", teacher), ("student_scratch", scratch), ("student_distilled", student)):
        path = _save_atomic(model, out / f"{name}.keras")
        models.append({
            "name": name,
            "format": "keras",
            "accuracy": accuracy(model, xt, yt),
            "params": int(model.count_params()),
            "size_bytes": path.stat().st_size,
            "path": str(path),
        })
    report = {
        "kdkeras_version": kdkeras.__version__,
        "dataset": {"name": cfg.dataset, "n_train": int(len(x)), "n_test": int(len(xt))},
        "config": dataclasses.asdict(cfg),
        "models": models,
        "seconds": round(time.time() - start, 1),
    }
    atomic_write_bytes(out / "report.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(out / "report.md", report_markdown(report).encode())
    log(report_markdown(report))
    return report


def report_markdown(report: Dict[str, Any]) -> str:
    rows = [
        f"| {m['name']} | {100 * m['accuracy']:.2f} | {m['params']:,} | {m['size_bytes']:,} |"
        for m in report["models"]
    ]
    ds = report["dataset"]
    return "\n".join(
        [
            f"# kdkeras run: {ds['name']} ({ds['n_train']:,} train / {ds['n_test']:,} test)",
            "",
            "| model | test accuracy (%) | params | file bytes |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


def run_from_cli(args) -> int:
    cfg = RunConfig.from_toml(args.config) if args.config else RunConfig()
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    if args.quick:
        cfg = cfg.quick()
    verbose = 1 if sys.stdout.isatty() and not os.environ.get("CI") else 0
    run(cfg, args.out, verbose=verbose)
    return 0
