"""Which default teacher gives the most Fashion-MNIST accuracy per CPU-second?

Trains each candidate teacher (architecture, epochs, learning rate, schedule, augmentation)
on the training split with Adam and batch 128, as `kdkeras run` trains its teacher, and
measures the test accuracy and the cost of ``fit``: CPU seconds of this process
(``time.process_time``, every thread; the measure to trust on a shared machine) and wall
seconds (for information). Prints a Markdown table, one row per candidate (the mean over
seeds, the per-seed accuracies in brackets).

    python benchmarks/teacher_fashion_mnist.py                       # the search, 1 seed
    python benchmarks/teacher_fashion_mnist.py --only baseline resnet-cosine-3ep --seeds 2
    python benchmarks/teacher_fashion_mnist.py --quick               # smoke test (~1 min)
    python benchmarks/teacher_fashion_mnist.py --cost                # CPU per step, interleaved

On a shared machine the CPU seconds of one run move by up to ~20% with the other load (thread
pools spin while they wait). ``--cost`` measures instead the CPU seconds per training step of
every candidate's model in interleaved rounds (after a warm-up), takes the median per
candidate, and projects the cost of its full schedule: a steadier ratio to the baseline.

"cosine" is :func:`kdkeras.models.schedules.cosine_decay`: linear warm-up over the first
``--warmup`` epochs to the peak rate, then cosine decay to 0 at the end of training.
Augmentation ("aug") is the builder's training-only Keras layers: a random shift of up to
10% (RandomTranslation) and a random left-right flip (RandomFlip("horizontal")).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np

import kdkeras as kd
from _common import machine, table
from kdkeras.models import BUILDERS
from kdkeras.models.schedules import cosine_decay

keras = kd.keras
AUG = {"translate": 0.1, "flip": True}
R32 = {"filters": (32, 64, 128)}
R24 = {"filters": (24, 48, 96)}  # the builder's default


@dataclasses.dataclass(frozen=True)
class Candidate:
    builder: str
    kwargs: Dict[str, Any]
    epochs: int
    lr: float
    schedule: str  # "constant" or "cosine"

    def describe(self) -> str:
        kw = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.builder}({kw}), {self.schedule} {self.lr:g}"


CANDIDATES = {
    # today's default: cnn_teacher, Adam 1e-3 constant, 4 epochs
    "baseline": Candidate("cnn_teacher", {}, 4, 1e-3, "constant"),
    "cnn-cosine-4ep": Candidate("cnn_teacher", {}, 4, 3e-3, "cosine"),
    "cnn-cosine-6ep": Candidate("cnn_teacher", {}, 6, 3e-3, "cosine"),
    "cnn3-cosine-5ep": Candidate("cnn_teacher", R32, 5, 3e-3, "cosine"),
    "resnet24-cosine-3ep": Candidate("resnet_teacher", R24, 3, 3e-3, "cosine"),
    "resnet-cosine-3ep": Candidate("resnet_teacher", R32, 3, 3e-3, "cosine"),
    "resnet-aug-cosine-3ep": Candidate("resnet_teacher", {**R32, **AUG}, 3, 3e-3, "cosine"),
}
EXTRA = {  # not in the default search; run them with --only
    "cnn-wide-cosine-4ep": Candidate("cnn_teacher", {"filters": (64, 128)}, 4, 3e-3, "cosine"),
    "cnn-const3e-3-4ep": Candidate("cnn_teacher", {}, 4, 3e-3, "constant"),
    "cnn-aug-cosine-6ep": Candidate("cnn_teacher", AUG, 6, 3e-3, "cosine"),
    "cnn3-cosine-4ep": Candidate("cnn_teacher", R32, 4, 3e-3, "cosine"),
    "resnet24-cosine-4ep": Candidate("resnet_teacher", R24, 4, 3e-3, "cosine"),
    "resnet24-aug-cosine-3ep": Candidate("resnet_teacher", {**R24, **AUG}, 3, 3e-3, "cosine"),
    "resnet-cosine-2ep": Candidate("resnet_teacher", R32, 2, 3e-3, "cosine"),
    "resnet-cosine-4ep": Candidate("resnet_teacher", R32, 4, 3e-3, "cosine"),
    "resnet-aug-cosine-6ep": Candidate("resnet_teacher", {**R32, **AUG}, 6, 3e-3, "cosine"),
    "resnet-fullres-cosine-2ep": Candidate("resnet_teacher", {**R32, "stem_pool": 1}, 2, 3e-3,
                                           "cosine"),
}


def train(c: Candidate, data, epochs: int, batch_size: int, warmup: float, seed: int):
    """``(test accuracy, params, CPU seconds, wall seconds)`` of one training run."""
    (x, y), (xt, yt) = data
    keras.utils.set_random_seed(seed)
    model = BUILDERS.get(c.builder)(x.shape[1:], 10, **c.kwargs)
    steps_per_epoch = int(np.ceil(len(x) / batch_size))
    lr = c.lr
    if c.schedule == "cosine":
        lr = cosine_decay(c.lr, epochs * steps_per_epoch, int(warmup * steps_per_epoch))
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = kd.data.to_dataset(x, y, batch_size, shuffle=True, seed=seed)
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(ds, epochs=epochs, verbose=0)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    acc = float(np.mean(np.argmax(model.predict(xt, batch_size=1024, verbose=0), -1) == yt))
    return acc, model.count_params(), cpu, wall


def step_costs(names, known, data, batch_size: int, rounds: int, steps: int):
    """Median CPU seconds per training step of each candidate's model, measured in
    ``rounds`` interleaved rounds of ``steps`` steps (traced and warmed up first)."""
    (x, y), _ = data
    ds = kd.data.to_dataset(x, y, batch_size, shuffle=True, seed=0).repeat()
    models = {}
    for name in names:
        c = known[name]
        keras.utils.set_random_seed(0)
        m = BUILDERS.get(c.builder)(x.shape[1:], 10, **c.kwargs)
        m.compile(keras.optimizers.Adam(c.lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)
        models[name] = m
    times = {name: [] for name in names}
    for _ in range(rounds):
        for name, m in models.items():
            cpu = time.process_time()
            m.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
            times[name].append((time.process_time() - cpu) / steps)
    return {name: float(np.median(t)) for name, t in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    known = {**CANDIDATES, **EXTRA}
    p.add_argument("--only", nargs="+", choices=sorted(known), default=None, metavar="NAME",
                   help="candidates to run (default: the search, baseline first): "
                        + ", ".join(known))
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--cost", action="store_true",
                   help="only measure CPU seconds per step, interleaved (see above)")
    p.add_argument("--cost-rounds", type=int, default=3)
    p.add_argument("--cost-steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--warmup", type=float, default=0.2, help="warm-up of cosine, in epochs")
    p.add_argument("--n-train", type=int, default=None, help="training subset (default: 60k)")
    p.add_argument("--n-test", type=int, default=None, help="test subset (default: 10k)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 2,048 train / 1,000 test examples, 1 epoch each")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test = args.n_train or 2048, args.n_test or 1000
    names = args.only or list(CANDIDATES)

    data = kd.fashion_mnist(n_train=args.n_train, n_test=args.n_test)
    t0 = time.perf_counter()
    if args.cost:
        per_step = step_costs(names, known, data, args.batch_size, args.cost_rounds,
                              args.cost_steps)
        steps_per_epoch = int(np.ceil(len(data[0][0]) / args.batch_size))
        full = {n: per_step[n] * known[n].epochs * steps_per_epoch for n in names}
        ref = full.get("baseline")
        print(f"\nCPU seconds per step (median of {args.cost_rounds} interleaved rounds of "
              f"{args.cost_steps} steps), batch {args.batch_size}, {steps_per_epoch} steps per "
              f"epoch. Machine: {machine()}. Wall time {time.perf_counter() - t0:.0f} s.\n")
        print(table(["candidate", "CPU ms / step", "epochs", "projected CPU s", "× baseline"],
                    [(n, f"{1000 * per_step[n]:.0f}", known[n].epochs, f"{full[n]:.0f}",
                      "-" if ref is None else f"{full[n] / ref:.2f}") for n in names]))
        return 0
    results = {}
    for name in names:
        c = known[name]
        epochs = 1 if args.quick else c.epochs
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        runs = [train(c, data, epochs, args.batch_size, args.warmup, s) for s in seeds]
        results[name] = {"candidate": dataclasses.asdict(c), "epochs": epochs, "runs": runs}
        print(f"# {name}: " + ", ".join(f"acc {a:.4f} cpu {cc:.0f}s wall {w:.0f}s"
                                        for a, _, cc, w in runs), flush=True)

    ref = results.get("baseline")
    ref_acc = np.mean([r[0] for r in ref["runs"]]) if ref else None
    ref_cpu = np.mean([r[2] for r in ref["runs"]]) if ref else None
    rows = []
    for name, r in results.items():
        accs, cpus, walls = (np.array([run[i] for run in r["runs"]]) for i in (0, 2, 3))
        acc, cpu = 100 * accs.mean(), cpus.mean()
        per_seed = f" ({', '.join(f'{100 * a:.2f}' for a in accs)})" if len(accs) > 1 else ""
        rows.append((
            name, known[name].describe(), f"{r['runs'][0][1]:,}", r["epochs"],
            f"{acc:.2f}{per_seed}",
            "-" if ref is None else f"{acc - 100 * ref_acc:+.2f}",
            f"{cpu:.0f}", "-" if ref is None else f"{cpu / ref_cpu:.2f}",
            f"{walls.mean():.0f}", f"{acc / (cpu / 60):.1f}",
        ))
    n_train, n_test = len(data[0][0]), len(data[1][0])
    print(f"\nFashion-MNIST, {n_train:,} train / {n_test:,} test, Adam, batch {args.batch_size}, "
          f"cosine warm-up {args.warmup:g} epoch, {args.seeds} seed(s). Machine: {machine()}. "
          f"Total wall time {time.perf_counter() - t0:.0f} s.\n")
    print(table(["candidate", "model, schedule, peak lr", "params", "epochs", "test acc (%)",
                 "Δ vs baseline", "CPU s", "CPU × baseline", "wall s", "acc % / CPU-min"],
                rows))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
