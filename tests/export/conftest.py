"""Tiny models and data shared by the export tests; conversions are cached per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from kdkeras.export import export_tflite, mediapipe_status  # noqa: E402
from tests.export.export_models import INPUT_SHAPE, NUM_CLASSES, tiny_cnn  # noqa: E402


@pytest.fixture(scope="session")
def model():
    return tiny_cnn()


@pytest.fixture(scope="session")
def data():
    rng = np.random.default_rng(0)
    x = rng.random((48,) + INPUT_SHAPE, dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, size=48)
    return x, y


@pytest.fixture(scope="session")
def converted(model, data, tmp_path_factory):
    """converted(mode) -> path of `model` exported in `mode` (calibrated on `data`), cached."""
    root = tmp_path_factory.mktemp("converted")
    cache = {}

    def get(mode: str) -> str:
        if mode not in cache:
            cache[mode] = export_tflite(
                model, str(root / f"{mode}.tflite"), quantization=mode, representative_data=data[0]
            )
        return cache[mode]

    return get


@pytest.fixture(scope="session")
def mediapipe():
    """The MediaPipe environment's status; the tests that run MediaPipe fail without it (with
    the command that creates it), never skip."""
    status = mediapipe_status()
    if not status["available"]:
        pytest.fail(f"These tests run MediaPipe itself and need its environment: "
                    f"{status['reason']}.", pytrace=False)
    return status
