import numpy as np
import pytest

import kdkeras as kd
from kdkeras.models import BUILDERS


@pytest.mark.parametrize("name", ["cnn_teacher", "cnn", "mlp"])
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
