"""Which models a ``kdkeras run`` builds: the builder ``auto`` stands for, the teacher's mode
(trained from scratch, a pretrained backbone fine-tuned, or a file loaded), its learning rate and
optimizer, the WordPiece vocabulary text is encoded with, and the student's vocabulary cut.

A BERT-family teacher (the ``bert`` builder, or ``teacher.path`` a backbone preset folder) is a
Keras 3 model fine-tuned with Keras 3's AdamW; every student is tf-keras (TF-MOT compresses
it). Text encoded with the teacher's WordPiece vocabulary gets ``bert`` and ``transformer``
as its automatic builders; word-level text keeps ``text_teacher`` and ``text``.

Example:

>>> from kdkeras.pipeline.config import RunConfig
>>> teacher_mode(RunConfig()), teacher_learning_rate(RunConfig(), None)
('train', 0.003)
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import tf_keras as keras

from kdkeras.data import SplitData
from kdkeras.models import BUILDERS
from kdkeras.models.bert import is_backbone_preset, minilm_path, preset_sizes
from kdkeras.pipeline.config import AUTO, RunConfig

#: ``teacher.learning_rate = 0`` (automatic): from scratch, and fine-tuning a pretrained backbone.
SCRATCH_TEACHER_LR = 3e-3
FINE_TUNE_LR = 5e-5

def teacher_mode(cfg: RunConfig) -> str:
    """``"train"`` (a builder), ``"fine_tune"`` (``teacher.path`` is a backbone preset folder:
    the ``bert`` builder on it) or ``"load"`` (a trained teacher file or task preset)."""
    path = cfg.teacher.path
    if not path:
        return "train"
    return "fine_tune" if is_backbone_preset(path) else "load"


def teacher_preset(cfg: RunConfig, data: Optional[SplitData] = None) -> Optional[str]:
    """The BERT-family preset the teacher is built on (a fine-tuned ``teacher.path``, the
    ``bert`` builder's ``preset`` or its default MiniLM), None for any other teacher. Without
    ``data``, an ``auto`` builder counts as not ``bert``."""
    t = cfg.teacher
    if teacher_mode(cfg) == "fine_tune":
        return t.path
    builder = t.builder if data is None else builder_name("teacher", t.builder, data)
    if teacher_mode(cfg) == "train" and builder == "bert":
        return str(t.kwargs.get("preset") or minilm_path())
    return None


def wordpiece_source(cfg: RunConfig) -> Optional[str]:
    """The WordPiece vocabulary text is encoded with: ``data.wordpiece``, else (automatic) the
    teacher's own ``vocab.txt`` (a ``teacher.path`` preset folder holding one, or the ``bert``
    builder's preset); None: word-level (the tweets built-in then uses MiniLM's)."""
    d, t = cfg.data, cfg.teacher
    if d.wordpiece:
        return d.wordpiece
    folder = t.path if t.path and Path(t.path).is_dir() else None
    if folder is None and teacher_mode(cfg) == "train" and t.builder == "bert":
        try:
            folder = teacher_preset(cfg)
        except FileNotFoundError:
            return None  # the builder names what is missing when it runs
    if folder and (Path(folder) / "vocab.txt").is_file():
        return str(folder)  # the folder: its tokenizer_config.json says the casing too
    return None


_AUTO_BUILDERS = {
    "images": (("resnet_teacher", {}), ("cnn", {})),
    "features": (("mlp", {"hidden": [256, 256]}), ("mlp", {"hidden": [32]})),
    "text": (("text_teacher", {}), ("text", {})),
    "wordpiece": (("bert", {}), ("transformer", {})),  # text as a BERT teacher's WordPiece ids
}


def _auto_kind(data: SplitData) -> str:
    return "wordpiece" if data.kind == "text" and data.tokenizer is not None else data.kind


def builder_name(role: str, builder: str, data: SplitData) -> str:
    """The builder ``auto`` stands for with this data (or ``builder`` itself)."""
    if builder != AUTO:
        return builder
    return _AUTO_BUILDERS[_auto_kind(data)][0 if role == "teacher" else 1][0]


def resolve_builder(role: str, builder: str, kwargs: Dict[str, Any], data: SplitData):
    """``(builder function, its name, its keyword arguments)`` for ``role`` on ``data``.

    Raises:
        ValueError: ``kwargs`` names an argument the builder does not take.
    """
    if builder == AUTO:
        builder, auto_kwargs = _AUTO_BUILDERS[_auto_kind(data)][0 if role == "teacher" else 1]
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


def build_model(role: str, builder: str, kwargs: Dict[str, Any], data: SplitData, seed: int):
    """Builds the ``role`` ("teacher" or "student") model for ``data`` with a fixed seed."""
    import keras as keras3

    fn, _, kwargs = resolve_builder(role, builder, kwargs, data)
    keras3.utils.set_random_seed(seed)  # a Keras 3 teacher (bert) draws from Keras 3's seed
    keras.utils.set_random_seed(seed)
    return fn(data.x_train.shape[1:], data.num_classes, **kwargs)


def teacher_builder(cfg: RunConfig) -> Tuple[str, Dict[str, Any]]:
    """``(builder, kwargs)`` of a teacher built here: a backbone ``teacher.path`` is the
    ``bert`` builder on that preset."""
    t = cfg.teacher
    if teacher_mode(cfg) == "fine_tune":
        return "bert", {**t.kwargs, "preset": t.path}
    return t.builder, dict(t.kwargs)


def student_kwargs(cfg: RunConfig, data: SplitData) -> Dict[str, Any]:
    """``student.kwargs``, plus the ``token_map`` (and ``unk_id``) of ``student.vocabulary_cut``:
    the token ids of the training split and the special tokens (:func:`vocabulary_cut`).

    Raises:
        ValueError: ``vocabulary_cut`` on data that is not text.
    """
    kwargs = dict(cfg.student.kwargs)
    if not cfg.student.vocabulary_cut:
        return kwargs
    if data.kind != "text" or data.vocabulary is None:
        raise ValueError(f"student.vocabulary_cut cuts a text vocabulary, but the data holds "
                         f"{data.kind}. Set student.vocabulary_cut = false.")
    from kdkeras.models import vocabulary_cut

    tok = data.tokenizer or {"pad_id": 0, "unk_id": 1}  # word-level: "" and [UNK]
    specials = sorted({tok[k] for k in ("pad_id", "unk_id", "cls_id", "sep_id") if k in tok})
    cut = vocabulary_cut([data.x_train], vocab_size=len(data.vocabulary), specials=specials)
    return {"token_map": cut.tolist(), "unk_id": int(tok["unk_id"]), **kwargs}


def check_teacher_vocabulary(cfg: RunConfig, data: SplitData) -> None:
    """A BERT-family teacher reads WordPiece ids of its own vocabulary: refuses word-level
    text, a vocabulary of another size and a sequence longer than the backbone's positions,
    before any training.

    Raises:
        ValueError: naming both numbers and the fix.
    """
    preset = teacher_preset(cfg, data)
    if preset is None:
        return
    if data.kind != "text":
        raise ValueError(f"The BERT teacher ({preset}) classifies text, but the data holds "
                         f"{data.kind}. Use another teacher.builder.")
    if data.tokenizer is None:
        raise ValueError(
            f"The BERT teacher ({preset}) reads WordPiece ids of its own vocabulary, but the "
            f"text was encoded word-level ({len(data.vocabulary):,} words of the training "
            "split): the preset has no vocab.txt to encode with. Set data.wordpiece to its "
            "vocab.txt.")
    sizes = preset_sizes(preset)
    vocab, rows = len(data.vocabulary), sizes["vocabulary_size"]
    if rows is not None and rows != vocab:
        raise ValueError(
            f"The teacher preset's vocabulary has {rows:,} tokens but the data's WordPiece "
            f"tokenizer has {vocab:,} (data.wordpiece={cfg.data.wordpiece or 'automatic'!r}): "
            f"token ids would mean other words. Received: preset {preset!r}. Encode the text "
            "with the preset's own vocab.txt (data.wordpiece = \"\" when the folder holds it).")
    limit, length = sizes["max_sequence_length"], data.input_shape[0]
    if limit is not None and length > limit:
        raise ValueError(f"data.sequence_length = {length} is more than the teacher preset's "
                         f"{limit} positions. Received: preset {preset!r}. Lower "
                         "data.sequence_length.")


def compile_keras3(model, lr: float, schedule: str, steps: int):
    """Compiles a Keras 3 (pretrained BERT) model with Keras 3's own optimizer and loss: AdamW
    (weight decay 0.01, not on biases and LayerNorm), ``schedule`` over ``steps`` optimizer
    steps (cosine: 5% linear warm-up to ``lr``, then cosine decay to 0), gradients clipped to
    norm 1, cross-entropy on logits. Returns Keras 3's ``TerminateOnNaN`` callback."""
    import keras as keras3

    rate = lr
    if schedule != "constant":
        warmup = int(0.05 * steps)
        rate = keras3.optimizers.schedules.CosineDecay(
            0.0, max(1, steps - warmup), warmup_target=lr, warmup_steps=warmup)
    optimizer = keras3.optimizers.AdamW(rate, weight_decay=0.01, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(optimizer, keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
    return keras3.callbacks.TerminateOnNaN()


def teacher_learning_rate(cfg: RunConfig, data: SplitData) -> float:
    """``teacher.learning_rate``, or when 0 (automatic) :data:`FINE_TUNE_LR` for a pretrained
    BERT-family backbone and :data:`SCRATCH_TEACHER_LR` for a teacher trained from scratch."""
    if cfg.teacher.learning_rate:
        return cfg.teacher.learning_rate
    return FINE_TUNE_LR if teacher_preset(cfg, data) is not None else SCRATCH_TEACHER_LR
