"""Consistent views: the augmented batch reaches the teacher and the student alike."""

import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras import losses

keras = kd.keras


def _student(seed=0):
    keras.utils.set_random_seed(seed)
    return kd.build_mlp_student((8, 8, 1), 10, hidden=(16,))


def test_teacher_and_student_see_the_same_augmented_view(digits_data, trained_teacher):
    (x, y), _ = digits_data
    xs, ys = x[:64], y[:64]
    flip = lambda b: tf.reverse(b, axis=[2])  # noqa: E731  (deterministic, to check the view)
    s = _student()
    d = kd.Distiller(s, teacher=trained_teacher, augment=flip)
    d.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.0, temperature=2.0)  # no update
    h = d.fit(xs, ys, epochs=1, batch_size=64, verbose=0)
    flipped = xs[:, :, ::-1]
    want = losses.kl_divergence(trained_teacher.predict(flipped, verbose=0),
                                s.predict(flipped, verbose=0), temperature=2.0)
    np.testing.assert_allclose(h.history["distillation_loss"][0], np.mean(want), rtol=1e-5)
    plain = losses.kl_divergence(trained_teacher.predict(xs, verbose=0), s.predict(xs, verbose=0),
                                 temperature=2.0)
    assert abs(np.mean(plain) - np.mean(want)) > 1e-3  # the view really differs
    # evaluation sees the original inputs
    res = d.evaluate(xs, ys, batch_size=64, verbose=0, return_dict=True)
    np.testing.assert_allclose(res["distillation_loss"], np.mean(plain), rtol=1e-5)


def test_a_keras_preprocessing_layer_augments_and_the_teacher_stays_frozen(digits_data,
                                                                           trained_teacher):
    (x, y), _ = digits_data
    before = [w.copy() for w in trained_teacher.get_weights()]
    d = kd.Distiller(_student(), teacher=trained_teacher,
                     augment=keras.layers.RandomTranslation(0.1, 0.1, seed=0))
    d.compile(optimizer="adam", alpha=0.1, temperature=1.0)
    h = d.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    for a, b in zip(before, trained_teacher.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_an_augmentation_that_changes_the_shape_is_refused(digits_data, trained_teacher):
    (x, y), _ = digits_data
    d = kd.Distiller(_student(), teacher=trained_teacher, augment=lambda b: b[:, :4])
    d.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"augment must keep the batch shape: it turned"):
        d.fit(x[:64], y[:64], epochs=1, batch_size=64, verbose=0)


def test_augmentation_needs_an_online_teacher():
    with pytest.raises(ValueError, match="augment needs a teacher"):
        kd.Distiller(_student(), teacher=None, augment=lambda b: b)
    with pytest.raises(TypeError, match="augment must be a tf-keras preprocessing layer"):
        kd.Distiller(_student(), teacher=_student(1), augment=3)
