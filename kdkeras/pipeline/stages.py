"""The stages of ``kdkeras run``: plain functions over arrays, models and paths.

Each stage composes the public API (:class:`kdkeras.Distiller`, :mod:`kdkeras.compress`,
:mod:`kdkeras.export`); nothing here is a second implementation. The stage graph
(:mod:`kdkeras.pipeline.graph`) declares which to call and when; :mod:`kdkeras.pipeline.steps`
wraps each for the runner (progress lines, upstream outputs); the runner saves and reuses their
artifacts. Measurements are in :mod:`kdkeras.pipeline.measure`.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import tf_keras as keras

from kdkeras import data as kd_data
from kdkeras._keras_kind import is_keras3_model
from kdkeras.data import SplitData
from kdkeras.distill import Distiller, TrainingDivergedError
from kdkeras.pipeline.config import BUILTIN_LABELS, RunConfig
from kdkeras.models import BUILDERS
from kdkeras.pipeline.models import (  # noqa: F401  (the stages' public names, as before)
    build_model, builder_name, check_teacher_vocabulary, compile_keras3, resolve_builder,
    student_kwargs, teacher_builder, teacher_learning_rate, teacher_mode, teacher_preset,
    wordpiece_source)


# ----------------------------------------------------------------------------- data
def load_data(cfg: RunConfig) -> SplitData:
    """Loads ``cfg.data.source`` (built-in name or file/folder) and takes the configured subsets
    (train drawn with ``cfg.seed``, test with ``cfg.seed + 1``)."""
    d = cfg.data
    if d.source in kd_data.DATASETS:
        data = kd_data.load_builtin(d.source, seed=cfg.seed, **builtin_options(cfg))
    else:
        data = kd_data.load_files(d.source, test_fraction=d.test_fraction, seed=cfg.seed,
                                  label_column=d.label_column, text_column=d.text_column,
                                  image_size=tuple(d.image_size), color_mode=d.color_mode,
                                  sequence_length=d.sequence_length, max_tokens=d.max_tokens,
                                  wordpiece=wordpiece_source(cfg))
        data = dataclasses.replace(data, name=Path(d.source).name)
    data = data.subset(d.n_train, d.n_test, seed=cfg.seed)
    labels = label_budget(cfg)
    if labels != 1:
        data = data.with_label_budget(labels, seed=cfg.seed + 5)
    return data


def builtin_options(cfg: RunConfig) -> Dict[str, Any]:
    """The ``[data]`` keys the built-in loader of ``data.source`` takes, as its arguments:
    ``n_train`` / ``n_test`` (drawn before encoding; the same draw as :meth:`SplitData.subset`),
    ``sequence_length`` and ``wordpiece`` (the tweets)."""
    d = cfg.data
    options = {"n_train": d.n_train or None, "n_test": d.n_test or None,
               "sequence_length": d.sequence_length, "wordpiece": wordpiece_source(cfg)}
    params = inspect.signature(kd_data.DATASETS.get(d.source)).parameters
    return {k: v for k, v in options.items() if k in params and v is not None}


def label_budget(cfg: RunConfig) -> float:
    """``data.labels``, with 0 (automatic) resolved: 10% of a built-in set's labels (it has
    them all: the showcase of what distillation is for), every label of the user's data."""
    if cfg.data.labels:
        return cfg.data.labels
    return BUILTIN_LABELS if cfg.data.source in kd_data.DATASETS else 1


def check_models(cfg: RunConfig, data: SplitData) -> None:
    """Fails before any training when a builder's arguments are wrong, or the teacher's
    vocabulary is not the data's."""
    if teacher_mode(cfg) != "load":
        builder, kwargs = teacher_builder(cfg)
        resolve_builder("teacher", builder, kwargs, data)
        check_teacher_vocabulary(cfg, data)
    if cfg.student.path:
        if cfg.student.vocabulary_cut:
            raise ValueError("student.vocabulary_cut builds a student; student.path loads one. "
                             "Keep one of them.")
        load_student(cfg, data)
    else:
        name = builder_name("student", cfg.student.builder, data)
        if cfg.student.vocabulary_cut and "token_map" not in inspect.signature(
                BUILDERS.get(name)).parameters:
            raise ValueError(f"student.vocabulary_cut needs a builder that takes token_map "
                             f"(transformer). Received: student.builder={name!r}.")
        resolve_builder("student", cfg.student.builder, student_kwargs(cfg, data), data)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps of one epoch over ``n`` examples (the last batch may be partial)."""
    return max(1, int(np.ceil(n / batch_size)))


def epochs_for(cfg: RunConfig, epochs: int, n: int) -> int:
    """``epochs``, raised so the stage runs at least ``cfg.min_steps`` optimizer steps on ``n``
    examples (a small data set would otherwise stop after a few dozen steps)."""
    return max(int(epochs), int(np.ceil(cfg.min_steps / steps_per_epoch(n, cfg.batch_size))))


def learning_rate(lr: float, schedule: str, epochs: int, n: int, batch_size: int):
    """``lr`` itself, or a cosine schedule peaking at ``lr`` after a 5% linear warm-up and
    decaying to 0 at the last step of ``epochs`` over ``n`` examples."""
    if schedule == "constant":
        return lr
    from kdkeras.models.schedules import cosine_decay

    steps = int(epochs) * steps_per_epoch(n, batch_size)
    return cosine_decay(lr, steps, warmup_steps=int(0.05 * steps))


def _compile_fit(model, data: SplitData, epochs: int, lr: float, batch_size: int, seed: int,
                 callbacks, verbose: int, schedule: str = "constant"):
    keras.utils.set_random_seed(seed)
    if is_keras3_model(model):
        import keras as keras3

        keras3.utils.set_random_seed(seed)
        stop = compile_keras3(model, lr, schedule,
                              int(epochs) * steps_per_epoch(len(data.x_train), batch_size))
    else:
        rate = learning_rate(lr, schedule, epochs, len(data.x_train), batch_size)
        model.compile(keras.optimizers.Adam(rate),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        stop = keras.callbacks.TerminateOnNaN()
    ds = kd_data.to_dataset(data.x_train, data.y_train, batch_size, shuffle=True, seed=seed)
    history = model.fit(ds, epochs=epochs, verbose=verbose, shuffle=False,  # ds is shuffled
                        callbacks=list(callbacks) + [stop])
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise TrainingDivergedError(
            f"The loss became non-finite (NaN or inf) in epoch {len(losses)}. Check the inputs "
            "for NaN/inf or lower the learning rate.", epoch=len(losses), step=-1,
            loss=float(losses[-1]))
    return model


def train_teacher(cfg: RunConfig, data: SplitData, callbacks=(), verbose: int = 0):
    """Builds and trains (or fine-tunes, on a pretrained backbone) the teacher on hard labels:
    Adam for tf-keras, AdamW for a Keras 3 backbone, ``teacher.schedule``."""
    t = cfg.teacher
    builder, kwargs = teacher_builder(cfg)
    model = build_model("teacher", builder, kwargs, data, cfg.seed)
    return _compile_fit(model, data, epochs_for(cfg, t.epochs, len(data.x_train)),
                        teacher_learning_rate(cfg, data), cfg.batch_size, cfg.seed, list(callbacks),
                        verbose, t.schedule)


def load_teacher(cfg: RunConfig):
    """The configured teacher file as a :class:`kdkeras.Teacher` adapter."""
    from kdkeras.distill import load_teacher as _load

    return _load(cfg.teacher.path)


def teacher_inputs(teacher, data: SplitData, test: bool = False):
    """Raw text (an object array of strings) for a keras-hub task with its own preprocessor,
    else the model inputs."""
    model = getattr(teacher, "model", teacher)
    raw = data.texts_test if test else data.texts_train
    if raw is not None and getattr(model, "preprocessor", None) is not None:
        return np.asarray(raw, dtype=object)
    return data.x_test if test else data.x_train


def teacher_logits(teacher, data: SplitData, batch_size: int, test: bool = False) -> np.ndarray:
    """The teacher's logits on the training (or test) inputs, float32."""
    from kdkeras.distill import teacher_logits_for

    x = teacher_inputs(teacher, data, test)
    return np.asarray(teacher_logits_for(teacher, x, batch_size), dtype=np.float32)


def load_student(cfg: RunConfig, data: SplitData):
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
    want_in, want_out = tuple(data.x_train.shape[1:]), data.num_classes
    got_in, got_out = tuple(model.input_shape[1:]), model.output_shape[-1]
    if got_in != want_in or got_out != want_out:
        raise ValueError(f"The saved student takes {got_in} and gives {got_out} outputs; the data "
                         f"has inputs {want_in} and {want_out} classes. Received: {where}")
    return model


def build_student(cfg: RunConfig, data: SplitData, fresh: bool = False):
    """A student: the builder's, or the saved one at ``student.path`` (its weights kept unless
    ``fresh``: then the same architecture with new initial weights)."""
    if cfg.student.path:
        model = load_student(cfg, data)
        if fresh:
            keras.utils.set_random_seed(cfg.seed + 1)
            model = keras.models.clone_model(model)
        return model
    return build_model("student", cfg.student.builder, student_kwargs(cfg, data), data,
                       cfg.seed + 1)


def scratch_epochs(cfg: RunConfig, data: SplitData) -> int:
    """The scratch baseline's epochs: those of the distill stage, or, under a label budget,
    as many epochs over the labelled examples as give it the distilled student's optimizer
    steps (it may not see the unlabelled ones, so it gets more passes over the rest)."""
    epochs = epochs_for(cfg, cfg.distill.epochs, len(data.x_train))
    if data.labelled is None:
        return epochs
    steps = epochs * steps_per_epoch(len(data.x_train), cfg.batch_size)
    return int(np.ceil(steps / steps_per_epoch(data.n_labels, cfg.batch_size)))


def train_scratch(cfg: RunConfig, data: SplitData, callbacks=(), verbose: int = 0):
    """The baseline: the student trained like the distilled one, on hard labels only, from
    fresh initial weights (a saved ``student.path`` model is re-initialised): same optimizer,
    learning rate, batch size and optimizer steps; under a label budget, the labelled
    examples alone."""
    d = cfg.distill
    labelled = data if data.labelled is None else dataclasses.replace(
        data, x_train=data.x_train[data.labelled], y_train=data.y_train[data.labelled],
        labelled=None, texts_train=None)
    return _compile_fit(build_student(cfg, data, fresh=True), labelled, scratch_epochs(cfg, data),
                        d.learning_rate, cfg.batch_size, cfg.seed + 2, list(callbacks), verbose)


def _distill_fit(cfg: RunConfig, student, data: SplitData, logits: np.ndarray, epochs: int,
                 lr: float, seed: int, callbacks, verbose: int):
    keras.utils.set_random_seed(seed)
    d = Distiller(student=student, teacher=None)
    d.compile(optimizer=keras.optimizers.Adam(lr), alpha=cfg.distill.alpha,
              temperature=cfg.distill.temperature,
              ignore_class=None if data.labelled is None else SplitData.UNLABELLED)
    ds = kd_data.to_dataset(data.x_train, data.student_labels, cfg.batch_size, shuffle=True,
                            seed=seed, teacher_logits=logits)
    d.fit(ds, epochs=epochs, verbose=verbose, callbacks=list(callbacks))
    return d.student


def distill(cfg: RunConfig, data: SplitData, logits: np.ndarray, callbacks=(), verbose: int = 0):
    """A fresh student distilled offline from the cached teacher logits."""
    return _distill_fit(cfg, build_student(cfg, data), data, logits,
                        epochs_for(cfg, cfg.distill.epochs, len(data.x_train)),
                        cfg.distill.learning_rate, cfg.seed + 2, callbacks, verbose)


def prune(cfg: RunConfig, student, data: SplitData, logits: np.ndarray, callbacks=(),
          verbose: int = 0):
    """Magnitude-prunes ``student`` to ``prune.sparsity`` with a distillation fine-tune, stripped."""
    from kdkeras.compress import prune as _prune, strip

    p = cfg.prune
    epochs = epochs_for(cfg, p.epochs, len(data.x_train))
    steps = epochs * int(np.ceil(len(data.x_train) / cfg.batch_size))
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
    from kdkeras.compress import is_prunable

    small = tuple(layer.name for layer in model.layers if 0 < layer.count_params() < min_params)
    left = [layer for layer in model.layers
            if is_prunable(layer) and layer.name not in set(small) | set(skip)]
    return small if left else ()


def quantize_aware(cfg: RunConfig, student, data: SplitData, logits: np.ndarray, pruned: bool,
                   callbacks=(), verbose: int = 0):
    """Int8 quantization-aware fine-tune of ``student`` through the Distiller (PQAT if pruned)."""
    from kdkeras.compress import quantize_aware as _qat

    q = cfg.qat
    model = _qat(student, preserve_sparsity=q.preserve_sparsity and pruned)
    return _distill_fit(cfg, model, data, logits, epochs_for(cfg, q.epochs, len(data.x_train)),
                        q.learning_rate, cfg.seed + 4,
                        callbacks, verbose)


def qat_unsupported(student) -> Optional[str]:
    """Why TF-MOT cannot make ``student`` quantization-aware (None: it can), found by trying
    :func:`kdkeras.compress.quantize_aware` on a copy (its own warnings muted: the QAT stage
    logs them when it runs). kdkeras's own students all take QAT (the transformer on its Dense
    layers); this is for a user's student TF-MOT cannot wrap at all."""
    import logging
    import re

    from kdkeras.compress import quantize_aware as _qat

    log = logging.getLogger("kdkeras.compress")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        _qat(student)
    except Exception as e:  # noqa: BLE001 - TF-MOT fails in many ways; the reason is reported
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        errors = [line for line in lines if re.match(r"^\w+(Error|Exception): ", line)]
        return (errors[-1] if errors else f"{type(e).__name__}: {lines[0] if lines else ''}")[:240]
    finally:
        log.setLevel(level)
    return None


def export(cfg: RunConfig, student, data: SplitData, path: Path) -> str:
    """Converts ``student`` to ``path`` in ``export.quantization`` mode (calibrated on training data)."""
    from kdkeras.export import QUANTIZATIONS, export_tflite

    mode = QUANTIZATIONS.get(cfg.export.quantization)
    rep = data.x_train[: cfg.export.calibration_samples] if mode.needs_representative_data else None
    return export_tflite(student, path, cfg.export.quantization, representative_data=rep,
                         max_calibration_samples=cfg.export.calibration_samples)


def teacher_unconvertible(teacher) -> Optional[str]:
    """Why ``teacher`` has no ``.tflite`` file to measure beside the student's (None: it has).

    A keras-hub task with its preprocessor takes raw text, and the tokenizer is not part of any
    ``.tflite`` graph; a file of several inputs cannot be fed the data set's one input array.
    """
    from kdkeras.models.loading import input_shapes

    model = getattr(teacher, "model", teacher)
    if getattr(model, "preprocessor", None) is not None:
        return ("the teacher is a keras-hub task that takes raw text through its preprocessor "
                "(tokenizer), which a .tflite file does not hold")
    shapes = input_shapes(model)
    if shapes is not None and len(shapes) != 1:
        return (f"the teacher takes {len(shapes)} inputs; the report feeds its files the data "
                "set's one input")
    return None


def export_teacher(cfg: RunConfig, teacher, data: SplitData, path: Path) -> str:
    """The teacher as a float32 ``.tflite`` file (mode ``none``) at ``path``, checked against
    the teacher on the first training examples before it is written."""
    from kdkeras.export import export_tflite

    n = cfg.export.calibration_samples
    return export_tflite(getattr(teacher, "model", teacher), path, "none",
                         representative_data=data.x_train[:n], max_calibration_samples=n)


def verify(cfg: RunConfig, path: str, keras_model, data: SplitData) -> Dict[str, Any]:
    """Scores of the ``.tflite`` file on the test split (accuracy, macro-F1, per class,
    confusion matrix), agreement with its Keras model."""
    from kdkeras.export import evaluate_tflite

    res = evaluate_tflite(path, data.x_test, data.y_test, keras_model=keras_model,
                          class_names=data.class_names)
    keras_acc = res["keras_accuracy"]
    return {"accuracy": res["accuracy"], "macro_f1": res["macro_f1"],
            "keras_accuracy": keras_acc, "keras_macro_f1": res["keras_macro_f1"],
            "agreement_with_keras": res["agreement_with_keras"], "n": res["n"],
            "accuracy_drop": keras_acc - res["accuracy"], "per_class": res["per_class"],
            "confusion_matrix": res["confusion_matrix"]}


def android(cfg: RunConfig, tflite_path: str, data: SplitData, out_dir: Path) -> str:
    """The Android bundle (``model.tflite``, ``labels.txt``, ``model.json``) of the exported file;
    an image classifier's is a MediaPipe drop-in, checked with MediaPipe's ImageClassifier on the
    test split, a WordPiece text student's with MediaPipe's TextClassifier on the raw test texts
    (``model.json``'s ``mediapipe``; see :func:`kdkeras.export_android`)."""
    from kdkeras.export import export_android

    vocabulary, tokenizer = bundle_vocabulary(data)
    text = data.kind == "text"
    return export_android(tflite_path, out_dir, data.class_names, cfg.export.quantization,
                          x_eval=data.x_test, y_eval=data.y_test,
                          normalization=None if text else data.normalization,
                          vocabulary=vocabulary, tokenizer=tokenizer,
                          texts_eval=data.texts_test if text else None)


#: How word-level ids were made (:func:`kdkeras.data.tokenize`), for an app.
def bundle_vocabulary(data: SplitData) -> Tuple[Optional[list], Optional[Dict[str, Any]]]:
    """``(vocabulary, tokenizer)`` of the Android bundle: None for images and features; the
    WordPiece vocabulary and ``data.tokenizer``; or, for word-level text, its words (the export
    writes the empty padding token at id 0 as ``[PAD]``) and
    :func:`kdkeras.data.text.describe_words`.

    Example:

    >>> import numpy as np
    >>> d = SplitData(np.zeros((2, 4), np.int32), np.arange(2), np.zeros((1, 4), np.int32),
    ...               np.arange(1), ["a", "b"], "text", vocabulary=["", "[UNK]", "cat"])
    >>> vocab, tok = bundle_vocabulary(d)
    >>> vocab, tok["type"], tok["max_length"], tok["vocabulary_size"]
    (['', '[UNK]', 'cat'], 'word', 4, 3)
    """
    if data.kind != "text" or data.vocabulary is None:
        return None, None
    if data.tokenizer is not None:
        return list(data.vocabulary), dict(data.tokenizer)
    from kdkeras.data.text import describe_words

    return list(data.vocabulary), describe_words(int(data.input_shape[0]), len(data.vocabulary))


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
