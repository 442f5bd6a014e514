"""Training speed against the peers: ``kdkeras.Distiller`` vs Keras 3's ``keras.distillation``
vs a minimal keras.io-style ``train_step``, and offline distillation vs a plain ``fit``.

Each pair trains the same student (same initial weights) with the same teacher, data, batches
in the same order (``same_batches``: kdkeras's preflight draws one batch of a reshuffling
dataset, which moves it to its next order, so each peer's dataset is drawn alike; the CNN
students of kdkeras and the minimal ``train_step`` under SGD 0.05 then differ by 1.5e-8 after
one step and 9e-8 after 20, and without the draw by 9e-3 after one step), the same
recipe (alpha / ``student_loss_weight`` 0.1, T 4, Adam 1e-3, batch 64) and epochs:

* **vs Keras 3**: one Keras 3 CNN teacher serves ``keras.distillation.Distiller`` +
  ``LogitsDistillation`` (with a Keras 3 twin of the student) and ``kdkeras.Distiller`` (with
  the tf-keras student).
* **vs the minimal train_step**: the keras.io example's ``train_step`` (teacher forward,
  ``alpha·CE + (1-alpha)·KL·T²``, ``apply_gradients``, compiled metrics) and kdkeras, both
  with the tf-keras twin of that teacher (the same weights).
* **offline**: kdkeras from the teacher's cached logits vs a plain ``fit`` of the student on the
  labels (the cache is made once beforehand and its time printed apart).

"whole fit" is what a user waits for: build, compile and ``fit`` for ``--epochs`` epochs, summed
over the seeds. "steady" is the median epoch time of already traced models: after each seed's
whole fits, every model runs ``--steady-epochs`` more epochs one at a time, round robin over all
configurations, so a slow moment of the machine falls on all of them alike; the median is over
all those epochs of all seeds. "best epoch" is the ratio of the fastest of those epochs (the
least disturbed by the rest of the machine). "by CPU time" is the median ratio from the CPU
seconds this process spent in those epochs (all threads), which a throttled or shared virtual
machine disturbs less than wall time. Two runs 15 minutes apart on a 2-core virtual machine
(the second with one change to kdkeras worth a few percent at most) gave 1.39x and 1.00x in the
same whole-fit row (MLP vs ``keras.distillation``): read a gap of a few percent as noise. Speed
ratios are kdkeras's samples/s over the peer's (above 1:
kdkeras is faster).

Where the time went (TF 2.21, tf-keras 2.21, 2 cores), before the changes this script measures:

* The divergence guard read its bad-step variable after every step (a host sync each step),
  and, as a callback without ``_supports_tf_logs``, made tf-keras convert every step's logs to
  numpy. It now reads at most once a second and at each epoch end (a diverged run still never
  applies an update after the bad step: ``train_step`` gates ``apply_gradients`` in-graph).
* The masked, weighted mean of each loss built ones-like weights and two sums for the common
  unweighted, unmasked batch (and their gradients): now three ops there.
* The loss was divided by the number of replicas (1) in every step.
* The train graph had 451 nodes against a plain ``fit``'s 284 (MLP student, offline); see the
  table for what is left. The teacher adapter itself adds no op beyond the teacher's forward
  pass (the float32 cast of float32 logits is the identity and ``stop_gradient`` is free).
* With ``jit_compile=True`` the update was gated by a ``tf.cond`` around ``apply_gradients``,
  which XLA runs 2-3x slower than the same update ungated: an offline epoch of the CNN student
  (5,000 images, batch 64) took 3.15 s of CPU against 1.22 s for a plain jit-compiled ``fit``
  (min of 3-4 interleaved epochs). Under XLA the gate is now a select (the update is applied,
  then weights, optimizer slots and step counter are set back when the loss was not finite):
  1.24 s, 0.98x the plain ``fit``; without XLA the cond stays (1.43 s vs 1.38 s plain).

Where the time went next (TensorFlow's profiler, ``tf.profiler.experimental.start``, 100
steps of the offline MLP student's train function, its XPlane events summed per op):

* Per step the two compute threads spent 1,913 us (kdkeras) against 1,795 us (plain ``fit``),
  most of it in Adam's elementwise update of the 784x128 kernel (``Sub``, ``AssignAdd``,
  ``Mul``, ``Sqrt``, ``Square``, ``RealDiv``: about 1 ms) and the two ``MatMul`` (350 us);
  the distillation loss itself is small (both ``LogSoftmax`` 11 us).
* The input pipeline's thread spent 499 us per batch of ``(x, y, teacher_logits)`` against
  372 us for ``(x, y)`` in the profile, under contention with the step. Consumed alone
  in-graph (``Dataset.reduce``, best of 7) the pipeline costs 22.5 ms of CPU per epoch with
  the logits and 20.3 ms without, about 2% of an MLP epoch: the profile overstated it.
  Gathering ``y`` and the logits per batch by index instead (same batches) was slower (0.28 s
  vs 0.18 s per epoch), and was dropped.
* ``fit`` traced the train step twice: ``tf.function`` traces again when its first trace
  creates variables, and tf-keras creates the optimizer's slots and the compiled metrics there
  (a plain ``fit`` too). ``Distiller.fit`` now creates both beforehand from the preflight's
  batch (``kdkeras.distill.step_state``) and traces once: build + compile + a one-epoch offline
  MLP fit went from 0.577 s to 0.469 s (plain ``fit``: 0.404 s; min of 4).
* Autodiff of the KL's two log-softmaxes and masked product built about 25 ops into every
  step; the gradient is now written out (``T·(softmax(s/T) − softmax(t/T))``, tested against
  numpy and finite differences): the offline MLP train graph went from 236 to 210 nodes.
* The guard now checks the gradients as well as the loss (one ``Sum`` per gradient): on this
  CPU an ``inf`` input through oneDNN's fused ``MatMul + ReLU`` gives a ReLU output of 0, a
  finite loss and a NaN kernel gradient, which was applied (``test_nan_guard_under_mirrored_strategy``
  failed here). It costs: the CNN student's offline step (100 steps, best of 9, wall) ran at
  1.01x a plain ``fit`` checking the loss alone and 0.96x checking the gradients too (the
  ``Sum`` per gradient, and an update that now waits for the last gradient). The bookkeeping
  of a bad step moved into the branch that applies nothing.
* Under ``jit_compile=True`` the select that restores a bad step's variables costs about 10%
  of an offline MLP step (1.29 ms vs 1.17 ms without the guard; a plain jit ``fit`` 1.04 ms):
  it keeps a copy of every weight and optimizer slot. A ``tf.cond`` was slower still, and
  tf-keras's optimizers offer no way to gate their in-place updates.

Where the time went in the round before (the train function called directly, 300 steps, best
of 12-15, configurations interleaved; ablations patched in at trace time):

* The offline MLP step ran at 0.91-0.96x a plain ``fit``'s in four runs (1.209 vs 1.161 ms in
  the quietest). Removing the guard, or two of the three loss trackers, moved it by less than
  the run-to-run noise; the rest is about 60 more operations per step than a plain ``fit``
  (367 vs 284 nodes with the branches, constants and identities aside), about 1 us each.
* A batch callback costs every step: tf-keras runs its callback machinery around each step
  when any callback has a batch hook, and the guard had one. It is now polled by the train
  function (an offline MLP epoch, best of 24 interleaved: 0.1117 s with the hook, 0.1065 s
  without; a plain ``fit`` 0.1027 s).
* Under XLA the guard costs 14-21% of an offline MLP step (three runs: 1.285 vs 1.122 ms,
  1.133 vs 0.995, 1.341 vs 1.106). XLA's reduction to a float scalar is slow on CPU (88 us for
  a 784x128 ``reduce_sum``, 21 us for ``reduce_all(is_finite)``), but checking each gradient
  with ``is_finite`` did not make the step faster (1.158 vs 1.129 ms with sums), nor did an
  XLA optimization barrier between the update and the select (1.189 ms both): the update
  waits for the check either way.
* The preflight and the pre-built state cost 36-48 ms and 9-17 ms per ``fit`` call (MLP and
  CNN, teacher online), about 1% of a 5-epoch fit here; kdkeras's first ``fit`` of 3 batches
  still finished 50-110 ms before the minimal ``train_step``'s (min and median of 4), which
  traces twice.

Where the time went last (same method; a second look at whole epochs with ``cProfile``):

* The three ``keras.metrics.Mean`` loss trackers were not free after all: keeping one of the
  three moved the offline MLP step from 0.887x to 0.952x a plain ``fit``'s (wall, best of 12)
  on a day when per-op costs were higher. They are now one metric with two vector variables
  (``kdkeras.distill.loss_means``: one stack, two variable updates, one division per step;
  367 -> 334 graph nodes). The step then ran at 0.925-0.960x in two runs. With
  ``steps_per_execution=16`` (the call overhead amortized, so only graph work counts) it was
  0.960x; without the guard 0.969x, without the guard and two loss parts 0.982x.
* At every epoch's end tf-keras reads each metric's result eagerly, through autograph, one
  by one: the loss parts cost 7.3 ms of a 115 ms offline MLP epoch (``cProfile``, 10 epochs),
  a plain ``fit``'s two metrics 1.2 ms. ``Distiller.get_metrics_result`` now reads all the
  parts in one go, not converted: 1.2 ms.
* Not the gap: the cached logits in the input pipeline (first batch of a new iterator 4.6 vs
  3.8 ms, a whole epoch iterated 16.3 vs 15.4 ms), Python's garbage collector (0.03 ms per
  epoch, measured with ``gc.callbacks`` in this script), the first ``fit`` (build + compile +
  3 batches: 0.312 vs 0.318 s for a plain ``fit``, min of 5), the polling wrapper.
* A KL through TensorFlow's fused ``softmax_cross_entropy_with_logits`` (teacher entropy added
  back) ran at 0.932x against the written-out gradient's 0.925x: noise, not adopted.
* Under XLA the guard cost about 13% of an offline MLP step (0.821x a plain jit ``fit``
  against 0.946x without it): checking only the loss gave 0.845x, so the gradient check is
  ~3% and the select that restored the step's variables from copies ~10%. The optimizer's
  slots were the expensive part: restoring only the weights and step counter, with the
  gradients of a bad step zeroed for the optimizer, ran at 0.941-0.959x, but then Adam's
  moments take every skipped step as a zero gradient, which breaks "no update is applied"
  for the optimizer's state. A ``tf.cond`` under XLA ran at 0.825x for this MLP (it was 2.5x
  slower for the CNN); jit-compiling only the forward pass, gradients and check, and gating a
  plain-graph update with a ``tf.cond``, at 0.72x (the optimizer's update is what XLA speeds
  up most). What works: gating each write of the optimizer where it happens
  (``v.assign(where(finite, new, v))`` for its ``assign``/``assign_add``/``assign_sub``, the
  only writes tf-keras's own optimizers make with dense gradients), which XLA fuses into the
  update with no copy: 0.874x in a prototype, 1.000x with the final code (1.016x with no guard)
  and the same guarantee (every weight, slot and the step counter unchanged from the bad step
  on; tested for seven optimizers). Other optimizers and embedding gradients keep the copies.
  In the benchmark the MLP's offline jit row went from 0.85 / 0.79x to 0.90x steady (0.99x
  best epoch), the CNN's stayed at 0.98-1.00x.
* Whole ``fit`` under XLA, offline, stays below a plain ``fit`` (0.76-0.84x in two runs): XLA
  compiles kdkeras's larger step for longer. Set-up and compilation of the CNN student (first
  one-epoch ``fit`` minus a second one, three interleaved pairs) took 6.4, 4.8 and 4.8 s against
  1.7, 2.3 and 4.9 s for a plain ``fit``: this machine's compile times vary as much as the gap.

Where the time went in this round (first ``fit`` of fresh models under ``jit_compile=True``,
offline MLP; autograph's conversions counted by wrapping its ``_convert_actual``):

* The larger compile was mostly autograph, not XLA. tf-keras calls a ``train_step``
  unconverted without XLA, but under ``jit_compile=True`` it wraps the step in a
  ``tf.function`` of its own, and autograph then converted every kdkeras function the step
  calls (60, against none for a plain ``fit``, whose code is on autograph's do-not-convert
  list) on the first ``fit`` of each process: 4.10-4.53 s for that first ``fit`` against
  1.65-2.92 s once the step is marked as graph code (``kdkeras.distill.graph_code``; three
  fresh processes converted, five marked). In the benchmark the offline whole-fit rows under XLA went from
  0.79x (MLP) and 0.77x (CNN) in run J to 1.09x and 0.94x in run K.
* The two XLA compilations themselves (the full batch, then the last, smaller one) took
  1.67-1.84 s for kdkeras's step against 1.29-1.53 s for a plain ``fit``'s (three pairs).
* The rest of a first jit ``fit`` was not in the step: 0.4-0.9 s after ``on_train_end``,
  in four of five kdkeras fits and two of five plain ones, ``fit`` was still returning --
  deleting the epoch's ``tf.data`` iterator waited for its autotuning thread
  (``RootDataset::Iterator::~Iterator``, seen with ``py-spy dump --native``). With
  ``tf.data.Options().autotune.enabled = False`` on the dataset that wait was gone in ten of
  ten fits (kdkeras's first jit ``fit``, median of 5: 2.78 -> 1.82 s; a plain ``fit``'s 1.67 ->
  1.43 s), but steady epochs without autotune were 5-7% slower for a plain ``fit`` and 2%
  faster for kdkeras in two runs: not changed in ``kd.data.to_dataset``.
* Offline without XLA, the logits are a third component of every example in the input
  pipeline (sliced, shuffled and batched one example at a time): 4-7 ms more CPU per epoch of
  5,000 examples, consumed in-graph in three runs -- about the whole difference between an
  offline MLP epoch with ``steps_per_execution=16`` and a plain one's (in the train function's
  calls 76.5 vs 72.5 ms wall, 103.0 vs 97.4 ms CPU; outside them 3.4 vs 3.3 ms, median of 15).
  Gathering the rows of each batch by index from a shuffled ``range`` (with or without a
  batched ``stateless_shuffle`` permutation) or TensorFlow's global shuffle was not cheaper.

    python benchmarks/kd_speed_vs_peers.py                       # both students, 3 seeds
    python benchmarks/kd_speed_vs_peers.py --students mlp --seeds 1 --epochs 2   # a quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kdkeras as kd  # noqa: E402
from _common import machine, table  # noqa: E402
from kdkeras.distill.batches import peek  # noqa: E402

keras = kd.keras
CACHE = Path(os.environ.get("KDKERAS_BENCH_DIR", "/tmp/kdkeras-bench")) / "speed"


def keras3_twin(model):
    """The Keras 3 copy of a linear tf-keras model (same layers, configs and weights)."""
    import keras as keras3

    layers = [keras3.Input(model.input_shape[1:])]
    for layer in model.layers[1:]:
        config = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in layer.get_config().items()}
        if isinstance(config.get("axis"), list) and len(config["axis"]) == 1:
            config["axis"] = config["axis"][0]  # BatchNormalization: tf-keras keeps a list
        layers.append(keras3.layers.deserialize({"class_name": type(layer).__name__, "config": config,
                                                 "module": "keras.layers"}))
    twin = keras3.Sequential(layers, name=model.name + "_k3")
    twin.set_weights(model.get_weights())
    return twin


class MinimalDistiller(keras.Model):
    """The keras.io knowledge-distillation example's ``train_step``, in tf-keras."""

    def __init__(self, student, teacher, alpha, temperature):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.alpha, self.temperature = alpha, temperature
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.distillation_loss_fn = keras.losses.KLDivergence()

    @property
    def metrics(self):
        compiled = self.compiled_metrics.metrics if getattr(self, "compiled_metrics", None) else []
        return [self.loss_tracker] + compiled

    def train_step(self, data):
        x, y = data
        t = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            s = self.student(x, training=True)
            T = self.temperature
            loss = (self.alpha * self.student_loss_fn(y, s) + (1 - self.alpha)
                    * self.distillation_loss_fn(tf.nn.softmax(t / T), tf.nn.softmax(s / T)) * T**2)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(loss)
        self.compiled_metrics.update_state(y, s)
        return {m.name: m.result() for m in self.metrics}

    def call(self, x):
        return self.student(x)


def teachers(x, y, epochs: int):
    """A trained tf-keras CNN teacher (cached on disk) and its Keras 3 twin."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"cnn_teacher_{len(x)}_{epochs}ep.h5"
    keras.utils.set_random_seed(0)
    teacher = kd.build_cnn_teacher(x.shape[1:], 10)
    if path.exists():
        teacher.load_weights(path)
    else:
        teacher.compile(keras.optimizers.Adam(1e-3),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        teacher.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
        teacher.save_weights(path)
    return teacher, keras3_twin(teacher)


def same_batches(kind: str, ds) -> float:
    """Draws one batch of a peer's dataset with the preflight's own ``peek`` (its ``take(1)`` is
    one iteration: a dataset that reshuffles each iteration then starts at its next order), so
    both sides of a pair train on the same batches in the same order. Returns the seconds it
    took, which are not counted against the peer."""
    if kind.startswith("kd"):
        return 0.0
    t0 = time.perf_counter()
    peek(ds, None, None)
    return time.perf_counter() - t0


def epoch_timer(keras_module, seconds: list, cpu_seconds: list):
    """A callback of ``keras_module`` (tf-keras or Keras 3) appending each epoch's wall time to
    ``seconds`` and the CPU time of this process (all its threads) to ``cpu_seconds``."""

    class EpochTimer(keras_module.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.t0)
            cpu_seconds.append(time.process_time() - self.c0)

    return EpochTimer()


def accuracy(model, xt, yt) -> float:
    return float(np.mean(np.argmax(model.predict(xt, batch_size=1024, verbose=0), -1) == yt))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5_000, help="transfer-set images (held out from the teacher's)")
    p.add_argument("--teacher-n", type=int, default=20_000)
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steady-epochs", type=int, default=6,
                   help="epochs of each model after the whole fits, round robin over the models; "
                        "the median epoch time over all seeds is 'steady'")
    p.add_argument("--students", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    p.add_argument("--variants", nargs="+", default=["default", "jit", "spe16"],
                   choices=["default", "jit", "spe16"],
                   help="compile settings, each given to kdkeras and the minimal reference alike "
                        "(jit: jit_compile=True; spe16: steps_per_execution=16)")
    args = p.parse_args(argv)

    import keras as keras3

    (x_all, y_all), (xt, yt) = kd.fashion_mnist()
    xa, ya = x_all[:args.teacher_n], y_all[:args.teacher_n]
    x, y = x_all[args.teacher_n:args.teacher_n + args.n], y_all[args.teacher_n:args.teacher_n + args.n]
    teacher, teacher3 = teachers(xa, ya, args.teacher_epochs)
    t0 = time.perf_counter()
    logits = teacher.predict(x, batch_size=1024, verbose=0)
    cache_s = time.perf_counter() - t0
    alpha, T = 0.1, 4.0
    builders = {"mlp": lambda: kd.build_mlp_student(x.shape[1:], 10, hidden=(128,)),
                "cnn": lambda: kd.build_cnn_student(x.shape[1:], 10)}

    def data(seed, with_logits=False):
        return kd.data.to_dataset(x, y, 64, shuffle=True, seed=seed,
                                  teacher_logits=logits if with_logits else None)

    def make(kind, student_name, seed, compile_kw):
        keras.utils.set_random_seed(seed)
        student = builders[student_name]()
        opt = keras.optimizers.Adam(1e-3)
        if kind == "peer":
            s3 = keras3_twin(student)
            m = keras3.distillation.Distiller(
                teacher=teacher3, student=s3, student_loss_weight=alpha,
                distillation_losses=keras3.distillation.LogitsDistillation(temperature=T))
            m.compile(keras3.optimizers.Adam(1e-3), metrics=["accuracy"],
                      loss=keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
            return m, s3, data(seed)
        if kind == "minimal":
            m = MinimalDistiller(student, teacher, alpha, T)
            m.compile(optimizer=opt, metrics=["accuracy"], **compile_kw)
            return m, student, data(seed)
        if kind == "plain":
            student.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            ["accuracy"], **compile_kw)
            return student, student, data(seed)
        source = {"kd_k3": teacher3, "kd_tfk": teacher, "kd_offline": None}[kind]
        m = kd.Distiller(student, source)
        m.compile(optimizer=opt, metrics=["accuracy"], alpha=alpha, temperature=T, **compile_kw)
        return m, student, data(seed, with_logits=source is None)

    variants = {"default": {}, "jit": {"jit_compile": True}, "spe16": {"steps_per_execution": 16}}
    pairs = []  # (student, variant, peer kind, kdkeras kind, label)
    for s in args.students:
        for v in args.variants:
            if v == "default":
                pairs.append((s, v, "peer", "kd_k3", "online, Keras 3 teacher: `keras.distillation`"))
            pairs.append((s, v, "minimal", "kd_tfk", "online, tf-keras teacher: minimal `train_step`"))
            pairs.append((s, v, "plain", "kd_offline", "offline (cached logits): plain `fit`"))
    runs = sorted({(s, v, k) for s, v, a, b, _ in pairs for k in (a, b)})
    wall = {r: 0.0 for r in runs}
    steady = {r: [] for r in runs}
    steady_cpu = {r: [] for r in runs}
    acc = {r: [] for r in runs}
    for seed in range(args.seeds):
        trained = {}
        for r in runs:
            s, v, kind = r
            t0 = time.perf_counter()
            m, student, ds = make(kind, s, 1000 + seed, variants[v] if kind != "peer" else {})
            drawn = same_batches(kind, ds)
            m.fit(ds, epochs=args.epochs, verbose=0)
            wall[r] += time.perf_counter() - t0 - drawn
            acc[r].append(accuracy(student, xt, yt))
            trained[r] = m, ds
            print(f"seed {seed} {s:4s} {v:8s} {kind:10s} acc {acc[r][-1]:.4f} "
                  f"whole fit {wall[r]:.1f}s (all seeds so far)", flush=True)
        # Steady state, round robin: one epoch of every model in turn, so a slow moment of the
        # machine falls on all of them alike rather than on one configuration's epochs.
        for _ in range(args.steady_epochs):
            for r in runs:
                m, ds = trained[r]
                same_batches(r[2], ds)  # outside the epoch timer
                m.fit(ds, epochs=1, verbose=0,
                      callbacks=[epoch_timer(keras3 if r[2] == "peer" else keras, steady[r],
                                             steady_cpu[r])])
        for r in runs:
            print(f"seed {seed} {r[0]:4s} {r[1]:8s} {r[2]:10s} steady {np.median(steady[r]):.3f}s "
                  f"({np.median(steady_cpu[r]):.3f}s CPU), median of {len(steady[r])} epochs",
                  flush=True)

    rows = []
    for s, v, a, b, label in pairs:
        pa, pb = (s, v, a), (s, v, b)
        rate = lambda r: args.n * args.epochs * args.seeds / wall[r]
        srate = lambda r: args.n / float(np.median(steady[r]))
        crate = lambda r: args.n / float(np.median(steady_cpu[r]))
        brate = lambda r: args.n / float(np.min(steady[r]))
        rows.append((s, v, label,
                     f"{100 * np.mean(acc[pa]):.2f} / {100 * np.mean(acc[pb]):.2f}",
                     f"{rate(pa):,.0f} / {rate(pb):,.0f}", f"**{rate(pb) / rate(pa):.2f}×**",
                     f"{srate(pa):,.0f} / {srate(pb):,.0f}", f"**{srate(pb) / srate(pa):.2f}×**",
                     f"**{brate(pb) / brate(pa):.2f}×**", f"**{crate(pb) / crate(pa):.2f}×**"))
    print(f"\n{args.n:,} Fashion-MNIST transfer images (teacher: CNN of {teacher.count_params():,} "
          f"params, {args.teacher_epochs} epochs on {args.teacher_n:,} others, test accuracy "
          f"{100 * accuracy(teacher, xt, yt):.2f}%), alpha {alpha}, T {T:g}, Adam 1e-3, batch 64, "
          f"{args.epochs} epochs, {args.seeds} seeds; test accuracy on 10,000 images. Students: "
          + ", ".join(f"{s} {builders[s]().count_params():,} params" for s in args.students)
          + f". Logit cache for the offline rows: {cache_s:.1f} s once. Machine: {machine()}.\n")
    print(table(["student", "compile", "peer", "accuracy % (peer / kdkeras)",
                 "whole fit samples/s (peer / kdkeras)", "kdkeras speed, whole fit",
                 "steady samples/s (peer / kdkeras)", "kdkeras speed, steady",
                 "kdkeras speed, best epoch", "kdkeras speed, steady, by CPU time"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
