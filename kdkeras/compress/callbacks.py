"""Callbacks that train a pruned model correctly, and the test for pruning wrappers.

TF-MOT's pruning wrappers need its ``UpdatePruningStep`` callback in every ``fit`` (and
``PruningSummaries`` to log sparsity to TensorBoard). :func:`ensure_pruning_callbacks` adds
them, with a :class:`PruningTargetCheck` that warns when training ended before the schedule
reached its target. :mod:`kdkeras.compress` registers it as a fit-callback hook of
:class:`kdkeras.Distiller`, so distilling a pruned student needs no callback from the user.

Example:

>>> import kdkeras as kd
>>> from kdkeras.compress import prune
>>> inputs = kd.keras.Input((4,))
>>> pruned = prune(kd.keras.Model(inputs, kd.keras.layers.Dense(2)(inputs)), end_step=10)
>>> has_pruning_wrappers(pruned)
True
>>> [type(cb).__name__ for cb in ensure_pruning_callbacks(pruned)]
['UpdatePruningStep', 'PruningTargetCheck']
"""

from __future__ import annotations

import importlib.util
import logging
from typing import List, Optional

import tensorflow_model_optimization as tfmot
import tf_keras as keras

from kdkeras.compress._tfmot import PruneLowMagnitude
from kdkeras.compress.layers import walk_layers
from kdkeras.compress.schedules import final_sparsity

logger = logging.getLogger("kdkeras.compress")

UpdatePruningStep = tfmot.sparsity.keras.UpdatePruningStep
PruningSummaries = tfmot.sparsity.keras.PruningSummaries


def has_pruning_wrappers_layer(layer) -> bool:
    """True when ``layer`` itself is a TF-MOT pruning wrapper."""
    return isinstance(layer, PruneLowMagnitude)


def has_pruning_wrappers(model) -> bool:
    """True when ``model`` (or any model nested in it, e.g. a Distiller's student) is being pruned.

    >>> import kdkeras as kd
    >>> has_pruning_wrappers(kd.keras.Sequential([kd.keras.layers.Dense(1, input_shape=(2,))]))
    False
    """
    if isinstance(model, PruneLowMagnitude):
        return True
    return any(isinstance(layer, PruneLowMagnitude) for layer in walk_layers(model))


@keras.utils.register_keras_serializable(package="kdkeras")
class PruningTargetCheck(keras.callbacks.Callback):
    """Warns at the end of training when a pruned layer is short of its schedule's target.

    Masks only change on the schedule's turns (``begin_step`` + k * ``frequency``, up to
    ``end_step``); a fine-tune shorter than that ends with a less sparse model than asked for.
    This says so (logger ``kdkeras.compress``), with the steps trained and the step needed,
    instead of letting the run finish silently. ``shortfalls`` keeps the last findings.

    Args:
        tolerance: float. How far below its target (as a fraction of the weights) a tensor may
            end before it is reported.
    """

    def __init__(self, tolerance: float = 0.01):
        super().__init__()
        self.tolerance = float(tolerance)
        self.shortfalls: List[dict] = []

    def get_config(self) -> dict:
        """The constructor arguments: ``{"tolerance": ...}``."""
        return {"tolerance": self.tolerance}

    @classmethod
    def from_config(cls, config: dict) -> "PruningTargetCheck":
        """A new callback from :meth:`get_config`'s output."""
        return cls(**config)

    def on_train_end(self, logs=None):
        self.shortfalls = []
        for layer in walk_layers(self.model):
            if not isinstance(layer, PruneLowMagnitude) or not layer.built:
                continue
            if layer.sparsity_m_by_n:
                continue
            target = final_sparsity(layer.pruning_schedule)
            if target is None:
                continue
            for weight, mask, _ in layer.pruning_vars:
                reached = float(1.0 - mask.numpy().mean())
                if reached < target - self.tolerance:
                    self.shortfalls.append(dict(layer=layer.name, weight=weight.name,
                                                reached=reached, target=target,
                                                step=int(layer.pruning_step.numpy())))
        if self.shortfalls:
            schedule = next(l for l in walk_layers(self.model)
                            if isinstance(l, PruneLowMagnitude)).pruning_schedule
            cfg = schedule.get_config()["config"]
            first = self.shortfalls[0]
            logger.warning(
                "Pruning fell short of its target: %d weight tensor(s) below it, e.g. %s at "
                "%.1f%% instead of %.1f%% after %d training steps. The schedule (begin_step=%s, "
                "end_step=%s, frequency=%s) only updates masks on its turns: train for at least "
                "end_step steps, or prune with a smaller end_step / frequency.",
                len(self.shortfalls), first["weight"], 100 * first["reached"],
                100 * first["target"], first["step"], cfg.get("begin_step"),
                cfg.get("end_step"), cfg.get("frequency"))


def ensure_pruning_callbacks(model, callbacks=None, log_dir: Optional[str] = None) -> list:
    """Returns a new callback list that trains ``model``'s pruning wrappers correctly.

    Without TF-MOT's ``UpdatePruningStep`` a pruning run fails (or, with a reloaded model, never
    updates its masks). This adds it when ``model`` holds pruning wrappers and the list has
    none, adds a :class:`PruningTargetCheck` (a warning when training ended before the
    schedule reached its target), and adds ``PruningSummaries`` when a log directory is given,
    either as ``log_dir`` or through a ``keras.callbacks.TensorBoard`` in ``callbacks``
    (``<log_dir>/pruning``).

    Args:
        model: tf_keras.Model. The model being trained (a student, or a Distiller holding one).
        callbacks: list of callbacks or None. Not modified.
        log_dir: str or None. Where to write pruning summaries (sparsity, thresholds).

    Returns:
        A new list: the given callbacks plus the ones needed.

    Raises:
        ImportError: ``log_dir`` given but TensorBoard (which writes the summaries) is not
            installed. With a ``TensorBoard`` callback instead, the summaries are skipped with a
            logged warning.

    Example:

    >>> import kdkeras as kd
    >>> plain = kd.keras.Sequential([kd.keras.layers.Dense(1, input_shape=(2,))])
    >>> ensure_pruning_callbacks(plain, [])
    []
    """
    callbacks = list(callbacks or [])
    if not has_pruning_wrappers(model):
        return callbacks
    if not any(isinstance(cb, UpdatePruningStep) for cb in callbacks):
        callbacks.append(UpdatePruningStep())
    if not any(isinstance(cb, PruningTargetCheck) for cb in callbacks):
        callbacks.append(PruningTargetCheck())
    if any(isinstance(cb, PruningSummaries) for cb in callbacks):
        return callbacks
    if log_dir is not None:
        if not tensorboard_available():
            raise ImportError(
                "Pruning summaries are written with TensorBoard, which is not installed: "
                f"`pip install tensorboard`, or drop log_dir. Received: log_dir={log_dir!r}")
        callbacks.append(PruningSummaries(log_dir=str(log_dir)))
        return callbacks
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.TensorBoard):
            if tensorboard_available():
                callbacks.append(PruningSummaries(log_dir=f"{cb.log_dir}/pruning"))
            else:
                logger.warning("TensorBoard is not installed: no pruning summaries "
                               "(`pip install tensorboard` to get them).")
            break
    return callbacks


def tensorboard_available() -> bool:
    """True when the ``tensorboard`` package (needed to write summaries) is installed."""
    return importlib.util.find_spec("tensorboard") is not None

