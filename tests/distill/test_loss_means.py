"""The Distiller's logged loss parts, kept in one metric (kdkeras.distill.loss_means)."""

import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras.distill.loss_means import LossMeans, LossPart

keras = kd.keras


def test_means_of_the_given_parts_like_one_mean_each():
    rng = np.random.default_rng(0)
    means = LossMeans(["loss", "student_loss", "distillation_loss"])
    refs = {n: keras.metrics.Mean(name=n) for n in means.names}
    for step in range(7):
        parts = {"loss": rng.normal(), "distillation_loss": rng.normal() * 1e3}
        if step % 3:  # some steps have no hard-label part (an unlabelled batch)
            parts["student_loss"] = rng.normal()
        means.update_state({k: tf.constant(v, tf.float32) for k, v in parts.items()})
        for k, v in parts.items():
            refs[k].update_state(v)
    got = {m.name: float(m.result()) for m in means.metrics}
    assert list(got) == means.names
    for name, ref in refs.items():
        np.testing.assert_allclose(got[name], float(ref.result()), rtol=1e-6)
    np.testing.assert_allclose(means.count.numpy(), [7, 4, 7])
    results = means.results(["distillation_loss", "loss"])
    assert list(results) == ["distillation_loss", "loss"]
    np.testing.assert_allclose(float(results["loss"]), got["loss"], rtol=1e-6)
    means.metrics[1].reset_state()  # any part resets the whole, as Keras's reset_metrics does
    assert not means.total.numpy().any() and not means.count.numpy().any()
    assert [float(m.result()) for m in means.metrics] == [0.0, 0.0, 0.0]  # no NaN before a step


def test_bad_parts_refused():
    with pytest.raises(ValueError, match=r"distinct part names. Received: \['loss', 'loss'\]"):
        LossMeans(["loss", "loss"])
    with pytest.raises(ValueError, match="distinct part names"):
        LossMeans([])
    means = LossMeans(["loss"])
    with pytest.raises(KeyError, match=r"Unknown loss parts \['hint_loss'\]; this metric keeps \['loss'\]"):
        means.update_state({"hint_loss": tf.constant(1.0)})
    part = means.metrics[0]
    assert isinstance(part, LossPart)
    with pytest.raises(TypeError, match="'loss' is updated through its LossMeans"):
        part.update_state(1.0)


def test_parts_are_not_tracked_twice():
    d = kd.Distiller(kd.build_mlp_student((8, 8, 1), 10, hidden=(8,)), teacher=None)
    owned = [v for m in d.metrics for v in m.variables]  # a part carries no variable
    assert owned == [] and [v.shape for v in d.loss_means.variables] == [(3,), (3,)]
    assert [m.name for m in d.metrics] == ["loss", "student_loss", "distillation_loss"]


def test_a_dataset_of_unknown_length_is_not_counted_one_step_too_many(digits_data, trained_teacher):
    # The last call of a test function on a dataset of unknown length fails to read a batch; a
    # count update that does not wait for the values would still run there (a mean 6/7 of the
    # true one was seen).
    (x, y), _ = digits_data
    x, y = x[:88], y[:88]
    keras.utils.set_random_seed(0)
    d = kd.Distiller(kd.build_mlp_student((8, 8, 1), 10, hidden=(8,)), teacher=trained_teacher)
    d.compile(metrics=["accuracy"])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    unknown = ds.filter(lambda *_: True)
    assert unknown.cardinality() == tf.data.UNKNOWN_CARDINALITY
    per_batch = [d.test_on_batch(bx, by, return_dict=True) for bx, by in ds]
    want = {k: np.mean([b[k] for b in per_batch]) for k in ("loss", "student_loss", "distillation_loss")}
    for data in (ds, unknown):
        got = d.evaluate(data, verbose=0, return_dict=True)
        for k, v in want.items():
            np.testing.assert_allclose(got[k], v, rtol=1e-5)
    history = d.fit(unknown, epochs=2, verbose=0)  # the first epoch ends on the failed read
    assert np.isfinite(history.history["loss"]).all()


def test_metric_names_and_evaluate_order_unchanged(digits_data, trained_teacher):
    (x, y), _ = digits_data
    student = kd.build_mlp_student((8, 8, 1), 10, hidden=(8,))
    hint = kd.losses.HintLoss(teacher_layer="dense0", student_layer="dense0", projection=True)
    d = kd.Distiller(student, teacher=trained_teacher, hints=[hint])
    d.compile(metrics=["accuracy"])
    d.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0)
    assert d.metrics_names == ["loss", "student_loss", "distillation_loss", "hint_loss", "accuracy"]
    as_dict = d.evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    as_list = d.evaluate(x[:64], y[:64], verbose=0)
    assert as_list == [as_dict[n] for n in d.metrics_names]
    assert as_dict["hint_loss"] > 0


def test_metrics_result_reads_the_parts_in_one_go_like_keras(digits_data, trained_teacher):
    (x, y), _ = digits_data
    d = kd.Distiller(kd.build_mlp_student((8, 8, 1), 10, hidden=(8,)), teacher=trained_teacher)
    d.compile(metrics=["accuracy"])
    history = d.fit(x[:96], y[:96], epochs=2, batch_size=32, verbose=0)
    got = {k: float(v) for k, v in d.get_metrics_result().items()}
    keras_default = {m.name: float(m.result()) for m in d.metrics}  # Keras's own, metric by metric
    assert got == keras_default
    assert list(got) == ["loss", "student_loss", "distillation_loss", "accuracy"]
    for k, v in got.items():  # the epoch's logs are these results
        np.testing.assert_allclose(history.history[k][-1], v, rtol=1e-6)
