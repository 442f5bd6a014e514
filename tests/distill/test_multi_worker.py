"""``Distiller`` under ``tf.distribute.MultiWorkerMirroredStrategy``: two local worker
processes (``TF_CONFIG`` on free 127.0.0.1 ports) train the same global batches as one worker,
and give the same per-step losses and final weights, within float tolerance.

The job itself is :mod:`tests.distill.multi_worker_job`. One pair of workers trains the online
and the offline (cached logits) scenarios; a second pair (slow) a student with TF-MOT pruning
wrappers and one with a feature hint. Worker start-up (importing TensorFlow) is most of the time.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from tests.distill import multi_worker_job as job

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240  # seconds for both workers together; a hung worker is killed, never waited on
N = 128  # training examples: 4 global batches of job.GLOBAL_BATCH
REQUIRED = ("online", "offline")  # teacher online; logits cached by kd.cache_teacher_logits
EXTRA = ("pruned", "hints")  # TF-MOT pruning wrappers; a feature hint with a projection


def free_ports(n: int) -> list:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_inputs(workdir: Path, x, y, teacher) -> None:
    """The data, the teacher's weights, the student's and the hint projection's initial weights."""
    kd.keras.utils.set_random_seed(7)
    student = job.student_model()
    arrays = {"x": x, "y": y}
    projection = [np.random.default_rng(0).normal(0, 0.2, (16, 64)).astype("float32"),
                  np.zeros(64, "float32")]
    for prefix, values in (("teacher", teacher.get_weights()),
                           ("student", student.get_weights()), ("projection", projection)):
        arrays.update({f"{prefix}{i}": w for i, w in enumerate(values)})
    np.savez(workdir / "inputs.npz", **arrays)


def start_workers(workdir: Path, scenarios, n: int = 2) -> list:
    ports = free_ports(n)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(n):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster,
                                                     "task": {"type": "worker", "index": index}}),
                   TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
        with open(workdir / f"worker{index}.log", "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tests.distill.multi_worker_job", str(workdir),
                 ",".join(scenarios)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait_all(procs: list, workdir: Path) -> None:
    """Waits for every worker; when one fails (its peer would wait for it until the collective
    times out) or the time is up, kills them all and fails with their logs."""
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            codes = [p.poll() for p in procs]
            if all(c == 0 for c in codes) or any(c not in (None, 0) for c in codes):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = [p.returncode for p in procs]
    if any(codes):
        logs = "\n".join(f"--- worker{i} (exit {c}):\n"
                         + (workdir / f"worker{i}.log").read_text(errors="replace")[-3000:]
                         for i, c in enumerate(codes))
        pytest.fail(f"the multi-worker job failed, or ran over {TIMEOUT} s:\n{logs}")


def launch(tmp_path_factory, digits_data, teacher, scenarios) -> tuple:
    """``(one worker's results, [each worker's results], the inputs)`` of ``scenarios``; the
    two workers train while the single-worker reference trains here."""
    (x, y), _ = digits_data
    workdir = tmp_path_factory.mktemp("multi_worker")
    write_inputs(workdir, x[:N], y[:N].astype("int64"), teacher)
    procs = start_workers(workdir, scenarios)
    try:
        single = job.train_all(tf.distribute.get_strategy(), workdir, scenarios)
    finally:
        wait_all(procs, workdir)
    workers = []
    for i in range(len(procs)):
        with np.load(workdir / f"worker{i}.npz") as f:
            workers.append({key: f[key] for key in f.files})
    with np.load(workdir / "inputs.npz") as f:
        inputs = {key: f[key] for key in f.files}
    return single, workers, inputs


def weights(results: dict, scenario: str) -> list:
    keys = sorted((k for k in results if k.startswith(f"{scenario}/w")),
                  key=lambda k: int(k.rsplit("/w", 1)[1]))
    return [results[k] for k in keys]


def check_same_training(runs, scenario: str) -> None:
    """Both workers logged the one worker's per-step losses and hold its final weights."""
    single, workers, inputs = runs
    steps = job.EPOCHS * N // job.GLOBAL_BATCH
    assert int(single[f"{scenario}/replicas"]) == 1
    for result in workers:
        assert int(result[f"{scenario}/replicas"]) == 2
        assert result[f"{scenario}/loss"].shape == (steps,)
        np.testing.assert_allclose(result[f"{scenario}/loss"], single[f"{scenario}/loss"],
                                   rtol=1e-5)
        ours, ref = weights(result, scenario), weights(single, scenario)
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the runs trained: the loss fell, and the student moved away from its initial weights
    assert single[f"{scenario}/loss"][-1] < single[f"{scenario}/loss"][0]
    kernel = weights(single, scenario)[0]
    assert kernel.shape == inputs["student0"].shape == (64, 16)
    assert np.abs(kernel - inputs["student0"]).max() > 1e-3


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits_data, trained_teacher):
    return launch(tmp_path_factory, digits_data, trained_teacher, REQUIRED)


@pytest.fixture(scope="module")
def compressed_runs(tmp_path_factory, digits_data, trained_teacher):
    return launch(tmp_path_factory, digits_data, trained_teacher, EXTRA)


@pytest.mark.parametrize("scenario", REQUIRED)
def test_two_workers_match_one_worker(runs, scenario):
    check_same_training(runs, scenario)


@pytest.mark.slow  # a second pair of workers (~30 s more)
@pytest.mark.parametrize("scenario", EXTRA)
def test_two_workers_match_one_worker_pruned_and_hints(compressed_runs, scenario):
    check_same_training(compressed_runs, scenario)
    if scenario == "pruned":  # the pruning schedule reached its target on every worker
        for result in compressed_runs[1]:
            assert np.mean(weights(result, scenario)[0] == 0) == pytest.approx(0.5, abs=0.01)
