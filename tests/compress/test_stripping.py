"""strip: plain layers with the effective weights, no shared variables, .keras/.h5 reload.

Stripping clustered models is checked in ``test_clustering.py``, with the clustering.
"""

import numpy as np
import pytest
import tf_keras as keras

from kdkeras.compress import (
    float_layers,
    has_pruning_wrappers,
    has_quantization_wrappers,
    prune,
    quantize_aware,
    sparsity_report,
    strip,
)
from kdkeras.compress._tfmot import PruneLowMagnitude
from kdkeras.compress.stripping import masked_weights
from tests.compress.compress_models import build, distill, make_data, weights_equal


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


def test_masked_weights_multiply_by_the_masks():
    pruned = prune(build("mlp"), target_sparsity=0.5, end_step=4)
    wrapper = pruned.get_layer("prune_low_magnitude_hidden")
    _, mask, _ = wrapper.pruning_vars[0]
    pattern = (np.arange(np.prod(mask.shape)).reshape(mask.shape) % 2).astype("float32")
    mask.assign(pattern)
    kernel, bias = masked_weights(wrapper)
    np.testing.assert_array_equal(kernel, wrapper.layer.kernel.numpy() * pattern)
    np.testing.assert_array_equal(bias, wrapper.layer.bias.numpy())  # not pruned: as it is
    np.testing.assert_array_equal(strip(pruned).get_layer("hidden").kernel.numpy(), kernel)


def test_keras3_model_is_rejected_with_the_fix():
    import keras as keras3

    inputs = keras3.Input((4,))
    with pytest.raises(TypeError, match=r"Keras 3 model.*kdkeras\.keras"):
        strip(keras3.Model(inputs, keras3.layers.Dense(2)(inputs)))


def test_qat_wrappers_are_kept():
    qat = quantize_aware(build("mlp"))
    small = strip(qat)
    assert has_quantization_wrappers(small) and float_layers(small) == []
    assert [type(l) for l in small.layers] == [type(l) for l in qat.layers]
    assert weights_equal(small, qat)
