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
    s64, t64 = s.numpy().astype("float64"), t.numpy().astype("float64")
    expected = T * (np_softmax(s64 / T) - np_softmax(t64 / T))  # exact gradient, in float64
    np.testing.assert_allclose(g, expected, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(g, (s.numpy() - t.numpy()) / 5, atol=0.01)


def np_kl_grads(t, s, T):
    """d(T²·KL)/dt and d(T²·KL)/ds per example, in float64, from the definition."""
    lt, ls = np_log_softmax(t / T), np_log_softmax(s / T)
    pt, ps = np.exp(lt), np.exp(ls)
    kl = (pt * (lt - ls)).sum(-1, keepdims=True)
    return T * pt * (lt - ls - kl), T * (ps - pt)


@pytest.mark.parametrize("temperature", [0.5, 2.0, 8.0])
def test_kl_gradients_match_numpy_for_teacher_and_student(temperature):
    """The written-out gradient (tf.custom_gradient) against the definition, both arguments,
    a per-example upstream weight, sequence logits, and a float64 finite difference."""
    rng = np.random.default_rng(1)
    t = tf.Variable(rng.normal(size=(2, 3, 6)) * 3, dtype=tf.float32)
    s = tf.Variable(rng.normal(size=(2, 3, 6)) * 3, dtype=tf.float32)
    w = rng.uniform(0.5, 2.0, size=(2, 3)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.kl_divergence(t, s, temperature) * w)
    g_t, g_s = tape.gradient(loss, [t, s])
    want_t, want_s = np_kl_grads(t.numpy().astype("float64"), s.numpy().astype("float64"), temperature)
    np.testing.assert_allclose(g_t.numpy(), want_t * w[..., None], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g_s.numpy(), want_s * w[..., None], rtol=1e-4, atol=1e-5)
    # central difference of the float64 reference in one coordinate of each argument
    t64, s64, eps = t.numpy().astype("float64"), s.numpy().astype("float64"), 1e-6
    bump = np.zeros_like(s64)
    bump[1, 2, 4] = eps
    f = lambda a, b: (np_kl(a, b, temperature) * w).sum()
    np.testing.assert_allclose(g_s.numpy()[1, 2, 4], (f(t64, s64 + bump) - f(t64, s64 - bump)) / (2 * eps),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g_t.numpy()[1, 2, 4], (f(t64 + bump, s64) - f(t64 - bump, s64)) / (2 * eps),
                               rtol=1e-4, atol=1e-5)


def test_kl_second_derivative_and_masked_teacher_gradient():
    """Second derivatives go through the written-out gradient; a class the teacher masks with
    -inf gets a zero, finite gradient on both sides."""
    s = tf.Variable([[0.3, -1.0, 2.0]])
    t = tf.constant([[1.0, 0.5, -2.0]])
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = tf.reduce_sum(losses.kl_divergence(t, s, 2.0))
        g = inner.gradient(loss, s)
        g_norm = tf.reduce_sum(g * g)
    h = outer.gradient(g_norm, s).numpy()
    # d/ds Σ (T·(p_s − p_t))²  =  2T² · J_softmax(s/T)/T · (p_s − p_t), J = diag(p) − p pᵀ
    ps = np_softmax(s.numpy().astype("float64") / 2.0)
    d = 2.0 * (ps - np_softmax(t.numpy().astype("float64") / 2.0))
    jac = (np.diag(ps[0]) - np.outer(ps[0], ps[0])) / 2.0
    np.testing.assert_allclose(h[0], 2.0 * 2.0 * jac @ d[0], rtol=1e-4, atol=1e-6)
    tm = tf.Variable([[2.0, -np.inf, 0.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.kl_divergence(tm, s, 2.0))
    g_t, g_s = tape.gradient(loss, [tm, s])
    assert np.isfinite(g_t.numpy()).all() and np.isfinite(g_s.numpy()).all()
    assert g_t.numpy()[0, 1] == 0.0
    want_s = 2.0 * (np_softmax(s.numpy() / 2.0) - np_softmax(np.array([[2.0, -1e30, 0.0]]) / 2.0))
    np.testing.assert_allclose(g_s.numpy(), want_s, rtol=1e-5, atol=1e-6)


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


# --------------------------------------------------------------------------- the contract


class _L1Logits(losses.DistillationLoss):
    """A user's loss: one method, the temperature passed in by the Distiller."""

    def call(self, teacher_logits, student_logits, *, temperature=None):
        t = self._temperature(temperature)
        return tf.reduce_sum(tf.abs(teacher_logits - student_logits), axis=-1) / t


def test_distillation_loss_contract_is_one_call_with_temperature():
    loss = _L1Logits()
    np.testing.assert_allclose(loss.call(T_LOGITS, S_LOGITS, temperature=2.0).numpy(),
                               np.abs(T_LOGITS - S_LOGITS).sum(-1) / 2.0, rtol=1e-6)
    # Standalone (Keras Loss API): the loss's own temperature, else 1.
    np.testing.assert_allclose(float(_L1Logits(temperature=4.0)(T_LOGITS, S_LOGITS)),
                               (np.abs(T_LOGITS - S_LOGITS).sum(-1) / 4.0).mean(), rtol=1e-6)
    with pytest.raises(NotImplementedError, match="must implement call"):
        losses.DistillationLoss().call(T_LOGITS, S_LOGITS)


def test_as_distillation_loss_adapts_each_form_once():
    assert type(losses.as_distillation_loss(None)) is losses.KLDivergence
    assert type(losses.as_distillation_loss("soft_target_mse")) is losses.SoftTargetMSE
    # The pure functions map to their classes, so the Distiller's temperature reaches them.
    for fn, cls in ((losses.kl_divergence, losses.KLDivergence),
                    (losses.logits_mse, losses.LogitsMSE)):
        assert type(losses.as_distillation_loss(fn)) is cls
    assert type(losses.as_distillation_loss(kd.keras.losses.KLDivergence())) is losses.KLDivergence
    own = _L1Logits()
    assert losses.as_distillation_loss(own, temperature=3.0) is own
    plain = losses.as_distillation_loss(lambda t, s: tf.reduce_sum(t - s, -1))
    assert isinstance(plain, losses.CallableLoss)
    # A plain callable is never given the temperature (no signature sniffing).
    np.testing.assert_allclose(plain.call(T_LOGITS, S_LOGITS, temperature=9.0).numpy(),
                               (T_LOGITS - S_LOGITS).sum(-1), rtol=1e-6)
    with pytest.raises(TypeError, match="Received: 3"):
        losses.as_distillation_loss(3)
    with pytest.raises(ValueError, match="temperature=5.0 but compile"):
        losses.as_distillation_loss(losses.KLDivergence(temperature=5.0), temperature=3.0)
    # LogitsMSE ignores the temperature, so its own never conflicts.
    losses.as_distillation_loss(losses.LogitsMSE(temperature=5.0), temperature=3.0)


@kd.keras.utils.register_keras_serializable(package="kdkeras_tests")
def _sum_abs(teacher_logits, student_logits):
    return tf.reduce_sum(tf.abs(teacher_logits - student_logits), axis=-1)


def test_callable_loss_of_a_registered_function_round_trips():
    loss = losses.CallableLoss(_sum_abs)
    clone = run_serialization_test(loss)
    np.testing.assert_allclose(float(clone(T_LOGITS, S_LOGITS)),
                               float(loss(T_LOGITS, S_LOGITS)), rtol=1e-6)
