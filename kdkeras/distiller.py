"""The :class:`Distiller`: a ``keras.Model`` that trains a student against a frozen teacher.

``loss = alpha · student_loss(y, s) + (1 − alpha) · distillation_loss(t, s)`` (+ hint losses),
where ``s`` and ``t`` are the student's and teacher's logits. The teacher's forward pass runs
outside the ``GradientTape`` with ``training=False``; gradients flow only to the student (and
to the projections of learned hints). ``call``, ``predict`` and ``evaluate`` use the student.

References:
    Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural Network", 2015.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from kdkeras import losses as kd_losses
from kdkeras.teachers import EnsembleTeacher, Teacher, as_teacher, is_keras3_model, _feature_model

__all__ = ["Distiller", "TrainingDivergedError"]

TEACHER_LOGITS_KEY = "teacher_logits"
NO_TEACHER_MESSAGE = (
    "No teacher and no teacher logits: pass teacher= to the Distiller, or feed "
    "(x, y, teacher_logits) / {'x', 'y', 'teacher_logits'} batches "
    "(see kdkeras.cache_teacher_logits)."
)


def _shape_mismatch(source: str, t_shape, student_name: str, s_shape) -> ValueError:
    fmt = lambda shape: str(("batch",) + tuple(shape)[1:])
    return ValueError(
        f"Teacher and student outputs differ: {source} gives shape {fmt(t_shape)} but student "
        f"'{student_name}' gives {fmt(s_shape)}. Both must produce logits over the same classes."
    )


class TrainingDivergedError(RuntimeError):
    """Raised by :meth:`Distiller.fit` when the loss becomes NaN or infinite.

    The offending update is never applied, so the student keeps the weights of the last good
    step. ``epoch`` and ``step`` (1-based, within the epoch) say where it happened.
    """

    def __init__(self, message: str, epoch: int, step: int, loss: float):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.loss = loss


class _DivergenceGuard(keras.callbacks.Callback):
    """Stops ``fit`` at the first non-finite loss; :meth:`Distiller.fit` then raises.

    ``train_step`` records the global step of the first non-finite loss in a variable and
    applies no update from then on (also within one ``steps_per_execution`` block), so the
    student keeps the weights of the last good step. Raising after ``fit`` returns (not inside
    the callback) lets every other callback's ``on_train_end`` run.
    """

    def __init__(self, bad_step: tf.Variable):
        super().__init__()
        self.bad_step = bad_step
        self.error: Optional[TrainingDivergedError] = None
        self._epoch = 0
        self._epoch_start = 0
        self._seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = self._seen

    def on_train_batch_end(self, batch, logs=None):
        self._seen = self._epoch_start + batch + 1
        bad = int(self.bad_step.numpy())
        if bad < 0 or self.error is not None:
            return
        step = bad - self._epoch_start + 1
        self.model.stop_training = True
        self.error = TrainingDivergedError(
            f"The distillation loss became non-finite (NaN or inf) at epoch {self._epoch + 1}, "
            f"step {step}. Training stopped; no update was applied from that step on, so the "
            "student keeps the weights of the last good step. Check the inputs and teacher "
            "logits for NaN/inf, lower the learning rate, or lower the temperature.",
            epoch=self._epoch + 1,
            step=step,
            loss=float("nan"),
        )


def _is_dict_batch(data) -> bool:
    """A ``{"x" (or "inputs"), "y", "teacher_logits", "sample_weight"}`` batch."""
    return isinstance(data, dict) and TEACHER_LOGITS_KEY in data and ("x" in data or "inputs" in data)


def _dict_batch_inputs(data: dict):
    return data.get("x", data.get("inputs"))


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1]. Received: alpha={alpha!r}")
    return float(alpha)


def _per_example(loss_fn: Any) -> Callable:
    """Turns a Keras loss (object, function or name) into an unreduced ``fn(y, pred)``."""
    if isinstance(loss_fn, str):
        # The Distiller works on logits: a crossentropy given by name is taken from logits.
        from_logits = _FROM_LOGITS.get(loss_fn)
        loss_fn = from_logits(from_logits=True) if from_logits else keras.losses.get(loss_fn)
        return loss_fn.call if isinstance(loss_fn, keras.losses.Loss) else loss_fn
    if isinstance(loss_fn, keras.losses.Loss) or _is_keras3_loss(loss_fn):
        return loss_fn.call
    if callable(loss_fn):
        return loss_fn
    raise TypeError(f"student_loss_fn must be a Keras loss or a callable. Received: {loss_fn!r}")


_FROM_LOGITS = {
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
}


def _is_keras3_loss(obj) -> bool:
    try:
        import keras as keras3

        return isinstance(obj, keras3.losses.Loss)
    except ImportError:  # pragma: no cover
        return False


def default_student_loss(y_true, logits):
    """Cross-entropy on logits: categorical for one-hot ``y``, sparse for class indices."""
    y_rank, p_rank = y_true.shape.rank, logits.shape.rank
    if y_rank == p_rank and y_true.shape[-1] == logits.shape[-1] and y_true.shape[-1] != 1:
        return keras.losses.categorical_crossentropy(
            tf.cast(y_true, logits.dtype), logits, from_logits=True
        )
    return keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)


def _distillation_fn(loss_fn: Any, temperature: float) -> Callable:
    """Resolves ``distillation_loss_fn`` to ``fn(teacher_logits, student_logits) -> per example``."""
    if loss_fn is None:
        return lambda t, s: kd_losses.kl_divergence(t, s, temperature=temperature)
    if isinstance(loss_fn, str):
        loss_fn = kd_losses.DISTILLATION_LOSSES.get(loss_fn)(temperature=None)
    if isinstance(loss_fn, kd_losses._DistillationLoss):
        own = loss_fn.temperature
        if own is not None and own != temperature and not isinstance(loss_fn, kd_losses.LogitsMSE):
            raise ValueError(
                f"distillation_loss_fn has temperature={own} but compile() has "
                f"temperature={temperature}. Set it in one place (compile's temperature is used "
                "when the loss's is None)."
            )
        fn = type(loss_fn).fn
        return lambda t, s: fn(t, s, temperature=temperature)
    keras3_kl = False
    try:
        import keras as keras3

        keras3_kl = isinstance(loss_fn, keras3.losses.KLDivergence)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(loss_fn, keras.losses.KLDivergence) or keras3_kl:
        # The keras.io recipe: KL of softmax(t/T) and softmax(s/T), times T². Same quantity,
        # computed in log space so it neither underflows nor needs clipping.
        return lambda t, s: kd_losses.kl_divergence(t, s, temperature=temperature)
    if isinstance(loss_fn, keras.losses.Loss) or _is_keras3_loss(loss_fn):
        return loss_fn.call
    if not callable(loss_fn):
        raise TypeError(
            f"distillation_loss_fn must be a callable (teacher_logits, student_logits) -> "
            f"per-example loss, a loss name ({', '.join(kd_losses.DISTILLATION_LOSSES.names())}) "
            f"or None. Received: {loss_fn!r}"
        )
    try:
        params = inspect.signature(loss_fn).parameters
    except (TypeError, ValueError):
        params = {}
    if "temperature" in params:
        return lambda t, s: loss_fn(t, s, temperature=temperature)
    return loss_fn


def _weighted_mean(per_example: tf.Tensor, weight: Optional[tf.Tensor], mask: Optional[tf.Tensor]):
    """``Σ loss·mask·weight / Σ mask``: padding (mask 0) leaves numerator and denominator alike."""
    per_example = tf.cast(per_example, tf.float32)
    w = tf.ones_like(per_example)
    denom_w = w
    if mask is not None:
        m = _match_rank(tf.cast(mask, tf.float32), per_example)
        w = w * m
        denom_w = w
    if weight is not None:
        weight = tf.convert_to_tensor(weight)
        per_step = per_example.shape.rank >= 2 and weight.shape.rank == per_example.shape.rank
        sw = _match_rank(tf.cast(weight, tf.float32), per_example)
        w = w * sw
        if mask is None and per_step:
            # Per-time-step weights are a mask: zero-weight steps are padding.
            denom_w = denom_w * tf.cast(tf.not_equal(sw, 0), tf.float32)
    num = tf.reduce_sum(per_example * w)
    den = tf.reduce_sum(denom_w * tf.ones_like(per_example))
    return tf.math.divide_no_nan(num, den)


def _match_rank(w: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    while w.shape.rank is not None and w.shape.rank > like.shape.rank and w.shape[-1] == 1:
        w = tf.squeeze(w, axis=-1)
    while w.shape.rank is not None and w.shape.rank < like.shape.rank:
        w = tf.expand_dims(w, axis=-1)
    return tf.broadcast_to(w, tf.shape(like))


class Distiller(keras.Model):
    """Knowledge distillation as a ``keras.Model``: ``compile`` then ``fit``.

    Args:
        student: a tf-keras model that outputs logits (build it with ``kdkeras.keras``).
        teacher: a tf-keras or Keras 3 model, a :class:`~kdkeras.teachers.Teacher`, a path, a
            callable returning logits, a list of those (an ensemble), or None for offline
            distillation from precomputed logits.
        teacher_weights: list of floats. Ensemble weights (with a list of teachers).
        hints: list of :class:`kdkeras.losses.HintLoss`. Intermediate-feature losses.

    Data: ``(x, y)`` or ``(x, y, sample_weight)`` with a teacher. Without one, the third
    element is the teacher's logits (not a sample weight), or ``x`` is a dict with a
    ``"teacher_logits"`` key, or each element is a dict with keys ``x``, ``y``,
    ``teacher_logits`` and optionally ``sample_weight`` (what :func:`cache_teacher_logits`
    makes). ``y`` may be class indices or one-hot; sequence logits ``[batch, time, classes]``
    are masked by the student's Keras mask or by per-step sample weights.

    Example:

    >>> import kdkeras as kd
    >>> (x, y), _ = kd.digits()
    >>> teacher = kd.build_mlp_student((8, 8, 1), 10, hidden=(64,))
    >>> student = kd.build_mlp_student((8, 8, 1), 10, hidden=(8,))
    >>> d = kd.Distiller(student=student, teacher=teacher)
    >>> d.compile(optimizer=kd.keras.optimizers.Adam(1e-3), metrics=["accuracy"],
    ...           alpha=0.1, temperature=3.0)
    >>> h = d.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0)
    >>> sorted(h.history)
    ['accuracy', 'distillation_loss', 'loss', 'student_loss']
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: Any = None,
        teacher_weights: Optional[Sequence[float]] = None,
        hints: Optional[Sequence[kd_losses.HintLoss]] = None,
        name: str = "distiller",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if is_keras3_model(student):
            raise TypeError(
                f"The student '{student.name}' is a Keras 3 model, but distillation with "
                "compression needs a tf-keras student: build it with `kdkeras.keras` "
                "(e.g. kd.keras.Sequential / kd.build_cnn_student). Keras 3 teachers are fine."
            )
        if not isinstance(student, keras.Model):
            raise TypeError(
                f"student must be a tf-keras Model (kdkeras.keras.Model). Received: {type(student).__name__}"
            )
        self.student = student
        self._teacher: Optional[Teacher] = as_teacher(teacher, teacher_weights)
        self.hints = list(hints or [])
        for h in self.hints:
            if not isinstance(h, kd_losses.HintLoss):
                raise TypeError(f"hints must be kdkeras.losses.HintLoss objects. Received: {h!r}")
        if self.hints and self._teacher is None:
            raise ValueError("Feature hints need a teacher model (the features are not cached).")
        self._student_features = None
        if self.hints:
            self._student_features = _feature_model(student, [h.student_layer for h in self.hints], "student")
            self._build_hints()
        self.alpha = 0.1
        self.temperature = 3.0
        self._compiled_kd = False
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.hint_loss_tracker = keras.metrics.Mean(name="hint_loss")
        # Global step of the first non-finite loss (-1: none). Read by _DivergenceGuard.
        self._bad_step = tf.Variable(
            -1, dtype=tf.int64, trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
        )

    def _build_hints(self) -> None:
        """Creates the hint projections now, so the optimizer sees them from the first step."""
        if isinstance(self._teacher, EnsembleTeacher):
            raise ValueError("Feature hints need a single teacher, not an ensemble.")
        teacher_model = self._teacher.model
        if not hasattr(teacher_model, "get_layer"):
            raise ValueError("Feature hints need a Keras teacher model with named layers.")
        names = [layer.name for layer in teacher_model.layers]
        for h in self.hints:
            if h.teacher_layer not in names:
                raise ValueError(
                    f"The teacher has no layer named '{h.teacher_layer}'. Its layers: {', '.join(names)}"
                )
            t_shape = tf.TensorShape(teacher_model.get_layer(h.teacher_layer).output.shape)
            s_shape = tf.TensorShape(self.student.get_layer(h.student_layer).output.shape)
            if not h.built:
                h.build((t_shape, s_shape))

    @property
    def teacher(self) -> Optional[Teacher]:
        """The teacher adapter (None in offline distillation)."""
        return self._teacher

    def compile(
        self,
        optimizer="adam",
        metrics=None,
        student_loss_fn=None,
        distillation_loss_fn=None,
        alpha: float = 0.1,
        temperature: float = 3.0,
        **kwargs,
    ):
        """Configures the distillation.

        Args:
            optimizer: a Keras optimizer or its name.
            metrics: metrics on the student's output against ``y`` (e.g. ``["accuracy"]``).
            student_loss_fn: loss on hard labels; None uses cross-entropy from logits (sparse or
                categorical, from the label shape). Any Keras loss or ``fn(y, logits)``.
            distillation_loss_fn: ``fn(teacher_logits, student_logits) -> per-example loss``,
                a name from ``kdkeras.losses.DISTILLATION_LOSSES``, a kdkeras loss object, or
                None for Hinton's ``KL · T²`` on logits. Keras's own ``KLDivergence()`` (the
                keras.io recipe) is accepted and computed the same way, in log space.
            alpha: float in [0, 1]. Weight of the hard-label loss.
            temperature: float > 0. Softening temperature ``T``.
            **kwargs: passed to ``keras.Model.compile`` (``jit_compile``,
                ``steps_per_execution``, ...). ``loss`` is not accepted.

        Raises:
            ValueError: for ``alpha`` outside [0, 1], ``temperature <= 0`` or a ``loss=``.
        """
        if "loss" in kwargs:
            raise ValueError(
                "Distiller.compile takes student_loss_fn= and distillation_loss_fn=, not loss=. "
                f"Received: loss={kwargs['loss']!r}"
            )
        self.alpha = _check_alpha(alpha)
        self.temperature = kd_losses._check_temperature(temperature)
        self.student_loss_fn = _per_example(student_loss_fn) if student_loss_fn is not None else default_student_loss
        self.distillation_loss_fn = _distillation_fn(distillation_loss_fn, self.temperature)
        self._compiled_kd = True
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.student_loss_tracker, self.distillation_loss_tracker]
        if self.hints:
            trackers.append(self.hint_loss_tracker)
        return trackers + (self.compiled_metrics.metrics if getattr(self, "compiled_metrics", None) else [])

    def call(self, inputs, training=None):
        if _is_dict_batch(inputs):  # a {"x", "y", "teacher_logits"} batch
            inputs = _dict_batch_inputs(inputs)
        elif isinstance(inputs, dict) and TEACHER_LOGITS_KEY in inputs:
            inputs, _ = self._split_logits(inputs)
        return self.student(inputs, training=training)

    # ----------------------------------------------------------------------------- data
    def _split_logits(self, x: dict):
        x = dict(x)
        logits = x.pop(TEACHER_LOGITS_KEY)
        if len(x) == 1 and len(self.student.inputs or [None]) == 1:
            x = next(iter(x.values()))
        return x, logits

    def _unpack(self, data) -> Tuple[Any, Any, Any, Any]:
        """Returns ``(x, y, sample_weight, teacher_logits)`` from one batch."""
        if _is_dict_batch(data):
            x = _dict_batch_inputs(data)
            y = data.get("y", data.get("labels"))
            return x, y, data.get("sample_weight"), data[TEACHER_LOGITS_KEY]
        x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
        logits = None
        if isinstance(x, dict) and TEACHER_LOGITS_KEY in x:
            x, logits = self._split_logits(x)
        elif self._teacher is None:
            logits, sw = sw, None
        return x, y, sw, logits

    def _teacher_outputs(self, x, logits):
        """Teacher logits (given or computed, outside any tape) and hint features."""
        if logits is not None:
            return tf.stop_gradient(tf.cast(logits, tf.float32)), []
        if self._teacher is None:
            raise ValueError(NO_TEACHER_MESSAGE)
        if self.hints:
            outs = self._teacher.features(x, [h.teacher_layer for h in self.hints])
            return outs[0], outs[1:]
        return self._teacher(x, temperature=self.temperature), []

    def _student_outputs(self, x, training):
        if self._student_features is not None:
            outs = self._student_features(x, training=training)
            return outs[0], outs[1:]
        return self.student(x, training=training), []

    def _compute_losses(self, x, y, sw, t_logits, t_feats, training):
        s_logits, s_feats = self._student_outputs(x, training)
        if t_logits.shape.rank is not None and s_logits.shape.rank is not None:
            if not t_logits.shape[1:].is_compatible_with(s_logits.shape[1:]):
                raise _shape_mismatch("the teacher", t_logits.shape, self.student.name, s_logits.shape)
        mask = getattr(s_logits, "_keras_mask", None)
        parts = {}
        distill = _weighted_mean(self.distillation_loss_fn(t_logits, s_logits), sw, mask)
        parts["distillation_loss"] = distill
        if y is not None:
            student = _weighted_mean(self.student_loss_fn(y, s_logits), sw, mask)
            parts["student_loss"] = student
            total = self.alpha * student + (1.0 - self.alpha) * distill
        else:  # unlabeled transfer set: distillation only
            total = distill
        if self.hints:
            hint_total = tf.add_n(
                [h.weight * _weighted_mean(h(tf_, sf_), sw, None) for h, tf_, sf_ in zip(self.hints, t_feats, s_feats)]
            )
            parts["hint_loss"] = hint_total
            total = total + hint_total
        parts["loss"] = total
        return total, parts, s_logits, mask

    def _update_metrics(self, parts, y, s_logits, sw, mask):
        trackers = {
            "loss": self.loss_tracker,
            "student_loss": self.student_loss_tracker,
            "distillation_loss": self.distillation_loss_tracker,
            "hint_loss": self.hint_loss_tracker,
        }
        for key, value in parts.items():
            trackers[key].update_state(value)
        if y is not None:
            w = sw
            if mask is not None:
                m = tf.cast(mask, s_logits.dtype)
                w = m if w is None else _match_rank(tf.cast(w, m.dtype), m) * m
            self.compiled_metrics.update_state(y, s_logits, w)
        logs = {key: trackers[key].result() for key in parts}
        for m in self.compiled_metrics.metrics:
            logs[m.name] = m.result()
        return logs

    # ----------------------------------------------------------------------------- steps
    def train_step(self, data):
        if not self._compiled_kd:
            raise RuntimeError("Call Distiller.compile(...) before fit().")
        x, y, sw, logits = self._unpack(data)
        t_logits, t_feats = self._teacher_outputs(x, logits)
        variables = self.student.trainable_variables + [v for h in self.hints for v in h.trainable_variables]
        with tf.GradientTape() as tape:
            total, parts, s_logits, mask = self._compute_losses(x, y, sw, t_logits, t_feats, True)
            # Gradients are summed across replicas: scale so the update is that of the global mean.
            scaled = total / tf.distribute.get_strategy().num_replicas_in_sync
        grads = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        finite = tf.reduce_all(tf.math.is_finite(total))
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:  # one verdict for all replicas
            bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
            finite = tf.equal(bad, 0.0)
        clean = tf.less(self._bad_step, 0)
        self._bad_step.assign(
            tf.where(tf.logical_and(clean, tf.logical_not(finite)), self._train_counter, self._bad_step)
        )
        self._apply_if_finite(pairs, tf.logical_and(finite, clean))
        return self._update_metrics(parts, y, s_logits, sw, mask)

    def _apply_if_finite(self, pairs, finite) -> None:
        """Applies the update only when the loss is finite: the student keeps its last good state.

        Under a multi-replica strategy the condition must be taken in cross-replica context
        (a ``merge_call`` inside ``tf.cond`` is not allowed), as Keras's LossScaleOptimizer does.
        """
        strategy = tf.distribute.get_strategy()
        if strategy.num_replicas_in_sync == 1:
            tf.cond(finite, lambda: self._apply(pairs, False), lambda: tf.constant(False))
            return
        grads = self.optimizer.aggregate_gradients(pairs)  # all-reduce, in replica context
        variables = [v for _, v in pairs]
        grads = [g for g, _ in grads]

        def cross_replica(distribution, grads, finite):
            all_finite = distribution.experimental_local_results(finite)[0]  # same on every replica

            def apply():
                distribution.extended.call_for_each_replica(
                    lambda g: self._apply(list(zip(g, variables)), True), args=(grads,)
                )
                return tf.constant(True)

            tf.cond(all_finite, apply, lambda: tf.constant(False))

        tf.distribute.get_replica_context().merge_call(cross_replica, args=(grads, finite))

    def _apply(self, pairs, aggregated: bool):
        self.optimizer.apply_gradients(pairs, skip_gradients_aggregation=aggregated)
        return tf.constant(True)

    def test_step(self, data):
        x, y, sw, logits = self._unpack(data)
        if logits is None and self._teacher is None:
            # Plain evaluation of the student (held-out data rarely has cached logits).
            s_logits = self.student(x, training=False)
            mask = getattr(s_logits, "_keras_mask", None)
            student = _weighted_mean(self.student_loss_fn(y, s_logits), sw, mask)
            # Not logged as "loss": that name is the distillation objective, which needs logits.
            return self._update_metrics({"student_loss": student}, y, s_logits, sw, mask)
        t_logits, t_feats = self._teacher_outputs(x, logits)
        _, parts, s_logits, mask = self._compute_losses(x, y, sw, t_logits, t_feats, False)
        return self._update_metrics(parts, y, s_logits, sw, mask)

    # ----------------------------------------------------------------------------- fit
    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit`` plus a preflight check and the callbacks distillation needs.

        Before training, one small batch is run through teacher and student to fail early
        with a clear message (shape mismatch, probabilities instead of logits, labels out of
        range). A :class:`TrainingDivergedError` stops training at the first non-finite loss.
        When the student holds TF-MOT pruning wrappers, TF-MOT's ``UpdatePruningStep`` is added
        (and ``PruningSummaries`` when a TensorBoard callback gives a log dir) unless present.
        """
        bound = inspect.signature(keras.Model.fit).bind(self, x, y, *args, **kwargs)
        bound.apply_defaults()
        params = bound.arguments
        if not self._compiled_kd:
            raise RuntimeError("Call Distiller.compile(...) before fit().")
        if self._teacher is None and (params.get("class_weight") or params.get("sample_weight") is not None):
            raise ValueError(
                "With teacher=None the third element of a batch is the teacher's logits, so "
                "sample_weight= and class_weight= cannot be used. Feed dict batches "
                "{'x', 'y', 'teacher_logits', 'sample_weight'} with per-example weights instead."
            )
        self.preflight(params["x"], params["y"], params.get("sample_weight"))
        callbacks = list(params.get("callbacks") or [])
        callbacks = _with_pruning_callbacks(self.student, callbacks)
        guard = _DivergenceGuard(self._bad_step)
        callbacks.append(guard)
        params["callbacks"] = callbacks
        params.pop("self")
        self._bad_step.assign(-1)
        history = super().fit(**params)
        if guard.error is not None:
            raise guard.error
        return history

    def preflight(self, x, y=None, sample_weight=None) -> None:
        """Checks one small batch: output shapes, logits vs probabilities, label range.

        Called by :meth:`fit`; data it cannot peek at (generators) is checked at trace time.

        Raises:
            ValueError: naming the bad shapes or values and how to fix them.
        """
        sample = _peek(x, y, sample_weight)
        if sample is None:
            return
        xs, ys, sws, logits = self._unpack(sample)
        if logits is None and self._teacher is None:
            raise ValueError(NO_TEACHER_MESSAGE)
        s = np.asarray(self.student(xs, training=False), dtype=np.float32)
        if logits is not None:
            raw = logits
        else:
            raw = self._teacher(xs, temperature=self.temperature)
        t = np.asarray(tf.cast(raw, tf.float32))
        atol = 2e-2  # loose enough for bfloat16 softmax rows; logits essentially never pass
        source = "teacher logits" if logits is not None else f"teacher '{self._teacher.name}'"
        if t.ndim < s.ndim:
            raise ValueError(
                f"The {source} have shape {t.shape}, not one row of logits per example "
                f"(student: {s.shape}). Without a teacher the third element of a batch is the "
                "teacher's logits, not a sample weight."
            )
        if t.shape[1:] != s.shape[1:]:
            raise _shape_mismatch(source, t.shape, self.student.name, s.shape)
        if t.size and np.all(t >= 0) and np.all(t <= 1) and np.allclose(t.sum(-1), 1.0, atol=atol):
            raise ValueError(
                f"The {source} outputs look like probabilities (every row is in [0, 1] and sums "
                "to 1), but distillation needs logits. Remove the final softmax (build the last "
                "layer with activation=None) or select the pre-softmax output with "
                "kd.Teacher(model, output=...)."
            )
        if np.all((s >= 0) & (s <= 1)) and np.allclose(s.sum(-1), 1.0, atol=1e-3) and s.shape[-1] > 1:
            raise ValueError(
                f"The student '{self.student.name}' outputs look like probabilities; the losses "
                "take logits. Give its last layer activation=None."
            )
        _check_labels(y if y is not None and not isinstance(x, tf.data.Dataset) else ys, s.shape[-1])


def _check_labels(y, num_classes: int) -> None:
    if y is None or isinstance(y, (tf.data.Dataset, dict)):
        return
    y = np.asarray(y)
    if y.size == 0:
        return
    if y.ndim >= 1 and y.shape[-1] == num_classes and y.ndim > 1 and not np.issubdtype(y.dtype, np.integer):
        return  # one-hot / soft labels
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0):
        raise ValueError(
            f"Labels must be class indices or one-hot rows of width {num_classes}. Received "
            f"labels of shape {y.shape} with non-integer values (e.g. {y.ravel()[0]})."
        )
    lo, hi = int(np.min(y)), int(np.max(y))
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"Label {bad} is out of range for {num_classes} classes (labels must be in "
            f"[0, {num_classes - 1}]). Check the labels or the student's number of outputs."
        )


def _take(a, n: int):
    if a is None:
        return None
    if isinstance(a, dict):
        return {k: _take(v, n) for k, v in a.items()}
    if isinstance(a, (list, tuple)):
        return type(a)(_take(v, n) for v in a)
    return a[:n]


def _peek(x, y, sample_weight, n: int = 16):
    """A small batch in the form ``train_step`` receives it, or None if it cannot be peeked."""
    if isinstance(x, tf.data.Dataset):
        for batch in x.take(1):
            return _take(batch, n)
        return None
    if isinstance(x, (np.ndarray, tf.Tensor)) or isinstance(x, (dict, list, tuple)):
        parts = tuple(p for p in (_take(x, n), _take(y, n), _take(sample_weight, n)))
        while parts and parts[-1] is None:
            parts = parts[:-1]
        return parts if len(parts) > 1 else parts[0]
    return None


def _with_pruning_callbacks(model, callbacks: List) -> List:
    """Adds TF-MOT's pruning callbacks when the model is being pruned (see kdkeras.compress)."""
    try:
        from kdkeras.compress.pruning import ensure_pruning_callbacks
    except ImportError:  # compression not available: nothing can be pruned
        return callbacks
    return ensure_pruning_callbacks(model, callbacks)
