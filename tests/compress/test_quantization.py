import logging

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
import tf_keras as keras

import kdkeras as kd
from kdkeras.compress import (
    cluster,
    float_layers,
    has_pruning_wrappers,
    has_quantization_wrappers,
    prune,
    quantize_aware,
    sparsity_report,
    strip,
)
from kdkeras.compress.quantization import quantize_scheme
from tests.compress.compress_models import build, distill, make_data

QuantizeWrapper = tfmot.quantization.keras.QuantizeWrapper


def _wrapped(model):
    return sorted(l.layer.name for l in model.layers if isinstance(l, QuantizeWrapper))


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_whole_model_qat_leaves_nothing_float(kind, caplog):
    student = build(kind)
    before = [w.copy() for w in student.get_weights()]
    with caplog.at_level(logging.WARNING, logger="kdkeras.compress"):
        qat = quantize_aware(student)
    assert float_layers(qat) == []
    assert "stay float" not in caplog.text
    assert {"output"} <= set(_wrapped(qat))
    assert all(np.array_equal(a, b) for a, b in zip(before, student.get_weights()))
    x, _ = make_data(kind, n=16)
    # fake-quantized outputs (ranges from the batch in training mode) stay close to float
    np.testing.assert_allclose(qat(x, training=True).numpy(),
                               student(x, training=True).numpy(), atol=0.15)


@pytest.mark.slow
def test_transformer_qat_annotates_supported_layers_and_says_which_stay_float(caplog):
    student = build("transformer")
    with caplog.at_level(logging.WARNING, logger="kdkeras.compress"):
        qat = quantize_aware(student)
    left = float_layers(qat)
    assert {"embed", "mha", "ln"} <= set(left)
    assert "ffn" not in left and "output" not in left
    assert {"ffn", "output"} <= set(_wrapped(qat))
    for name in ("embed", "mha", "ln"):
        assert name in caplog.text
    distill(qat, "transformer", epochs=1, n=16, batch_size=8)  # it trains
    x, _ = make_data("transformer", n=8)
    assert np.all(np.isfinite(qat.predict(x, verbose=0)))


def test_schemes():
    assert type(quantize_scheme()).__name__ == "Default8BitQuantizeScheme"
    assert type(quantize_scheme(preserve_sparsity=True)).__name__ == \
        "Default8BitPrunePreserveQuantizeScheme"
    cqat = quantize_scheme(preserve_clusters=True)
    assert type(cqat).__name__ == "Default8BitClusterPreserveQuantizeScheme"
    assert cqat.preserve_sparsity is False
    assert quantize_scheme(preserve_sparsity=True, preserve_clusters=True).preserve_sparsity


@pytest.mark.slow
def test_pqat_keeps_the_zeros():
    pruned = prune(build("mlp"), target_sparsity=0.7, schedule="constant", frequency=1)
    distill(pruned, "mlp", epochs=1, n=16, batch_size=8)
    # a still-wrapped pruned model is stripped first
    qat = quantize_aware(pruned, preserve_sparsity=True)
    assert not has_pruning_wrappers(qat)
    zeros = strip(pruned).get_layer("hidden").kernel.numpy() == 0
    assert zeros.mean() == pytest.approx(0.7, abs=0.02)
    distill(qat, "mlp", epochs=2, n=32, batch_size=8)
    wrapper = qat.get_layer("quant_hidden")  # QAT moves the kernel variable into the wrapper
    kernel = next(w for w in wrapper.weights if w.name == "hidden/kernel:0").numpy()
    assert np.all(kernel[zeros] == 0)
    assert sparsity_report(qat).layer("hidden").prunable_sparsity >= 0.7 - 0.02


@pytest.mark.slow
def test_cqat_keeps_the_clusters():
    clustered = cluster(build("mlp"), n_clusters=4)
    distill(clustered, "mlp", epochs=1, n=16, batch_size=8)
    small = strip(clustered)
    assert len(np.unique(small.get_layer("hidden").kernel.numpy())) <= 4
    qat = quantize_aware(small, preserve_clusters=True)
    distill(qat, "mlp", epochs=1, n=32, batch_size=8)
    wrapper = qat.get_layer("quant_hidden")
    # CQAT trains the 4 centroids; the weights used in the forward pass take <= 4 values
    cluster_vars = [w for w in wrapper.weights if "cluster_centroids" in w.name or
                    "centroids" in w.name]
    assert cluster_vars and all(int(np.prod(v.shape)) <= 4 for v in cluster_vars)


def test_qat_keras3_model_and_nothing_quantizable():
    import keras as keras3

    inputs = keras3.Input((4,))
    with pytest.raises(TypeError, match=r"Keras 3 model.*kdkeras\.keras"):
        quantize_aware(keras3.Model(inputs, keras3.layers.Dense(2)(inputs)))
    inputs = keras.Input((4, 4))
    only_norm = keras.Model(inputs, keras.layers.LayerNormalization(name="ln")(inputs))
    with pytest.raises(ValueError, match=r"No layer.*ln \(LayerNormalization\)"):
        quantize_aware(only_norm)


def test_has_quantization_wrappers_by_class(tmp_path):
    student = build("mlp")
    qat = quantize_aware(student)
    assert has_quantization_wrappers(qat) and not has_quantization_wrappers(student)
    assert not has_quantization_wrappers(prune(student, end_step=4))
    assert not has_quantization_wrappers(cluster(student, n_clusters=4))
    # nested in another model, held by a Distiller, reloaded from .h5
    inputs = keras.Input((8,))
    outer = keras.Model(inputs, keras.layers.Dense(2)(qat(inputs)))
    assert has_quantization_wrappers(outer)
    assert has_quantization_wrappers(kd.Distiller(student=qat, teacher=None))
    qat.save(tmp_path / "qat.h5")
    with tfmot.quantization.keras.quantize_scope():
        assert has_quantization_wrappers(keras.models.load_model(tmp_path / "qat.h5"))

    # a layer that only has a TF-MOT class name does not count
    named_like = type("QuantizeWrapper", (keras.layers.Layer,), {})
    fake = keras.Model(inputs, named_like()(inputs))
    assert not has_quantization_wrappers(fake) and not has_quantization_wrappers(object())


def _pruned_text_student():
    import kdkeras as kd
    from kdkeras.models import build_text_student

    rng = np.random.default_rng(0)
    x = rng.integers(0, 300, (256, 16)).astype("int32")
    y = (x[:, 0] % 2).astype("int64")
    kd.keras.utils.set_random_seed(0)
    pruned = kd.prune(build_text_student((16,), 2, vocab_size=300, embed_dim=16),
                      target_sparsity=0.8, schedule="constant", begin_step=0, frequency=1)
    teacher = build_text_student((16,), 2, vocab_size=300, embed_dim=32)
    d = kd.Distiller(pruned, teacher=teacher)
    d.compile(optimizer=kd.keras.optimizers.Adam(1e-2))
    d.fit(x, y, epochs=2, verbose=0)
    return kd.strip(pruned), teacher, x, y


@pytest.mark.parametrize("freeze", [True, False])
def test_pqat_keeps_the_zeros_of_a_layer_it_cannot_quantize(freeze, monkeypatch, caplog):
    """A text student's Embedding stays float under QAT: PQAT freezes it so its zeros survive
    (without the freeze, training gives them back: the second case shows the check can fail)."""
    import kdkeras as kd
    from kdkeras.compress import quantization

    small, teacher, x, y = _pruned_text_student()
    before = kd.sparsity_report(small).total_nonzeros
    if not freeze:
        monkeypatch.setattr(quantization, "_freeze_float_layers", lambda *a: [])
    with caplog.at_level("WARNING", logger="kdkeras.compress"):
        qat = quantize_aware(small, preserve_sparsity=True)
    d = kd.Distiller(qat, teacher=teacher)
    d.compile(optimizer=kd.keras.optimizers.Adam(1e-2))
    d.fit(x, y, epochs=2, verbose=0)
    after = kd.sparsity_report(qat).total_nonzeros
    if freeze:
        assert after == before
        assert "frozen so their zeros stay as they are" in caplog.text and "embedding" in caplog.text
    else:
        assert after > before
