"""Training throughput: plain student fit vs online vs offline (cached logits) distillation,
and with augmentation: plain augmented fit vs consistent-view distillation (teacher online on
each augmented batch) vs cached views (``cache_teacher_views``, the teacher run beforehand).

All train the same student on the same data with the same batch size, interleaved in one
process, so the ratios are measured side by side. Tracing is excluded (one warm-up epoch each);
the median epoch time over --repeats is reported. Augmented rows are compared with the plain
augmented fit (same ``ShiftFlip`` view); the one-off cost of labelling the cached views is
printed beside the table.

    python benchmarks/kd_throughput.py
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import kdkeras as kd
from _common import machine, table

keras = kd.keras


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000, help="training examples per epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--student", choices=["cnn", "mlp"], default="cnn")
    p.add_argument("--views", type=int, default=8, help="cached views per example")
    args = p.parse_args(argv)

    (x, y), _ = kd.fashion_mnist(n_train=args.n)
    keras.utils.set_random_seed(0)
    teacher = kd.build_cnn_teacher(x.shape[1:], 10)
    builder = kd.build_cnn_student if args.student == "cnn" else kd.build_mlp_student
    logits = teacher.predict(x, batch_size=1024, verbose=0)

    def plain():
        s = builder(x.shape[1:], 10)
        s.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ds = kd.data.to_dataset(x, y, args.batch_size, shuffle=True, seed=0)
        return lambda: s.fit(ds, epochs=1, verbose=0)

    def online():
        d = kd.Distiller(student=builder(x.shape[1:], 10), teacher=teacher)
        d.compile(optimizer=keras.optimizers.Adam(1e-3))
        ds = kd.data.to_dataset(x, y, args.batch_size, shuffle=True, seed=0)
        return lambda: d.fit(ds, epochs=1, verbose=0)

    def offline():
        d = kd.Distiller(student=builder(x.shape[1:], 10), teacher=None)
        d.compile(optimizer=keras.optimizers.Adam(1e-3))
        ds = kd.data.to_dataset(x, y, args.batch_size, shuffle=True, seed=0, teacher_logits=logits)
        return lambda: d.fit(ds, epochs=1, verbose=0)

    aug = kd.distill.ShiftFlip(0.1, 0.1, flip=True)

    def plain_augmented():
        s = builder(x.shape[1:], 10)
        s.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ds = kd.data.to_dataset(x, y, args.batch_size, shuffle=True, seed=0)
        ds = ds.map(lambda xb, yb: (aug(xb, training=True), yb), num_parallel_calls=-1).prefetch(-1)
        return lambda: s.fit(ds, epochs=1, verbose=0)

    def consistent():
        d = kd.Distiller(student=builder(x.shape[1:], 10), teacher=teacher, augment=aug)
        d.compile(optimizer=keras.optimizers.Adam(1e-3))
        ds = kd.data.to_dataset(x, y, args.batch_size, shuffle=True, seed=0)
        return lambda: d.fit(ds, epochs=1, verbose=0)

    t0 = time.perf_counter()
    cache = kd.distill.cache_teacher_views(teacher, (x, y), aug, views=args.views, temperature=1.0)
    cache_time = time.perf_counter() - t0

    def cached_views():
        d = kd.Distiller(student=builder(x.shape[1:], 10), teacher=None)
        d.compile(optimizer=keras.optimizers.Adam(1e-3), temperature=1.0)
        ds = cache.dataset(args.batch_size, seed=0)
        return lambda: d.fit(ds, epochs=1, verbose=0)

    makers = (("plain", plain), ("online", online), ("offline", offline),
              ("plain_aug", plain_augmented), ("consistent", consistent), ("views", cached_views))
    runs = {name: make() for name, make in makers}
    for fit in runs.values():  # warm-up: trace the train functions
        fit()
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fit in runs.items():
            t0 = time.perf_counter()
            fit()
            times[name].append(time.perf_counter() - t0)
    rate = {name: args.n / np.median(ts) for name, ts in times.items()}
    print(f"\n{args.student} student ({builder(x.shape[1:], 10).count_params():,} params), CNN teacher "
          f"({teacher.count_params():,} params), {args.n:,} Fashion-MNIST examples, batch {args.batch_size}, "
          f"median of {args.repeats} epochs. Machine: {machine()}.\n")
    labels = {"plain": "plain student fit", "online": "online distillation (teacher forward each step)",
              "offline": "offline distillation (cached logits)",
              "plain_aug": "plain augmented fit (ShiftFlip 0.1 + flip)",
              "consistent": "consistent-view distillation (teacher online on each view)",
              "views": f"cached-view distillation ({args.views} views/example, full targets)"}
    base = {k: "plain_aug" if k in ("plain_aug", "consistent", "views") else "plain" for k in runs}
    print(table(["training", "samples/s", "ratio to its plain fit"],
                [(labels[k], f"{rate[k]:,.0f}", f"{rate[k] / rate[base[k]]:.2f}x ({base[k]})")
                 for k in runs]))
    print(f"\nLabelling the {args.views} cached views once: {cache_time:.1f} s "
          f"({cache.nbytes / len(x):.0f} bytes per example).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
