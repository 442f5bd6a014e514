import numpy as np
import pytest

import kdkeras as kd
from kdkeras.models import BUILDERS, build_resnet_teacher


@pytest.mark.parametrize("name", ["cnn_teacher", "resnet_teacher", "cnn", "mlp"])
def test_builders_output_logits_from_layer_named_output(name):
    model = BUILDERS.get(name)((28, 28, 1), 10)
    assert model.output_shape == (None, 10)
    assert model.layers[-1].name == "output"
    assert model.layers[-1].activation.__name__ == "linear"
    assert isinstance(model, kd.keras.Model)


def test_default_student_is_at_least_10x_smaller_than_teacher():
    t = kd.build_cnn_teacher((28, 28, 1), 10).count_params()
    for s in (kd.build_cnn_student(), kd.build_mlp_student(hidden=(32,))):
        assert t / s.count_params() >= 10


def test_two_dimensional_inputs_get_a_channel_axis():
    m = kd.build_cnn_student((8, 8), 3, filters=(4,), dense=0)
    assert m.predict(np.zeros((2, 8, 8), "float32"), verbose=0).shape == (2, 3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_shape=(0, 28, 1)), r"input_shape=\(0, 28, 1\)"),
    (dict(num_classes=1), "num_classes=1"),
])
def test_bad_builder_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kd.build_mlp_student(**kwargs)


def _resnet_params(filters, blocks, c=1, classes=10):
    """Weights of ``build_resnet_teacher`` counted by hand: 3x3 convs without bias, 4
    BatchNorm weights per channel, 1x1 projections where the width or resolution changes."""
    n = 9 * c * filters[0] + 4 * filters[0]  # stem
    width = filters[0]
    for i, f in enumerate(filters):
        for j in range(blocks):
            n += 9 * width * f + 4 * f + 9 * f * f + 4 * f
            if (i > 0 and j == 0) or width != f:
                n += width * f + 4 * f
            width = f
    return n + width * classes + classes


@pytest.mark.parametrize("filters,blocks", [((32, 64, 128), 1), ((8, 16), 2), ((8, 8), 1)])
def test_resnet_teacher_param_count(filters, blocks):
    m = build_resnet_teacher((28, 28, 1), 10, filters=filters, blocks_per_stage=blocks)
    assert m.count_params() == _resnet_params(filters, blocks)


def test_resnet_teacher_default_is_small_and_global_pooled():
    m = build_resnet_teacher()
    assert m.count_params() == _resnet_params((24, 48, 96), 1) == 174_850
    assert m.get_layer("pool").input_shape == (None, 4, 4, 96)
    assert not any("random" in layer.name for layer in m.layers)  # no augmentation by default


@pytest.mark.parametrize("stem_pool,expected", [(1, (None, 7, 7, 16)), (2, (None, 4, 4, 16))])
def test_resnet_teacher_stages_halve_the_resolution(stem_pool, expected):
    m = build_resnet_teacher((28, 28), 3, filters=(8, 16, 16), stem_pool=stem_pool)
    assert m.get_layer("pool").input_shape == expected
    assert m.predict(np.zeros((2, 28, 28), "float32"), verbose=0).shape == (2, 3)


def test_resnet_teacher_round_trips_get_config_and_keras_file(tmp_path):
    m = build_resnet_teacher((16, 16, 1), 4, filters=(4, 8), translate=0.1, flip=True)
    x = np.random.default_rng(0).random((3, 16, 16, 1), dtype="float32")
    clone = kd.keras.Model.from_config(m.get_config())
    clone.set_weights(m.get_weights())
    np.testing.assert_allclose(clone.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)
    m.save(tmp_path / "t.keras")
    loaded = kd.keras.models.load_model(tmp_path / "t.keras", compile=False)
    assert loaded.get_config() == m.get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)


def test_augmentation_is_training_only():
    m = build_resnet_teacher((16, 16, 1), 4, filters=(4,), translate=0.2, flip=True)
    assert [l.name for l in m.layers[1:3]] == ["random_shift", "random_flip"]
    x = np.random.default_rng(0).random((8, 16, 16, 1), dtype="float32")
    aug = kd.keras.Model(m.input, m.get_layer("random_flip").output)
    np.testing.assert_array_equal(aug(x, training=False).numpy(), x)
    assert not np.allclose(aug(x, training=True).numpy(), x)


@pytest.mark.parametrize("kwargs,match", [
    (dict(blocks_per_stage=0), "blocks_per_stage=0"),
    (dict(translate=1.0), "translate=1.0"),
])
def test_bad_resnet_teacher_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_resnet_teacher(**kwargs)


def test_resnet_teacher_with_augmentation_converts_to_tflite(tmp_path):
    from kdkeras.export import export_tflite, predict_tflite

    m = build_resnet_teacher((16, 16, 1), 4, filters=(4, 8), translate=0.1, flip=True)
    x = np.random.default_rng(0).random((16, 16, 16, 1), dtype="float32")
    path = export_tflite(m, tmp_path / "t.tflite", representative_data=x)
    np.testing.assert_allclose(predict_tflite(path, x), m.predict(x, verbose=0), atol=1e-4)
