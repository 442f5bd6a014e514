"""The step bodies of a causal-LM ``kdkeras run`` (``task = "causal_lm"``), as the stage graph
(:mod:`kdkeras.pipeline.graph`, its ``LM_STAGES``) runs them: each takes a
:class:`~kdkeras.pipeline.steps.Context`, says what it does and calls a plain function of
:mod:`kdkeras.pipeline.lm_stages`. The save and load functions of the LM artifacts (the
vocabulary, the top-k cache) and the report rows (perplexity instead of accuracy) are here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

from kdkeras._io import atomic_write_bytes
from kdkeras.data import LMData
from kdkeras.pipeline import lm_report as R
from kdkeras.pipeline import lm_stages as L
from kdkeras.pipeline import measure as M
from kdkeras.pipeline.config import RunConfig
from kdkeras.pipeline.steps import Context, VerificationError, exported_from, tflite_name

VOCABULARY = "vocab.txt"
CACHE_META = f"{L.CACHE_FOLDER}/cache.json"


# ----------------------------------------------------------------------------- save, load
def save_vocabulary(data: LMData, path: Path) -> None:
    atomic_write_bytes(path, ("\n".join(data.vocabulary) + "\n").encode("utf-8"))


def load_data(ctx: Context, path: Optional[Path]) -> LMData:
    return L.load_data(ctx.cfg, vocabulary=str(path))


def teacher_files(cfg: RunConfig) -> tuple:
    return () if cfg.teacher.path else ("teacher.keras",)


def load_teacher(ctx: Context, path: Optional[Path]):
    if ctx.cfg.teacher.path:
        return L.load_teacher(ctx.cfg, ctx.data)
    import warnings

    import keras as keras3

    with warnings.catch_warnings():  # saved without its optimizer's state (steps.save_model)
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        return keras3.saving.load_model(path)


def load_cache(ctx: Context, path: Optional[Path]):
    return L.open_cache(ctx.cfg, ctx.get("teacher"), ctx.data, Path(path).parent)


# ----------------------------------------------------------------------------- the steps
def run_data(ctx: Context) -> LMData:
    d = ctx.cfg.data
    how = (f"the vocabulary {d.wordpiece}" if d.wordpiece else
           f"a vocabulary of at most {d.vocabulary_size:,} pieces trained on the training documents")
    ctx.say(f"data: read {d.source}, encode with {how}")
    data = L.load_data(ctx.cfg)
    s = data.summary()
    ctx.say(f"data: {s['train']['documents']} training / {s['test']['documents']} held-out "
            f"documents, {s['train']['tokens']:,} / {s['test']['tokens']:,} tokens, "
            f"{s['vocabulary_size']:,} pieces, context {s['context']}")
    if ctx.cfg.distill.top_k > data.vocabulary_size:
        raise ValueError(f"distill.top_k = {ctx.cfg.distill.top_k} is more than the vocabulary "
                         f"({data.vocabulary_size:,} pieces). Received: distill.top_k="
                         f"{ctx.cfg.distill.top_k}. Use at most {data.vocabulary_size}.")
    return data


def run_teacher(ctx: Context):
    t, d = ctx.cfg.teacher, ctx.cfg.data
    if t.path:
        ctx.say(f"teacher: load {t.path}")
        return L.load_teacher(ctx.cfg, ctx.data)
    n = len(L.windows(ctx.data, "train", d.teacher_tokens)[0])
    epochs = L.epochs_for(ctx.cfg, t.epochs, n)
    ctx.say(f"teacher: train a keras-hub GPT-2 (Keras 3, {t.kwargs or 'default sizes'}) on "
            f"{n:,} windows of {ctx.data.context} tokens for {epochs} epochs, learning rate "
            f"{t.learning_rate or L.LM_TEACHER_LR:g} ({t.schedule} schedule)")
    return L.train_teacher(ctx.cfg, ctx.data, ctx.callbacks("teacher"), ctx.verbose)


def run_logits(ctx: Context):
    k = ctx.cfg.distill.top_k
    ctx.say(f"logits: cache the teacher's top-{k} logits per token in {L.CACHE_FOLDER}/")
    cache = L.cache_teacher(ctx.cfg, ctx.get("teacher"), ctx.data, ctx.out / L.CACHE_FOLDER)
    full = cache.metadata["full_logit_bytes"]
    ctx.say(f"logits: {cache.nbytes:,} bytes for {cache.tokens:,.0f} tokens, "
            f"{full / max(cache.nbytes, 1):.0f}x less than the full logits ({full:,} bytes)")
    return cache


def run_scratch(ctx: Context):
    ctx.say("scratch: train the student on the next-token loss alone (the distilled student's "
            "tokens, epochs and optimizer)")
    return L.train_scratch(ctx.cfg, ctx.data, ctx.callbacks("scratch"), ctx.verbose)


def run_distill(ctx: Context):
    d = ctx.cfg.distill
    ctx.say(f"distill: token-level KD from the top-{d.top_k} cache, alpha {d.alpha}, "
            f"temperature {d.temperature}")
    return L.distill(ctx.cfg, ctx.get("logits"), ctx.data, ctx.callbacks("distill"), ctx.verbose)


def run_prune(ctx: Context):
    ctx.say(f"prune: to {ctx.cfg.prune.sparsity:.0%} sparsity, KD fine-tune from the cache")
    return L.prune(ctx.cfg, ctx.get("distill"), ctx.get("logits"), ctx.callbacks("prune"),
                   ctx.verbose)


def run_export(ctx: Context) -> str:
    src, name = exported_from(ctx), tflite_name(ctx.cfg)
    ctx.say(f"export: {src} student -> {name}")
    return L.export(ctx.cfg, ctx.get(src), ctx.data, ctx.out / name)


def run_verify(ctx: Context) -> Dict[str, Any]:
    ctx.say(f"verify: perplexity of {tflite_name(ctx.cfg)} on the held-out windows")
    result = L.verify(ctx.cfg, ctx.get("export"), ctx.get(exported_from(ctx)), ctx.data)
    ctx.say(f"verify: .tflite perplexity {result['perplexity']:.2f} vs Keras "
            f"{result['keras_perplexity']:.2f} ({100 * result['perplexity_increase']:+.2f}%)"
            + (f"; greedy decoding equal for {result['greedy_equal']} of "
               f"{result['greedy_tokens']} tokens" if result["greedy_tokens"] else ""))
    return result


def run_bundle(ctx: Context) -> str:
    ctx.say("android: bundle model.tflite, vocab.txt, model.json (causal LM)")
    return L.bundle(ctx.get("export"), ctx.data, ctx.out / "android")


def run_report(ctx: Context) -> Dict[str, Any]:
    ctx.say("report: perplexity of every model on the held-out windows")
    rows = [stage.row(ctx, stage) for stage in ctx.stages
            if stage.row is not None and ctx.enabled(stage.name)]
    verify = ctx.get("verify") if ctx.enabled("verify") else None
    students = [s for s in ("prune", "distill") if ctx.enabled(s)]
    samples = {"teacher": L.sample(ctx.get("teacher"), ctx.data, SAMPLE_TOKENS)}
    if students:
        samples[f"student_{'pruned' if students[0] == 'prune' else 'distilled'}"] = L.sample(
            ctx.get(students[0]), ctx.data, SAMPLE_TOKENS)
    skipped = {s.model or s.name: ctx.skipped[s.name] for s in ctx.stages
               if s.name in ctx.skipped}
    report = R.build_report(ctx.cfg, L.dataset_name(ctx.cfg), ctx.data.summary(), rows, verify,
                            samples, ctx.timing, time.time() - ctx.start, skipped,
                            cache=ctx.get("logits").metadata)
    R.write_report(report, ctx.out)
    ctx.say(f"report: {ctx.out / 'report.md'}, report.json, report.png")
    return report


#: Tokens of each greedy sample in ``report.md``.
SAMPLE_TOKENS = 30


def check_verified(cfg: RunConfig, verify: Optional[Dict[str, Any]], out: Path) -> None:
    """Raises :class:`VerificationError` when the file's perplexity rose more than
    ``verify.max_perplexity_increase`` over its Keras model's, or greedy decoding over the
    file left Keras's within ``verify.greedy_tokens`` tokens."""
    if not verify:
        return
    limit = cfg.verify.max_perplexity_increase
    if verify["perplexity_increase"] > limit:
        raise VerificationError(
            f"The exported .tflite file has held-out perplexity {verify['perplexity']:.3f}, "
            f"{100 * verify['perplexity_increase']:.2f}% above its Keras model's "
            f"({verify['keras_perplexity']:.3f}), more than verify.max_perplexity_increase = "
            f"{limit}. The report is in {out}; try export.quantization = \"none\" or "
            "\"float16\".")
    if verify["greedy_tokens"] and verify["greedy_equal"] < verify["greedy_tokens"]:
        raise VerificationError(
            f"Greedy decoding over the exported .tflite file left the Keras model's after "
            f"{verify['greedy_equal']} of verify.greedy_tokens = {verify['greedy_tokens']} "
            f"tokens (Keras: {verify['greedy_keras']!r}, file: {verify['greedy_tflite']!r}). "
            f"The report is in {out}; try export.quantization = \"none\" or \"float16\", or a "
            "lower verify.greedy_tokens.")


# ----------------------------------------------------------------------------- report rows
def _speed(cfg: RunConfig, next_logits, data: LMData) -> float:
    from kdkeras.generation import generation_speed

    return float(generation_speed(next_logits, L.prompt(data), min(cfg.verify.latency_runs, 200)))


def keras_row(ctx: Context, stage) -> Dict[str, Any]:
    from kdkeras.generation import keras_next_logits, perplexity

    cfg, model, data = ctx.cfg, ctx.get(stage.name), ctx.data
    files = stage.files(cfg)
    path = ctx.out / files[0] if files else Path(cfg.teacher.path)
    x, y, sw = L.windows(data, "test", cfg.data.test_tokens)
    return {"name": stage.model, "format": path.suffix.lstrip(".") or "keras",
            "perplexity": perplexity(model, x, y, sw, batch_size=64), **M.param_counts(model),
            **M.file_sizes(path), "tokens_per_s": _speed(cfg, keras_next_logits(model), data),
            "path": str(path)}


def tflite_row(ctx: Context, stage) -> Dict[str, Any]:
    from kdkeras.export import tflite_next_logits, tflite_perplexity

    cfg, path, data = ctx.cfg, ctx.get(stage.name), ctx.data
    verify = ctx.get("verify") if ctx.enabled("verify") else None
    if verify:
        ppl = verify["perplexity"]
    else:
        ppl = tflite_perplexity(path, *L.windows(data, "test", cfg.data.test_tokens),
                                num_threads=1)
    return {"name": Path(path).stem, "format": "tflite", "perplexity": ppl,
            **M.param_counts(ctx.get(exported_from(ctx))), **M.file_sizes(path),
            "tokens_per_s": _speed(cfg, tflite_next_logits(path, num_threads=1), data),
            "path": str(path)}
