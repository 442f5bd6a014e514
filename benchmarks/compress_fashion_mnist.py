"""Compression of a distilled Fashion-MNIST student: pruning, PQAT, clustering, CQAT.

Starts from a distilled CNN student (trains a CNN teacher and distills the student with
``kd.Distiller`` first, or loads both from ``--teacher`` / ``--student``), then fine-tunes each
compressed variant with the teacher present (KD) and prints a Markdown table: test accuracy
(Keras, and of the full-int8 ``.tflite`` file made by ``kdkeras.export``), nonzero parameters,
kernel sparsity, and gzip sizes: of the stripped float model saved as ``.h5`` (a sparse model
compresses better; not given for QAT models, which only strip to a TFLite file) and of the int8
``.tflite`` file.

The teacher's logits for the training set are computed once and fed to the Distiller with the
data (offline KD: same loss as calling the teacher every step, there is no augmentation here).

    python benchmarks/compress_fashion_mnist.py                      # full run
    python benchmarks/compress_fashion_mnist.py --n-train 5000 --teacher-epochs 1 \\
        --student-epochs 2 --finetune-epochs 1                       # smoke run
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

import kdkeras as kd
from kdkeras.compress import cluster, prune, quantize_aware, sparsity_report, strip

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from _common import machine, table  # noqa: E402
except ImportError:  # pragma: no cover - run from elsewhere
    machine = None
    table = None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--teacher", help="path of a trained tf-keras teacher (.keras/.h5)")
    p.add_argument("--student", help="path of a distilled tf-keras student (.keras/.h5)")
    p.add_argument("--n-train", type=int, default=None, help="training subset (default: 60k)")
    p.add_argument("--teacher-epochs", type=int, default=4)
    p.add_argument("--student-epochs", type=int, default=8)
    p.add_argument("--finetune-epochs", type=int, default=3, help="KD fine-tune per variant")
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--sparsity", type=float, default=0.8)
    p.add_argument("--clusters", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--alpha", type=float, default=0.1, help="hard-label weight in KD")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-tflite", dest="tflite", action="store_false",
                   help="skip the int8 .tflite export columns (kdkeras.export)")
    p.add_argument("--save-dir", help="keep the teacher and distilled student here")
    return p.parse_args(argv)


def accuracy(model, x, y) -> float:
    logits = model.predict(x, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def gzip_size(model) -> int:
    """Bytes of the gzipped .h5 file of the stripped model."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.h5")
        model.save(path, include_optimizer=False)
        with open(path, "rb") as f:
            return len(gzip.compress(f.read(), compresslevel=9))


def tflite_int8(model, x_rep, x_test, y_test, qat: bool):
    """(gzip KiB, test accuracy) of the full-int8 .tflite file of ``model``; ("n/a", "n/a")
    when kdkeras.export is unavailable or the conversion fails (the error goes to stderr)."""
    try:
        from kdkeras.export import export_tflite, predict_tflite

        with tempfile.TemporaryDirectory() as tmp:
            path = export_tflite(model, os.path.join(tmp, "m.tflite"), quantization="int8",
                                 representative_data=None if qat else x_rep[:500])
            with open(path, "rb") as f:
                size = len(gzip.compress(f.read(), compresslevel=9))
            acc = float(np.mean(np.argmax(predict_tflite(path, x_test), -1) == y_test))
        return f"{size / 1024:.1f}", f"{100 * acc:.2f}"
    except Exception as err:  # pylint: disable=broad-except  (a benchmark cell, not a crash)
        print(f"tflite int8 failed: {type(err).__name__}: {err}", file=sys.stderr)
        return "n/a", "n/a"


def distill(student, data, logits, epochs, lr, alpha, temperature, batch_size, seed):
    """Fine-tunes ``student`` on (x, y, teacher_logits) with kd.Distiller (offline KD)."""
    x, y = data
    ds = (tf.data.Dataset.from_tensor_slices((x, y, logits))
          .shuffle(len(x), seed=seed).batch(batch_size).prefetch(2))
    d = kd.Distiller(student=student, teacher=None)
    d.compile(optimizer=kd.keras.optimizers.Adam(lr), metrics=["accuracy"], alpha=alpha,
              temperature=temperature)
    d.fit(ds, epochs=epochs, verbose=0)
    return student


def main(argv=None) -> int:
    args = parse_args(argv)
    kd.keras.utils.set_random_seed(args.seed)
    (x, y), (x_test, y_test) = kd.fashion_mnist(n_train=args.n_train)
    steps_per_epoch = math.ceil(len(x) / args.batch_size)
    t0 = time.time()

    if args.teacher:
        teacher = kd.keras.models.load_model(args.teacher, compile=False)
    else:
        teacher = kd.build_cnn_teacher(x.shape[1:], 10)
        teacher.compile(kd.keras.optimizers.Adam(1e-3),
                        kd.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        teacher.fit(x, y, epochs=args.teacher_epochs, batch_size=args.batch_size, verbose=0)
    logits = teacher.predict(x, batch_size=1024, verbose=0)
    teacher_acc = accuracy(teacher, x_test, y_test)
    print(f"teacher: {teacher_acc:.4f} ({time.time() - t0:.0f} s)", file=sys.stderr)

    common = dict(alpha=args.alpha, temperature=args.temperature, batch_size=args.batch_size,
                  seed=args.seed)
    if args.student:
        student = kd.keras.models.load_model(args.student, compile=False)
    else:
        student = kd.build_cnn_student(x.shape[1:], 10)
        distill(student, (x, y), logits, args.student_epochs, 3e-3, **common)
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        teacher.save(os.path.join(args.save_dir, "teacher.h5"))
        student.save(os.path.join(args.save_dir, "student.h5"))
    print(f"distilled student ({time.time() - t0:.0f} s)", file=sys.stderr)

    ft = args.finetune_epochs
    prune_kw = dict(target_sparsity=args.sparsity, schedule="polynomial",
                    end_epoch=max(1, ft - 1) if ft > 1 else 1, steps_per_epoch=steps_per_epoch)
    rows = []

    def add(name, model, exported, qat=False):
        rep = sparsity_report(exported)
        h5 = "-" if qat else f"{gzip_size(exported) / 1024:.1f}"
        tfl_size, tfl_acc = tflite_int8(exported, x, x_test, y_test, qat) if args.tflite \
            else ("-", "-")
        rows.append([name, f"{100 * accuracy(model, x_test, y_test):.2f}", tfl_acc,
                     f"{rep.total_nonzeros:,}", f"{rep.prunable_sparsity:.1%}", h5, tfl_size])
        print(f"{name}: done ({time.time() - t0:.0f} s)", file=sys.stderr)

    add("distilled float", student, strip(student))

    kd_pruned = distill(prune(student, **prune_kw), (x, y), logits, ft, 1e-3, **common)
    kd_small = strip(kd_pruned)
    add(f"pruned {args.sparsity:.0%}, KD fine-tune", kd_small, kd_small)

    hard = dict(common, alpha=1.0)  # alpha=1: the hard-label loss only
    hard_pruned = distill(prune(student, **prune_kw), (x, y), logits, ft, 1e-3, **hard)
    hard_small = strip(hard_pruned)
    add(f"pruned {args.sparsity:.0%}, hard-label fine-tune", hard_small, hard_small)

    pqat = distill(quantize_aware(kd_small, preserve_sparsity=True), (x, y), logits,
                   args.qat_epochs, 1e-4, **common)
    add(f"pruned {args.sparsity:.0%} + PQAT (KD)", pqat, pqat, qat=True)

    clustered = distill(cluster(student, n_clusters=args.clusters), (x, y), logits, ft, 1e-4,
                        **common)
    cl_small = strip(clustered)
    cqat = distill(quantize_aware(cl_small, preserve_clusters=True), (x, y), logits,
                   args.qat_epochs, 1e-4, **common)
    add(f"clustered {args.clusters} + CQAT (KD)", cqat, cqat, qat=True)

    header = ["model", "Keras test acc. (%)", "int8 .tflite test acc. (%)", "nonzero params",
              "kernel sparsity", "gzip stripped .h5 (KiB)", "gzip int8 .tflite (KiB)"]
    if table is not None:
        print(table(header, rows))
    else:
        print("| " + " | ".join(header) + " |")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    teacher_desc = (f"teacher {args.teacher}" if args.teacher
                    else f"teacher {args.teacher_epochs} epochs")
    student_desc = (f"student {args.student}" if args.student
                    else f"student distilled {args.student_epochs} epochs")
    print(f"\nFashion-MNIST, {len(x)} train / {len(x_test)} test; teacher test accuracy "
          f"{100 * teacher_acc:.2f}% ({teacher_desc}), {student_desc}, "
          f"fine-tunes {ft} epochs (QAT {args.qat_epochs}); {time.time() - t0:.0f} s"
          + (f"; {machine()}" if machine else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
