"""fit traces the train step once: the optimizer's slots and the compiled metrics exist before
the first trace (kdkeras.distill.step_state), and nothing retraces across epochs or fit calls."""

import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras.distill.step_state import build_step_state

keras = kd.keras


def distiller(teacher, seed=0, **compile_kw):
    keras.utils.set_random_seed(seed)
    d = kd.Distiller(kd.build_mlp_student((8, 8, 1), 10, hidden=(16,)), teacher)
    compile_kw.setdefault("optimizer", keras.optimizers.Adam(1e-3))
    d.compile(metrics=["accuracy"], alpha=0.1, temperature=3.0, **compile_kw)
    return d


@pytest.mark.parametrize("variant", ["online", "offline", "jit", "steps_per_execution",
                                     "ignore_class", "validation"])
def test_fit_traces_the_train_step_once(digits_data, trained_teacher, variant):
    (x, y), (xt, yt) = digits_data
    x, y = x[:256], y[:256]
    kw = {"jit": {"jit_compile": True}, "steps_per_execution": {"steps_per_execution": 4},
          "ignore_class": {"ignore_class": -1}}.get(variant, {})
    if variant == "offline":
        d = distiller(None, **kw)
        data = dict(x=kd.data.to_dataset(x, y, 32, shuffle=True, seed=0,
                                          teacher_logits=trained_teacher.predict(x, verbose=0)))
    else:
        d = distiller(trained_teacher, **kw)
        data = dict(x=x, y=np.where(np.arange(len(y)) % 5 == 0, -1, y) if variant == "ignore_class" else y,
                    batch_size=32)
    if variant == "validation":
        data["validation_data"] = (xt[:64], yt[:64])
    h = d.fit(**data, epochs=2, verbose=0)
    d.fit(**data, epochs=1, verbose=0)
    assert d.train_function.experimental_get_tracing_count() == 1
    if variant == "validation":  # (evaluate's other data shapes would trace it again)
        assert d.test_function.experimental_get_tracing_count() == 1
    # the metrics built before the trace are the ones the step updates: accuracy is the model's
    acc = float(np.mean(np.argmax(d.student.predict(xt, verbose=0), -1) == yt))
    res = d.evaluate(xt, yt, verbose=0, return_dict=True)
    np.testing.assert_allclose(res["accuracy"], acc, atol=1e-6)
    assert 0.0 < h.history["accuracy"][-1] <= 1.0


def test_prebuilt_state_trains_exactly_like_lazily_built_state(digits_data, trained_teacher):
    """Slots and metrics made before the trace change nothing: the same weights and logs as a
    step that built them itself (the tf-keras way, traced twice)."""
    (x, y), _ = digits_data
    x, y = x[:256], y[:256]
    a = distiller(trained_teacher, seed=3)
    ha = a.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    b = distiller(trained_teacher, seed=3)
    # tf-keras's own fit, without kdkeras's preflight and pre-built state
    hb = keras.Model.fit(b, x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    assert b.train_function.experimental_get_tracing_count() == 2
    assert a.train_function.experimental_get_tracing_count() == 1
    for wa, wb in zip(a.student.get_weights(), b.student.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    for k in ha.history:
        np.testing.assert_allclose(ha.history[k], hb.history[k], rtol=1e-6, err_msg=k)


def test_sequence_metrics_built_from_masked_batch():
    """Token labels with a Keras mask and ignore_class: the metrics built from the preflight
    batch take the flattened, unmasked tokens, as train_step gives them."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 20, size=(16, 6)).astype("int32")
    tokens[:, 4:] = 0
    y = rng.integers(0, 5, size=(16, 6))
    y[::3, 0] = -1
    t = rng.normal(size=(16, 6, 5)).astype("float32")
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(20, 8, mask_zero=True)(inp)
    student = keras.Model(inp, keras.layers.Dense(5)(h))
    d = kd.Distiller(student, None)
    d.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"], ignore_class=-1)
    d.fit({"x": tokens, "teacher_logits": t}, y, batch_size=8, epochs=2, verbose=0)
    assert d.train_function.experimental_get_tracing_count() == 1
    res = d.evaluate({"x": tokens, "teacher_logits": t}, y, batch_size=16, verbose=0,
                     return_dict=True)
    pred = np.argmax(student.predict(tokens, verbose=0), -1)
    keep = (tokens != 0) & (y != -1)
    np.testing.assert_allclose(res["accuracy"], np.mean(pred[keep] == y[keep]), atol=1e-6)


def test_legacy_optimizer_and_no_sample_still_train(digits_data, trained_teacher):
    """A legacy optimizer (no build) makes its slots in the trace; without a batch to peek at
    (a generator) the metrics are built in the trace: both still train."""
    (x, y), _ = digits_data
    d = distiller(trained_teacher, optimizer=keras.optimizers.legacy.Adam(1e-3))
    h = d.fit(x[:256], y[:256], epochs=2, batch_size=32, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    d2 = distiller(trained_teacher)
    assert len(d2.optimizer.variables) == 1  # the step counter
    build_step_state(d2, None)  # what fit does when the data cannot be peeked at
    # the slots (two per weight for Adam) exist; the metrics wait for the trace
    assert len(d2.optimizer.variables) == 1 + 2 * len(d2.student.trainable_variables)
    assert not d2.compiled_metrics._built

    def batches():
        for i in range(0, 256, 32):
            yield x[i:i + 32], y[i:i + 32]

    h2 = d2.fit(batches(), epochs=1, steps_per_epoch=8, verbose=0)
    assert np.isfinite(h2.history["loss"]).all() and d2.compiled_metrics._built


def test_preflight_draws_one_order_of_a_reshuffling_dataset(digits_data):
    """What preflight.py's docstring says: the preflight's take(1) is one iteration of the
    dataset, so a reshuffling dataset trains from its next order; a plain fit of the same
    dataset after one draw sees the same batches (what the speed benchmark does for peers)."""
    (x, y), _ = digits_data
    x, y = x[:320], y[:320]
    logits = np.zeros((len(x), 10), np.float32)

    def student():
        keras.utils.set_random_seed(3)
        return kd.build_mlp_student((8, 8, 1), 10, hidden=(16,))

    def plain(draw):
        s = student()
        s.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ds = kd.data.to_dataset(x, y, 32, shuffle=True, seed=5)
        if draw:
            for _ in ds.take(1):
                pass
        s.fit(ds, epochs=1, verbose=0)
        return s.get_weights()

    d = kd.Distiller(student(), None)  # alpha=1: the hard-label loss alone, as the plain fit
    d.compile(optimizer=keras.optimizers.SGD(0.1), alpha=1.0, temperature=2.0)
    d.fit(kd.data.to_dataset(x, y, 32, shuffle=True, seed=5, teacher_logits=logits), epochs=1, verbose=0)
    distilled = d.student.get_weights()
    gap = lambda ws: max(float(np.max(np.abs(a - b))) for a, b in zip(ws, distilled))
    assert gap(plain(draw=True)) < 1e-5
    assert gap(plain(draw=False)) > 1e-3  # another order: the draw is what makes them equal
