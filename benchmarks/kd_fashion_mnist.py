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

Augmentation is given to both students alike: ``--shift 0.1`` (``ShiftFlip``: whole-pixel
shifts up to 10%, with ``--flip`` left-right flips too), ``--mixup 0.2`` / ``--cutmix 1.0``.
The scratch student gets them in its input pipeline (mixup with mixed labels); the distilled
student gets the same view, labelled by the teacher: online (the teacher runs on every batch,
``Distiller(augment=, mix=)``) or, with ``--views K``, from K cached views per example
(``cache_teacher_views``, top-k targets with ``--top-k``), which trains at plain-fit speed.

    python benchmarks/kd_fashion_mnist.py --student cnn --shift 0.1 --flip --views 8 --epochs 10
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


def train_teacher(x, y, epochs, seed, path: Path, filters=(32, 64, 128)):
    """The default job's teacher recipe: ``resnet_teacher`` (here ``filters`` wide), Adam with
    a cosine schedule peaking at 3e-3 after a 5% warm-up, batch 128 (or the model saved at
    ``path``)."""
    if path.exists():
        return keras.models.load_model(path, compile=False)
    from kdkeras.pipeline.stages import learning_rate

    keras.utils.set_random_seed(seed)
    teacher = kd.models.build_resnet_teacher(x.shape[1:], 10, filters=tuple(filters))
    teacher.compile(
        keras.optimizers.Adam(learning_rate(3e-3, "cosine", epochs, len(x), 128)),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ["accuracy"],
    )
    teacher.fit(kd.data.to_dataset(x, y, 128, shuffle=True, seed=seed), epochs=epochs, verbose=0)
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


def augmentation(args):
    return kd.distill.ShiftFlip(args.shift, args.shift, flip=args.flip) if args.shift else None


def mixer(args, labels="mixed"):
    if args.mixup:
        return kd.distill.MixUp(args.mixup, labels=labels)
    if args.cutmix:
        return kd.distill.CutMix(args.cutmix, labels=labels)
    return None


def recipe(args) -> str:
    """What both students got, for the table."""
    parts = []
    if args.shift:
        parts.append(f"shift {args.shift}" + (" + flip" if args.flip else ""))
    if args.mixup or args.cutmix:
        parts.append(f"mixup {args.mixup}" if args.mixup else f"cutmix {args.cutmix}")
    how = "none" if not parts else ", ".join(parts)
    if parts:
        how += (f"; teacher on {args.views} cached views/example, top-{args.top_k or 10}"
                if args.views else "; teacher online on each view")
    return how


def scratch(args, seed, x, y, xt, yt):
    student = make_student(args, seed)
    mix, aug = mixer(args), augmentation(args)
    loss = (keras.losses.CategoricalCrossentropy if mix else keras.losses.SparseCategoricalCrossentropy)
    student.compile(keras.optimizers.Adam(args.lr), loss(from_logits=True))
    labelled = student_labels(args, seed, y) != -1
    epochs = args.epochs
    if not labelled.all():  # the distilled student's optimizer steps, over the labelled ones
        steps = args.epochs * int(np.ceil(len(x) / args.batch_size))
        epochs = int(np.ceil(steps / np.ceil(labelled.sum() / args.batch_size)))
    ds = tf.data.Dataset.from_tensor_slices((x[labelled], y[labelled]))
    ds = ds.shuffle(60_000, seed=seed).batch(args.batch_size)
    if aug is not None:
        ds = ds.map(lambda xb, yb: (aug(xb, training=True), yb), num_parallel_calls=tf.data.AUTOTUNE)
    if mix is not None:
        ds = ds.map(lambda xb, yb: mix.mix(xb, yb, 10)[:2], num_parallel_calls=tf.data.AUTOTUNE)
    student.fit(ds.prefetch(tf.data.AUTOTUNE), epochs=epochs, verbose=0)
    return accuracy(student, xt, yt)


def distilled(args, seed, x, y, logits, xt, yt, alpha, temperature, teacher=None):
    student = make_student(args, seed)
    y = student_labels(args, seed, y)
    aug, mix = augmentation(args), mixer(args, args.mix_labels)
    online = (aug is not None or mix is not None) and not args.views
    d = kd.Distiller(student=student, teacher=teacher if online else None,
                     augment=aug if online else None, mix=mix if online else None)
    d.compile(optimizer=keras.optimizers.Adam(args.lr), alpha=alpha, temperature=temperature,
              ignore_class=None if args.labels == 1 else -1)
    if args.views:
        cache = kd.distill.cache_teacher_views(teacher, (x, y), aug, views=args.views,
                                               top_k=args.top_k, temperature=temperature,
                                               seed=seed)
        ds = cache.dataset(args.batch_size, seed=seed)
    elif online:
        ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(60_000, seed=seed)
        ds = ds.batch(args.batch_size).prefetch(tf.data.AUTOTUNE)
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y, logits)).shuffle(60_000, seed=seed)
        ds = ds.batch(args.batch_size)
    d.fit(ds, epochs=args.epochs, verbose=0)
    return accuracy(student, xt, yt)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--hidden", type=int, nargs="+", default=[32])
    p.add_argument("--filters", type=int, nargs="+", default=[8, 16])
    p.add_argument("--dense", type=int, default=32)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--teacher-filters", type=int, nargs="+", default=[32, 64, 128],
                   help="resnet_teacher stage widths when the script trains the teacher")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-train", type=int, default=None, help="training subset (default: all 60k)")
    p.add_argument("--labels", type=float, default=1.0,
                   help="label budget of the students: a share in (0, 1] or a count (default: 1)")
    p.add_argument("--teacher", type=Path, default=Path("/tmp/kdkeras-bench/resnet_teacher.keras"))
    p.add_argument("--grid", action="store_true", help="search alpha x temperature (1 seed each)")
    p.add_argument("--grid-alphas", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    p.add_argument("--grid-temperatures", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    p.add_argument("--shift", type=float, default=0.0, help="ShiftFlip factor for both students")
    p.add_argument("--flip", action="store_true", help="also random left-right flips")
    p.add_argument("--mixup", type=float, default=0.0, help="mixup alpha for both students")
    p.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha for both students")
    p.add_argument("--mix-labels", choices=["mixed", "off"], default="mixed",
                   help="the distilled student's hard labels under mixup/cutmix")
    p.add_argument("--views", type=int, default=0,
                   help="cached views per example for the distilled student (0: teacher online)")
    p.add_argument("--top-k", type=int, default=None, help="top-k of the cached views (default: all)")
    p.add_argument("--only", choices=["scratch", "distilled"], default=None,
                   help="run one of the two students (the other column shows '-')")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.views and not args.shift:
        p.error("--views needs --shift (cached views replay a ShiftFlip view)")
    if args.views and (args.mixup or args.cutmix):
        p.error("--views replays ShiftFlip views; mixup/cutmix run with the teacher online")

    (x, y), (xt, yt) = kd.fashion_mnist(n_train=args.n_train)
    t0 = time.time()
    teacher = train_teacher(x, y, args.teacher_epochs, 0, args.teacher, args.teacher_filters)
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
    sc, ds = [], []
    for s in seeds:
        if args.only != "distilled":
            t1 = time.time()
            sc.append(scratch(args, s, x, y, xt, yt))
            print(f"seed {s}: scratch {sc[-1]:.4f} ({time.time() - t1:.0f} s)", flush=True)
        if args.only != "scratch":
            t1 = time.time()
            ds.append(distilled(args, s, x, y, logits, xt, yt, args.alpha, args.temperature, teacher))
            print(f"seed {s}: distilled {ds[-1]:.4f} ({time.time() - t1:.0f} s)", flush=True)
    if args.only:
        print(json.dumps({"recipe": recipe(args), "epochs": args.epochs, args.only: sc or ds}))
        return 0
    gap = t_acc - np.mean(sc)
    closed = (np.mean(ds) - np.mean(sc)) / gap if gap > 0 else float("nan")
    fmt = lambda v: f"{100 * np.mean(v):.2f} ± {100 * np.std(v):.2f}"
    budget = "" if args.labels == 1 else f", students see {int((student_labels(args, 0, y) != -1).sum()):,} labels"
    print(f"\nFashion-MNIST, {len(x):,} train{budget} / {len(xt):,} test, {args.epochs} epochs, Adam {args.lr}, "
          f"batch {args.batch_size}, alpha {args.alpha}, T {args.temperature}, {args.seeds} seeds; "
          f"augmentation for both students: {recipe(args)}. "
          f"Machine: {machine()}. Wall time {time.time() - t0:.0f} s.\n")
    print(table(
        ["model", "params", "test accuracy (%)"],
        [
            (f"teacher ({teacher.name})", f"{teacher.count_params():,}", f"{100 * t_acc:.2f}"),
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
