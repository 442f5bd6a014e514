"""What reaches the phone: the teacher's float32 .tflite vs the compressed student in every mode.

For the float32 teacher and for the distilled, pruned student exported in every quantization
mode, measures in one run: the accuracy *of the .tflite file* on the Fashion-MNIST test set,
its size, its gzip size and its median / p90 latency at 1 thread, batch 1. Prints a Markdown
table and the two ratios the README promises (gzip size and latency, teacher / int8 student).

    python benchmarks/export_fashion_mnist.py              # trains both, ~15 min on 2 shared cores
    python benchmarks/export_fashion_mnist.py --quick               # smoke test, ~1 min
    python benchmarks/export_fashion_mnist.py --teacher t.keras --student s.keras

``--student`` is used as given (pruning wrappers are stripped on export); without it the
student is distilled from the teacher with ``kd.Distiller``, then pruned with a KD-aware
fine-tune (``kdkeras.compress.prune``) and stripped. Latency on a shared CPU is noisy: only
ratios from the same run mean much.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

import kdkeras as kd
from kdkeras.export import (
    QUANTIZATIONS,
    benchmark_tflite,
    evaluate_tflite,
    export_tflite,
    inspect_tflite,
    load_model,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table  # noqa: E402

keras = kd.keras
DEF = "default: %(default)s"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=None, help="saved teacher (.keras/.h5/SavedModel)")
    p.add_argument("--student", default=None, help="saved (compressed) student")
    p.add_argument("--n-train", type=int, default=20000, help="training subset; " + DEF)
    p.add_argument("--n-test", type=int, default=10000, help="test subset; " + DEF)
    p.add_argument("--teacher-epochs", type=int, default=4)
    p.add_argument("--student-epochs", type=int, default=8)
    p.add_argument("--prune-epochs", type=int, default=4)
    p.add_argument("--sparsity", type=float, default=0.5, help="pruning target; " + DEF)
    p.add_argument("--calib", type=int, default=500, help="calibration examples; " + DEF)
    p.add_argument("--runs", type=int, default=200, help="timed runs per file; " + DEF)
    p.add_argument("--modes", default=",".join(QUANTIZATIONS.names()),
                   help="student modes, comma-separated (default: all)")
    p.add_argument("--out", default=None, help="directory for the .tflite files (default: temp)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny subset and epochs (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test = 2000, 1000
        args.teacher_epochs, args.student_epochs, args.prune_epochs = 1, 2, 1
        args.runs = 50
    return args


def keras_accuracy(model, x, y) -> float:
    return float(np.mean(model.predict(x, batch_size=512, verbose=0).argmax(-1) == y))


def get_teacher(args, x, y):
    if args.teacher:
        return load_model(args.teacher)
    keras.utils.set_random_seed(args.seed)
    teacher = kd.build_cnn_teacher(x.shape[1:], 10)
    teacher.compile(keras.optimizers.Adam(1e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    teacher.fit(x, y, epochs=args.teacher_epochs, batch_size=128, verbose=0)
    return teacher


def get_student(args, teacher, x, y, xt, yt):
    """Returns (distilled float student or None, compressed student)."""
    if args.student:
        return None, load_model(args.student)
    from kdkeras.compress import prune, strip

    keras.utils.set_random_seed(args.seed)
    student = kd.build_cnn_student(x.shape[1:], 10)
    d = kd.Distiller(student=student, teacher=teacher)
    d.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"], alpha=0.1,
              temperature=3.0)
    d.fit(x, y, epochs=args.student_epochs, batch_size=64, verbose=0)
    distilled = d.student
    steps = args.prune_epochs * int(np.ceil(len(x) / 64))
    # Reach the target sparsity after 70% of the fine-tune; the rest recovers accuracy.
    pruned = prune(distilled, target_sparsity=args.sparsity, end_step=max(1, int(0.7 * steps)))
    d2 = kd.Distiller(student=pruned, teacher=teacher)
    d2.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"], alpha=0.1,
               temperature=3.0)
    d2.fit(x, y, epochs=args.prune_epochs, batch_size=64, verbose=0)
    return distilled, strip(d2.student)


def measure(path, xt, yt, runs):
    acc = evaluate_tflite(path, xt, yt)["accuracy"]
    info = inspect_tflite(path)
    lat = benchmark_tflite(path, num_threads=1, warmup=20, runs=runs)
    return {"acc": acc, "bytes": info["size_bytes"], "gzip": info["gzip_bytes"],
            "median_ms": lat.median_ms, "p90_ms": lat.p90_ms}


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    (x, y), (xt, yt) = kd.fashion_mnist(n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    teacher = get_teacher(args, x, y)
    distilled, student = get_student(args, teacher, x, y, xt, yt)
    out = Path(args.out or tempfile.mkdtemp(prefix="kdkeras-export-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    if not args.teacher:
        teacher.save(out / "teacher.keras")  # reuse with --teacher
    if not args.student:
        student.save(out / "student.keras")  # reuse with --student
    calib = x[: args.calib]

    rows, results = [], {}
    teacher_path = export_tflite(teacher, out / "teacher_f32.tflite")
    results["teacher"] = measure(teacher_path, xt, yt, args.runs)
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        path = export_tflite(student, out / f"student_{mode}.tflite", quantization=mode,
                             representative_data=calib)
        results[mode] = measure(path, xt, yt, args.runs)

    ref = keras_accuracy(distilled if distilled is not None else student, xt, yt)
    keras_acc = {"teacher": keras_accuracy(teacher, xt, yt),
                 "student": keras_accuracy(student, xt, yt)}
    t = results["teacher"]
    for name, r in results.items():
        label = "teacher, float32" if name == "teacher" else f"student, {name}"
        exported = keras_acc["teacher" if name == "teacher" else "student"]
        rows.append([
            label, f"{100 * r['acc']:.2f}", f"{100 * (r['acc'] - exported):+.2f}",
            f"{100 * (r['acc'] - ref):+.2f}", f"{r['bytes']:,}",
            f"{r['gzip']:,}", f"{t['gzip'] / r['gzip']:.1f}x", f"{r['median_ms']:.3f}",
            f"{r['p90_ms']:.3f}", f"{t['median_ms'] / r['median_ms']:.1f}x",
        ])
    print(f"Fashion-MNIST, {len(x):,} training / {len(xt):,} test images; {machine()}")
    print(f"Keras accuracy: teacher {100 * keras_acc['teacher']:.2f}%, "
          + (f"distilled float student {100 * ref:.2f}%, " if distilled is not None else "")
          + f"compressed student {100 * keras_acc['student']:.2f}%"
          + (f" ({args.sparsity:.0%} of prunable weights zero)" if distilled is not None else ""))
    print()
    print(table(["file", ".tflite acc %", "vs its Keras model (pt)", "vs float student (pt)",
                 "bytes", "gzip bytes",
                 "gzip smaller", "median ms", "p90 ms", "faster"], rows))
    if "int8" in results:
        r = results["int8"]
        gz, sp = t["gzip"] / r["gzip"], t["median_ms"] / r["median_ms"]
        drop = 100 * (ref - r["acc"])
        print()
        print(f"int8 student vs float32 teacher: {gz:.1f}x smaller (gzip, target >= 20x: "
              f"{'met' if gz >= 20 else 'NOT met'}), {sp:.1f}x faster (median, 1 thread, target "
              f">= 5x: {'met' if sp >= 5 else 'NOT met'}), accuracy {-drop:+.2f} points vs the "
              f"distilled float student (target: at most 1.0 below: "
              f"{'met' if drop <= 1.0 else 'NOT met'}).")
    print(f"\n{len(results)} files in {out}; {time.time() - t0:.0f} s. Latency is from a shared "
          f"CPU ({args.runs} runs each): noisy, compare within this run only.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
