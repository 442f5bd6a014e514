"""`kdkeras run` checks its Android bundle with MediaPipe Tasks: in the report, in the exit code.

Uses the session's tiny digits run (``first_run``) and the MediaPipe environment (``.ci/run``
creates it; without it these tests fail and say how to make it).
"""

import json
import shutil

import numpy as np
import pytest

from kdkeras.export import predict_tflite
from kdkeras.export import android as A
from kdkeras.export import mediapipe_env as E
from kdkeras.export.mediapipe_bundle import check_mediapipe
from kdkeras.pipeline import VerificationError, run
from kdkeras.pipeline import report as R
from kdkeras.pipeline import stages as S
from tests.pipeline.runs import Log, tiny


def _copy(first_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(first_run[0], out)
    return out


def test_the_run_reports_mediapipes_agreement(mediapipe, first_run):
    out, report, log = first_run
    check = report["verify"]["mediapipe"]
    n_test = report["dataset_info"]["n_test"]
    assert (check["status"], check["task"], check["mediapipe_version"], check["n"]) == \
        ("passed", "ImageClassifier", "0.10.21", n_test)
    assert check["agreement"] >= 0.995 and check["min_agreement"] == 0.995
    spec = json.loads((out / "android" / "model.json").read_text())
    assert spec["mediapipe"]["check"] == check and spec["input"]["shape"] == [-1, 8, 8, 3]
    assert (f"MediaPipe check of android/model.tflite: MediaPipe 0.10.21 Tasks' ImageClassifier "
            f"gives the same top-1 as the LiteRT interpreter on {100 * check['agreement']:.2f}% "
            f"of {n_test:,} test examples ({check['disagreements']} differ): passed.") \
        in (out / "report.md").read_text()
    assert any(f"android: MediaPipe 0.10.21 ImageClassifier gives the file's top-1 on "
               f"{100 * check['agreement']:.2f}% of {n_test:,} test examples (passed" in line
               for line in log)
    # the bundle's file is the verified one behind the RGB adapter: the same outputs
    data = S.load_data(tiny())
    shipped = predict_tflite(str(out / "student_tflite_int8.tflite"), data.x_test)
    bundled = predict_tflite(str(out / "android" / "model.tflite"),
                             np.repeat(data.x_test, 3, axis=-1))
    np.testing.assert_array_equal(bundled, shipped)


def test_a_disagreement_fails_the_run_after_the_report(mediapipe, first_run, tmp_path,
                                                       monkeypatch):
    out = _copy(first_run, tmp_path)
    monkeypatch.setattr(A, "check_mediapipe",  # the real check, held to an impossible bar
                        lambda *a, **k: check_mediapipe(*a, **k, min_agreement=1.01))
    with pytest.raises(VerificationError, match=r"MediaPipe check of the Android bundle failed: "
                                                r"MediaPipe's top-1 equals the LiteRT "
                                                r"interpreter's on only 100.00% of 450 examples "
                                                r"\(required: 101.0%\)"):
        run(tiny(), out, force=["android"], log=Log())
    check = json.loads((out / "report.json").read_text())["verify"]["mediapipe"]
    assert check["status"] == "failed" and check["agreement"] == 1.0
    assert "(0 differ): **FAILED** (required 101.0%)." in (out / "report.md").read_text()


def test_without_mediapipe_the_report_says_skipped_and_how_to_set_it_up(
        first_run, tmp_path, monkeypatch):
    out = _copy(first_run, tmp_path)
    monkeypatch.setenv(E.ENV_VAR, str(tmp_path / "none"))
    report = run(tiny(), out, force=["android"], log=Log())  # exit 0: nothing was checked
    check = report["verify"]["mediapipe"]
    assert check["status"] == "skipped"
    assert check["reason"].startswith(f"no MediaPipe metadata: no MediaPipe environment at "
                                      f"${E.ENV_VAR}={tmp_path / 'none'}; create it with "
                                      "`python -m kdkeras.export.mediapipe_setup create`")
    assert f"MediaPipe check of android/model.tflite: skipped: {check['reason']}." in \
        (out / "report.md").read_text()
    monkeypatch.delenv(E.ENV_VAR)  # the environment is back: the reused bundle says what to do
    report = run(tiny(), out, log=Log())
    assert report["verify"]["mediapipe"]["reason"].endswith(
        "; the MediaPipe environment exists now: run again with --force android")
    assert R.reported_mediapipe(out) == report["verify"]["mediapipe"]
