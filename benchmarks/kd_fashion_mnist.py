"""Does distillation pay? Teacher vs student from scratch vs distilled student, Fashion-MNIST.

Same student architecture, epochs, optimizer and batch size for "scratch" and "distilled";
only the loss differs. The teacher is trained once (or loaded with --teacher) and distilled
offline from cached logits. Prints a Markdown table (mean ± std over seeds).

    python benchmarks/kd_fashion_mnist.py                    # the README table
    python benchmarks/kd_fashion_mnist.py --grid             # the alpha / temperature search
    python benchmarks/kd_fashion_mnist.py --student cnn --labels 0.1 --epochs 4   # label budget

With ``--labels`` (a share or a count) the students see only that many labels, drawn per seed;
the teacher keeps every label. The scratch student trains on the labelled examples alone for
as many optimizer steps as the distilled one, which also learns the unlabelled examples from the
teacher's soft targets (``Distiller.compile(ignore_class=-1)``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import kdkeras as kd
from _common import machine, table

keras = kd.keras


def train_teacher(x, y, epochs, seed, path: Path):
    if path.exists():
        return keras.models.load_model(path, compile=False)
    keras.utils.set_random_seed(seed)
    teacher = kd.build_cnn_teacher(x.shape[1:], 10)
    teacher.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ["accuracy"],
    )
    teacher.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    teacher.save(path)
    return teacher


def make_student(args, seed):
    keras.utils.set_random_seed(seed)
    if args.student == "mlp":
        return kd.build_mlp_student((28, 28, 1), 10, hidden=tuple(args.hidden))
    return kd.build_cnn_student((28, 28, 1), 10, filters=tuple(args.filters), dense=args.dense)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=1024, verbose=0), -1) == y))


def student_labels(args, seed, y):
    """The labels the students see: ``y``, or -1 outside a ``--labels`` budget (drawn per seed)."""
    if args.labels == 1:
        return y
    data = kd.data.SplitData(y[:, None], y, y[:1, None], y[:1], [str(i) for i in range(10)], "x")
    return data.with_label_budget(args.labels, seed=100 + seed).student_labels


def scratch(args, seed, x, y, xt, yt):
    student = make_student(args, seed)
    student.compile(
        keras.optimizers.Adam(args.lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    labelled = student_labels(args, seed, y) != -1
    epochs = args.epochs
    if not labelled.all():  # the distilled student's optimizer steps, over the labelled ones
        steps = args.epochs * int(np.ceil(len(x) / args.batch_size))
        epochs = int(np.ceil(steps / np.ceil(labelled.sum() / args.batch_size)))
    ds = tf.data.Dataset.from_tensor_slices((x[labelled], y[labelled]))
    student.fit(ds.shuffle(60_000, seed=seed).batch(args.batch_size), epochs=epochs, verbose=0)
    return accuracy(student, xt, yt)


def distilled(args, seed, x, y, logits, xt, yt, alpha, temperature):
    student = make_student(args, seed)
    y = student_labels(args, seed, y)
    d = kd.Distiller(student=student, teacher=None)
    d.compile(optimizer=keras.optimizers.Adam(args.lr), alpha=alpha, temperature=temperature,
              ignore_class=None if args.labels == 1 else -1)
    ds = tf.data.Dataset.from_tensor_slices((x, y, logits)).shuffle(60_000, seed=seed)
    d.fit(ds.batch(args.batch_size), epochs=args.epochs, verbose=0)
    return accuracy(student, xt, yt)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--hidden", type=int, nargs="+", default=[32])
    p.add_argument("--filters", type=int, nargs="+", default=[8, 16])
    p.add_argument("--dense", type=int, default=32)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--teacher-epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-train", type=int, default=None, help="training subset (default: all 60k)")
    p.add_argument("--labels", type=float, default=1.0,
                   help="label budget of the students: a share in (0, 1] or a count (default: 1)")
    p.add_argument("--teacher", type=Path, default=Path("/tmp/kdkeras-bench/teacher.keras"))
    p.add_argument("--grid", action="store_true", help="search alpha x temperature (1 seed each)")
    p.add_argument("--grid-alphas", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    p.add_argument("--grid-temperatures", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)

    (x, y), (xt, yt) = kd.fashion_mnist(n_train=args.n_train)
    t0 = time.time()
    teacher = train_teacher(x, y, args.teacher_epochs, 0, args.teacher)
    t_acc = accuracy(teacher, xt, yt)
    logits = teacher.predict(x, batch_size=1024, verbose=0).astype("float32")
    student_params = make_student(args, 0).count_params()
    print(f"# teacher: {teacher.count_params():,} params, acc {t_acc:.4f}; student "
          f"{args.student}: {student_params:,} params ({teacher.count_params() / student_params:.1f}x smaller)",
          flush=True)

    if args.grid:
        base = scratch(args, 0, x, y, xt, yt)
        rows = [("scratch", "-", "-", f"{base:.4f}")]
        print(f"scratch {base:.4f}", flush=True)
        for a, t in itertools.product(args.grid_alphas, args.grid_temperatures):
            acc = distilled(args, 0, x, y, logits, xt, yt, a, t)
            print(f"alpha={a} T={t}: {acc:.4f} ({acc - base:+.4f})", flush=True)
            rows.append(("distilled", a, t, f"{acc:.4f}"))
        print(table(["model", "alpha", "T", "accuracy"], rows))
        return 0

    seeds = range(args.seeds)
    sc = [scratch(args, s, x, y, xt, yt) for s in seeds]
    ds = [distilled(args, s, x, y, logits, xt, yt, args.alpha, args.temperature) for s in seeds]
    gap = t_acc - np.mean(sc)
    closed = (np.mean(ds) - np.mean(sc)) / gap if gap > 0 else float("nan")
    fmt = lambda v: f"{100 * np.mean(v):.2f} ± {100 * np.std(v):.2f}"
    budget = "" if args.labels == 1 else f", students see {int((student_labels(args, 0, y) != -1).sum()):,} labels"
    print(f"\nFashion-MNIST, {len(x):,} train{budget} / {len(xt):,} test, {args.epochs} epochs, Adam {args.lr}, "
          f"batch {args.batch_size}, alpha {args.alpha}, T {args.temperature}, {args.seeds} seeds. "
          f"Machine: {machine()}. Wall time {time.time() - t0:.0f} s.\n")
    print(table(
        ["model", "params", "test accuracy (%)"],
        [
            ("teacher (CNN)", f"{teacher.count_params():,}", f"{100 * t_acc:.2f}"),
            (f"student {args.student}, from scratch", f"{student_params:,}", fmt(sc)),
            (f"student {args.student}, distilled", f"{student_params:,}", fmt(ds)),
        ],
    ))
    print(f"\nDistillation gain: {100 * (np.mean(ds) - np.mean(sc)):+.2f} points; "
          f"teacher-scratch gap closed: {100 * closed:.0f}%")
    if args.json:
        args.json.write_text(json.dumps({"teacher": t_acc, "scratch": sc, "distilled": ds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
