"""Distillation losses: pure functions on logits, plus thin ``keras.losses.Loss`` wrappers.

Every function takes ``(teacher_out, student_out)`` and returns a **per-example** loss: the
class axis (the last one) is reduced, every other axis is kept, so ``[batch, classes]``
logits give ``[batch]`` and sequence logits ``[batch, time, classes]`` give ``[batch, time]``,
ready to be masked and weighted by the caller. Any callable with that contract can be used as
a ``distillation_loss_fn``.

Probabilities are never formed and then clipped: the KL divergence is computed from
``log_softmax(logits / T)`` (log space, like optax), which stays finite for logits of 1e4 and
temperatures of 1e-3.

References:
    Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural Network", 2015.
    Ba, Caruana. "Do Deep Nets Really Need to be Deep?", 2014 (logit matching).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import tensorflow as tf
import tf_keras as keras

from kdkeras.distill.topk import is_top_k, top_k_kl
from kdkeras.registry import Registry
from kdkeras.validation import check_temperature

__all__ = [
    "DistillationLoss",
    "as_distillation_loss",
    "kl_divergence",
    "soft_target_mse",
    "logits_mse",
    "KLDivergence",
    "SoftTargetMSE",
    "LogitsMSE",
    "DISTILLATION_LOSSES",
    "get",
]


def _same_dtype(a: tf.Tensor, b: tf.Tensor):
    """Both as float32: 16-bit logits (mixed precision, bfloat16 teachers) lose too much in softmax."""
    return tf.cast(a, tf.float32), tf.cast(b, tf.float32)


def kl_divergence(teacher_logits, student_logits, temperature: float = 1.0) -> tf.Tensor:
    """Hinton's distillation loss: ``T² · KL(softmax(t/T) ‖ softmax(s/T))``, per example.

    The ``T²`` factor keeps the gradient magnitude of the soft-target term independent of the
    temperature: the gradient of the KL with respect to the student logits scales as ``1/T²``
    (Hinton et al. 2015, section 2), so without it raising ``T`` would silently shrink the
    distillation term next to the hard-label loss.

    Args:
        teacher_logits: tensor ``[..., classes]``. Teacher logits (not probabilities), or a
            top-k target dict (:mod:`kdkeras.distill.topk`), then :func:`top_k_kl` is used.
        student_logits: tensor ``[..., classes]``. Student logits.
        temperature: float > 0. Softening temperature ``T``.

    Returns:
        Tensor ``[...]``: the loss for each example (and time step).

    Example:

    >>> import numpy as np
    >>> t = np.array([[2.0, 0.0, -1.0]], "float32")
    >>> float(kl_divergence(t, t, temperature=4.0)[0])
    0.0
    """
    if is_top_k(teacher_logits):
        return top_k_kl(teacher_logits, student_logits, temperature)
    return _kl_with_gradient(*_same_dtype(teacher_logits, student_logits),
                             check_temperature(temperature))


def _kl_with_gradient(t, s, temperature: float):
    """``T² · KL`` per example with its gradient written out, not differentiated op by op.

    With respect to the student's logits the gradient is ``T · (softmax(s/T) − softmax(t/T))``
    (times the incoming gradient), and with respect to the teacher's ``T · p_t · (log p_t −
    log p_s − KL/T²)``; autodiff of the log-softmaxes and the masked product builds about 25 more
    ops into every training step (``benchmarks/kd_speed_vs_peers.py``), for the same values.
    The gradient ops are themselves differentiable (second derivatives work).
    """
    T = temperature

    @tf.custom_gradient
    def kl(t, s):
        log_p_t = tf.nn.log_softmax(t / T, axis=-1)
        log_p_s = tf.nn.log_softmax(s / T, axis=-1)
        p_t = tf.exp(log_p_t)
        gap = log_p_t - log_p_s
        # multiply_no_nan: a class the teacher masks with -inf logits contributes 0, not 0·inf = NaN.
        value = tf.reduce_sum(tf.math.multiply_no_nan(gap, p_t), axis=-1) * (T * T)

        def grad(upstream):
            scale = tf.expand_dims(upstream, -1) * T
            d_s = scale * (tf.exp(log_p_s) - p_t)
            d_t = scale * tf.math.multiply_no_nan(gap - tf.expand_dims(value, -1) / (T * T), p_t)
            return d_t, d_s

        return value, grad

    return kl(t, s)


def soft_target_mse(teacher_logits, student_logits, temperature: float = 1.0) -> tf.Tensor:
    """Squared error between teacher and student soft targets, summed over classes.

    ``Σ_c (softmax(t/T)_c − softmax(s/T)_c)²``, the classic alternative to the KL (it is
    bounded, so it is robust to a very confident wrong teacher). No ``T²`` factor: the
    probabilities themselves shrink towards uniform as ``T`` grows, so this loss is meant for
    small temperatures (1–2).

    Args:
        teacher_logits: tensor ``[..., classes]``.
        student_logits: tensor ``[..., classes]``.
        temperature: float > 0.

    Returns:
        Tensor ``[...]``.

    Example:

    >>> import numpy as np
    >>> t = np.array([[10.0, 0.0]], "float32"); s = np.array([[0.0, 10.0]], "float32")
    >>> round(float(soft_target_mse(t, s)[0]), 3)
    2.0
    """
    temperature = check_temperature(temperature)
    t, s = _same_dtype(teacher_logits, student_logits)
    p_t = tf.nn.softmax(t / temperature, axis=-1)
    p_s = tf.nn.softmax(s / temperature, axis=-1)
    return tf.reduce_sum(tf.square(p_t - p_s), axis=-1)


def logits_mse(teacher_logits, student_logits, temperature: Optional[float] = None) -> tf.Tensor:
    """Mean squared error between raw logits (Ba & Caruana 2014), per example.

    This is the high-temperature limit of Hinton's loss for zero-mean logits; ``temperature``
    is accepted (and ignored) so every distillation loss has the same signature.

    Example:

    >>> import numpy as np
    >>> float(logits_mse(np.array([[1.0, 3.0]]), np.array([[0.0, 1.0]]))[0])
    2.5
    """
    t, s = _same_dtype(teacher_logits, student_logits)
    return tf.reduce_mean(tf.square(t - s), axis=-1)


class DistillationLoss(keras.losses.Loss):
    """The contract of a distillation loss: one method, :meth:`call`.

    ``call(teacher_logits, student_logits, *, temperature=None)`` returns the **per-example**
    loss (the class axis reduced, every other axis kept). ``temperature=None`` means the loss's
    own ``temperature`` (1 when that is None too); the :class:`~kdkeras.Distiller` always
    passes compile()'s. Subclass it for a loss of your own and implement ``call`` (and
    ``get_config`` for any argument you add); plain callables ``fn(teacher_logits,
    student_logits)`` are adapted once by :func:`as_distillation_loss`.

    As a ``keras.losses.Loss``, ``loss(teacher_logits, student_logits)`` also works alone
    (``y_true`` is the teacher's output, ``y_pred`` the student's), reduced as Keras does.

    Attributes:
        uses_temperature: bool. False for losses that ignore the temperature (then a
            temperature set on the loss never conflicts with compile()'s).
        supports_top_k: bool. True when ``call`` accepts top-k targets
            (:mod:`kdkeras.distill.topk`) as ``teacher_logits``; the Distiller refuses such
            targets for any other loss.

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> class L1Logits(DistillationLoss):
    ...     uses_temperature = False
    ...     def call(self, teacher_logits, student_logits, *, temperature=None):
    ...         return tf.reduce_sum(tf.abs(teacher_logits - student_logits), axis=-1)
    >>> float(L1Logits()(np.ones((2, 3)), np.zeros((2, 3))))
    3.0
    """

    uses_temperature: bool = True
    supports_top_k: bool = False

    def __init__(self, temperature: Optional[float] = None, reduction="auto", name=None):
        super().__init__(reduction=reduction, name=name)
        # None: inside a Distiller, use compile()'s temperature; standalone, T = 1.
        self.temperature = None if temperature is None else check_temperature(temperature)

    def call(self, teacher_logits, student_logits, *, temperature: Optional[float] = None):
        """Returns the per-example loss; ``temperature`` None means the loss's own (or 1)."""
        raise NotImplementedError(f"{type(self).__name__} must implement call(teacher_logits, "
                                  "student_logits, *, temperature=None).")

    def _temperature(self, temperature: Optional[float]) -> float:
        if temperature is not None:
            return temperature
        return self.temperature if self.temperature is not None else 1.0

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.temperature
        return config


class _FunctionLoss(DistillationLoss):
    """A built-in loss: the pure function ``fn(teacher, student, temperature=T)`` as a Loss."""

    fn: Callable = staticmethod(kl_divergence)

    def call(self, teacher_logits, student_logits, *, temperature: Optional[float] = None):
        return type(self).fn(teacher_logits, student_logits,
                             temperature=self._temperature(temperature))


@keras.utils.register_keras_serializable(package="kdkeras")
class KLDivergence(_FunctionLoss):
    """Loss wrapper of :func:`kl_divergence` (``y_true`` = teacher logits).

    Example:

    >>> import numpy as np
    >>> loss = KLDivergence(temperature=2.0)
    >>> float(loss(np.zeros((2, 3)), np.zeros((2, 3))))
    0.0
    """

    fn = staticmethod(kl_divergence)
    supports_top_k = True

    def __init__(self, temperature: Optional[float] = None, reduction="auto", name="kl_divergence"):
        super().__init__(temperature=temperature, reduction=reduction, name=name)


@keras.utils.register_keras_serializable(package="kdkeras")
class SoftTargetMSE(_FunctionLoss):
    """Loss wrapper of :func:`soft_target_mse`."""

    fn = staticmethod(soft_target_mse)

    def __init__(self, temperature: Optional[float] = None, reduction="auto", name="soft_target_mse"):
        super().__init__(temperature=temperature, reduction=reduction, name=name)


@keras.utils.register_keras_serializable(package="kdkeras")
class LogitsMSE(_FunctionLoss):
    """Loss wrapper of :func:`logits_mse` (the temperature is ignored)."""

    uses_temperature = False
    fn = staticmethod(logits_mse)

    def __init__(self, temperature: Optional[float] = None, reduction="auto", name="logits_mse"):
        super().__init__(temperature=temperature, reduction=reduction, name=name)


DISTILLATION_LOSSES = Registry("distillation loss")
DISTILLATION_LOSSES.register("kl", KLDivergence)
DISTILLATION_LOSSES.register("soft_target_mse", SoftTargetMSE)
DISTILLATION_LOSSES.register("logits_mse", LogitsMSE)


def get(name: str, temperature: Optional[float] = None) -> keras.losses.Loss:
    """Builds a distillation loss from its config name (``kl``, ``soft_target_mse``, ...)."""
    return DISTILLATION_LOSSES.get(name)(temperature=temperature)


@keras.utils.register_keras_serializable(package="kdkeras")
class CallableLoss(DistillationLoss):
    """A plain ``fn(teacher_logits, student_logits) -> per-example loss`` as a DistillationLoss.

    The temperature is not passed to ``fn``: a loss that needs it subclasses
    :class:`DistillationLoss`. ``get_config`` holds ``fn`` as Keras serializes functions (a
    registered or module-level function round-trips, a lambda does not).
    """

    uses_temperature = False

    def __init__(self, fn: Callable, reduction="auto", name=None, temperature=None):
        if isinstance(fn, (str, dict)):
            fn = keras.utils.deserialize_keras_object(fn)
        if not callable(fn):
            raise TypeError(f"CallableLoss needs a callable. Received: fn={fn!r}")
        super().__init__(temperature=temperature, reduction=reduction,
                         name=name or getattr(fn, "__name__", "distillation_loss"))
        self.fn = fn

    def call(self, teacher_logits, student_logits, *, temperature: Optional[float] = None):
        return self.fn(teacher_logits, student_logits)

    def get_config(self):
        config = super().get_config()
        config["fn"] = keras.utils.serialize_keras_object(self.fn)
        return config


_BY_FUNCTION = {kl_divergence: KLDivergence, soft_target_mse: SoftTargetMSE,
                logits_mse: LogitsMSE}


def _is_either_keras(obj: Any, name: str) -> bool:
    """True when ``obj`` is a tf-keras or a Keras 3 ``losses.<name>``."""
    classes = [getattr(keras.losses, name)]
    try:
        import keras as keras3

        classes.append(getattr(keras3.losses, name))
    except ImportError:  # pragma: no cover
        pass
    return isinstance(obj, tuple(classes))


def is_keras_loss(obj: Any) -> bool:
    """True for a tf-keras or Keras 3 ``Loss`` object."""
    return _is_either_keras(obj, "Loss")


def as_distillation_loss(loss: Any = None, temperature: Optional[float] = None) -> DistillationLoss:
    """Adapts what ``Distiller.compile(distillation_loss_fn=...)`` accepts, once, at the edge.

    * None: Hinton's :class:`KLDivergence` (``KL · T²`` on logits).
    * a name of :data:`DISTILLATION_LOSSES` (``"kl"``, ``"soft_target_mse"``, ``"logits_mse"``).
    * a :class:`DistillationLoss`: used as it is.
    * one of this module's pure functions (:func:`kl_divergence`, ...): its Loss class.
    * Keras's own ``KLDivergence()`` (tf-keras or Keras 3; the keras.io recipe): the same
      quantity, so :class:`KLDivergence`, computed in log space.
    * any other Keras loss or callable ``fn(teacher_logits, student_logits)``: a
      :class:`CallableLoss` (the temperature is not passed to it).

    Args:
        loss: see above.
        temperature: float or None. compile()'s temperature, checked against a temperature set
            on the loss itself.

    Raises:
        ValueError: an unknown name, or a loss whose own temperature differs from
            ``temperature``.
        TypeError: anything else.

    Example:

    >>> type(as_distillation_loss("kl")).__name__, type(as_distillation_loss(logits_mse)).__name__
    ('KLDivergence', 'LogitsMSE')
    """
    if loss is None:
        return KLDivergence()
    if isinstance(loss, str):
        return DISTILLATION_LOSSES.get(loss)()
    if isinstance(loss, DistillationLoss):
        own = loss.temperature
        if (loss.uses_temperature and own is not None and temperature is not None
                and own != temperature):
            raise ValueError(
                f"distillation_loss_fn has temperature={own} but compile() has "
                f"temperature={temperature}. Set it in one place (compile's temperature is used "
                "when the loss's is None).")
        return loss
    if _is_either_keras(loss, "KLDivergence"):
        return KLDivergence()
    if is_keras_loss(loss):
        return CallableLoss(loss.call, name=getattr(loss, "name", None))
    try:
        cls = _BY_FUNCTION.get(loss)
    except TypeError:  # unhashable
        cls = None
    if cls is not None:
        return cls()
    if callable(loss):
        return CallableLoss(loss)
    raise TypeError(
        "distillation_loss_fn must be a callable (teacher_logits, student_logits) -> "
        f"per-example loss, a kdkeras.losses.DistillationLoss, a loss name "
        f"({', '.join(DISTILLATION_LOSSES.names())}) or None. Received: {loss!r}")
