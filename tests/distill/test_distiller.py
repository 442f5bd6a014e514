import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras import losses

keras = kd.keras


def small_student(seed=0, hidden=(16,), name="student"):
    keras.utils.set_random_seed(seed)
    return kd.build_mlp_student((8, 8, 1), 10, hidden=hidden, name=name)


def compiled(student, teacher, **kw):
    d = kd.Distiller(student=student, teacher=teacher)
    kw.setdefault("optimizer", keras.optimizers.Adam(1e-3))
    d.compile(**kw)
    return d


def test_contract_fit_evaluate_predict(digits_data, trained_teacher):
    (x, y), (xt, yt) = digits_data
    student = small_student()
    d = kd.Distiller(student=student, teacher=trained_teacher)
    d.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
              student_loss_fn=None, distillation_loss_fn=None, alpha=0.1, temperature=3.0)
    history = d.fit(x, y, epochs=3, batch_size=128, verbose=0)
    assert set(history.history) == {"loss", "student_loss", "distillation_loss", "accuracy"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    # loss = alpha * student + (1 - alpha) * distillation, from the logged parts (same batches)
    res = d.evaluate(xt, yt, verbose=0, return_dict=True)
    np.testing.assert_allclose(res["loss"], 0.1 * res["student_loss"] + 0.9 * res["distillation_loss"], rtol=1e-5)
    np.testing.assert_allclose(d.predict(xt, verbose=0), student.predict(xt, verbose=0), rtol=1e-6)
    assert d.student is student
    acc = np.mean(np.argmax(student.predict(xt, verbose=0), -1) == yt)
    np.testing.assert_allclose(res["accuracy"], acc, atol=1e-6)


def test_loss_values_match_numpy_reference(digits_data, trained_teacher):
    (x, y), _ = digits_data
    x, y = x[:32], y[:32]
    student = small_student()
    d = compiled(student, trained_teacher, alpha=0.3, temperature=2.0)
    res = d.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    t = trained_teacher.predict(x, verbose=0).astype("float64")
    s = student.predict(x, verbose=0).astype("float64")

    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    ce = -log_softmax(s)[np.arange(32), y].mean()
    lt, ls = log_softmax(t / 2), log_softmax(s / 2)
    kl = (np.exp(lt) * (lt - ls)).sum(-1).mean() * 4
    np.testing.assert_allclose(res["student_loss"], ce, rtol=1e-4)
    np.testing.assert_allclose(res["distillation_loss"], kl, rtol=1e-4)
    np.testing.assert_allclose(res["loss"], 0.3 * ce + 0.7 * kl, rtol=1e-4)


def test_teacher_weights_unchanged_and_only_student_trains(digits_data, trained_teacher):
    (x, y), _ = digits_data
    before_t = [w.copy() for w in trained_teacher.get_weights()]
    student = small_student()
    before_s = [w.copy() for w in student.get_weights()]
    d = compiled(student, trained_teacher)
    d.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0)
    for a, b in zip(before_t, trained_teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before_s, student.get_weights()))
    assert trained_teacher.trainable  # the user's flag is left alone: frozen by construction
    assert len(d.trainable_variables) == len(student.trainable_variables)


def test_teacher_batchnorm_statistics_untouched(digits_data):
    (x, y), _ = digits_data
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Flatten()(inp))
    teacher = keras.Model(inp, keras.layers.Dense(10)(h))
    before = [w.copy() for w in teacher.get_layer("bn").get_weights()]
    d = compiled(small_student(), teacher)
    d.fit(x[:128], y[:128], epochs=1, batch_size=32, verbose=0)
    for a, b in zip(before, teacher.get_layer("bn").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_one_hot_and_integer_labels_give_same_losses(digits_data, trained_teacher):
    (x, y), _ = digits_data
    x, y = x[:64], y[:64]
    student = small_student()
    a = compiled(student, trained_teacher, metrics=["accuracy"]).evaluate(x, y, verbose=0, return_dict=True)
    one_hot = np.eye(10, dtype="float32")[y]
    b = compiled(student, trained_teacher, metrics=["accuracy"]).evaluate(x, one_hot, verbose=0, return_dict=True)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)


def test_sample_weights_zero_weight_examples_do_not_count(digits_data, trained_teacher):
    (x, y), _ = digits_data
    x, y = x[:64].copy(), y[:64].copy()
    d = compiled(small_student(), trained_teacher)
    w = np.ones(64, "float32")
    w[32:] = 0.0
    a = d.evaluate(x, y, sample_weight=w, batch_size=64, verbose=0, return_dict=True)
    x2, y2 = x.copy(), y.copy()
    x2[32:] = np.random.default_rng(0).random(x2[32:].shape)  # garbage where the weight is 0
    y2[32:] = 0
    b = d.evaluate(x2, y2, sample_weight=w, batch_size=64, verbose=0, return_dict=True)
    for k in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)
    full = d.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    assert not np.isclose(a["loss"], full["loss"])


def test_tf_data_input(digits_data, trained_teacher):
    (x, y), _ = digits_data
    ds = kd.data.to_dataset(x[:256], y[:256], batch_size=64, shuffle=True, seed=0)
    d = compiled(small_student(), trained_teacher, metrics=["accuracy"])
    h = d.fit(ds, epochs=2, verbose=0)
    assert h.history["loss"][1] < h.history["loss"][0]


def _seq_student(vocab=20, classes=5, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(vocab, 8, mask_zero=True)(inp)
    h = keras.layers.Dense(8, activation="relu")(h)
    return keras.Model(inp, keras.layers.Dense(classes)(h))


def test_sequence_logits_with_keras_mask_ignore_padding():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 20, size=(4, 6)).astype("int32")
    tokens[:, 4:] = 0  # padding
    y = rng.integers(0, 5, size=(4, 6))
    t1 = rng.normal(size=(4, 6, 5)).astype("float32")
    t2 = t1.copy()
    t2[:, 4:] = 100.0 * rng.normal(size=(4, 2, 5))  # different teacher logits on padding only
    y2 = y.copy()
    y2[:, 4:] = 4
    d = kd.Distiller(student=_seq_student(), teacher=None)
    d.compile(optimizer="adam", alpha=0.5, temperature=2.0)
    a = d.evaluate({"x": tokens, "teacher_logits": t1}, y, batch_size=4, verbose=0, return_dict=True)
    b = d.evaluate({"x": tokens, "teacher_logits": t2}, y2, batch_size=4, verbose=0, return_dict=True)
    for k in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)
    # the mean is over real tokens only: equal to the loss of the unpadded part alone
    s = d.student.predict(tokens, verbose=0)
    kl = losses.kl_divergence(t1[:, :4], s[:, :4], temperature=2.0).numpy().mean()
    np.testing.assert_allclose(a["distillation_loss"], kl, rtol=1e-5)


def test_sequence_per_step_sample_weights_act_as_mask():
    rng = np.random.default_rng(1)
    tokens = rng.integers(1, 20, size=(4, 6)).astype("int32")
    y = rng.integers(0, 5, size=(4, 6))
    t = rng.normal(size=(4, 6, 5)).astype("float32")
    mask = np.ones((4, 6), "float32")
    mask[:, 3:] = 0
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), dtype="int32")  # no Keras mask: padding comes from the weights
    h = keras.layers.Embedding(20, 8)(inp)
    student = keras.Model(inp, keras.layers.Dense(5)(h))
    d = kd.Distiller(student=student, teacher=None)
    d.compile(optimizer="adam", alpha=0.0, temperature=1.0)
    ds = tf.data.Dataset.from_tensor_slices({"x": tokens, "y": y, "teacher_logits": t, "sample_weight": mask}).batch(4)
    res = d.evaluate(ds, verbose=0, return_dict=True)
    s = student.predict(tokens, verbose=0)
    kl = losses.kl_divergence(t[:, :3], s[:, :3], 1.0).numpy().mean()
    np.testing.assert_allclose(res["distillation_loss"], kl, rtol=1e-5)


def test_offline_three_tuple_dict_and_cache_are_equivalent(digits_data, trained_teacher, tmp_path):
    (x, y), _ = digits_data
    x, y = x[:128], y[:128]
    logits = trained_teacher.predict(x, verbose=0)
    online = compiled(small_student(), trained_teacher, alpha=0.2, temperature=2.0)
    ref = online.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    offline = compiled(small_student(), None, alpha=0.2, temperature=2.0)
    ds = tf.data.Dataset.from_tensor_slices((x, y, logits)).batch(64)
    got_tuple = offline.evaluate(ds, verbose=0, return_dict=True)
    got_dict = offline.evaluate({"x": x, "teacher_logits": logits}, y, batch_size=64, verbose=0, return_dict=True)
    cached = kd.cache_teacher_logits(trained_teacher, (x, y), path=tmp_path / "t.npy", batch_size=64, shuffle=False)
    got_cache = offline.evaluate(cached, verbose=0, return_dict=True)
    for got in (got_tuple, got_dict, got_cache):
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, err_msg=k)
    np.testing.assert_allclose(kd.load_teacher_logits(tmp_path / "t.npy"), logits, rtol=1e-5, atol=1e-5)


def test_cache_keeps_logits_aligned_when_shuffled(trained_teacher, digits_data):
    (x, y), _ = digits_data
    ds = kd.cache_teacher_logits(trained_teacher, (x[:200], y[:200]), batch_size=50, shuffle=True, seed=3)
    for xb, yb, lb in ds.take(2):
        np.testing.assert_allclose(trained_teacher.predict(xb, verbose=0), lb.numpy(), rtol=1e-5, atol=1e-5)


def test_offline_fit_skips_the_teacher(digits_data, trained_teacher):
    (x, y), _ = digits_data
    calls = []

    def counting_teacher(inp):
        calls.append(1)
        return trained_teacher(inp, training=False)

    ds = kd.cache_teacher_logits(counting_teacher, (x[:256], y[:256]), batch_size=64)
    n_cache_calls = len(calls)
    d = compiled(small_student(), None, metrics=["accuracy"])
    h = d.fit(ds, epochs=3, verbose=0)
    assert len(calls) == n_cache_calls == 4
    assert h.history["distillation_loss"][-1] < h.history["distillation_loss"][0]


def test_unlabeled_transfer_set_distills_only(digits_data, trained_teacher):
    (x, _), _ = digits_data
    ds = kd.cache_teacher_logits(trained_teacher, x[:128], batch_size=64)
    d = compiled(small_student(), None)
    h = d.fit(ds, epochs=2, verbose=0)
    assert set(h.history) == {"loss", "distillation_loss"}
    np.testing.assert_allclose(h.history["loss"], h.history["distillation_loss"], rtol=1e-6)


def test_callable_and_keras3_teachers(digits_data, trained_teacher):
    import keras as keras3

    (x, y), _ = digits_data
    keras3.utils.set_random_seed(0)
    k3 = keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Flatten(), keras3.layers.Dense(10)])
    before = [w.copy() for w in k3.get_weights()]
    student = small_student()
    for teacher, reference in ((k3, k3.predict), (lambda inp: trained_teacher(inp, training=False), trained_teacher.predict)):
        d = compiled(student, teacher, temperature=2.0)
        res = d.evaluate(x[:64], y[:64], batch_size=64, verbose=0, return_dict=True)
        want = losses.kl_divergence(reference(x[:64], verbose=0), student.predict(x[:64], verbose=0), 2.0).numpy().mean()
        np.testing.assert_allclose(res["distillation_loss"], want, rtol=1e-5)
        h = d.fit(x[:128], y[:128], epochs=2, batch_size=32, verbose=0)
        assert h.history["distillation_loss"][1] < h.history["distillation_loss"][0]
    for a, b in zip(before, k3.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bfloat16_teacher_logits_are_cast(digits_data, trained_teacher):
    (x, y), _ = digits_data
    teacher = lambda inp: tf.cast(trained_teacher(inp, training=False), tf.bfloat16)
    d = compiled(small_student(), teacher, distillation_loss_fn=lambda t, s: tf.reduce_mean(tf.square(t - s), -1))
    h = d.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(h.history["loss"][0])
    probs = lambda inp: tf.cast(tf.nn.softmax(trained_teacher(inp, training=False)), tf.bfloat16)
    with pytest.raises(ValueError, match="look like probabilities"):
        compiled(small_student(), probs).fit(x[:64], y[:64], epochs=1, verbose=0)


def test_string_loss_names_are_taken_from_logits(digits_data, trained_teacher):
    (x, y), _ = digits_data
    student = small_student()
    a = compiled(student, trained_teacher).evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    b = compiled(student, trained_teacher, student_loss_fn="sparse_categorical_crossentropy",
                 distillation_loss_fn="kl").evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)


def test_labels_shaped_n_by_1(digits_data, trained_teacher):
    (x, y), _ = digits_data
    student = small_student()
    a = compiled(student, trained_teacher, metrics=["accuracy"]).evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    b = compiled(student, trained_teacher, metrics=["accuracy"]).evaluate(x[:64], y[:64, None], verbose=0, return_dict=True)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)


def test_validation_split_logs_val_parts(digits_data, trained_teacher):
    (x, y), _ = digits_data
    d = compiled(small_student(), trained_teacher, metrics=["accuracy"])
    h = d.fit(x[:200], y[:200], epochs=1, batch_size=32, validation_split=0.2, verbose=0)
    assert {"val_loss", "val_student_loss", "val_distillation_loss", "val_accuracy"} <= set(h.history)


def test_predict_on_offline_dict_batches(digits_data, trained_teacher):
    (x, y), _ = digits_data
    logits = trained_teacher.predict(x[:32], verbose=0)
    student = small_student()
    d = compiled(student, None)
    ds = tf.data.Dataset.from_tensor_slices({"x": x[:32], "y": y[:32], "teacher_logits": logits}).batch(16)
    np.testing.assert_allclose(d.predict(ds, verbose=0), student.predict(x[:32], verbose=0), rtol=1e-5, atol=1e-6)


def test_offline_rejects_sample_and_class_weights(digits_data, trained_teacher):
    (x, y), _ = digits_data
    logits = trained_teacher.predict(x[:64], verbose=0)
    d = compiled(small_student(), None)
    with pytest.raises(ValueError, match="sample_weight= and class_weight= cannot be used"):
        d.fit({"x": x[:64], "teacher_logits": logits}, y[:64], class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="sample_weight= and class_weight= cannot be used"):
        d.fit({"x": x[:64], "teacher_logits": logits}, y[:64], sample_weight=np.ones(64), verbose=0)


def test_numpy_scalars_accepted_for_alpha_and_temperature(trained_teacher):
    d = kd.Distiller(student=small_student(), teacher=trained_teacher)
    d.compile(optimizer="adam", alpha=np.float32(0.25), temperature=np.float64(2.0))
    assert (d.alpha, d.temperature) == (0.25, 2.0)


def test_ensemble_cache_needs_temperature(digits_data, trained_teacher):
    (x, y), _ = digits_data
    with pytest.raises(ValueError, match="pass the Distiller's temperature"):
        kd.cache_teacher_logits([trained_teacher, trained_teacher], (x[:8], y[:8]))


def test_ensemble_soft_targets_are_weighted_average(digits_data, trained_teacher):
    (x, _), _ = digits_data
    other = small_student(seed=5, hidden=(32,), name="other")
    T = 2.0
    ens = kd.distill.EnsembleTeacher([trained_teacher, other], weights=[3, 1])
    z = ens(x[:16], temperature=T).numpy()

    def softmax(v):
        e = np.exp(v - v.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    want = 0.75 * softmax(trained_teacher.predict(x[:16], verbose=0) / T) + 0.25 * softmax(other.predict(x[:16], verbose=0) / T)
    np.testing.assert_allclose(softmax(z / T), want, rtol=1e-5, atol=1e-6)
    d = kd.Distiller(student=small_student(), teacher=[trained_teacher, other], teacher_weights=[3, 1])
    assert isinstance(d.teacher, kd.distill.EnsembleTeacher) and d.teacher.weights == [0.75, 0.25]
    with pytest.raises(ValueError, match="one weight per teacher: 2 teachers, received 3 weights"):
        kd.Distiller(student=small_student(), teacher=[trained_teacher, other], teacher_weights=[1, 1, 1])


@pytest.mark.parametrize("sgd", [keras.optimizers.SGD, keras.optimizers.legacy.SGD])
def test_mirrored_strategy_matches_single_device(digits_data, trained_teacher, sgd):
    (x, y), _ = digits_data
    x, y = x[:64], y[:64]
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) >= 2, "conftest configures two logical CPUs"
    single = small_student(seed=3)
    init = single.get_weights()
    d1 = compiled(single, trained_teacher, optimizer=sgd(0.1))
    h1 = d1.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    strategy = tf.distribute.MirroredStrategy(devices[:2])
    with strategy.scope():
        mirrored = small_student(seed=3)
        mirrored.set_weights(init)
        d2 = compiled(mirrored, trained_teacher, optimizer=sgd(0.1))
    h2 = d2.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    assert d2.distribute_strategy.num_replicas_in_sync == 2
    for key in ("loss", "student_loss", "distillation_loss"):  # the replicas' means, combined
        np.testing.assert_allclose(h2.history[key], h1.history[key], rtol=1e-5)
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_jit_compile_matches_eager_graph(digits_data, trained_teacher):
    (x, y), _ = digits_data
    results = []
    for jit in (False, True):
        s = small_student(seed=4)
        d = compiled(s, trained_teacher, optimizer=keras.optimizers.SGD(0.05), jit_compile=jit)
        d.fit(x[:128], y[:128], epochs=1, batch_size=64, shuffle=False, verbose=0)
        results.append(s.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fmt", ["keras", "h5", "savedmodel"])
def test_student_saves_and_reloads_alone(digits_data, trained_teacher, tmp_path, fmt):
    (x, y), (xt, _) = digits_data
    student = small_student()
    d = compiled(student, trained_teacher)
    d.fit(x[:128], y[:128], epochs=1, batch_size=64, verbose=0)
    path = tmp_path / ("student.keras" if fmt == "keras" else "student.h5" if fmt == "h5" else "student_sm")
    d.student.save(path)
    reloaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(reloaded.predict(xt, verbose=0), student.predict(xt, verbose=0), rtol=1e-5, atol=1e-6)


def test_hints_train_projection_but_student_stays_plain(digits_data, trained_teacher):
    (x, y), _ = digits_data
    student = small_student(hidden=(16,))
    hint = losses.HintLoss(teacher_layer="dense0", student_layer="dense0", metric="mse", weight=0.5, projection=True)
    d = kd.Distiller(student=student, teacher=trained_teacher, hints=[hint])
    d.compile(optimizer="adam")
    h = d.fit(x[:256], y[:256], epochs=3, batch_size=64, verbose=0)
    assert "hint_loss" in h.history and h.history["hint_loss"][-1] < h.history["hint_loss"][0]
    assert hint._proj.kernel.shape == (16, 64)
    assert len(student.weights) == 4  # the projection is not part of the student
    with pytest.raises(ValueError, match="The student has no layer named 'nope'"):
        kd.Distiller(student=student, teacher=trained_teacher, hints=[losses.HintLoss("dense0", "nope")])


# --------------------------------------------------------------------------- bad input
def test_shape_mismatch_names_both_shapes(digits_data, trained_teacher):
    (x, y), _ = digits_data
    keras.utils.set_random_seed(0)
    student = kd.build_mlp_student((8, 8, 1), 12, hidden=(4,))
    d = compiled(student, trained_teacher)
    with pytest.raises(ValueError, match=r"gives shape \('batch', 10\) but student 'mlp_student' gives \('batch', 12\)"):
        d.fit(x[:64], y[:64], epochs=1, verbose=0)


def tiny_lm(vocab, name, steps=6):
    """ids [B, steps] -> logits [B, steps, vocab]."""
    ids = keras.Input((steps,), dtype="int32")
    return keras.Model(ids, keras.layers.Dense(vocab)(keras.layers.Embedding(vocab, 4)(ids)),
                       name=name)


@pytest.mark.parametrize("teacher_v,student_v", [(60, 50), (50, 60)])
def test_sequence_logits_of_another_vocabulary_are_refused(teacher_v, student_v):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).integers(1, 50, (8, 6)).astype("int32")
    d = compiled(tiny_lm(student_v, "s"), tiny_lm(teacher_v, "t"), temperature=2.0)
    with pytest.raises(ValueError, match=rf"teacher vocabulary V={teacher_v} != student "
                                         rf"V={student_v}: token-level KD needs one tokenizer "
                                         "shared by teacher and student"):
        d.fit(x, np.roll(x, -1, 1), epochs=1, verbose=0)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, "0.5", None])
def test_alpha_out_of_range(alpha, trained_teacher):
    d = kd.Distiller(student=small_student(), teacher=trained_teacher)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]. Received: alpha="):
        d.compile(optimizer="adam", alpha=alpha)


@pytest.mark.parametrize("temperature", [0, -2.0])
def test_temperature_not_positive(temperature, trained_teacher):
    d = kd.Distiller(student=small_student(), teacher=trained_teacher)
    with pytest.raises(ValueError, match=f"temperature must be > 0. Received: temperature={temperature}"):
        d.compile(optimizer="adam", temperature=temperature)


def test_conflicting_temperatures(trained_teacher):
    d = kd.Distiller(student=small_student(), teacher=trained_teacher)
    with pytest.raises(ValueError, match="temperature=5.0 but compile"):
        d.compile(optimizer="adam", distillation_loss_fn=losses.KLDivergence(temperature=5.0), temperature=3.0)


def test_labels_out_of_range(digits_data, trained_teacher):
    (x, y), _ = digits_data
    d = compiled(small_student(), trained_teacher)
    bad = y[:64].copy()
    bad[10] = 10
    with pytest.raises(ValueError, match=r"Label 10 is out of range for 10 classes"):
        d.fit(x[:64], bad, epochs=1, verbose=0)
    bad[10] = -1
    with pytest.raises(ValueError, match=r"Label -1 is out of range"):
        d.fit(x[:64], bad, epochs=1, verbose=0)


def test_labels_as_a_dict_are_refused_with_the_fix(digits_data, trained_teacher):
    (x, y), _ = digits_data
    d = compiled(small_student(), trained_teacher)
    with pytest.raises(ValueError, match=r"received a dict with keys \['output'\]. Pass the array itself, "
                                         r"e.g. y\['output'\]"):
        d.fit(x[:64], {"output": y[:64]}, epochs=1, batch_size=32, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((x[:64], {"output": y[:64]})).batch(32)
    with pytest.raises(ValueError, match="received a dict"):
        d.fit(ds, epochs=1, verbose=0)


def test_teacher_that_outputs_probabilities(digits_data, trained_teacher):
    (x, y), _ = digits_data
    probs = keras.Sequential([trained_teacher, keras.layers.Softmax()])
    d = compiled(small_student(), probs)
    with pytest.raises(ValueError, match="look like probabilities.*needs logits"):
        d.fit(x[:64], y[:64], epochs=1, verbose=0)


def test_nan_loss_stops_with_step_and_keeps_last_good_weights(digits_data, trained_teacher):
    (x, y), _ = digits_data
    x = x[:256].copy()
    x[130] = np.nan  # in the third batch of 64
    student = small_student()
    d = compiled(student, trained_teacher)
    snapshots = []

    class Snap(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots.append([w.copy() for w in student.get_weights()])

    with pytest.raises(kd.TrainingDivergedError, match=r"non-finite \(NaN or inf\) at epoch 1, step 3") as err:
        d.fit(x, y[:256], epochs=2, batch_size=64, shuffle=False, verbose=0, callbacks=[Snap()])
    assert (err.value.epoch, err.value.step) == (1, 3)
    for a, b in zip(snapshots[1], student.get_weights()):  # the weights after step 2
        np.testing.assert_array_equal(a, b)


def nan_gradient_student(seed=0):
    """Finite outputs, NaN kernel gradient: ``h + sqrt(0·|h|)`` adds 0 but its derivative is
    inf·0 (the same as an ``inf`` input through oneDNN's fused MatMul + ReLU, whose ReLU gives 0
    for NaN)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Dense(16)(keras.layers.Flatten()(inp))
    h = keras.layers.Lambda(lambda t: t + tf.sqrt(tf.abs(t) * 0.0))(h)
    return keras.Model(inp, keras.layers.Dense(10)(h))


@pytest.mark.parametrize("compile_kw", [{}, {"jit_compile": True}, {"steps_per_execution": 2}])
def test_nan_gradient_with_finite_loss_is_never_applied(digits_data, trained_teacher, compile_kw):
    (x, y), _ = digits_data
    student = nan_gradient_student()
    probe = tf.Variable(x[:4])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(student(probe))
    assert np.isfinite(loss.numpy()) and not np.isfinite(tape.gradient(loss, student.trainable_variables[0]).numpy()).all()
    init = [w.copy() for w in student.get_weights()]
    d = compiled(student, trained_teacher, **compile_kw)
    with pytest.raises(kd.TrainingDivergedError, match=r"or its gradient became non-finite .* step 1") as err:
        d.fit(x[:128], y[:128], epochs=1, batch_size=64, shuffle=False, verbose=0)
    assert err.value.step == 1
    assert int(d.optimizer.iterations.numpy()) == 0
    for a, b in zip(init, student.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nan_guard_with_steps_per_execution(digits_data, trained_teacher):
    (x, y), _ = digits_data
    x = x[:256].copy()
    x[130] = np.nan  # third batch of 64, inside the first block of 4 steps
    student = small_student()
    d = compiled(student, trained_teacher, optimizer=keras.optimizers.SGD(0.1), steps_per_execution=4)
    with pytest.raises(kd.TrainingDivergedError, match="epoch 1, step 3") as err:
        d.fit(x, y[:256], epochs=2, batch_size=64, shuffle=False, verbose=0)
    assert err.value.step == 3
    assert int(d.optimizer.iterations.numpy()) == 2  # steps 3 and 4 were not applied
    reference = small_student()
    ref = compiled(reference, trained_teacher, optimizer=keras.optimizers.SGD(0.1))
    ref.fit(x[:128], y[:128], epochs=1, batch_size=64, shuffle=False, verbose=0)
    for a, b in zip(reference.get_weights(), student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nan_guard_under_mirrored_strategy(digits_data, trained_teacher):
    (x, y), _ = digits_data
    x = x[:128].copy()
    x[70] = np.inf
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    with tf.distribute.MirroredStrategy(devices).scope():
        student = small_student()
        d = compiled(student, trained_teacher)
    init = [w.copy() for w in student.get_weights()]
    with pytest.raises(kd.TrainingDivergedError, match="step 2"):
        d.fit(x, y[:128], epochs=1, batch_size=64, shuffle=False, verbose=0)
    weights = student.get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    assert any(not np.array_equal(a, b) for a, b in zip(init, weights))  # step 1 was applied


def test_no_teacher_and_no_logits(digits_data):
    (x, y), _ = digits_data
    d = compiled(small_student(), None)
    with pytest.raises(ValueError, match="No teacher and no teacher logits"):
        d.fit(x[:64], y[:64], epochs=1, verbose=0)


def test_keras3_student_rejected_with_fix():
    import keras as keras3

    k3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    with pytest.raises(TypeError, match="is a Keras 3 model.*build it with `kdkeras.keras`"):
        kd.Distiller(student=k3, teacher=None)


def test_compile_rejects_loss_kwarg(trained_teacher):
    d = kd.Distiller(student=small_student(), teacher=trained_teacher)
    with pytest.raises(ValueError, match="not loss="):
        d.compile(optimizer="adam", loss="mse")


def test_keras_io_kl_loss_accepted(digits_data, trained_teacher):
    """The keras.io recipe passes keras.losses.KLDivergence(): same value as the default."""
    (x, y), _ = digits_data
    s = small_student()
    a = compiled(s, trained_teacher, temperature=4.0).evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    b = compiled(s, trained_teacher, temperature=4.0, distillation_loss_fn=keras.losses.KLDivergence(),
                 student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
                 ).evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5)


class _ScaledKL(losses.DistillationLoss):
    """A user's loss that records the temperature the Distiller gives it."""

    seen = []

    def call(self, teacher_logits, student_logits, *, temperature=None):
        _ScaledKL.seen.append(temperature)
        return 2.0 * losses.kl_divergence(teacher_logits, student_logits, temperature=temperature)


def test_custom_distillation_loss_gets_compiles_temperature(digits_data, trained_teacher):
    (x, y), _ = digits_data
    s = small_student()
    a = compiled(s, trained_teacher, alpha=0.0, temperature=2.5, distillation_loss_fn=_ScaledKL())
    b = compiled(s, trained_teacher, alpha=0.0, temperature=2.5)
    ra = a.evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    rb = b.evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    assert 2.5 in _ScaledKL.seen
    np.testing.assert_allclose(ra["distillation_loss"], 2.0 * rb["distillation_loss"], rtol=1e-5)


def test_distiller_config_round_trips(digits_data, trained_teacher):
    (x, y), _ = digits_data
    d = compiled(small_student(), trained_teacher, alpha=0.3, temperature=2.0,
                 distillation_loss_fn="soft_target_mse")
    config = d.get_config()
    clone = kd.Distiller.from_config(config)
    assert clone.get_config() == config
    assert clone.student is not d.student
    assert [l.get_config() for l in clone.student.layers] == [l.get_config() for l in d.student.layers]
    assert clone.get_compile_config() is None
    clone.compile_from_config(d.get_compile_config())
    assert (clone.alpha, clone.temperature) == (0.3, 2.0)
    assert type(clone.distillation_loss) is losses.SoftTargetMSE
    assert clone.get_compile_config() == d.get_compile_config()
    clone.teacher.model.set_weights(trained_teacher.get_weights())
    clone.student.set_weights(d.student.get_weights())
    ra = d.evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    rb = clone.evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    np.testing.assert_allclose(rb["distillation_loss"], ra["distillation_loss"], rtol=1e-5)
    # A teacher that is not a tf-keras model is given again, not serialized.
    offline = kd.Distiller(small_student(), teacher=None)
    assert offline.get_config()["teacher"] is None
    assert kd.Distiller.from_config(offline.get_config(), teacher=trained_teacher).teacher.model is trained_teacher


def test_ignore_class_leaves_unlabelled_examples_to_the_teacher(digits_data, trained_teacher):
    """Label budget: examples labelled -1 count in the distillation loss only."""
    (x, y), _ = digits_data
    xs, ys = x[:64], y[:64].copy()
    ys[::2] = -1  # half of the examples have no label
    s = small_student()
    d = compiled(s, trained_teacher, alpha=0.5, temperature=2.0, metrics=["accuracy"],
                 ignore_class=-1)
    res = d.evaluate(xs, ys, batch_size=64, verbose=0, return_dict=True)
    logits = s.predict(xs, verbose=0)
    keep = ys != -1
    ce = kd.keras.losses.sparse_categorical_crossentropy(ys[keep], logits[keep], from_logits=True)
    np.testing.assert_allclose(res["student_loss"], np.mean(ce), rtol=1e-5)
    kl = losses.kl_divergence(trained_teacher.predict(xs, verbose=0), logits, temperature=2.0)
    np.testing.assert_allclose(res["distillation_loss"], np.mean(kl), rtol=1e-5)
    np.testing.assert_allclose(res["accuracy"], np.mean(logits[keep].argmax(-1) == ys[keep]), atol=1e-6)
    # A batch with no label at all: the hard-label loss is 0, never NaN, and training runs.
    h = d.fit(xs, np.full(64, -1), epochs=1, batch_size=32, verbose=0)
    assert h.history["student_loss"] == [0.0] and np.isfinite(h.history["loss"][0])
    # Without ignore_class, -1 is still refused as out of range.
    with pytest.raises(ValueError, match=r"Label -1 is out of range"):
        compiled(small_student(), trained_teacher).fit(xs, ys, epochs=1, verbose=0)


@pytest.mark.parametrize("check_seconds, steps_run", [(0.0, 3), (1e9, 8)])
def test_nan_guard_reads_without_a_per_step_sync(digits_data, trained_teacher, monkeypatch,
                                                 check_seconds, steps_run):
    # The guard reads the bad-step variable at most once every CHECK_SECONDS (a host sync), and
    # at each epoch end: with 0 it stops right after the bad step; with a long interval the
    # epoch runs to its end, but the steps after the bad one apply nothing either way.
    from kdkeras.distill.guard import DivergenceGuard

    monkeypatch.setattr(DivergenceGuard, "CHECK_SECONDS", check_seconds)
    (x, y), _ = digits_data
    x = x[:512].copy()
    x[130] = np.nan  # third batch of 64, of 8
    student = small_student()
    d = compiled(student, trained_teacher, optimizer=keras.optimizers.SGD(0.1))
    seen = []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    with pytest.raises(kd.TrainingDivergedError, match="epoch 1, step 3") as err:
        d.fit(x, y[:512], epochs=3, batch_size=64, shuffle=False, verbose=0, callbacks=[Count()])
    assert (err.value.epoch, err.value.step) == (1, 3)
    assert len(seen) == steps_run
    assert int(d.optimizer.iterations.numpy()) == 2  # only steps 1 and 2 were applied


def test_nan_guard_polls_from_the_train_function_not_a_batch_hook(digits_data, trained_teacher):
    # One batch hook makes tf-keras run its callback machinery around every step, so the guard
    # has none: the train function polls it during fit, and is the plain one again afterwards,
    # also when fit is interrupted.
    from kdkeras.distill.guard import DivergenceGuard

    (x, y), _ = digits_data
    d = compiled(small_student(), trained_teacher)
    guard = DivergenceGuard(d._bad_step, d._train_counter)
    assert not guard._implements_train_batch_hooks()
    polled = []

    class Seen(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            polled.append(type(self.model.train_function).__name__)
            if len(polled) == 3:
                raise KeyboardInterrupt  # Ctrl-C in the middle of an epoch

    with pytest.raises(KeyboardInterrupt):
        d.fit(x[:256], y[:256], epochs=2, batch_size=32, verbose=0, callbacks=[Seen()])
    assert polled == ["_Polled"] * 3
    plain = d.train_function
    assert isinstance(plain, tf.types.experimental.PolymorphicFunction), type(plain)
    d.fit(x[:256], y[:256], epochs=1, batch_size=32, verbose=0)
    assert d.train_function is plain  # the same traced function, put back after each fit
    assert plain.experimental_get_tracing_count() == 1


def test_nan_guard_under_jit_compile_restores_weights_and_adam_state(digits_data, trained_teacher,
                                                                     monkeypatch):
    # Under XLA the update is gated by a select, not a tf.cond (a cond that updates variables
    # made XLA's step 2-3x slower): the steps from the bad one on change neither the weights
    # nor Adam's moments or step counter, even when the epoch runs to its end.
    from kdkeras.distill.guard import DivergenceGuard

    monkeypatch.setattr(DivergenceGuard, "CHECK_SECONDS", 1e9)
    (x, y), _ = digits_data
    x = x[:512].copy()
    x[130] = np.nan  # third batch of 64, of 8
    student = small_student()
    d = compiled(student, trained_teacher, jit_compile=True)
    with pytest.raises(kd.TrainingDivergedError, match="epoch 1, step 3"):
        d.fit(x, y[:512], epochs=1, batch_size=64, shuffle=False, verbose=0)
    assert int(d.optimizer.iterations.numpy()) == 2
    graph = d.train_function.get_concrete_function(
        iter(tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(64))).graph.as_graph_def()
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    reference = small_student()
    ref = compiled(reference, trained_teacher, jit_compile=True)
    ref.fit(x[:128], y[:128], epochs=1, batch_size=64, shuffle=False, verbose=0)
    for a, b in zip(reference.get_weights(), student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(ref.optimizer.variables, d.optimizer.variables):  # iterations, m and v
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-9)
    assert not ops & {"If", "StatelessIf"}, sorted(ops & {"If", "StatelessIf"})


class _OwnAdam(keras.optimizers.Adam):
    """An optimizer from outside tf-keras: its writes are not known, so it keeps copy-and-select."""


@pytest.mark.parametrize("make_optimizer", [
    lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    lambda: keras.optimizers.RMSprop(1e-3, momentum=0.5),
    lambda: keras.optimizers.Adagrad(0.05),
    lambda: keras.optimizers.AdamW(1e-3, weight_decay=0.1),
    lambda: keras.optimizers.Adam(1e-3, amsgrad=True),
    lambda: keras.optimizers.Lion(1e-4),
    lambda: _OwnAdam(1e-3),
], ids=["sgd-nesterov", "rmsprop", "adagrad", "adamw", "amsgrad", "lion", "own-subclass"])
def test_jit_guard_gates_every_optimizer_write(digits_data, trained_teacher, monkeypatch,
                                               make_optimizer):
    # Under XLA, tf-keras's optimizers have each write gated where it happens (no copies of the
    # weights and slots); any other optimizer keeps the copy-and-select. Either way the steps
    # from the bad one on change no weight, slot or step counter, and no variable keeps a patch.
    from kdkeras.distill import guard
    from kdkeras.distill.guard import DivergenceGuard

    monkeypatch.setattr(DivergenceGuard, "CHECK_SECONDS", 1e9)
    gated = []
    real = guard._gated_writes
    monkeypatch.setattr(guard, "_gated_writes", lambda *a: gated.append(1) or real(*a))
    (x, y), _ = digits_data
    x = x[:256].copy()
    x[70] = np.inf  # second batch of 64, of 4
    student = small_student()
    d = compiled(student, trained_teacher, jit_compile=True, optimizer=make_optimizer())
    with pytest.raises(kd.TrainingDivergedError, match="epoch 1, step 2"):
        d.fit(x, y[:256], epochs=1, batch_size=64, shuffle=False, verbose=0)
    assert bool(gated) == (not isinstance(d.optimizer, _OwnAdam))
    reference = small_student()
    ref = compiled(reference, trained_teacher, jit_compile=True, optimizer=make_optimizer())
    ref.fit(x[:64], y[:64], epochs=1, batch_size=64, shuffle=False, verbose=0)
    assert int(d.optimizer.iterations.numpy()) == 1
    for a, b in zip(reference.get_weights(), student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert len(ref.optimizer.variables) == len(d.optimizer.variables)
    for a, b in zip(ref.optimizer.variables, d.optimizer.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-9)
    for v in d.optimizer.variables + student.trainable_variables:
        assert not {"assign", "assign_add", "assign_sub"} & set(vars(v)), v.name
