import numpy as np
import pytest

import kdkeras as kd
from kdkeras.models import BUILDERS, build_text_student, build_text_teacher


def toy_text(n_per_class=40, seq=12, seed=0):
    """Two classes of disjoint words: ids 2-9 for class 0, 10-17 for class 1, 0-padded."""
    rng = np.random.default_rng(seed)
    x = np.zeros((2 * n_per_class, seq), np.int32)
    y = np.repeat([0, 1], n_per_class)
    for i, label in enumerate(y):
        n = rng.integers(3, seq + 1)
        x[i, :n] = rng.integers(2, 10, n) + 8 * label
    return x, y.astype("int64")


@pytest.mark.parametrize("name", ["text", "text_teacher"])
def test_text_builders_are_registered_and_output_logits(name):
    model = BUILDERS.get(name)((12,), 3, vocab_size=30)
    assert model.input.dtype.name == "int32"
    assert model.output_shape == (None, 3)
    assert model.layers[-1].name == "output"
    assert model.layers[-1].activation.__name__ == "linear"


def test_text_builder_rejects_image_shapes_and_tiny_vocabularies():
    with pytest.raises(ValueError, match=r"input_shape=\(28, 28\)"):
        build_text_student((28, 28))
    with pytest.raises(ValueError, match="vocab_size=2"):
        build_text_teacher((12,), 2, vocab_size=2)


@pytest.mark.parametrize("builder,kwargs", [
    (build_text_student, dict(embed_dim=8)),
    (build_text_teacher, dict(embed_dim=8, hidden=16)),
])
def test_text_builders_learn_toy_text_and_export_int8(builder, kwargs, tmp_path, seed):
    x, y = toy_text()
    model = builder((12,), 2, vocab_size=20, **kwargs)
    model.compile(kd.keras.optimizers.Adam(3e-2),
                  kd.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    xt, yt = toy_text(20, seed=1)
    assert model.evaluate(xt, yt, verbose=0)[1] > 0.9
    path = kd.export_tflite(model, str(tmp_path / "m.tflite"), "int8", representative_data=x)
    res = kd.evaluate_tflite(path, xt, yt, keras_model=model)
    assert res["agreement_with_keras"] >= 0.95 and res["accuracy"] > 0.9
