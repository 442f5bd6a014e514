import numpy as np
import pytest
import tf_keras as keras

from kdkeras.compress import prune, quantize_aware, sparsity_report, strip
from kdkeras.compress.report import LayerSparsity, SparsityReport
from tests.compress.compress_models import build


def test_counts_match_numpy(kind):
    model = build(kind)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # zero a random 30% of every weight tensor
        layer.set_weights([w * (rng.random(w.shape) > 0.3) for w in layer.get_weights()])
    report = sparsity_report(model)
    weights = model.get_weights()
    assert report.total_params == sum(w.size for w in weights) == model.count_params()
    assert report.total_nonzeros == sum(int(np.count_nonzero(w)) for w in weights)
    assert report.sparsity == pytest.approx(1 - report.total_nonzeros / report.total_params)
    for row in report.layers:
        layer_weights = model.get_layer(row.name).get_weights()
        assert row.params == sum(w.size for w in layer_weights)
        assert row.nonzeros == sum(int(np.count_nonzero(w)) for w in layer_weights)
    kernel = model.get_layer("output").kernel.numpy()
    row = report.layer("output")
    assert (row.prunable_params, row.prunable_nonzeros) == (kernel.size, np.count_nonzero(kernel))


def test_prunable_tensors_per_layer_type():
    report = sparsity_report(build("transformer"))
    assert report.layer("ln").prunable_params == 0
    assert report.layer("embed").prunable_params == 32 * 16
    mha = build("transformer").get_layer("mha")
    kernels = sum(int(np.prod(getattr(mha, n).kernel.shape)) for n in
                  ("_query_dense", "_key_dense", "_value_dense", "_output_dense"))
    assert report.layer("mha").prunable_params == kernels
    assert report.layer("mha").params == mha.count_params()


def test_wrapped_report_counts_masked_weights():
    pruned = prune(build("mlp"), target_sparsity=0.5, end_step=4)
    wrapper = pruned.get_layer("prune_low_magnitude_hidden")
    _, mask, _ = wrapper.pruning_vars[0]
    mask.assign(np.zeros(mask.shape))  # as if pruned to 100%: the kernel itself is unchanged
    report = sparsity_report(pruned)
    assert report.layer("hidden").prunable_nonzeros == 0
    assert report.to_dict() == sparsity_report(strip(pruned)).to_dict()
    # no pruning variables (mask, threshold, step) are counted
    assert report.total_params == build("mlp").count_params()


def test_qat_model_report_counts_the_wrapped_kernels():
    student = build("mlp")
    report = sparsity_report(quantize_aware(student))
    assert [r.name for r in report.layers] == ["hidden", "output"]
    assert report.total_params == student.count_params()
    assert report.layer("hidden").prunable_params == 8 * 32


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_qat_model_reloaded_from_h5_counts_the_same(tmp_path, kind):
    from kdkeras.export import load_model

    qat = quantize_aware(build(kind))
    qat.save(tmp_path / "qat.h5")
    again = sparsity_report(load_model(str(tmp_path / "qat.h5")))
    assert again.total_params == build(kind).count_params() > 0
    assert again.to_dict()["layers"] == sparsity_report(qat).to_dict()["layers"]


def test_str_dict_and_markdown():
    report = SparsityReport("m", [LayerSparsity("a", "Dense", 10, 4, 8, 2),
                                  LayerSparsity("b", "LayerNormalization", 6, 6, 0, 0)])
    assert (report.total_params, report.total_nonzeros) == (16, 10)
    assert report.sparsity == pytest.approx(6 / 16)
    assert report.prunable_sparsity == pytest.approx(6 / 8)
    d = report.to_dict()
    assert d["layers"][0] == {"name": "a", "kind": "Dense", "params": 10, "nonzeros": 4,
                              "prunable_params": 8, "prunable_nonzeros": 2, "sparsity": 0.6,
                              "prunable_sparsity": 0.75}
    text = str(report)
    assert "total" in text and "60.0%" in text and "75.0%" in text and "37.5%" in text
    md = report.to_markdown()
    assert md.splitlines()[0].startswith("| layer |") and "| b | LayerNormalization |" in md
    with pytest.raises(KeyError, match="No layer 'c'.*Known: a, b"):
        report.layer("c")


def test_report_rejects_keras3():
    import keras as keras3

    inputs = keras3.Input((4,))
    with pytest.raises(TypeError, match=r"Keras 3 model.*kdkeras\.keras"):
        sparsity_report(keras3.Model(inputs, keras3.layers.Dense(2)(inputs)))
    with pytest.raises(TypeError, match="Received: model=3"):
        sparsity_report(3)
    with pytest.raises(ValueError, match="subclassed"):
        class Sub(keras.Model):
            def call(self, x):
                return x

        sparsity_report(Sub())
