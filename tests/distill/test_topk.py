"""Top-k soft targets: numpy references, the full-KL limit, the cache and the Distiller."""

import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras.distill import topk
from kdkeras.losses import kl_divergence


def _softmax(z, t):
    z = np.asarray(z, np.float64) / t
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _bucket_kl(t_logits, s_logits, k, temperature):
    """numpy reference: KL over the teacher's top-k classes plus one bucket for the rest."""
    p, q = _softmax(t_logits, temperature), _softmax(s_logits, temperature)
    out = []
    for pr, qr in zip(p, q):
        top = np.argsort(-pr, kind="stable")[:k]
        rest = np.setdiff1d(np.arange(len(pr)), top)
        pb = np.append(pr[top], pr[rest].sum())
        qb = np.append(qr[top], qr[rest].sum())
        out.append(np.sum(np.where(pb > 0, pb * (np.log(pb) - np.log(qb)), 0.0)))
    return np.array(out) * temperature**2


def test_targets_match_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 10)).astype("float32") * 3
    t = topk.top_k_targets(z, k=4, temperature=2.0)
    order = np.argsort(-z, axis=-1)[:, :4]
    np.testing.assert_array_equal(t["ids"], order)
    np.testing.assert_allclose(t["logits"], np.take_along_axis(z, order, -1) - z.max(-1, keepdims=True),
                               atol=1e-2)  # float16
    p = _softmax(z, 2.0)
    np.testing.assert_allclose(t["tail"], 1 - np.take_along_axis(p, order, -1).sum(-1), atol=1e-6)
    assert t["ids"].dtype == np.int32 and t["logits"].dtype == np.float16
    assert t["tail"].dtype == np.float32 and np.all(t["temperature"] == 2.0)
    assert topk.bytes_per_target(4) == 4 * 6 + 4


@pytest.mark.parametrize("k,temperature", [(1, 1.0), (3, 2.0), (7, 4.0)])
def test_top_k_kl_matches_bucket_reference(k, temperature):
    rng = np.random.default_rng(k)
    t, s = rng.normal(size=(2, 8, 10)) * 3
    targets = topk.top_k_targets(t, k, temperature)
    got = kl_divergence(targets, s.astype("float32"), temperature=temperature).numpy()
    np.testing.assert_allclose(got, _bucket_kl(t, s, k, temperature), rtol=2e-3, atol=2e-4)


def test_full_k_equals_full_kl_and_gradients():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(5, 6)).astype("float32") * 2
    s = tf.Variable(rng.normal(size=(5, 6)).astype("float32"))
    targets = topk.top_k_targets(t, 6, 3.0)
    with tf.GradientTape(persistent=True) as tape:
        top = tf.reduce_sum(topk.top_k_kl(targets, s, 3.0))
        full = tf.reduce_sum(kl_divergence(t, s, 3.0))
    np.testing.assert_allclose(top.numpy(), full.numpy(), rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(tape.gradient(top, s), tape.gradient(full, s), rtol=5e-3, atol=1e-4)
    assert np.isfinite(topk.top_k_kl(targets, t, 3.0).numpy()).all()
    np.testing.assert_allclose(topk.top_k_kl(targets, t, 3.0), 0.0, atol=1e-3)  # student = teacher


def test_sequence_targets_and_masked_classes():
    t = np.array([[[5.0, -np.inf, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]], "float32")
    targets = topk.top_k_targets(t, 2, 1.0)
    assert targets["ids"].shape == (1, 2, 2) and targets["tail"].shape == (1, 2)
    s = np.zeros((1, 2, 4), "float32")
    loss = topk.top_k_kl(targets, s, 1.0).numpy()
    assert loss.shape == (1, 2) and np.isfinite(loss).all()
    np.testing.assert_allclose(loss[0, 1], 0.0, atol=1e-6)  # uniform teacher, uniform student


@pytest.mark.parametrize("bad,match", [
    (dict(k=0), "top_k must be an integer >= 1. Received: top_k=0"),
    (dict(k=11), r"top_k must be at most the number of classes \(10\). Received: top_k=11"),
    (dict(k=2.5), "top_k"),
    (dict(temperature=0.0), "temperature"),
])
def test_bad_arguments(bad, match):
    args = dict(k=3, temperature=1.0)
    args.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        topk.top_k_targets(np.zeros((2, 10), "float32"), **args)
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        topk.top_k_targets(np.array([[np.nan, 0.0]]), 1, 1.0)


def test_cache_round_trip_and_offline_fit(tmp_path, trained_teacher, digits_data):
    (x, y), _ = digits_data
    x, y = x[:96], y[:96]
    path = tmp_path / "topk.npz"
    with pytest.raises(ValueError, match=r"top_k=3, temperature=3.0"):
        kd.cache_teacher_logits(trained_teacher, (x, y), top_k=3)
    ds = kd.cache_teacher_logits(trained_teacher, (x, y), path=path, top_k=3, temperature=2.0,
                                 batch_size=32, shuffle=False)
    saved = kd.load_teacher_logits(path)
    full = trained_teacher.predict(x, verbose=0)
    for key, value in topk.top_k_targets(full, 3, 2.0).items():
        np.testing.assert_allclose(saved[key], value, atol=1e-3)
    student = kd.build_mlp_student(x.shape[1:], 10, hidden=(8,))
    before = [w.copy() for w in student.get_weights()]
    d = kd.Distiller(student=student)
    d.compile(optimizer="adam", metrics=["accuracy"], temperature=2.0)
    h = d.fit(ds, epochs=2, verbose=0)
    assert np.isfinite(h.history["distillation_loss"]).all()
    assert any(not np.allclose(a, b) for a, b in zip(before, student.get_weights()))
    # The tail mass holds only at the temperature the targets were made with.
    d.compile(optimizer="adam", temperature=4.0)
    with pytest.raises(ValueError, match="made at temperature=2, but .* temperature=4"):
        d.fit(ds, epochs=1, verbose=0)
    d.compile(optimizer="adam", temperature=2.0, distillation_loss_fn="logits_mse")
    with pytest.raises(ValueError, match="LogitsMSE cannot use: it needs full logits"):
        d.fit(ds, epochs=1, verbose=0)


def test_preflight_refuses_targets_of_another_model(trained_teacher, digits_data):
    (x, y), _ = digits_data
    targets = topk.top_k_targets(trained_teacher.predict(x[:32], verbose=0), 3, 1.0)
    targets["ids"][0, 0] = 12
    d = kd.Distiller(student=kd.build_mlp_student(x.shape[1:], 10, hidden=(8,)))
    d.compile(optimizer="adam", temperature=1.0)
    with pytest.raises(ValueError, match="class id 12, out of range for the student's 10"):
        d.fit(tf.data.Dataset.from_tensor_slices((x[:32], y[:32], targets)).batch(16), verbose=0)
    targets["ids"][0, 0] = 0
    wide = kd.Distiller(student=kd.build_mlp_student(x.shape[1:], 12, hidden=(8,)))
    wide.compile(optimizer="adam", temperature=1.0)
    with pytest.raises(ValueError, match="made by a teacher with 10 classes, but the student has 12"):
        wide.fit(tf.data.Dataset.from_tensor_slices((x[:32], y[:32], targets)).batch(16), verbose=0)


def test_targets_record_classes_and_all_classes_leave_no_tail():
    z = np.random.default_rng(0).normal(size=(64, 100)).astype("float32") * 3
    full = topk.top_k_targets(z, 100, 1.0)
    assert np.all(full["tail"] == 0.0)  # exactly: the float32 normaliser left ~1e-7
    assert full["classes"].dtype == np.int32 and np.all(full["classes"] == 100)
    assert full["classes"].shape == full["tail"].shape
    old = {key: full[key] for key in topk.KEYS}  # a cache made before "classes" existed
    assert topk.is_top_k(old)
    np.testing.assert_allclose(topk.top_k_kl(old, z, 1.0), topk.top_k_kl(full, z, 1.0))


def _lm(vocab, steps=6):
    ids = kd.keras.Input((steps,), dtype="int32")
    return kd.keras.Model(ids, kd.keras.layers.Dense(vocab)(kd.keras.layers.Embedding(vocab, 4)(ids)))


@pytest.mark.parametrize("teacher_v,student_v", [(60, 50), (50, 60)])
def test_preflight_refuses_targets_of_another_vocabulary(teacher_v, student_v):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 50, (16, 6)).astype("int32")
    logits = rng.normal(size=(16, 6, teacher_v)).astype("float32")
    logits[..., :10] += 20.0  # top ids < 50: in range for both, so only "classes" tells
    targets = topk.top_k_targets(logits, 4, 1.0)
    d = kd.Distiller(student=_lm(student_v), teacher=None)
    d.compile(optimizer="adam", temperature=1.0)
    ds = tf.data.Dataset.from_tensor_slices((x, np.roll(x, -1, 1), targets)).batch(8)
    with pytest.raises(ValueError, match=rf"teacher vocabulary V={teacher_v} != student "
                                         rf"V={student_v}: token-level KD needs one tokenizer"):
        d.fit(ds, epochs=1, verbose=0)
    without = {key: targets[key] for key in topk.KEYS}  # older targets: not checked, still fit
    if teacher_v < student_v:
        ds = tf.data.Dataset.from_tensor_slices((x, np.roll(x, -1, 1), without)).batch(8)
        assert np.isfinite(d.fit(ds, epochs=1, verbose=0).history["loss"]).all()


def test_damaged_cache_files_are_named(tmp_path):
    bad = tmp_path / "logits.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="logits.npz is not a readable teacher-logit cache"):
        kd.load_teacher_logits(bad)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="not the top-k keys"):
        kd.load_teacher_logits(other)
