"""The stages of a causal-LM ``kdkeras run`` (``task = "causal_lm"``): plain functions over
token windows, models and paths.

Each composes the public API as ``benchmarks/lm_distill.py`` does: :func:`kdkeras.data.load_corpus`
for the windows, :func:`kdkeras.models.build_gpt_teacher` (Keras 3) and
:func:`kdkeras.models.build_gpt_student` (tf-keras) for the models,
:func:`kdkeras.distill.cache_top_k_shards` for the teacher's top-k targets feeding a
:class:`kdkeras.Distiller`, :mod:`kdkeras.compress` to prune, :mod:`kdkeras.export.lm` to export,
measure and bundle the file, :mod:`kdkeras.generation` for perplexity and decoding. The stage
graph (:mod:`kdkeras.pipeline.graph`) declares when each runs; :mod:`kdkeras.pipeline.lm_steps`
wraps them for the runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import tf_keras as keras

from kdkeras.data import LMData, detokenize, load_corpus
from kdkeras.distill import (Distiller, TopKShards, TrainingDivergedError, cache_top_k_shards,
                             fingerprint_tokens, fingerprint_weights)
from kdkeras.generation import generate, keras_next_logits, perplexity
from kdkeras.pipeline.config import RunConfig
from kdkeras.pipeline.lm_config import vocabulary_file
from kdkeras.pipeline.models import compile_keras3
from kdkeras.pipeline.stages import epochs_for, small_layers, steps_per_epoch

#: ``teacher.learning_rate = 0`` (automatic) for a GPT teacher trained here (AdamW, cosine).
LM_TEACHER_LR = 1e-3
#: The folder of the teacher's top-k cache in the output folder; its ``cache.json`` is the
#: stage's artifact (it records every shard's size, checked when the cache is opened).
CACHE_FOLDER = "teacher_topk"
#: The top-k cache's tail: sampled (half the k slots drawn from the teacher's tail) paid in
#: benchmarks/lm_distill.py; the bucket tail made top-32 KD worse than training from scratch.
CACHE_TAIL = "sampled"
#: Tokens of the held-out prompt that greedy decoding and the report's sample start from.
PROMPT_TOKENS = 16

Windows = Tuple[np.ndarray, np.ndarray, np.ndarray]


# ----------------------------------------------------------------------------- data
def load_data(cfg: RunConfig, vocabulary: Optional[str] = None) -> LMData:
    """The corpus of ``data.source`` as train / held-out streams, encoded with ``vocabulary``
    (a vocab.txt), ``data.wordpiece``, or a vocabulary trained on the training documents."""
    d = cfg.data
    vocab = vocabulary or vocabulary_file(d.wordpiece)
    return load_corpus(d.source, vocabulary=None if vocab is None else str(vocab),
                       context=d.sequence_length, vocabulary_size=d.vocabulary_size,
                       test_every=d.test_every)


def dataset_name(cfg: RunConfig) -> str:
    return cfg.data.source if cfg.data.source == "sotu" else Path(cfg.data.source).name


def windows(data: LMData, split: str, tokens: int) -> Windows:
    """Next-token windows of a split holding its first ``tokens`` targets (0: all)."""
    return data.windows(split, tokens or None)


def identity(teacher, data: LMData) -> Dict[str, str]:
    """What the top-k cache was made from: the teacher's weights and the tokenizer."""
    return {"teacher": fingerprint_weights(teacher),
            "tokenizer": fingerprint_tokens(data.vocabulary, **data.tokenizer)}


def prompt(data: LMData) -> np.ndarray:
    """The first :data:`PROMPT_TOKENS` held-out tokens (at most half the context)."""
    return data.test_ids[:max(1, min(PROMPT_TOKENS, data.context // 2))]


# ----------------------------------------------------------------------------- teacher
def check_teacher(model, data: LMData, where: str) -> None:
    """Refuses a teacher whose windows or vocabulary are not the data's (token-level KD compares
    the teacher's and the student's distributions over the same token ids).

    Raises:
        ValueError: naming both shapes and the fix.
    """
    try:
        got_in, got_out = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    except (AttributeError, ValueError, TypeError):
        raise ValueError(f"{where} is not a causal LM (ids [B, T] -> logits [B, T, V]).") from None
    want = (data.context, data.vocabulary_size)
    if got_in != (data.context,) or got_out != want:
        raise ValueError(
            f"{where} maps ids {got_in} to logits {got_out}; this run's windows are "
            f"({data.context},) and its vocabulary has {data.vocabulary_size:,} pieces, so logits "
            f"{want} are needed: token-level distillation compares the teacher's and the "
            "student's next-token distributions over the same token ids. Train the teacher with "
            "this vocabulary (data.wordpiece) and context (data.sequence_length).")


def load_teacher(cfg: RunConfig, data: LMData):
    """The saved teacher at ``teacher.path``, checked against the data."""
    from kdkeras.models import load_model

    model = load_model(cfg.teacher.path)
    check_teacher(model, data, f"teacher.path={cfg.teacher.path!r}")
    return model


def train_teacher(cfg: RunConfig, data: LMData, callbacks=(), verbose: int = 0):
    """A keras-hub GPT-2 teacher (Keras 3, ``teacher.kwargs`` sizes) trained on the first
    ``data.teacher_tokens`` training tokens: AdamW, ``teacher.schedule``, next-token loss."""
    import keras as keras3
    from kdkeras.models import build_gpt_teacher

    t = cfg.teacher
    x, y, sw = windows(data, "train", cfg.data.teacher_tokens)
    keras3.utils.set_random_seed(cfg.seed)
    model = build_gpt_teacher(data.context, data.vocabulary_size, **t.kwargs)
    epochs = epochs_for(cfg, t.epochs, len(x))
    stop = compile_keras3(model, t.learning_rate or LM_TEACHER_LR, t.schedule,
                          epochs * steps_per_epoch(len(x), cfg.batch_size))
    history = model.fit(x, y, sample_weight=sw, batch_size=cfg.batch_size, epochs=epochs,
                        verbose=verbose, shuffle=True, callbacks=list(callbacks) + [stop])
    _check_finite(history.history.get("loss", []))
    return model


def _check_finite(losses) -> None:
    if losses and not np.isfinite(losses[-1]):
        raise TrainingDivergedError(
            f"The loss became non-finite (NaN or inf) in epoch {len(losses)}. Lower the learning "
            "rate.", epoch=len(losses), step=-1, loss=float(losses[-1]))


# ----------------------------------------------------------------------------- cache
def cache_teacher(cfg: RunConfig, teacher, data: LMData, folder: Path) -> TopKShards:
    """The teacher's top-``distill.top_k`` targets on the students' training windows, in shards
    under ``folder`` (its identity: the teacher's weights and the tokenizer)."""
    train = windows(data, "train", cfg.data.train_tokens)
    ident = identity(teacher, data)
    cache_top_k_shards(teacher, train, folder, top_k=cfg.distill.top_k,
                       temperature=cfg.distill.temperature, batch_size=cfg.batch_size,
                       identity=ident, tail=CACHE_TAIL, seed=cfg.seed)
    return TopKShards.open(folder, cfg.distill.top_k, expect=ident, tail=CACHE_TAIL)


def open_cache(cfg: RunConfig, teacher, data: LMData, folder: Path) -> TopKShards:
    """The cache of an earlier run, refused when another teacher or tokenizer made it (or it
    holds a bucket tail: made by kdkeras before the sampled tail)."""
    return TopKShards.open(folder, cfg.distill.top_k, expect=identity(teacher, data),
                           tail=CACHE_TAIL)


# ----------------------------------------------------------------------------- students
def build_student(cfg: RunConfig, data: LMData):
    """A fresh tf-keras GPT student (``student.kwargs`` sizes), seeded."""
    from kdkeras.models import build_gpt_student

    keras.utils.set_random_seed(cfg.seed + 1)
    return build_gpt_student(data.context, data.vocabulary_size, **cfg.student.kwargs)


def optimizer(lr: float, epochs: int, n: int, batch_size: int):
    """Adam on a cosine schedule with 10% linear warm-up (the benchmark's)."""
    from kdkeras.models.schedules import cosine_decay

    total = epochs * steps_per_epoch(n, batch_size)
    return keras.optimizers.Adam(cosine_decay(lr, total, warmup_steps=total // 10))


def train_scratch(cfg: RunConfig, data: LMData, callbacks=(), verbose: int = 0):
    """The baseline: the student on the next-token loss alone, with the distilled student's
    token budget, epochs, batch size, optimizer and seed."""
    x, y, sw = windows(data, "train", cfg.data.train_tokens)
    model = build_student(cfg, data)
    epochs = epochs_for(cfg, cfg.distill.epochs, len(x))
    keras.utils.set_random_seed(cfg.seed + 2)
    model.compile(optimizer(cfg.distill.learning_rate, epochs, len(x), cfg.batch_size),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, sample_weight=sw, batch_size=cfg.batch_size, epochs=epochs,
                        verbose=verbose, shuffle=True,
                        callbacks=list(callbacks) + [keras.callbacks.TerminateOnNaN()])
    _check_finite(history.history.get("loss", []))
    return model


def _distill_fit(cfg: RunConfig, student, cache: TopKShards, epochs: int, lr: float, seed: int,
                 callbacks, verbose: int):
    keras.utils.set_random_seed(seed)
    d = Distiller(student=student, teacher=None)
    d.compile(optimizer=optimizer(lr, epochs, cache.examples, cfg.batch_size),
              alpha=cfg.distill.alpha, temperature=cfg.distill.temperature)
    d.fit(cache.dataset(cfg.batch_size, shuffle=True, seed=seed), epochs=epochs,
          verbose=verbose, callbacks=list(callbacks))
    return d.student


def distill(cfg: RunConfig, cache: TopKShards, data: LMData, callbacks=(), verbose: int = 0):
    """A fresh student distilled token by token from the teacher's cached top-k targets."""
    epochs = epochs_for(cfg, cfg.distill.epochs, cache.examples)
    return _distill_fit(cfg, build_student(cfg, data), cache, epochs, cfg.distill.learning_rate,
                        cfg.seed + 2, callbacks, verbose)


def prune(cfg: RunConfig, student, cache: TopKShards, callbacks=(), verbose: int = 0):
    """Magnitude-prunes ``student`` to ``prune.sparsity`` with a distillation fine-tune from the
    cache, stripped (layers under ``prune.min_params`` weights and ``prune.skip`` kept)."""
    from kdkeras.compress import prune as _prune, strip

    p = cfg.prune
    epochs = epochs_for(cfg, p.epochs, cache.examples)
    steps = epochs * steps_per_epoch(cache.examples, cfg.batch_size)
    wrapped = _prune(student, target_sparsity=p.sparsity, end_step=max(1, int(0.7 * steps)),
                     frequency=max(1, steps // 20),
                     skip=tuple(p.skip) + small_layers(student, p.min_params, p.skip))
    tuned = _distill_fit(cfg, wrapped, cache, epochs, p.learning_rate, cfg.seed + 3, callbacks,
                         verbose)
    return strip(tuned)


# ----------------------------------------------------------------------------- the file
def export(cfg: RunConfig, student, data: LMData, path: Path) -> str:
    """The student as a ``.tflite`` file (``export.quantization``), checked against Keras on
    ``export.calibration_samples`` training windows."""
    from kdkeras.export import export_causal_lm

    x = windows(data, "train", cfg.data.train_tokens)[0][:cfg.export.calibration_samples]
    return export_causal_lm(student, path, quantization=cfg.export.quantization,
                            representative=x)


def verify(cfg: RunConfig, path: str, student, data: LMData) -> Dict[str, Any]:
    """The file's held-out perplexity beside its Keras model's, and greedy decoding over the
    file against Keras for ``verify.greedy_tokens`` tokens from a held-out prompt."""
    from kdkeras.export import tflite_next_logits, tflite_perplexity

    x, y, sw = windows(data, "test", cfg.data.test_tokens)
    keras_ppl = perplexity(student, x, y, sw, batch_size=64)
    file_ppl = tflite_perplexity(path, x, y, sw, num_threads=1)
    result = {"perplexity": file_ppl, "keras_perplexity": keras_ppl,
              "perplexity_increase": file_ppl / keras_ppl - 1, "tokens": int(sw.sum()),
              "greedy_tokens": cfg.verify.greedy_tokens}
    n = cfg.verify.greedy_tokens
    if n:
        start = prompt(data)
        ours = generate(keras_next_logits(student), start, n, strategy="greedy")
        file = generate(tflite_next_logits(path), start, n, strategy="greedy")
        same = np.cumprod(ours[:len(file)] == file[:len(ours)])
        result.update(greedy_equal=int(same.sum()), prompt=detokenize(data.encoder, start),
                      greedy_keras=detokenize(data.encoder, ours),
                      greedy_tflite=detokenize(data.encoder, file))
    return result


def sample(model, data: LMData, n: int) -> Dict[str, str]:
    """A greedy continuation of the held-out prompt by ``model``, as text."""
    start = prompt(data)
    out = generate(keras_next_logits(model), start, n, strategy="greedy")
    return {"prompt": detokenize(data.encoder, start), "continuation": detokenize(data.encoder, out)}


def bundle(tflite_path: str, data: LMData, folder: Path) -> str:
    """``model.tflite``, ``vocab.txt`` and ``model.json`` (tokenizer, context, special ids)."""
    from kdkeras.export import export_lm_bundle

    return export_lm_bundle(tflite_path, str(folder), data.vocabulary, data.tokenizer)
