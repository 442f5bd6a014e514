"""prune: which layers are wrapped, structured sparsity, argument checks, nested models."""

import logging

import numpy as np
import pytest
import tf_keras as keras

from kdkeras.compress import has_pruning_wrappers, is_prunable, prune, sparsity_report, strip
from kdkeras.compress._tfmot import PruneLowMagnitude
from kdkeras.compress.pruning import prunable_weight_names, prunable_weights
from tests.compress.compress_models import PRUNABLE, build, distill, make_data


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


def test_layer_policy_names_the_weights_pruning_acts_on():
    mha = build("transformer").get_layer("mha")
    assert prunable_weight_names(mha) == ["_query_dense.kernel", "_key_dense.kernel",
                                          "_value_dense.kernel", "_output_dense.kernel"]
    assert [w.name for w in prunable_weights(mha)] == [
        "mha/query/kernel:0", "mha/key/kernel:0", "mha/value/kernel:0",
        "mha/attention_output/kernel:0"]
    lstm = keras.layers.LSTM(4, name="lstm")
    lstm.build((None, 3, 2))  # its kernels live in the cell: found by name
    assert prunable_weight_names(lstm) == ["kernel", "recurrent_kernel"]
    assert [w.name.split("/")[-1] for w in prunable_weights(lstm)] == ["kernel:0",
                                                                       "recurrent_kernel:0"]
    assert is_prunable(keras.layers.Dense(2))
    assert not is_prunable(keras.layers.LayerNormalization())


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


# ---------------------------------------------------------------------------- bad input

def test_keras3_model_is_rejected_with_the_fix():
    import keras as keras3

    inputs = keras3.Input((4,))
    k3 = keras3.Model(inputs, keras3.layers.Dense(2)(inputs))
    with pytest.raises(TypeError, match=r"Keras 3 model.*kdkeras\.keras"):
        prune(k3, end_step=4)


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
