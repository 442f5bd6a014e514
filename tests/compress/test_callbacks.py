"""Callbacks a pruned model trains with: the Distiller hook, summaries, the target check."""

import logging

import pytest
import tensorflow_model_optimization as tfmot
import tf_keras as keras

import kdkeras as kd
import kdkeras.compress.callbacks as compress_callbacks
from kdkeras.compress import ensure_pruning_callbacks, has_pruning_wrappers, prune, sparsity_report
from kdkeras.compress.callbacks import PruningTargetCheck
from tests.compress.compress_models import build, distill, make_data
from tests.helpers import run_serialization_test

UpdatePruningStep = tfmot.sparsity.keras.UpdatePruningStep
PruningSummaries = tfmot.sparsity.keras.PruningSummaries


def test_distiller_fit_adds_update_pruning_step():
    x, y = make_data("mlp", n=16)
    # no callbacks given: Distiller.fit adds UpdatePruningStep (else TF-MOT's wrapper fails)
    pruned = prune(build("mlp"), target_sparsity=0.5, schedule="constant", frequency=1)
    d = kd.Distiller(student=pruned, teacher=build("mlp", seed=1))
    d.compile(optimizer="adam", alpha=0.5)
    d.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert int(pruned.get_layer("prune_low_magnitude_hidden").pruning_step.numpy()) == 2
    assert sparsity_report(pruned).layer("hidden").prunable_sparsity == pytest.approx(0.5)

    # a user's UpdatePruningStep is kept (not doubled); Keras gives it the Distiller as .model
    step_cb = UpdatePruningStep()
    d.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[step_cb])
    assert step_cb.model is d
    assert [l.name for l in step_cb.prunable_layers] == [
        "prune_low_magnitude_hidden", "prune_low_magnitude_output"]
    assert int(pruned.get_layer("prune_low_magnitude_hidden").pruning_step.numpy()) == 4



def test_ensure_pruning_callbacks_returns_a_new_list(tmp_path, monkeypatch):
    monkeypatch.setattr(compress_callbacks, "tensorboard_available", lambda: True)
    pruned = prune(build("mlp"), end_step=8)
    given = []
    out = ensure_pruning_callbacks(pruned, given)
    assert given == [] and [type(c) for c in out] == [UpdatePruningStep, PruningTargetCheck]
    again = ensure_pruning_callbacks(pruned, out)
    assert again is not out and [type(c) for c in again] == [UpdatePruningStep,
                                                               PruningTargetCheck]
    logged = ensure_pruning_callbacks(pruned, None, log_dir=str(tmp_path))
    assert [type(c) for c in logged] == [UpdatePruningStep, PruningTargetCheck,
                                         PruningSummaries]
    assert logged[2].log_dir == str(tmp_path)
    tb = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb"))
    from_tb = ensure_pruning_callbacks(pruned, [tb])
    assert [type(c) for c in from_tb] == [keras.callbacks.TensorBoard, UpdatePruningStep,
                                           PruningTargetCheck, PruningSummaries]
    assert from_tb[3].log_dir == str(tmp_path / "tb" / "pruning")
    plain = ensure_pruning_callbacks(build("mlp"), [tb])
    assert plain == [tb]


def test_pruning_summaries_without_tensorboard(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(compress_callbacks, "tensorboard_available", lambda: False)
    pruned = prune(build("mlp"), end_step=8)
    with pytest.raises(ImportError, match="pip install tensorboard.*Received: log_dir="):
        ensure_pruning_callbacks(pruned, log_dir=str(tmp_path))
    tb = keras.callbacks.TensorBoard(log_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="kdkeras.compress"):
        out = ensure_pruning_callbacks(pruned, [tb])
    assert [type(c) for c in out] == [keras.callbacks.TensorBoard, UpdatePruningStep,
                                      PruningTargetCheck]
    assert "TensorBoard is not installed" in caplog.text


def test_a_fine_tune_too_short_for_the_schedule_is_reported(caplog):
    # end_step=40 but only 8 steps trained: the polynomial ramp is far from 80%
    pruned = prune(build("mlp"), target_sparsity=0.8, end_step=40, frequency=4)
    check = PruningTargetCheck()
    with caplog.at_level(logging.WARNING, logger="kdkeras.compress"):
        distill(pruned, "mlp", epochs=1, n=64, batch_size=8, callbacks=[check])
    assert len(check.shortfalls) == 2
    reached = check.shortfalls[0]["reached"]
    assert reached == pytest.approx(0.8 * (1 - (1 - 8 / 40) ** 3), abs=0.02)
    assert "fell short of its target" in caplog.text and "end_step=40" in caplog.text
    # trained long enough: no warning
    caplog.clear()
    pruned = prune(build("mlp"), target_sparsity=0.8, end_step=8)
    with caplog.at_level(logging.WARNING, logger="kdkeras.compress"):
        distill(pruned, "mlp", epochs=1, n=64, batch_size=8)
    assert "fell short" not in caplog.text


def test_has_pruning_wrappers_sees_through_a_distiller():
    pruned = prune(build("mlp"), end_step=8)
    d = kd.Distiller(student=pruned, teacher=build("mlp", seed=1))
    assert has_pruning_wrappers(d) and has_pruning_wrappers(pruned)
    assert not has_pruning_wrappers(kd.Distiller(student=build("mlp"), teacher=None))



def test_pruning_target_check_round_trips_its_config():
    check = PruningTargetCheck(tolerance=0.05)
    clone = run_serialization_test(check)
    assert clone.get_config() == {"tolerance": 0.05} and clone.tolerance == 0.05
    assert PruningTargetCheck().get_config() == {"tolerance": 0.01}
