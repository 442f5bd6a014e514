"""The stage graph, declared once: names, needs, enabled-when, --force names, reuse keys."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from kdkeras.pipeline import STAGE_NAMES, RunConfig, stage_keys
from kdkeras.pipeline import graph as G

ORDER = ["data", "teacher", "teacher_tflite", "logits", "scratch", "distill", "prune", "qat",
         "export", "verify", "android", "report"]


def _configs():
    """Every valid combination of the stage toggles."""
    for scratch, prune, qat, export, verify, android, teacher in itertools.product([True, False],
                                                                                 repeat=7):
        if verify and not export:
            continue  # refused by the config
        yield RunConfig.from_dict({
            "data": {"source": "digits"}, "scratch": {"enabled": scratch},
            "prune": {"enabled": prune}, "qat": {"enabled": qat},
            "export": {"enabled": export, "android": android, "teacher_tflite": teacher},
            "verify": {"enabled": verify}})


CONFIGS = list(_configs())


def test_every_stage_is_declared_once_in_order():
    assert STAGE_NAMES == ORDER == [s.name for s in G.STAGES]
    assert len(set(STAGE_NAMES)) == len(G.STAGES)
    models = [s.model for s in G.STAGES if s.model]
    assert len(set(models)) == len(models)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: str(len(G.enabled_stages(c))))
def test_needs_name_only_earlier_enabled_stages(cfg):
    enabled = [s.name for s in G.enabled_stages(cfg)]
    for i, name in enumerate(enabled):
        for need in G.needs(cfg, name):
            assert need in enabled[:i], (name, need, enabled)


def test_enabled_reflects_the_toggles():
    for cfg in CONFIGS:
        enabled = [s.name for s in G.enabled_stages(cfg)]
        assert {"data", "teacher", "logits", "distill", "report"} <= set(enabled)
        assert ("scratch" in enabled) == cfg.scratch.enabled
        assert ("prune" in enabled) == cfg.prune.enabled and ("qat" in enabled) == cfg.qat.enabled
        assert ("export" in enabled) == cfg.export.enabled
        assert ("verify" in enabled) == cfg.verify.enabled
        assert ("android" in enabled) == (cfg.export.enabled and cfg.export.android)
        assert ("teacher_tflite" in enabled) == (cfg.export.enabled and cfg.export.teacher_tflite)
        assert enabled == [n for n in ORDER if n in enabled]  # always in graph order


def test_qat_and_export_take_the_last_student():
    on = RunConfig.from_dict({"data": {"source": "digits"}})
    # export takes the QAT student, or (needs_any) the one QAT starts from when QAT is skipped
    assert G.needs(on, "qat") == ("prune",) and G.needs(on, "export") == ("prune", "qat")
    assert G.BY_NAME["export"].needs_any and not G.BY_NAME["verify"].needs_any
    no_prune = on.replace(prune={"enabled": False})
    assert G.needs(no_prune, "qat") == ("distill",)
    assert G.needs(no_prune, "export") == ("distill", "qat")
    neither = no_prune.replace(qat={"enabled": False})
    assert G.needs(neither, "export") == ("distill",)
    assert G.needs(on.replace(qat={"enabled": False}), "export") == ("prune",)


@pytest.mark.parametrize("name,stage", [
    ("prune", "prune"), ("teacher", "teacher"), ("student_scratch", "scratch"),
    ("student_distilled", "distill"), ("student_pruned", "prune"), ("student_qat", "qat"),
    ("student_tflite_int8", "export"), ("student_tflite_float16", "export"),
    ("teacher_tflite_float32", "teacher_tflite"), ("teacher_tflite", "teacher_tflite")])
def test_model_names_map_to_their_stage(name, stage):
    assert G.stage_name(name) == stage


@pytest.mark.parametrize("name,hint", [("prunee", "Did you mean 'prune'"),
                                       ("student_prunned", "Did you mean 'student_pruned'"),
                                       ("zzz", "Stages: data, teacher")])
def test_unknown_stage_names(name, hint):
    with pytest.raises(ValueError, match=f"Unknown stage '{name}'.*{hint}"):
        G.stage_name(name)


def test_model_stages_save_a_file_named_after_their_model():
    cfg = RunConfig.from_dict({"data": {"source": "digits"}})
    for stage in G.STAGES:
        if stage.save is not None:
            assert stage.files(cfg) and stage.load is not None, stage.name
        if stage.model and stage.files(cfg):
            assert Path(stage.files(cfg)[0]).stem == stage.model
        if not stage.cached:
            assert not stage.files(cfg) and stage.row is None, stage.name
    assert G.BY_NAME["export"].files(cfg) == ("student_tflite_int8.tflite",)
    assert G.BY_NAME["qat"].files(cfg) == ("student_qat.h5",)
    assert G.BY_NAME["teacher_tflite"].files(cfg) == ("teacher_tflite_float32.tflite",)
    rows = [s.name for s in G.STAGES if s.row]
    assert rows == ["teacher", "teacher_tflite", "scratch", "distill", "prune", "qat", "export"]
    assert [s.name for s in G.STAGES if s.skip] == ["teacher_tflite", "qat"]


def test_a_loaded_teacher_leaves_no_file(tmp_path):
    from kdkeras import build_mlp_student

    build_mlp_student((8, 8, 1), 10).save(tmp_path / "t.keras")
    cfg = RunConfig.from_dict({"data": {"source": "digits"},
                               "teacher": {"path": str(tmp_path / "t.keras")}})
    assert G.BY_NAME["teacher"].files(cfg) == ()


def test_downstream_of_a_forced_stage():
    cfg = RunConfig.from_dict({"data": {"source": "digits"}})
    assert G.downstream(cfg, ["logits"]) == {"logits", "distill", "prune", "qat", "export",
                                             "verify", "android"}
    assert G.downstream(cfg, ["qat"]) == {"qat", "export", "verify", "android"}
    assert G.downstream(cfg, ["scratch"]) == {"scratch"}
    assert G.downstream(cfg, ["teacher"]) == set(ORDER) - {"data", "scratch", "report"}
    assert G.downstream(cfg, ["teacher_tflite"]) == {"teacher_tflite"}  # nothing needs the file


def test_keys_change_with_what_a_stage_reads():
    cfg = RunConfig.from_dict({"data": {"source": "digits"}})
    base = stage_keys(cfg)
    assert set(base) == set(ORDER) and len(set(base.values())) == len(ORDER)
    assert stage_keys(cfg) == base  # deterministic
    changed = stage_keys(cfg.replace(prune={"sparsity": 0.5}))
    assert [n for n in ORDER if changed[n] != base[n]] == ["prune", "qat", "export", "verify",
                                                           "android"]
    changed = stage_keys(cfg.replace(verify={"latency_runs": 7}))
    assert changed == base  # latency runs only change the report, which is never reused
    changed = stage_keys(cfg.replace(export={"calibration_samples": 100}))
    assert [n for n in ORDER if changed[n] != base[n]] == ["teacher_tflite", "export", "verify",
                                                           "android"]
    changed = stage_keys(cfg.replace(export={"teacher_tflite": False}))
    assert changed == base  # the switch only says whether the stage runs


def test_keys_follow_the_input_files(tmp_path):
    from kdkeras.data import digits

    (x, y), (xt, yt) = digits()
    src = tmp_path / "d.npz"
    np.savez(src, x_train=x, y_train=y, x_test=xt, y_test=yt)
    cfg = RunConfig.from_dict({"data": {"source": str(src)}})
    before = stage_keys(cfg)
    np.savez(src, x_train=x[:900], y_train=y[:900], x_test=xt, y_test=yt)
    after = stage_keys(cfg)
    assert all(after[n] != before[n] for n in ORDER if n != "report")
    assert G.fingerprint(str(src))[0][:2] == ("d.npz", src.stat().st_size)
    assert G.fingerprint(str(tmp_path / "none")) is None and G.fingerprint("") is None
