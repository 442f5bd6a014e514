"""The :class:`Distiller`: a ``keras.Model`` that trains a student against a frozen teacher.

``loss = alpha · student_loss(y, s) + (1 − alpha) · distillation_loss(t, s)`` (+ hint losses),
where ``s`` and ``t`` are the student's and teacher's logits. The teacher's forward pass runs
outside the ``GradientTape`` with ``training=False``; gradients flow only to the student (and
to the projections of learned hints). ``call``, ``predict`` and ``evaluate`` use the student.

The pieces live beside it: batch forms in :mod:`~kdkeras.distill.batches`, the divergence
guard in :mod:`~kdkeras.distill.guard`, the pre-training checks in
:mod:`~kdkeras.distill.preflight`, the loss contract in :mod:`~kdkeras.distill.losses`, and
extension callbacks (pruning) in :mod:`~kdkeras.distill.hooks`.

References:
    Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural Network", 2015.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from kdkeras._keras_kind import is_keras3_model
from kdkeras.distill import losses as kd_losses
from kdkeras.distill import serialization
from kdkeras.distill.batches import (
    NO_TEACHER_MESSAGE,
    TEACHER_LOGITS_KEY,
    dict_batch_inputs,
    is_dict_batch,
    labelled,
    metric_inputs,
    split_logits,
    unpack,
    weighted_mean,
)
from kdkeras.distill.graph_code import graph_code
from kdkeras.distill.guard import DivergenceGuard, TrainingDivergedError, all_finite, apply_if_finite
from kdkeras.distill.hints import HintLoss
from kdkeras.distill.hooks import fit_callbacks
from kdkeras.distill.loss_means import LossMeans, metrics_result
from kdkeras.distill.mixing import as_mix
from kdkeras.distill.preflight import preflight, shape_mismatch
from kdkeras.distill.step_state import build_step_state, step_variables
from kdkeras.distill.student_loss import default_student_loss, per_example
from kdkeras.distill.teachers import EnsembleTeacher, Teacher, as_teacher, feature_model
from kdkeras.distill.topk import is_top_k
from kdkeras.distill.views import as_augmentation, augment_batch
from kdkeras.validation import check_alpha, check_int, check_temperature

__all__ = ["Distiller", "TrainingDivergedError"]


@keras.utils.register_keras_serializable(package="kdkeras")
class Distiller(keras.Model):
    """Knowledge distillation as a ``keras.Model``: ``compile`` then ``fit``.

    Args:
        student: a tf-keras model that outputs logits (build it with ``kdkeras.keras``).
        teacher: a tf-keras or Keras 3 model, a :class:`~kdkeras.teachers.Teacher`, a path, a
            callable returning logits, a list of those (an ensemble), or None for offline
            distillation from precomputed logits.
        teacher_weights: list of floats. Ensemble weights (with a list of teachers).
        hints: list of :class:`kdkeras.losses.HintLoss`. Intermediate-feature losses
            (:func:`kdkeras.distill.transformer_hints` builds TinyBERT/MiniLM ones).
        augment: a tf-keras preprocessing layer or model, or a function of a batch: each
            training batch is augmented once and that view goes to the teacher and the student
            alike (:mod:`kdkeras.distill.views`); needs an online teacher.
        mix: a :class:`kdkeras.distill.MixUp` or :class:`kdkeras.distill.CutMix`: each training
            batch (after ``augment``) is mixed with a shuffled copy of itself and the teacher
            labels the mixed input (:mod:`kdkeras.distill.mixing`); needs an online teacher.

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
        hints: Optional[Sequence[HintLoss]] = None,
        augment: Any = None,
        mix: Any = None,
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
        self.augment = as_augmentation(augment)
        self.mix = as_mix(mix)
        for arg, value in (("augment", self.augment), ("mix", self.mix)):
            if value is not None and self._teacher is None:
                raise ValueError(f"{arg} needs a teacher that labels each augmented view online; "
                                 "cached logits label the original inputs. Pass teacher=, or "
                                 f"{arg}=None (for stored views see cache_teacher_views).")
        self.hints = list(hints or [])
        for h in self.hints:
            if not isinstance(h, HintLoss):
                raise TypeError(f"hints must be kdkeras.losses.HintLoss objects. Received: {h!r}")
        if self.hints and self._teacher is None:
            raise ValueError("Feature hints need a teacher model (the features are not cached).")
        self._student_features = None
        if self.hints:
            self._student_features = feature_model(student, [h.student_layer for h in self.hints], "student")
            self._build_hints()
        self.alpha = 0.1
        self.temperature = 3.0
        self._compiled_kd = False
        self.ignore_class: Optional[int] = None
        self.loss_means = LossMeans(["loss", "student_loss", "distillation_loss"]
                                    + (["hint_loss"] if self.hints else []))
        # The logs are metric results, already the same on every replica; tf-keras's "auto"
        # sums them over the workers of a MultiWorkerMirroredStrategy (loss logged N times).
        self.distribute_reduction_method = "first"
        # Global step of the first non-finite loss or gradient (-1: none). Read by DivergenceGuard.
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
        ignore_class: Optional[int] = None,
        **kwargs,
    ):
        """Configures the distillation.

        Args:
            optimizer: a Keras optimizer or its name.
            metrics: metrics on the student's output against ``y`` (e.g. ``["accuracy"]``).
            student_loss_fn: loss on hard labels; None uses cross-entropy from logits (sparse or
                categorical, from the label shape). Any Keras loss or ``fn(y, logits)``.
            distillation_loss_fn: a :class:`kdkeras.losses.DistillationLoss` (called as
                ``call(teacher_logits, student_logits, temperature=T)``), a name from
                ``kdkeras.losses.DISTILLATION_LOSSES``, a plain ``fn(teacher_logits,
                student_logits) -> per-example loss``, or None for Hinton's ``KL · T²`` on
                logits; adapted once by :func:`kdkeras.losses.as_distillation_loss`. Keras's own
                ``KLDivergence()`` (the keras.io recipe) is computed the same way, in log space.
            alpha: float in [0, 1]. Weight of the hard-label loss.
            temperature: float > 0. Softening temperature ``T``.
            ignore_class: int or None. Examples whose (class-index) label is this value have no
                label: they count in the distillation loss only, not in the hard-label loss or
                the metrics (Keras's ``ignore_class``). With a label budget, mark the unlabelled
                part of the transfer set with it, e.g. ``-1``.
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
        self.alpha = check_alpha(alpha)
        self.temperature = check_temperature(temperature)
        self.ignore_class = None if ignore_class is None else check_int(ignore_class, "ignore_class",
                                                                        -(2**31))
        self.student_loss_fn = per_example(student_loss_fn) if student_loss_fn is not None else default_student_loss
        self.distillation_loss = kd_losses.as_distillation_loss(distillation_loss_fn, self.temperature)
        self._compiled_kd = True
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    @property
    def metrics(self):
        compiled = self.compiled_metrics.metrics if getattr(self, "compiled_metrics", None) else []
        return self.loss_means.metrics + compiled

    def get_metrics_result(self):
        return metrics_result(self.loss_means, self.metrics)

    @graph_code
    def call(self, inputs, training=None):
        if is_dict_batch(inputs):  # a {"x", "y", "teacher_logits"} batch
            inputs = dict_batch_inputs(inputs)
        elif isinstance(inputs, dict) and TEACHER_LOGITS_KEY in inputs:
            inputs, _ = split_logits(inputs, self._n_inputs)
        return self.student(inputs, training=training)

    # ----------------------------------------------------------------------------- data
    @property
    def _n_inputs(self) -> int:
        return len(self.student.inputs or [None])

    def _unpack(self, data):
        """``(x, y, sample_weight, teacher_logits)`` of one batch (see kdkeras.distill.batches)."""
        return unpack(data, self._teacher is not None, self._n_inputs)

    def _teacher_outputs(self, x, logits):
        """Teacher logits (given or computed, outside any tape) and hint features."""
        if is_top_k(logits):  # cached top-k targets: ids stay int32
            return {key: tf.stop_gradient(value) for key, value in logits.items()}, []
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
        if is_top_k(t_logits):
            if not self.distillation_loss.supports_top_k:
                raise ValueError(
                    f"The batches carry top-k teacher targets, which "
                    f"{type(self.distillation_loss).__name__} cannot use: it needs full logits. "
                    "Use the KL loss (distillation_loss_fn=None or 'kl'), or cache full logits.")
        elif t_logits.shape.rank is not None and s_logits.shape.rank is not None:
            if not t_logits.shape[1:].is_compatible_with(s_logits.shape[1:]):
                raise shape_mismatch("the teacher", t_logits.shape, self.student.name, s_logits.shape)
        mask = getattr(s_logits, "_keras_mask", None)
        parts = {}
        per_ex = self.distillation_loss.call(t_logits, s_logits, temperature=self.temperature)
        distill = weighted_mean(per_ex, sw, mask)
        parts["distillation_loss"] = distill
        if y is not None:
            y, mask = labelled(y, s_logits, mask, self.ignore_class)
            student = weighted_mean(self.student_loss_fn(y, s_logits), sw, mask)
            parts["student_loss"] = student
            total = self.alpha * student + (1.0 - self.alpha) * distill
        else:  # unlabeled transfer set: distillation only
            total = distill
        if self.hints:
            hint_total = tf.add_n(
                [h.weight * weighted_mean(h(tf_, sf_, token_mask=h.input_mask(x)), sw, None)
                 for h, tf_, sf_ in zip(self.hints, t_feats, s_feats)]
            )
            parts["hint_loss"] = hint_total
            total = total + hint_total
        parts["loss"] = total
        return total, parts, s_logits, mask, y

    def _update_metrics(self, parts, y, s_logits, sw, mask):
        self.loss_means.update_state(parts)
        if y is not None:
            self.compiled_metrics.update_state(
                *metric_inputs(y, s_logits, sw, mask, self.ignore_class is not None))
        logs = self.loss_means.results(parts)
        for m in self.compiled_metrics.metrics:
            logs[m.name] = m.result()
        return logs

    # ----------------------------------------------------------------------------- steps
    @graph_code  # see kdkeras.distill.graph_code
    def train_step(self, data):
        if not self._compiled_kd:
            raise RuntimeError("Call Distiller.compile(...) before fit().")
        x, y, sw, logits = self._unpack(data)
        if (self.augment is not None or self.mix is not None) and logits is not None:
            raise ValueError("augment and mix need the teacher online: these batches carry "
                             "cached teacher logits, which label the original inputs.")
        if self.augment is not None:  # one view per batch, for the teacher and the student alike
            x = augment_batch(self.augment, x)
        y_metric = None
        if self.mix is not None:  # the teacher labels the mixed input
            x, y, y_metric = self._mix(x, y)
        t_logits, t_feats = self._teacher_outputs(x, logits)
        variables = step_variables(self)
        with tf.GradientTape() as tape:
            total, parts, s_logits, mask, y = self._compute_losses(x, y, sw, t_logits, t_feats, True)
            # Gradients are summed across replicas: scale so the update is that of the global mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = total / replicas if replicas > 1 else total
        if y_metric is not None:  # metrics against the larger share's label, unmixed
            y, mask = labelled(y_metric, s_logits, getattr(s_logits, "_keras_mask", None),
                               self.ignore_class)
        grads = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        finite = all_finite(total, [g for g, _ in pairs])  # the loss and every gradient
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:  # one verdict for all replicas
            bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
            finite = tf.equal(bad, 0.0)
        clean = tf.less(self._bad_step, 0)

        def mark_bad():  # the first bad step's number (runs only when no update is applied)
            self._bad_step.assign(tf.where(tf.logical_and(clean, tf.logical_not(finite)),
                                           self._train_counter, self._bad_step))

        apply_if_finite(self.optimizer, pairs, tf.logical_and(finite, clean),
                        select=bool(self.jit_compile), on_skip=mark_bad)
        return self._update_metrics(parts, y, s_logits, sw, mask)

    def _mix(self, x, y):
        """``(mixed x, labels for the loss, labels for the metrics)``; see kdkeras.distill.mixing."""
        if self.mix.labels == "mixed" and self.ignore_class is not None and y is not None:
            raise ValueError(f"{self.mix!r} cannot mix labels with ignore_class="
                             f"{self.ignore_class} (unlabelled examples have no label to mix). "
                             "Use labels='off' (distillation only on mixed inputs).")
        return self.mix.mix(x, y, int(self.student.output_shape[-1]))

    @graph_code
    def test_step(self, data):
        x, y, sw, logits = self._unpack(data)
        if logits is None and self._teacher is None:
            # Plain evaluation of the student (held-out data rarely has cached logits).
            s_logits = self.student(x, training=False)
            y, mask = labelled(y, s_logits, getattr(s_logits, "_keras_mask", None),
                               self.ignore_class)
            student = weighted_mean(self.student_loss_fn(y, s_logits), sw, mask)
            # Not logged as "loss": that name is the distillation objective, which needs logits.
            return self._update_metrics({"student_loss": student}, y, s_logits, sw, mask)
        t_logits, t_feats = self._teacher_outputs(x, logits)
        _, parts, s_logits, mask, y = self._compute_losses(x, y, sw, t_logits, t_feats, False)
        return self._update_metrics(parts, y, s_logits, sw, mask)

    # ----------------------------------------------------------------------------- fit
    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit`` plus a preflight check and the callbacks distillation needs.

        Before training, one small batch is run through teacher and student to fail early
        with a clear message (shape mismatch, probabilities instead of logits, labels out of
        range); the optimizer's slots and the compiled metrics are then created from it, so the
        train step is traced once, not twice (:mod:`~kdkeras.distill.step_state`). A
        :class:`TrainingDivergedError` stops training soon after the first non-finite loss or
        gradient (no update is applied from then on; :mod:`~kdkeras.distill.guard`). When the
        student holds TF-MOT pruning wrappers, TF-MOT's ``UpdatePruningStep`` is added (and
        ``PruningSummaries`` when a TensorBoard callback gives a log dir) unless present.
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
        # In the strategy's scope, as Keras's fit runs: a student with TF-MOT pruning wrappers
        # assigns its masked weights on every call, which a MirroredVariable refuses outside it.
        with self.distribute_strategy.scope():
            sample = preflight(self, params["x"], params["y"], params.get("sample_weight"))
            build_step_state(self, sample)  # so that fit traces the train step once, not twice
        callbacks = fit_callbacks(self.student, params.get("callbacks"))
        guard = DivergenceGuard(self._bad_step, self._train_counter)
        callbacks.append(guard)
        params["callbacks"] = callbacks
        params.pop("self")
        self._bad_step.assign(-1)
        with guard.polling(self):  # the guard reads its flag about once a second, not per step
            history = super().fit(**params)
        if guard.error is not None:
            raise guard.error
        return history

    def preflight(self, x, y=None, sample_weight=None) -> None:
        """Checks one small batch: output shapes, logits vs probabilities, label range.

        Called by :meth:`fit`; data it cannot peek at (generators) is checked at trace time.
        See :mod:`kdkeras.distill.preflight`.

        Raises:
            ValueError: naming the bad shapes or values and how to fix them.
        """
        preflight(self, x, y, sample_weight)

    # ----------------------------------------------------------------------------- config
    # Serialization lives in kdkeras.distill.serialization; these are Keras's entry points.
    def get_config(self):
        """The student's (and a tf-keras teacher's) architecture and the hints (see
        :func:`kdkeras.distill.serialization.distiller_config`)."""
        return serialization.distiller_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None, teacher=None):
        """Rebuilds a Distiller from :meth:`get_config` (new, untrained weights); a teacher that
        was not serialized is given as ``teacher=``."""
        return serialization.distiller_from_config(cls, config, custom_objects, teacher)

    def get_compile_config(self):
        """The optimizer, ``alpha``, ``temperature``, ``ignore_class`` and the distillation loss
        (None before ``compile``)."""
        return serialization.compile_config(self)

    def compile_from_config(self, config):
        """Compiles with the settings :meth:`get_compile_config` returned."""
        self.compile(**serialization.compile_kwargs(config))
