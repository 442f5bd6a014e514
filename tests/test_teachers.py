import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras import teachers


@pytest.mark.parametrize("fmt", ["keras", "h5", "savedmodel"])
def test_load_teacher_from_files(tmp_path, trained_teacher, digits_data, fmt):
    (x, _), _ = digits_data
    if fmt == "savedmodel":
        path = tmp_path / "sm"
        tf.saved_model.save(trained_teacher, str(path))
    else:
        path = tmp_path / f"teacher.{fmt}"
        trained_teacher.save(path)
    t = kd.teachers.load_teacher(path)
    np.testing.assert_allclose(t(x[:8]).numpy(), trained_teacher.predict(x[:8], verbose=0), rtol=1e-5, atol=1e-5)
    d = kd.Distiller(student=kd.build_mlp_student((8, 8, 1), 10, hidden=(4,)), teacher=str(path))
    assert isinstance(d.teacher, teachers.Teacher)


def test_load_keras3_file(tmp_path, digits_data):
    import keras as keras3

    (x, _), _ = digits_data
    m = keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Flatten(), keras3.layers.Dense(10)])
    m.save(tmp_path / "k3.keras")
    t = teachers.load_teacher(tmp_path / "k3.keras")
    assert teachers.is_keras3_model(t.model)
    np.testing.assert_allclose(t(x[:4]).numpy(), m.predict(x[:4], verbose=0), rtol=1e-5, atol=1e-6)


def test_missing_teacher_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="Teacher path does not exist"):
        teachers.load_teacher(tmp_path / "nope.keras")


def test_dict_outputs_need_a_key():
    def model(x):
        return {"logits": x * 2.0, "pooled": x}

    t = teachers.Teacher(model)
    np.testing.assert_allclose(t(np.ones((1, 3), "float32")).numpy(), 2.0)

    def ambiguous(x):
        return {"a": x, "b": x}

    with pytest.raises(ValueError, match=r"dict with keys \['a', 'b'\]; say which one"):
        teachers.Teacher(ambiguous)(np.ones((1, 3), "float32"))
    np.testing.assert_allclose(teachers.Teacher(ambiguous, output="b")(np.ones((1, 3), "float32")).numpy(), 1.0)


def test_not_a_teacher():
    with pytest.raises(TypeError, match="Received: int"):
        teachers.Teacher(3)


def test_cache_to_file_is_atomic_and_checked(tmp_path, trained_teacher, digits_data):
    (x, y), _ = digits_data
    path = tmp_path / "cache" / "logits.npy"
    kd.cache_teacher_logits(trained_teacher, (x[:40], y[:40]), path=path, batch_size=16)
    assert path.exists() and np.load(path).shape == (40, 10)
    assert [p.name for p in path.parent.iterdir()] == ["logits.npy"]  # no temp file left
    with pytest.raises(ValueError, match="same length. Received: 40 and 39"):
        kd.cache_teacher_logits(trained_teacher, (x[:40], y[:39]))
    with pytest.raises(FileNotFoundError, match="No teacher-logit cache"):
        kd.load_teacher_logits(tmp_path / "none.npy")
    with pytest.raises(ValueError, match="needs a teacher"):
        kd.cache_teacher_logits(None, (x[:4], y[:4]))
