"""The stages of ``kdkeras run``: plain functions over arrays, models and paths.

Each stage composes the public API (:class:`kdkeras.Distiller`, :mod:`kdkeras.compress`,
:mod:`kdkeras.export`); nothing here is a second implementation. The runner
(:mod:`kdkeras.pipeline.runner`) decides which to call, saves and reuses their artifacts.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import tf_keras as keras

from kdkeras import data as kd_data
from kdkeras.distill import Distiller
from kdkeras.pipeline.config import AUTO, RunConfig
from kdkeras.models import BUILDERS


# ----------------------------------------------------------------------------- data
@dataclasses.dataclass
class RunData:
    """The examples of one run, already split and preprocessed."""

    name: str
    kind: str  # "images" | "features" | "text"
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: List[str]
    texts: Optional[np.ndarray] = None  # raw strings (text data), for keras-hub teachers
    texts_test: Optional[np.ndarray] = None
    vocabulary: Optional[List[str]] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> Dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "n_train": int(len(self.x)),
                "n_test": int(len(self.x_test)), "num_classes": self.num_classes,
                "input_shape": list(self.x.shape[1:])}


def load_data(cfg: RunConfig) -> RunData:
    """Loads ``cfg.data.source`` (built-in name or file/folder) and takes the configured subsets."""
    d = cfg.data
    if d.source in kd_data.DATASETS:
        (x, y), (xt, yt) = kd_data.DATASETS.get(d.source)(seed=cfg.seed)
        run = RunData(d.source, "images", x, y, xt, yt, list(kd_data.class_names(d.source)))
    else:
        from kdkeras.data import load_files

        f = load_files(d.source, test_fraction=d.test_fraction, seed=cfg.seed,
                       label_column=d.label_column, text_column=d.text_column,
                       image_size=tuple(d.image_size), color_mode=d.color_mode,
                       sequence_length=d.sequence_length, max_tokens=d.max_tokens)
        texts = None if f.texts_train is None else np.asarray(f.texts_train, dtype=object)
        texts_t = None if f.texts_test is None else np.asarray(f.texts_test, dtype=object)
        run = RunData(Path(d.source).name, f.kind, f.x_train, f.y_train, f.x_test, f.y_test,
                      list(f.class_names), texts, texts_t, f.vocabulary)
    for part, n, seed in (("train", d.n_train, cfg.seed), ("test", d.n_test, cfg.seed + 1)):
        x = run.x if part == "train" else run.x_test
        idx = kd_data.subset_indices(len(x), n or None, seed)
        if idx is None:
            continue
        if part == "train":
            run.x, run.y = run.x[idx], run.y[idx]
            run.texts = None if run.texts is None else run.texts[idx]
        else:
            run.x_test, run.y_test = run.x_test[idx], run.y_test[idx]
            run.texts_test = None if run.texts_test is None else run.texts_test[idx]
    return run


# ----------------------------------------------------------------------------- models
_AUTO_BUILDERS = {
    "images": (("cnn_teacher", {}), ("cnn", {})),
    "features": (("mlp", {"hidden": [256, 256]}), ("mlp", {"hidden": [32]})),
    "text": (("text_teacher", {}), ("text", {})),
}


def builder_name(role: str, builder: str, data: RunData) -> str:
    """The builder ``auto`` stands for with this data (or ``builder`` itself)."""
    if builder != AUTO:
        return builder
    return _AUTO_BUILDERS[data.kind][0 if role == "teacher" else 1][0]


def resolve_builder(role: str, builder: str, kwargs: Dict[str, Any], data: RunData):
    """``(builder function, its name, its keyword arguments)`` for ``role`` on ``data``.

    Raises:
        ValueError: ``kwargs`` names an argument the builder does not take.
    """
    if builder == AUTO:
        builder, auto_kwargs = _AUTO_BUILDERS[data.kind][0 if role == "teacher" else 1]
        kwargs = {**auto_kwargs, **kwargs}
    fn = BUILDERS.get(builder)
    params = inspect.signature(fn).parameters
    if "vocab_size" in params and data.vocabulary is not None:
        kwargs = {"vocab_size": len(data.vocabulary), **kwargs}
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        takes = ", ".join(p for p in params if p not in ("input_shape", "num_classes"))
        raise ValueError(f"{role}.kwargs: builder '{builder}' takes no argument {unknown}. It "
                         f"takes: {takes}")
    return fn, builder, kwargs


def build_model(role: str, builder: str, kwargs: Dict[str, Any], data: RunData, seed: int):
    """Builds the ``role`` ("teacher" or "student") model for ``data`` with a fixed seed."""
    fn, _, kwargs = resolve_builder(role, builder, kwargs, data)
    keras.utils.set_random_seed(seed)
    return fn(data.x.shape[1:], data.num_classes, **kwargs)


def check_models(cfg: RunConfig, data: RunData) -> None:
    """Fails before any training when a builder's arguments are wrong."""
    if not cfg.teacher.path:
        resolve_builder("teacher", cfg.teacher.builder, cfg.teacher.kwargs, data)
    if cfg.student.path:
        load_student(cfg, data)
    else:
        resolve_builder("student", cfg.student.builder, cfg.student.kwargs, data)


def epochs_for(cfg: RunConfig, epochs: int, n: int) -> int:
    """``epochs``, raised so the stage runs at least ``cfg.min_steps`` optimizer steps on ``n``
    examples (a small data set would otherwise stop after a few dozen steps)."""
    steps_per_epoch = max(1, int(np.ceil(n / cfg.batch_size)))
    return max(int(epochs), int(np.ceil(cfg.min_steps / steps_per_epoch)))


def _compile_fit(model, data: RunData, epochs: int, lr: float, batch_size: int, seed: int,
                 callbacks, verbose: int):
    keras.utils.set_random_seed(seed)
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = kd_data.to_dataset(data.x, data.y, batch_size, shuffle=True, seed=seed)
    model.fit(ds, epochs=epochs, verbose=verbose, callbacks=callbacks)
    return model


def train_teacher(cfg: RunConfig, data: RunData, callbacks=(), verbose: int = 0):
    """Builds and trains the teacher on hard labels (Adam)."""
    t = cfg.teacher
    model = build_model("teacher", t.builder, t.kwargs, data, cfg.seed)
    return _compile_fit(model, data, epochs_for(cfg, t.epochs, len(data.x)), t.learning_rate,
                        cfg.batch_size, cfg.seed,
                        list(callbacks), verbose)


def load_teacher(cfg: RunConfig):
    """The configured teacher file as a :class:`kdkeras.Teacher` adapter."""
    from kdkeras.distill import load_teacher as _load

    return _load(cfg.teacher.path)


def teacher_inputs(teacher, data: RunData, test: bool = False):
    """Raw text for a keras-hub task with its own preprocessor, else the model inputs."""
    model = getattr(teacher, "model", teacher)
    raw = data.texts_test if test else data.texts
    if raw is not None and getattr(model, "preprocessor", None) is not None:
        return raw
    return data.x_test if test else data.x


def teacher_logits(teacher, data: RunData, batch_size: int, test: bool = False) -> np.ndarray:
    """The teacher's logits on the training (or test) inputs, float32."""
    from kdkeras.distill import teacher_logits_for

    x = teacher_inputs(teacher, data, test)
    return np.asarray(teacher_logits_for(teacher, x, batch_size), dtype=np.float32)


def load_student(cfg: RunConfig, data: RunData):
    """The saved student at ``student.path``, checked against the data.

    Raises:
        ValueError: not a tf-keras model, or its input / output shape does not fit the data.
    """
    from kdkeras.models import load_model

    where = f"student.path={cfg.student.path!r}"
    model = load_model(cfg.student.path)
    if not isinstance(model, keras.Model):
        raise ValueError(f"student.path must be a tf-keras .keras / .h5 model (TF-MOT compresses "
                         f"tf-keras models only). Received: {where} ({type(model).__name__})")
    want_in, want_out = tuple(data.x.shape[1:]), data.num_classes
    got_in, got_out = tuple(model.input_shape[1:]), model.output_shape[-1]
    if got_in != want_in or got_out != want_out:
        raise ValueError(f"The saved student takes {got_in} and gives {got_out} outputs; the data "
                         f"has inputs {want_in} and {want_out} classes. Received: {where}")
    return model


def build_student(cfg: RunConfig, data: RunData, fresh: bool = False):
    """A student: the builder's, or the saved one at ``student.path`` (its weights kept unless
    ``fresh``: then the same architecture with new initial weights)."""
    if cfg.student.path:
        model = load_student(cfg, data)
        if fresh:
            keras.utils.set_random_seed(cfg.seed + 1)
            model = keras.models.clone_model(model)
        return model
    return build_model("student", cfg.student.builder, cfg.student.kwargs, data, cfg.seed + 1)


def train_scratch(cfg: RunConfig, data: RunData, callbacks=(), verbose: int = 0):
    """The baseline: the student trained like the distilled one, on hard labels only, from
    fresh initial weights (a saved ``student.path`` model is re-initialised)."""
    d = cfg.distill
    return _compile_fit(build_student(cfg, data, fresh=True), data,
                        epochs_for(cfg, d.epochs, len(data.x)), d.learning_rate,
                        cfg.batch_size, cfg.seed + 2, list(callbacks), verbose)


def _distill_fit(cfg: RunConfig, student, data: RunData, logits: np.ndarray, epochs: int,
                 lr: float, seed: int, callbacks, verbose: int):
    keras.utils.set_random_seed(seed)
    d = Distiller(student=student, teacher=None)
    d.compile(optimizer=keras.optimizers.Adam(lr), alpha=cfg.distill.alpha,
              temperature=cfg.distill.temperature)
    ds = kd_data.to_dataset(data.x, data.y, cfg.batch_size, shuffle=True, seed=seed,
                            teacher_logits=logits)
    d.fit(ds, epochs=epochs, verbose=verbose, callbacks=list(callbacks))
    return d.student


def distill(cfg: RunConfig, data: RunData, logits: np.ndarray, callbacks=(), verbose: int = 0):
    """A fresh student distilled offline from the cached teacher logits."""
    return _distill_fit(cfg, build_student(cfg, data), data, logits,
                        epochs_for(cfg, cfg.distill.epochs, len(data.x)),
                        cfg.distill.learning_rate, cfg.seed + 2, callbacks, verbose)


def prune(cfg: RunConfig, student, data: RunData, logits: np.ndarray, callbacks=(),
          verbose: int = 0):
    """Magnitude-prunes ``student`` to ``prune.sparsity`` with a distillation fine-tune, stripped."""
    from kdkeras.compress import prune as _prune, strip

    p = cfg.prune
    epochs = epochs_for(cfg, p.epochs, len(data.x))
    steps = epochs * int(np.ceil(len(data.x) / cfg.batch_size))
    wrapped = _prune(student, target_sparsity=p.sparsity, end_step=max(1, int(0.7 * steps)),
                     skip=tuple(p.skip) + small_layers(student, p.min_params, p.skip))
    tuned = _distill_fit(cfg, wrapped, data, logits, epochs, p.learning_rate, cfg.seed + 3,
                         callbacks, verbose)
    return strip(tuned)


def small_layers(model, min_params: int, skip=()) -> Tuple[str, ...]:
    """Names of the layers with weights but fewer than ``min_params`` of them.

    Empty when skipping them (and ``skip``) would leave no layer to prune: a model made only of
    small layers is pruned whole.
    """
    from kdkeras.compress.pruning import is_prunable

    small = tuple(layer.name for layer in model.layers if 0 < layer.count_params() < min_params)
    left = [layer for layer in model.layers
            if is_prunable(layer) and layer.name not in set(small) | set(skip)]
    return small if left else ()


def quantize_aware(cfg: RunConfig, student, data: RunData, logits: np.ndarray, pruned: bool,
                   callbacks=(), verbose: int = 0):
    """Int8 quantization-aware fine-tune of ``student`` through the Distiller (PQAT if pruned)."""
    from kdkeras.compress import quantize_aware as _qat

    q = cfg.qat
    model = _qat(student, preserve_sparsity=q.preserve_sparsity and pruned)
    return _distill_fit(cfg, model, data, logits, epochs_for(cfg, q.epochs, len(data.x)),
                        q.learning_rate, cfg.seed + 4,
                        callbacks, verbose)


def export(cfg: RunConfig, student, data: RunData, path: Path) -> str:
    """Converts ``student`` to ``path`` in ``export.quantization`` mode (calibrated on training data)."""
    from kdkeras.export import QUANTIZATIONS, export_tflite

    mode = QUANTIZATIONS.get(cfg.export.quantization)
    rep = data.x[: cfg.export.calibration_samples] if mode.needs_representative_data else None
    return export_tflite(student, path, cfg.export.quantization, representative_data=rep,
                         max_calibration_samples=cfg.export.calibration_samples)


def verify(cfg: RunConfig, path: str, keras_model, data: RunData) -> Dict[str, Any]:
    """Accuracy of the ``.tflite`` file on the test split, agreement with its Keras model."""
    from kdkeras.export import evaluate_tflite

    res = evaluate_tflite(path, data.x_test, data.y_test, keras_model=keras_model)
    keras_acc = res["keras_accuracy"]
    return {"accuracy": res["accuracy"], "keras_accuracy": keras_acc,
            "agreement_with_keras": res["agreement_with_keras"], "n": res["n"],
            "accuracy_drop": keras_acc - res["accuracy"]}


def android(cfg: RunConfig, tflite_path: str, data: RunData, out_dir: Path) -> str:
    """The Android bundle (``model.tflite``, ``labels.txt``, ``model.json``) of the exported file."""
    from kdkeras.export import export_android

    return export_android(tflite_path, out_dir, data.class_names, cfg.export.quantization,
                          x_eval=data.x_test, y_eval=data.y_test)


# ----------------------------------------------------------------------------- measuring
def accuracy(model, x, y, batch_size: int = 1024) -> float:
    """Top-1 test accuracy of a Keras model (or a callable returning logits)."""
    from kdkeras.export.evaluate import _keras_outputs, top1

    return float(np.mean(top1(_keras_outputs(model, x, batch_size)) == np.reshape(y, -1)))


def files_in(path: Path) -> List[Path]:
    """``path`` itself, or every file under the folder ``path``, sorted."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def file_sizes(path: str | os.PathLike) -> Dict[str, int]:
    """``size_bytes`` and ``gzip_bytes`` (level 9) of a file, or summed over a folder."""
    from kdkeras.export.tflite_info import gzip_size

    size = gz = 0
    for f in files_in(Path(path)):
        raw = f.read_bytes()
        size += len(raw)
        gz += gzip_size(raw)
    return {"size_bytes": size, "gzip_bytes": gz}


def param_counts(model) -> Dict[str, Optional[int]]:
    """``params`` and ``nonzero_params``: the model's own weights (TF-MOT bookkeeping excluded)."""
    try:
        from kdkeras.compress import sparsity_report

        rep = sparsity_report(model)
        return {"params": rep.total_params, "nonzero_params": rep.total_nonzeros}
    except TypeError:  # not a tf-keras model: count every weight
        weights = [np.asarray(w) for w in getattr(model, "weights", [])]
        if not weights:
            return {"params": None, "nonzero_params": None}
        return {"params": int(sum(w.size for w in weights)),
                "nonzero_params": int(sum(np.count_nonzero(w) for w in weights))}


def keras_latency_ms(model, runs: int, input_shape=None) -> Optional[float]:
    """Median batch-1 latency of a Keras model (None when it takes raw strings)."""
    from kdkeras.export.bench import benchmark_keras

    if getattr(model, "preprocessor", None) is not None or not hasattr(model, "inputs"):
        return None
    try:
        return float(benchmark_keras(model, input_shape=input_shape, warmup=5, runs=runs).median_ms)
    except ValueError:  # e.g. several inputs: the report says "–" rather than failing
        return None


def keras_row(name: str, model, path: str | os.PathLike, data: RunData, runs: int,
              acc: Optional[float] = None) -> Dict[str, Any]:
    """One ``report.json`` row for a Keras model, measured on the test split."""
    return {
        "name": name,
        "format": Path(path).suffix.lstrip(".") or "keras",
        "accuracy": accuracy(model, data.x_test, data.y_test) if acc is None else acc,
        **param_counts(model),
        **file_sizes(path),
        "latency_ms": keras_latency_ms(model, runs, tuple(data.x.shape[1:])),
        "path": str(path),
    }


def tflite_row(name: str, path: str, source_model, accuracy_: float, runs: int) -> Dict[str, Any]:
    """One ``report.json`` row for a ``.tflite`` file: accuracy and latency of the file itself."""
    from kdkeras.export import benchmark_tflite

    return {
        "name": name,
        "format": "tflite",
        "accuracy": accuracy_,
        **param_counts(source_model),
        **file_sizes(path),
        "latency_ms": float(benchmark_tflite(path, num_threads=1, warmup=10, runs=runs).median_ms),
        "path": str(path),
    }


class EpochLog(keras.callbacks.Callback):
    """One line per epoch through ``log`` (the progress shown when Keras bars are off)."""

    def __init__(self, log: Callable[[str], None], stage: str):
        super().__init__()
        self.log, self.stage, self.start = log, stage, time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss = logs.get("loss")
        text = f"loss {loss:.4f}" if loss is not None else ""
        self.log(f"    {self.stage}: epoch {epoch + 1}/{self.params.get('epochs')} {text} "
                 f"({time.time() - self.start:.0f} s)")
