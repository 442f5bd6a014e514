"""Shared fixtures. Two logical CPU devices are configured before TensorFlow starts, so the
distributed code paths (MirroredStrategy) are tested on a 2-core machine."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # TensorFlow was already initialized by another plugin
    pass

import kdkeras as kd  # noqa: E402


@pytest.fixture(scope="session")
def digits_data():
    """sklearn digits: ((x_train, y_train), (x_test, y_test)), images (N, 8, 8, 1)."""
    return kd.digits()


@pytest.fixture()
def seed():
    kd.keras.utils.set_random_seed(0)
    return 0


@pytest.fixture(scope="session")
def trained_teacher(digits_data):
    """A small MLP teacher trained on digits (~95% test accuracy), shared by the session."""
    (x, y), _ = digits_data
    kd.keras.utils.set_random_seed(1)
    teacher = kd.build_mlp_student((8, 8, 1), 10, hidden=(64,), name="teacher")
    teacher.compile(
        kd.keras.optimizers.Adam(3e-3),
        kd.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    teacher.fit(x, y, epochs=15, batch_size=64, verbose=0)
    return teacher


@pytest.fixture(scope="session")
def first_run(tmp_path_factory):
    """``(out folder, report, log)`` of the tiny digits pipeline (``tests.pipeline.runs.tiny``)
    run once per session; copy the folder to change it."""
    from kdkeras.pipeline import run
    from tests.pipeline.runs import Log, tiny

    out = tmp_path_factory.mktemp("run")
    log = Log()
    report = run(tiny(), out, log=log)
    return out, report, log
