"""The divergence guard: a non-finite loss or gradient stops training and its update is never
applied.

``train_step`` records the global step of the first non-finite loss or gradient
(:func:`all_finite`) in a variable and applies no update from then on (:func:`apply_if_finite`,
also within one ``steps_per_execution`` block and under a multi-replica strategy);
:class:`DivergenceGuard` reads it without a per-step host sync and stops ``fit``, and
:meth:`Distiller.fit` raises :class:`TrainingDivergedError` after every callback has ended.

The guard is polled by the train function itself (:meth:`DivergenceGuard.polling`), not by a
batch callback: one batch hook makes tf-keras run its callback machinery around every step (an
offline MLP epoch, best of 24 interleaved: 0.1117 s with the hook, 0.1065 s without; 0.1175 s
and 0.1115 s in a second run; a plain ``fit`` 0.1027 s and 0.1049 s)."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, List, Optional, Tuple

import tensorflow as tf
import tf_keras as keras
from tensorflow.python.ops import resource_variable_ops

class TrainingDivergedError(RuntimeError):
    """Raised by :meth:`Distiller.fit` when the loss or a gradient becomes NaN or infinite.

    The offending update is never applied, so the student keeps the weights of the last good
    step. ``epoch`` and ``step`` (1-based, within the epoch) say where it happened.
    """

    def __init__(self, message: str, epoch: int, step: int, loss: float):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.loss = loss


class DivergenceGuard(keras.callbacks.Callback):
    """Stops ``fit`` soon after the first non-finite loss or gradient; :meth:`Distiller.fit`
    then raises.

    ``train_step`` records the global step of the first non-finite loss or gradient in a
    variable and applies no update from then on (also within one ``steps_per_execution``
    block), so the student keeps the weights of the last good step whenever the guard
    notices. Reading that variable is a host sync, so it is read at most once every
    ``check_seconds`` of training (after a step, through :meth:`polling`) and at the end of
    every epoch, not after every step: a diverged run stops within about that time, and the
    steps it runs meanwhile change nothing. Raising after ``fit`` returns (not inside the
    callback) lets every other callback's ``on_train_end`` run.

    Args:
        bad_step: the Distiller's int64 variable (-1: no bad step yet).
        train_counter: the model's step counter, read once per epoch to turn the global bad
            step into a step of its epoch.
        check_seconds: float >= 0 or None. Longest time between two reads (0: after every
            step; None: :attr:`CHECK_SECONDS`).
    """

    #: Default longest time between two reads of the bad-step variable, in seconds.
    CHECK_SECONDS = 1.0

    def __init__(self, bad_step: tf.Variable, train_counter: tf.Variable,
                 check_seconds: Optional[float] = None):
        super().__init__()
        self._supports_tf_logs = True  # the logs are not read: no per-step conversion
        self.bad_step = bad_step
        self.train_counter = train_counter
        self.check_seconds = float(self.CHECK_SECONDS if check_seconds is None else check_seconds)
        self.error: Optional[TrainingDivergedError] = None
        self._epoch = 0
        self._epoch_start = 0
        self._last = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = int(self.train_counter.numpy())
        self._last = time.monotonic()

    def poll(self) -> None:
        """Reads the bad-step variable when ``check_seconds`` have passed since the last read."""
        if time.monotonic() - self._last >= self.check_seconds:
            self._check()
            self._last = time.monotonic()

    @contextlib.contextmanager
    def polling(self, model):
        """Within it, ``model.train_function`` polls this guard after every call.

        tf-keras's ``fit`` reuses a train function already made (``make_train_function``
        returns it), so ``fit`` called within runs the polling one; the plain one is put back on
        the way out, also after an error or Ctrl-C."""
        inner = model.make_train_function()
        polled = model.train_function = _Polled(inner, self.poll)
        try:
            yield
        finally:
            if model.train_function is polled:  # not one made anew within (compile, autotune)
                model.train_function = inner

    def on_epoch_end(self, epoch, logs=None):
        self._check()

    def _check(self) -> None:
        if self.error is not None:
            return
        bad = int(self.bad_step.numpy())
        if bad < 0:
            return
        step = bad - self._epoch_start + 1
        self.model.stop_training = True
        self.error = TrainingDivergedError(
            f"The distillation loss or its gradient became non-finite (NaN or inf) at epoch "
            f"{self._epoch + 1}, step {step}. Training stopped; no update was applied from that "
            "step on, so the student keeps the weights of the last good step. Check the inputs and teacher "
            "logits for NaN/inf, lower the learning rate, or lower the temperature.",
            epoch=self._epoch + 1,
            step=step,
            loss=float("nan"),
        )


class _Polled:
    """A train function that polls the guard after each call; attributes are the function's."""

    def __init__(self, function, poll: Callable[[], None]):
        self.function = function
        self.poll = poll

    def __call__(self, iterator):
        logs = self.function(iterator)
        self.poll()
        return logs

    def __getattr__(self, name):
        return getattr(self.function, name)


def is_legacy(optimizer) -> bool:
    """A ``tf_keras.optimizers.legacy`` optimizer: no ``build``, other ``apply_gradients``
    arguments, its slots made in ``apply_gradients``."""
    return not hasattr(optimizer, "build")


def all_finite(loss: tf.Tensor, grads: List[tf.Tensor]) -> tf.Tensor:
    """True when the loss and every gradient are finite, in one reduction per gradient.

    The gradients count, not only the loss: an input of ``inf`` through a fused
    ``MatMul + ReLU`` (oneDNN on CPU) gives a ReLU output of 0, a finite loss and a ``NaN``
    kernel gradient. Each gradient is summed and the sums added to the loss: a NaN or inf
    anywhere makes the total non-finite (a NaN stays NaN, +inf and -inf give NaN), at the cost of
    one ``Sum`` per gradient (``IsFinite`` + ``All`` per gradient would be two). A gradient whose
    elements sum past float32's range (3.4e38) counts as non-finite too. The price, the sums
    and an update that waits for the last gradient: a CNN student's offline step went from
    1.01x to 0.96x a plain ``fit``'s speed (``benchmarks/kd_speed_vs_peers.py``'s docstring).
    """
    parts = [tf.cast(loss, tf.float32)]
    for g in grads:
        if isinstance(g, tf.IndexedSlices):  # an embedding's gradient: its rows, not densified
            g = g.values
        parts.append(tf.cast(tf.reduce_sum(g), tf.float32))
    return tf.math.is_finite(tf.add_n(parts) if len(parts) > 1 else parts[0])


def apply_if_finite(optimizer, pairs: List[Tuple], finite, select: bool = False,
                    on_skip: Optional[Callable[[], None]] = None) -> None:
    """Applies the update only when ``finite`` holds: the student keeps its last good state.

    ``on_skip`` (no arguments, may assign variables) runs in the branch that applies nothing
    when the gate is a ``tf.cond``, so a good step does not pay for it; under ``select=True``
    and a multi-replica strategy it runs every step, so it must be harmless on a good step.

    Under a multi-replica strategy the condition must be taken in cross-replica context
    (a ``merge_call`` inside ``tf.cond`` is not allowed), as Keras's LossScaleOptimizer does.

    ``select=True`` (for ``jit_compile=True``, one replica) gates without ``tf.cond``: every
    variable the update touches (the weights, the optimizer's slots and step counter) keeps its
    value before the step when the loss was not finite. For tf-keras's own optimizers each
    write is gated where it happens (``v.assign(where(finite, new, v))``, no copies); for any
    other optimizer the update is applied and every variable set back from a copy (a NaN the
    update wrote is never selected). XLA runs a ``tf.cond`` that updates variables slowly: a CNN
    student's offline epoch took 3.15 s of CPU with the cond against 1.24 s with the select and
    1.22 s for a plain ``fit`` (``benchmarks/kd_speed_vs_peers.py``'s docstring).
    """
    strategy = tf.distribute.get_strategy()

    def skip():
        if on_skip is not None:
            on_skip()
        return tf.constant(False)

    if strategy.num_replicas_in_sync == 1:
        if select and not is_legacy(optimizer):  # legacy optimizers keep the cond
            skip()
            _apply_selected(optimizer, pairs, finite)
        else:
            tf.cond(finite, lambda: _apply(optimizer, pairs, False), skip)
        return
    skip()
    # all-reduce, in replica context (a legacy optimizer names it privately)
    aggregate = getattr(optimizer, "aggregate_gradients", None) or optimizer._aggregate_gradients
    grads = aggregate(pairs)
    variables = [v for _, v in pairs]
    grads = [g for g, _ in grads]

    def cross_replica(distribution, grads, finite):
        all_finite = distribution.experimental_local_results(finite)[0]  # same on every replica

        def apply():
            distribution.extended.call_for_each_replica(
                lambda g: _apply(optimizer, list(zip(g, variables)), True), args=(grads,)
            )
            return tf.constant(True)

        tf.cond(all_finite, apply, lambda: tf.constant(False))

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(grads, finite))


def _apply_selected(optimizer, pairs, finite) -> None:
    variables = [v for _, v in pairs]
    with tf.init_scope():  # slots exist before they are copied (a no-op once built)
        optimizer.build(variables)
    state = list(optimizer.variables) + variables
    if _writes_gate_in_place(optimizer, pairs, state):
        with _gated_writes(state, finite):
            optimizer.apply_gradients(pairs)
        return
    before = [tf.identity(v) for v in state]
    optimizer.apply_gradients(pairs)
    for v, old in zip(state, before):
        v.assign(tf.where(finite, v, old))


def _writes_gate_in_place(optimizer, pairs, state) -> bool:
    """tf-keras's own optimizers write their state with ``assign``, ``assign_add`` and
    ``assign_sub`` only (dense gradients, not the ``scatter_*`` of an embedding's rows) and,
    without their own XLA flag, trace those writes inline: each write can then be gated where it
    happens. Any other optimizer keeps the copy-and-select."""
    return (type(optimizer).__module__.startswith("tf_keras.")
            and not getattr(optimizer, "jit_compile", False)
            and not any(isinstance(g, tf.IndexedSlices) for g, _ in pairs)
            and all(type(v) is resource_variable_ops.ResourceVariable for v in state))


@contextlib.contextmanager
def _gated_writes(state, finite):
    """While tracing within it, every write to ``state`` keeps the variable's value unless
    ``finite``: ``v.assign_add(d)`` becomes ``v.assign(where(finite, v + d, v))``.

    The same guarantee as copying every variable before the update and selecting after, but each
    select is fused into the write XLA makes anyway, so no copy of the weights and optimizer
    slots is kept: an offline MLP step under XLA ran at 0.874x a plain jit ``fit``'s against
    0.771x with the copies (0.906x with no guard; ``benchmarks/kd_speed_vs_peers.py``)."""
    def gated(v, new):  # a write of new(old, x), kept only when finite
        def write(x, use_locking=None, name=None, read_value=True):
            old = v.read_value()
            return type(v).assign(v, tf.where(finite, new(old, x), old), use_locking, name,
                                  read_value)
        return write

    for v in state:  # instance attributes shadow the class's methods while the update traces
        v.__dict__.update({name: gated(v, new) for name, new in _WRITES.items()})
    try:
        yield
    finally:
        for v in state:
            for name in _WRITES:
                v.__dict__.pop(name, None)


_WRITES = {"assign": lambda old, x: x,
           "assign_add": lambda old, x: old + x,
           "assign_sub": lambda old, x: old - x}


def _apply(optimizer, pairs, aggregated: bool):
    if not aggregated:
        optimizer.apply_gradients(pairs)
    elif is_legacy(optimizer):
        optimizer.apply_gradients(pairs, experimental_aggregate_gradients=False)
    else:
        optimizer.apply_gradients(pairs, skip_gradients_aggregation=True)
    return tf.constant(True)
