import logging

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
import tf_keras as keras

import kdkeras as kd
from tests.compress.compress_models import PRUNABLE, build, distill, make_data, weights_equal
from kdkeras.compress import (
    ensure_pruning_callbacks,
    has_pruning_wrappers,
    prune,
    pruning_schedules,
    sparsity_report,
    strip,
)
from kdkeras.compress import pruning
from kdkeras.compress.pruning import PruneLowMagnitude, PruningTargetCheck, default_frequency

UpdatePruningStep = tfmot.sparsity.keras.UpdatePruningStep
PruningSummaries = tfmot.sparsity.keras.PruningSummaries


def _wrapped(model):
    return sorted(l.layer.name for l in model.layers if isinstance(l, PruneLowMagnitude))


# ------------------------------------------------------------------------------ wrapping

def test_prune_wraps_exactly_the_prunable_layers(kind):
    student = build(kind)
    pruned = prune(student, target_sparsity=0.8, end_step=8, skip=("output",))
    expected = sorted(n for n in PRUNABLE[kind] if n != "output")
    assert _wrapped(pruned) == expected
    # every other layer is kept as is (same class and name), so transformers still work
    plain = {l.name: type(l) for l in pruned.layers if not isinstance(l, PruneLowMagnitude)}
    for layer in student.layers:
        if layer.name not in expected:
            assert plain[layer.name] is type(layer)
    x, _ = make_data(kind, n=4)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), student.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_skip_by_layer_class():
    pruned = prune(build("transformer"), end_step=8,
                   skip=(keras.layers.Embedding, keras.layers.MultiHeadAttention))
    assert _wrapped(pruned) == ["ffn", "output"]


def test_prune_leaves_callers_model_untouched():
    student = build("mlp")
    before = [w.copy() for w in student.get_weights()]
    pruned = prune(student, target_sparsity=0.8, end_step=8)
    distill(pruned, "mlp", epochs=1, n=64, batch_size=8)
    assert all(np.array_equal(a, b) for a, b in zip(before, student.get_weights()))
    assert not has_pruning_wrappers(student)
    student_vars = {id(v) for v in student.weights}
    assert not student_vars & {id(v) for v in pruned.weights}


# ---------------------------------------------------- KD fine-tune through the Distiller

@pytest.mark.slow
def test_kd_finetune_reaches_target_sparsity(kind):
    """Distiller.fit adds UpdatePruningStep; with the student as a sublayer it finds the wrappers."""
    steps = 16  # 2 epochs of 64 samples, batch 8
    pruned = prune(build(kind), target_sparsity=0.8, end_step=steps, skip=("output",))
    distill(pruned, kind, epochs=2, n=64, batch_size=8)
    report = sparsity_report(pruned)
    for name in PRUNABLE[kind]:
        row = report.layer(name)
        if name == "output":
            assert row.prunable_sparsity == 0.0
        else:
            assert row.prunable_sparsity == pytest.approx(0.8, abs=0.02), (name, row)
    small = strip(pruned)
    assert sparsity_report(small).to_dict() == report.to_dict()


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


# --------------------------------------------------------------------------------- strip

@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_strip_keeps_zeros_and_round_trips(tmp_path, fmt):
    kind = "transformer" if fmt == "keras" else "cnn"
    pruned = prune(build(kind), target_sparsity=0.5, schedule="constant", frequency=1)
    distill(pruned, kind, epochs=1, n=32, batch_size=8)
    small = strip(pruned)
    assert not has_pruning_wrappers(small)
    assert [type(l) for l in small.layers] == [type(l) for l in build(kind).layers]
    x, _ = make_data(kind, n=8)
    np.testing.assert_allclose(small.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    # the masks were applied: the kernels are exactly as sparse as the masks say
    for wrapper in (l for l in pruned.layers if isinstance(l, PruneLowMagnitude)):
        for _, mask, _ in wrapper.pruning_vars:
            assert float(1 - mask.numpy().mean()) == pytest.approx(0.5, abs=0.02)
    assert sparsity_report(small).prunable_sparsity == pytest.approx(0.5, abs=0.02)
    path = str(tmp_path / f"small.{fmt}")
    small.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), small.predict(x, verbose=0))
    assert sparsity_report(reloaded).to_dict()["prunable_nonzeros"] == \
        sparsity_report(small).prunable_nonzeros


def test_strip_without_wrappers_returns_an_independent_copy():
    student = build("mlp")
    copy = strip(student)
    assert copy is not student
    assert weights_equal(copy, student)
    copy.layers[1].kernel.assign(np.zeros(copy.layers[1].kernel.shape))
    assert np.count_nonzero(student.layers[1].kernel.numpy()) > 0


def test_strip_does_not_share_variables_with_the_pruned_model():
    pruned = prune(build("mlp"), target_sparsity=0.5, end_step=4)
    small = strip(pruned)
    assert not {id(v) for v in small.weights} & {id(v) for v in pruned.weights}


# ------------------------------------------------------------------- structured sparsity

@pytest.mark.slow
def test_two_four_structured_sparsity(caplog):
    with caplog.at_level(logging.WARNING, logger="kdkeras.compress"):
        pruned = prune(build("cnn"), schedule="constant", m_by_n=(2, 4), frequency=1)
    # conv0 has 1 input channel: not divisible by 4, pruned unstructured and said so
    assert "conv0" in caplog.text and "2:4" in caplog.text
    distill(pruned, "cnn", epochs=1, n=16, batch_size=8)
    small = strip(pruned)
    dense = small.get_layer("output").kernel.numpy()  # [in, out]; groups of 4 along "in"
    groups = dense.T.reshape(dense.shape[1], -1, 4)
    assert np.all((groups == 0).sum(axis=-1) >= 2)
    conv = small.get_layer("conv1").kernel.numpy()  # [h, w, in, out]; groups along "in"
    groups = np.transpose(conv, (3, 0, 1, 2)).reshape(-1, conv.shape[2] // 4, 4)
    assert np.all((groups == 0).sum(axis=-1) >= 2)


def test_block_sparsity_zeroes_whole_blocks():
    pruned = prune(build("mlp"), target_sparsity=0.5, schedule="constant", frequency=1,
                   block_size=(1, 4))
    distill(pruned, "mlp", epochs=1, n=16, batch_size=8)
    kernel = strip(pruned).get_layer("hidden").kernel.numpy()  # [8, 32] -> blocks of 1x4
    blocks = kernel.reshape(8, 8, 4)
    zeros = (blocks == 0).sum(axis=-1)
    assert set(np.unique(zeros)) <= {0, 4}
    assert (zeros == 4).mean() == pytest.approx(0.5, abs=0.05)


# ----------------------------------------------------------------------------- schedules

def test_schedule_names_and_polynomial_values_match_numpy():
    assert pruning_schedules.names() == ["constant", "polynomial"]
    pruned = prune(build("mlp"), target_sparsity=0.8, schedule="polynomial", end_step=40)
    schedule = pruned.get_layer("prune_low_magnitude_hidden").pruning_schedule
    assert isinstance(schedule, tfmot.sparsity.keras.PolynomialDecay)
    assert schedule.frequency == 40
    for step in (0, 10, 20, 40, 50):
        _, value = schedule(step)
        p = min(step / 40, 1.0)
        assert float(value) == pytest.approx(0.8 * (1 - (1 - p) ** 3), abs=1e-6)
    constant = prune(build("mlp"), target_sparsity=0.3, schedule="constant")
    schedule = constant.get_layer("prune_low_magnitude_hidden").pruning_schedule
    assert isinstance(schedule, tfmot.sparsity.keras.ConstantSparsity)
    assert (schedule.target_sparsity, schedule.end_step, schedule.frequency) == (0.3, -1, 100)


def test_schedule_object_is_used_as_is():
    custom = tfmot.sparsity.keras.ConstantSparsity(0.25, begin_step=0, frequency=7)
    pruned = prune(build("mlp"), schedule=custom)
    assert pruned.get_layer("prune_low_magnitude_hidden").pruning_schedule is custom


def test_unknown_schedule_lists_known_names():
    with pytest.raises(ValueError, match="Unknown pruning schedule 'polynomal'.*polynomial.*"
                                         "Known: constant, polynomial"):
        prune(build("mlp"), schedule="polynomal", end_step=10)


def test_end_epoch_is_converted_with_steps_per_epoch():
    pruned = prune(build("mlp"), end_epoch=3, steps_per_epoch=25, begin_epoch=1)
    schedule = pruned.get_layer("prune_low_magnitude_hidden").pruning_schedule
    assert (schedule.begin_step, schedule.end_step, schedule.frequency) == (25, 75, 50)


def test_default_frequency_divides_the_pruning_span():
    assert default_frequency(0, 1875) == 75
    assert default_frequency(10, 50) == 40
    assert default_frequency(0, 101) == 1
    assert default_frequency(0, -1) == 100


# ---------------------------------------------------------------------------- callbacks

def test_ensure_pruning_callbacks_returns_a_new_list(tmp_path, monkeypatch):
    monkeypatch.setattr(pruning, "tensorboard_available", lambda: True)
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
    monkeypatch.setattr(pruning, "tensorboard_available", lambda: False)
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


# ---------------------------------------------------------------------------- bad input

def test_keras3_model_is_rejected_with_the_fix():
    import keras as keras3

    inputs = keras3.Input((4,))
    k3 = keras3.Model(inputs, keras3.layers.Dense(2)(inputs))
    for fn in (lambda m: prune(m, end_step=4), strip):
        with pytest.raises(TypeError, match=r"Keras 3 model.*kdkeras\.keras"):
            fn(k3)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "0.8"])
def test_sparsity_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=rf"\[0, 1\).*Received: target_sparsity={bad!r}"):
        prune(build("mlp"), target_sparsity=bad, end_step=10)


@pytest.mark.parametrize("begin,end", [(10, 5), (10, 10)])
def test_end_step_before_begin_step(begin, end):
    with pytest.raises(ValueError, match=f"Received: begin_step={begin}, end_step={end}"):
        prune(build("mlp"), begin_step=begin, end_step=end)


def test_polynomial_needs_an_end():
    with pytest.raises(ValueError, match="end_step.*end_epoch.*steps_per_epoch"):
        prune(build("mlp"))
    with pytest.raises(ValueError, match="steps_per_epoch.*Received: steps_per_epoch=None"):
        prune(build("mlp"), end_epoch=2)
    with pytest.raises(ValueError, match="either end_step or end_epoch"):
        prune(build("mlp"), end_step=4, end_epoch=2, steps_per_epoch=3)


def test_skip_naming_no_layer():
    with pytest.raises(ValueError, match=r"skip entry 'outptu' names no layer.*Known layer "
                                         r"names: x, hidden, output"):
        prune(build("mlp"), end_step=4, skip=("outptu",))
    with pytest.raises(ValueError, match="skip entry Conv2D matches no layer"):
        prune(build("mlp"), end_step=4, skip=(keras.layers.Conv2D,))
    import keras as keras3

    with pytest.raises(TypeError, match=r"kd\.keras\.layers\.Dense.*Received: skip entry"):
        prune(build("mlp"), end_step=4, skip=(keras3.layers.Dense,))


def test_nothing_prunable():
    inputs = keras.Input((4,))
    only_norm = keras.Model(inputs, keras.layers.LayerNormalization(name="ln")(inputs))
    with pytest.raises(ValueError, match=r"Nothing to prune.*ln \(LayerNormalization\)"):
        prune(only_norm, end_step=4)
    with pytest.raises(ValueError, match=r"Nothing to prune.*skip=\('hidden', 'output'\)"):
        prune(build("mlp"), end_step=4, skip=("hidden", "output"))


def test_bad_structure_arguments():
    with pytest.raises(ValueError, match=r"m < n.*Received: m_by_n=\(4, 2\)"):
        prune(build("mlp"), end_step=4, m_by_n=(4, 2))
    with pytest.raises(ValueError, match="Received: block_size=0"):
        prune(build("mlp"), end_step=4, block_size=0)
    with pytest.raises(ValueError, match="Received: block_pooling_type='SUM'"):
        prune(build("mlp"), end_step=4, block_pooling_type="SUM")


def test_unbuilt_model_is_rejected_with_the_fix():
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"not built.*kd\.keras\.Input"):
        prune(unbuilt, end_step=4)


# ------------------------------------------------------------- Sequential and nested models

def test_sequential_and_nested_models():
    keras.utils.set_random_seed(0)
    seq = keras.Sequential([keras.layers.Dense(16, activation="relu", input_shape=(8,),
                                               name="s_hidden"),
                            keras.layers.Dense(3, name="s_output")], name="seq")
    x, _ = make_data("mlp", n=8)
    pruned = prune(seq, end_step=4, skip=("s_output",))
    assert _wrapped(pruned) == ["s_hidden"]
    np.testing.assert_allclose(strip(pruned).predict(x, verbose=0), seq.predict(x, verbose=0),
                               rtol=1e-6)
    inputs = keras.Input((8,))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="head")(seq(inputs)), name="outer")
    pruned = prune(outer, end_step=4)
    inner = next(l for l in pruned.layers if isinstance(l, keras.Model))
    assert _wrapped(inner) == ["s_hidden", "s_output"] and _wrapped(pruned) == ["head"]
    assert has_pruning_wrappers(pruned)
    small = strip(pruned)
    assert not has_pruning_wrappers(small)
    np.testing.assert_allclose(small.predict(x, verbose=0), outer.predict(x, verbose=0),
                               rtol=1e-6)
