import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras import losses
from tests.helpers import run_serialization_test


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_kl(t, s, T):
    lt, ls = np_log_softmax(t / T), np_log_softmax(s / T)
    return (np.exp(lt) * (lt - ls)).sum(-1) * T**2


def np_softmax(z):
    return np.exp(np_log_softmax(z))


RNG = np.random.default_rng(0)
T_LOGITS = RNG.normal(size=(6, 5)).astype("float32") * 3
S_LOGITS = RNG.normal(size=(6, 5)).astype("float32") * 3


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0, 10.0])
def test_kl_matches_numpy(temperature):
    got = losses.kl_divergence(T_LOGITS, S_LOGITS, temperature=temperature).numpy()
    np.testing.assert_allclose(got, np_kl(T_LOGITS.astype("float64"), S_LOGITS.astype("float64"), temperature), rtol=1e-4, atol=1e-6)
    assert got.shape == (6,)


def test_kl_is_zero_for_identical_and_positive_otherwise():
    np.testing.assert_allclose(losses.kl_divergence(T_LOGITS, T_LOGITS, 2.0).numpy(), 0.0, atol=1e-6)
    assert np.all(losses.kl_divergence(T_LOGITS, S_LOGITS, 2.0).numpy() > 0)


def test_kl_t_squared_keeps_gradient_scale():
    """With T² the gradient w.r.t. student logits approaches (s - t)/N at high T (Hinton eq. 3)."""
    t = tf.constant(T_LOGITS - T_LOGITS.mean(-1, keepdims=True))
    s = tf.Variable(S_LOGITS - S_LOGITS.mean(-1, keepdims=True))
    T = 500.0
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.kl_divergence(t, s, temperature=T))
    g = tape.gradient(loss, s).numpy()
    expected = T * (np_softmax(s.numpy() / T) - np_softmax(t.numpy() / T))  # exact gradient
    np.testing.assert_allclose(g, expected, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(g, (s.numpy() - t.numpy()) / 5, atol=0.01)


def test_kl_stable_for_huge_logits_and_tiny_temperature():
    t = np.array([[1e4, -1e4, 0.0]], "float32")
    s = np.array([[-1e4, 1e4, 0.0]], "float32")
    for T in (1e-3, 1.0, 100.0):
        v = losses.kl_divergence(t, s, temperature=T).numpy()
        assert np.all(np.isfinite(v)), (T, v)
    # one-hot teacher, student wrong by 2e4 logits: KL = (2e4 / T) * T² exactly
    np.testing.assert_allclose(losses.kl_divergence(t, s, temperature=1.0).numpy(), [2e4], rtol=1e-5)
    with tf.GradientTape() as tape:
        sv = tf.Variable(s)
        loss = losses.kl_divergence(t, sv, temperature=1e-3)
    assert np.all(np.isfinite(tape.gradient(loss, sv).numpy()))


def test_kl_with_masked_classes_at_minus_infinity():
    t = np.array([[2.0, -np.inf, 0.0]], "float32")
    s = np.array([[1.0, 3.0, 0.0]], "float32")
    got = losses.kl_divergence(t, s, temperature=2.0).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, np_kl(np.array([[2.0, -1e30, 0.0]]), s.astype("float64"), 2.0), rtol=1e-5)


def test_sixteen_bit_logits_computed_in_float32():
    t16 = tf.constant(T_LOGITS, tf.bfloat16)
    got = losses.kl_divergence(t16, tf.constant(S_LOGITS, tf.float16), temperature=2.0)
    assert got.dtype == tf.float32
    want = np_kl(t16.numpy().astype("float64"), S_LOGITS.astype("float16").astype("float64"), 2.0)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)


def test_kl_sequence_logits_keep_time_axis():
    t = RNG.normal(size=(2, 7, 4)).astype("float32")
    s = RNG.normal(size=(2, 7, 4)).astype("float32")
    got = losses.kl_divergence(t, s, temperature=2.0).numpy()
    assert got.shape == (2, 7)
    np.testing.assert_allclose(got, np_kl(t, s, 2.0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_soft_target_mse_matches_numpy(temperature):
    got = losses.soft_target_mse(T_LOGITS, S_LOGITS, temperature).numpy()
    want = ((np_softmax(T_LOGITS / temperature) - np_softmax(S_LOGITS / temperature)) ** 2).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_logits_mse_matches_numpy():
    np.testing.assert_allclose(
        losses.logits_mse(T_LOGITS, S_LOGITS).numpy(), ((T_LOGITS - S_LOGITS) ** 2).mean(-1), rtol=1e-6
    )


def test_feature_distance_mse_and_cosine():
    a = RNG.normal(size=(3, 4, 2)).astype("float32")
    b = RNG.normal(size=(3, 4, 2)).astype("float32")
    np.testing.assert_allclose(losses.feature_distance(a, b, "mse").numpy(), ((a - b) ** 2).reshape(3, -1).mean(-1), rtol=1e-5)
    fa, fb = a.reshape(3, -1), b.reshape(3, -1)
    cos = (fa * fb).sum(-1) / np.linalg.norm(fa, axis=-1) / np.linalg.norm(fb, axis=-1)
    np.testing.assert_allclose(losses.feature_distance(a, b, "cosine").numpy(), 1 - cos, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown feature metric 'l3'"):
        losses.feature_distance(a, b, "l3")


@pytest.mark.parametrize("bad", [0, -1.0, 0.0])
def test_temperature_must_be_positive(bad):
    with pytest.raises(ValueError, match=f"temperature must be > 0. Received: temperature={bad}"):
        losses.kl_divergence(T_LOGITS, S_LOGITS, temperature=bad)


def test_temperature_type_checked():
    with pytest.raises(TypeError, match="temperature='3'"):
        losses.KLDivergence(temperature="3")


@pytest.mark.parametrize("cls", [losses.KLDivergence, losses.SoftTargetMSE, losses.LogitsMSE])
def test_loss_wrappers_reduce_like_keras_and_round_trip(cls):
    loss = cls(temperature=2.0)
    want = cls.fn(T_LOGITS, S_LOGITS, temperature=2.0).numpy().mean()
    np.testing.assert_allclose(float(loss(T_LOGITS, S_LOGITS)), want, rtol=1e-5)
    clone = run_serialization_test(loss)
    assert clone.temperature == 2.0
    np.testing.assert_allclose(float(clone(T_LOGITS, S_LOGITS)), want, rtol=1e-5)


def test_registry_names_and_unknown_name():
    assert losses.DISTILLATION_LOSSES.names() == ["kl", "logits_mse", "soft_target_mse"]
    assert isinstance(losses.get("kl", temperature=2.0), losses.KLDivergence)
    with pytest.raises(ValueError, match="Unknown distillation loss 'kld'. Did you mean 'kl'"):
        losses.get("kld")


def test_hint_loss_projection_and_round_trip():
    hint = losses.HintLoss("t", "s", metric="mse", weight=0.5, projection=True)
    t = np.ones((2, 6), "float32")
    s = np.ones((2, 3), "float32")
    out = hint(t, s).numpy()
    assert out.shape == (2,)
    assert hint._proj.kernel.shape == (3, 6)
    projected = s @ hint._proj.kernel.numpy()
    np.testing.assert_allclose(out, 0.0 + ((t - projected) ** 2).mean(-1), rtol=1e-5)
    clone = run_serialization_test(hint)
    assert (clone.teacher_layer, clone.student_layer, clone.weight, clone.projection) == ("t", "s", 0.5, True)
    with pytest.raises(ValueError, match="weight=-1"):
        losses.HintLoss("t", "s", weight=-1)
