"""Mixup and CutMix: the mixed input, the mixed labels, and the Distiller's use of them."""

import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras.distill import CutMix, MixUp

keras = kd.keras


def _constant_images(n=16, size=6):
    """Image i is the constant i + 1, with label i: a mix can be read back from the pixels."""
    x = np.repeat(np.arange(1, n + 1, dtype="float32"), size * size).reshape(n, size, size, 1)
    return x, np.arange(n)


def test_mixup_mixes_inputs_and_labels_with_the_same_weight():
    tf.random.set_seed(1)
    x, y = _constant_images()
    xm, y_loss, y_metric = MixUp(0.4).mix(x, y, num_classes=16)
    xm, y_loss, y_metric = xm.numpy(), y_loss.numpy(), y_metric.numpy()
    np.testing.assert_allclose(y_loss.sum(1), 1.0, rtol=1e-6)
    assert not np.allclose(xm, x)
    for i in range(16):
        classes = np.flatnonzero(y_loss[i] > 1e-6)
        # the pixel value is Σ share·(class + 1) over the (at most two) mixed classes
        np.testing.assert_allclose(xm[i], np.sum(y_loss[i, classes] * (classes + 1)), rtol=1e-5)
        assert y_metric[i] == np.argmax(y_loss[i])
    one_hot = np.eye(16, dtype="float32")[y]
    _, y_loss_1h, y_metric_1h = MixUp(0.4).mix(x, one_hot, 16)
    assert y_loss_1h.shape == (16, 16) and y_metric_1h.shape == (16, 16)


def test_cutmix_pastes_a_box_and_weights_labels_by_area():
    tf.random.set_seed(2)
    x, y = _constant_images(size=8)
    xm, y_loss, _ = CutMix(1.0).mix(x, y, num_classes=16)
    xm, y_loss = xm.numpy(), y_loss.numpy()
    for i in range(16):
        own = np.mean(xm[i] == i + 1)
        np.testing.assert_allclose(y_loss[i, i], own if own < 1 else 1.0, atol=1e-6)
        values = set(np.unique(xm[i]))
        assert len(values) <= 2 and (i + 1) in values | {float(np.argmax(y_loss[i]) + 1)}
    assert np.any(xm != x)
    with pytest.raises(ValueError, match="CutMix works on image batches"):
        CutMix().mix(np.zeros((4, 5), "float32"), np.zeros(4), 3)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="alpha must be > 0.*Received: alpha=0"):
        MixUp(0)
    with pytest.raises(ValueError, match="labels must be 'mixed'.*Received: labels='soft'"):
        CutMix(labels="soft")
    with pytest.raises(ValueError, match="one-hot labels of width 4 for a student with 10"):
        MixUp().mix(np.zeros((3, 2), "float32"), np.eye(4, dtype="float32")[:3], 10)
    with pytest.raises(TypeError, match="mix must be kdkeras.distill.MixUp"):
        kd.Distiller(kd.build_mlp_student((4,), 3), teacher=kd.build_mlp_student((4,), 3), mix=0.2)
    with pytest.raises(ValueError, match="mix needs a teacher"):
        kd.Distiller(kd.build_mlp_student((4,), 3), mix=MixUp())


def test_the_teacher_labels_the_mixed_input(digits_data, trained_teacher):
    (x, y), _ = digits_data
    x, y = x[:64], y[:64]
    seen = []

    def teacher(batch):
        seen.append(np.asarray(batch))
        return trained_teacher(batch, training=False)

    keras.utils.set_random_seed(0)
    student = kd.build_mlp_student((8, 8, 1), 10, hidden=(16,))
    before = [w.copy() for w in trained_teacher.get_weights()]
    d = kd.Distiller(student, teacher=teacher, mix=MixUp(0.4))
    d.compile(optimizer="adam", metrics=["accuracy"], alpha=0.5, temperature=2.0,
              run_eagerly=True)
    h = d.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    trained = [b for b in seen if len(b) == 64][-1]
    assert not np.allclose(trained, x)  # the teacher saw mixed images
    assert np.isfinite(h.history["student_loss"][0]) and 0 <= h.history["accuracy"][0] <= 1
    for a, b in zip(before, trained_teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    # evaluation is unmixed and the sparse metric still reads integer labels
    res = d.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        res["accuracy"], np.mean(np.argmax(student.predict(x, verbose=0), 1) == y), atol=1e-6)


def test_labels_off_and_label_budget(digits_data, trained_teacher):
    (x, y), _ = digits_data
    y = y[:128].copy()
    y[::2] = -1  # half the transfer set has no label
    d = kd.Distiller(kd.build_mlp_student((8, 8, 1), 10, hidden=(16,)), teacher=trained_teacher,
                     mix=CutMix(labels="off"))
    d.compile(optimizer="adam", metrics=["accuracy"], ignore_class=-1)
    h = d.fit(x[:128], y, epochs=2, batch_size=32, verbose=0)
    assert "student_loss" not in h.history and h.history["loss"][-1] < h.history["loss"][0]
    d = kd.Distiller(kd.build_mlp_student((8, 8, 1), 10, hidden=(16,)), teacher=trained_teacher,
                     mix=MixUp())
    d.compile(optimizer="adam", ignore_class=-1)
    with pytest.raises(ValueError, match="cannot mix labels with ignore_class=-1"):
        d.fit(x[:128], y, epochs=1, batch_size=32, verbose=0)
