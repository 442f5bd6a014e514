"""The training job of the multi-worker test (:mod:`tests.distill.test_multi_worker`).

The same function trains every scenario under a strategy: the test runs it in-process on one
worker (the default strategy) and in two worker processes under
``tf.distribute.MultiWorkerMirroredStrategy``, each started as::

    TF_CONFIG='{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}' \\
        python -m tests.distill.multi_worker_job WORKDIR online,offline

``WORKDIR/inputs.npz`` holds the data, the teacher's weights and the students' initial
weights (written by the test); each worker writes ``WORKDIR/worker<i>.npz``: per scenario the
loss logged after every step and the final weights.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

#: online teacher; offline from kd.cache_teacher_logits; a pruned student; a feature hint.
SCENARIOS = ("online", "offline", "pruned", "hints")
GLOBAL_BATCH = 32
EPOCHS = 2
LEARNING_RATE = 0.1


def teacher_model(weights=None):
    import kdkeras as kd

    model = kd.build_mlp_student((8, 8, 1), 10, hidden=(64,), name="teacher")
    if weights is not None:
        model.set_weights(weights)
    return model


def student_model(weights=None):
    import kdkeras as kd

    model = kd.build_mlp_student((8, 8, 1), 10, hidden=(16,), name="student")
    if weights is not None:
        model.set_weights(weights)
    return model


def weights_of(inputs, prefix: str) -> list:
    """The arrays ``prefix0, prefix1, ...`` of ``inputs``, in order."""
    n = sum(1 for key in inputs if key.startswith(prefix) and key[len(prefix):].isdigit())
    return [inputs[f"{prefix}{i}"] for i in range(n)]


def train(scenario: str, strategy, inputs) -> Dict[str, np.ndarray]:
    """Trains one scenario under ``strategy``; ``{"loss": per-step logged loss, "w<i>": ...}``.

    Every model and the optimizer are created in ``strategy.scope()``; the data is one
    dataset of global batches of :data:`GLOBAL_BATCH` examples, in order, which ``fit``
    splits across the workers.
    """
    import tensorflow as tf

    import kdkeras as kd

    x, y = inputs["x"], inputs["y"]
    teacher = teacher_model(weights_of(inputs, "teacher"))
    losses = []

    class StepLoss(kd.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float(logs["loss"]))

    with strategy.scope():
        student = student_model(weights_of(inputs, "student"))
        hints = None
        if scenario == "pruned":
            student = kd.prune(student, target_sparsity=0.5, end_step=4)
        if scenario == "hints":
            hints = [kd.losses.HintLoss("dense0", "dense0", metric="mse", weight=0.5,
                                        projection=True)]
        d = kd.Distiller(student=student, teacher=None if scenario == "offline" else teacher,
                         hints=hints)
        if hints:
            for v, w in zip(hints[0].weights, weights_of(inputs, "projection")):
                v.assign(w)
        d.compile(optimizer=kd.keras.optimizers.SGD(LEARNING_RATE), alpha=0.3, temperature=2.0)
    if scenario == "offline":
        ds = kd.cache_teacher_logits(teacher, (x, y), batch_size=GLOBAL_BATCH, shuffle=False)
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    d.fit(ds, epochs=EPOCHS, verbose=0, callbacks=[StepLoss()])
    out = {"loss": np.asarray(losses), "replicas": np.asarray(strategy.num_replicas_in_sync)}
    extra = [v.numpy() for h in (hints or []) for v in h.weights]
    for i, w in enumerate(student.get_weights() + extra):
        out[f"w{i}"] = np.asarray(w)
    return out


def train_all(strategy, workdir: Path, scenarios: Sequence[str]) -> Dict[str, np.ndarray]:
    """The results of ``scenarios``, keys prefixed ``<scenario>/``."""
    with np.load(workdir / "inputs.npz") as f:
        inputs = {key: f[key] for key in f.files}
    results = {}
    for scenario in scenarios:
        start = time.time()
        for key, value in train(scenario, strategy, inputs).items():
            results[f"{scenario}/{key}"] = value
        print(f"{scenario}: {time.time() - start:.1f} s", flush=True)
    return results


def main(workdir: str, scenarios: str) -> None:
    import tensorflow as tf

    # Created first, before any other TensorFlow call: it configures the collective ops and
    # starts this worker's server (the TF docs' rule for MultiWorkerMirroredStrategy).
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    results = train_all(strategy, Path(workdir), scenarios.split(","))
    np.savez(Path(workdir) / f"worker{index}.npz", **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
