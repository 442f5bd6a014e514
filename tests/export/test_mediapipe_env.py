"""The MediaPipe environment: finding it, calling its worker, and saying so when it is missing.

Runs the real worker in the MediaPipe environment (``.ci/run`` creates it); without it the
tests fail and say how to make it.
"""

import json
import os

import numpy as np
import pytest

from kdkeras.export import (
    MediaPipeError,
    MediaPipeUnavailable,
    create_mediapipe_env,
    export_android,
    mediapipe_status,
)
from kdkeras.export import mediapipe_env as E
from kdkeras.export.mediapipe_setup import main as setup_main
from kdkeras.export.mediapipe_env import run_worker


@pytest.fixture()
def no_mediapipe(monkeypatch, tmp_path):
    missing = str(tmp_path / "no" / "python")
    monkeypatch.setenv(E.ENV_VAR, missing)
    return missing


def test_the_worker_runs_mediapipe_0_10_21_in_its_own_python(mediapipe, capsys):
    import sys

    assert mediapipe["mediapipe_version"] == "0.10.21" and mediapipe["python"] != sys.executable
    assert "mediapipe" not in sys.modules  # never imported in kdkeras's environment
    found = run_worker({"command": "probe"})  # its numpy<2 beside TensorFlow 2.21's numpy 2
    assert (found["ok"], found["mediapipe"], found["numpy"][:2]) == (True, "0.10.21", "1.")
    assert np.__version__.startswith("2.")
    assert setup_main(["check"]) == 0
    assert f"MediaPipe 0.10.21 at {mediapipe['python']}" in capsys.readouterr().out


def test_a_jupyter_matplotlib_backend_does_not_reach_the_worker(mediapipe, monkeypatch):
    # A Jupyter kernel (Colab, the notebooks) sets MPLBACKEND to its inline backend, which the
    # worker's matplotlib rejects at import: the worker must not inherit it.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    assert run_worker({"command": "probe"})["ok"] is True


def test_worker_errors_and_timeouts_are_surfaced(mediapipe, tmp_path):
    with pytest.raises(MediaPipeError, match=r"\(nope\) failed with exit status 1. Its stderr:\n"
                                             r"unknown command 'nope'; known: \['classify'"):
        run_worker({"command": "nope"})
    np.savez(tmp_path / "i.npz", images=np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(MediaPipeError, match=r"(?s)\(classify\) failed with exit status 1.*"
                                             r"Traceback.*missing\.tflite"):
        run_worker({"command": "classify", "model": str(tmp_path / "missing.tflite"),
                    "images": str(tmp_path / "i.npz"), "scores": str(tmp_path / "s.npz")})
    with pytest.raises(MediaPipeError, match=r"\(probe\) ran longer than 0.05 s and was stopped"):
        run_worker({"command": "probe"}, timeout=0.05)


def test_a_missing_environment_is_reported_with_the_command_that_makes_it(no_mediapipe, model,
                                                                          tmp_path, capsys):
    status = mediapipe_status()
    assert status["available"] is False
    assert status["reason"] == (
        f"no MediaPipe environment at ${E.ENV_VAR}={no_mediapipe}; create it with "
        f"`python -m kdkeras.export.mediapipe_setup create` (or set ${E.ENV_VAR} to a Python "
        "with mediapipe==0.10.21)")
    assert setup_main(["check"]) == 1
    assert "MediaPipe is not available: no MediaPipe environment" in capsys.readouterr().out
    with pytest.raises(MediaPipeUnavailable, match=r"mediapipe_setup create"):
        run_worker({"command": "probe"})
    # the bundle is still written, RGB-adapted, and says why it has no metadata and no check
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 1)).astype(np.float32) / 255
    out = export_android(model, tmp_path / "a", ["a", "b", "c", "d"], "none", x_eval=pixels,
                         y_eval=np.arange(8) % 4, normalization={"mean": 0, "std": 255})
    mp = json.load(open(os.path.join(out, "model.json")))["mediapipe"]
    assert (mp["ready"], mp["metadata"], mp["input_adapter"]) == (False, False, "channel_mean")
    assert mp["reason"] == f"no MediaPipe metadata: {status['reason']}"
    assert mp["check"] == {"status": "skipped", "reason": mp["reason"]}
    with pytest.raises(MediaPipeUnavailable, match=r"mediapipe=True, but no MediaPipe environment"):
        export_android(model, tmp_path / "b", ["a", "b", "c", "d"], "none", mediapipe=True)
    assert not (tmp_path / "b").exists()


def test_create_keeps_a_ready_environment(mediapipe, tmp_path):
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    os.symlink(mediapipe["python"], env / "bin" / "python")
    (env / E.READY_FILE).write_text("{}")
    lines = []
    assert create_mediapipe_env(str(env), log=lines.append) == str(env / "bin" / "python")
    assert lines == [f"MediaPipe environment already at {env} (use --force to recreate it)"]
