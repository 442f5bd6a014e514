"""Pruning schedules: how the sparsity target of :func:`kdkeras.compress.prune` grows with steps.

``pruning_schedules`` is the registry of the names configs and the CLI use (``"polynomial"``,
``"constant"``); each entry builds a TF-MOT ``PruningSchedule``. :func:`default_frequency`
picks the step between two mask updates so that the last update lands on ``end_step``.

Example:

>>> pruning_schedules.names()
['constant', 'polynomial']
>>> schedule = pruning_schedules.get("polynomial")(
...     target_sparsity=0.8, begin_step=0, end_step=40, frequency=10)
>>> final_sparsity(schedule)
0.8

References:
    Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model
    compression", 2017 (polynomial schedule).
"""

from __future__ import annotations

from typing import Optional

import tensorflow_model_optimization as tfmot

from kdkeras.registry import Registry

#: Default (and largest) number of steps between two mask updates, as in TF-MOT.
DEFAULT_FREQUENCY = 100

pruning_schedules = Registry("pruning schedule")


@pruning_schedules.register("polynomial")
def polynomial_schedule(target_sparsity: float, begin_step: int, end_step: int,
                        frequency: int, initial_sparsity: float = 0.0, power: int = 3):
    """Sparsity rising from ``initial_sparsity`` to ``target_sparsity`` as a cubic (Zhu & Gupta).

    Args:
        target_sparsity: float. Final fraction of zeros, reached at ``end_step``.
        begin_step: int. First step at which masks are updated.
        end_step: int. Step at which ``target_sparsity`` is reached.
        frequency: int. Steps between two mask updates.
        initial_sparsity: float. Sparsity at ``begin_step``.
        power: int. Exponent of the decay.

    Returns:
        A ``tfmot.sparsity.keras.PolynomialDecay``.
    """
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=initial_sparsity, final_sparsity=target_sparsity,
        begin_step=begin_step, end_step=end_step, power=power, frequency=frequency)


@pruning_schedules.register("constant")
def constant_schedule(target_sparsity: float, begin_step: int, end_step: int, frequency: int):
    """``target_sparsity`` from ``begin_step`` on (one-shot pruning, then masks refreshed).

    Args:
        target_sparsity: float. Fraction of zeros.
        begin_step: int. First step at which masks are updated.
        end_step: int. Last step at which masks are updated, ``-1`` for never stopping.
        frequency: int. Steps between two mask updates.

    Returns:
        A ``tfmot.sparsity.keras.ConstantSparsity``.
    """
    return tfmot.sparsity.keras.ConstantSparsity(
        target_sparsity=target_sparsity, begin_step=begin_step, end_step=end_step,
        frequency=frequency)


def default_frequency(begin_step: int, end_step: int) -> int:
    """The largest divisor of ``end_step - begin_step`` that is at most 100.

    TF-MOT only updates masks on steps where ``(step - begin_step) % frequency == 0``; with a
    frequency that divides the pruning span, the last update falls exactly on ``end_step``, so
    the target sparsity is reached instead of the value of the last earlier update.

    >>> default_frequency(0, 1875), default_frequency(0, 40), default_frequency(0, -1)
    (75, 40, 100)
    """
    span = end_step - begin_step
    if end_step < 0 or span <= 0:
        return DEFAULT_FREQUENCY
    return max(d for d in range(1, min(DEFAULT_FREQUENCY, span) + 1) if span % d == 0)


def final_sparsity(schedule) -> Optional[float]:
    """The sparsity a TF-MOT schedule ends at, or None for a schedule kdkeras does not know."""
    if isinstance(schedule, tfmot.sparsity.keras.PolynomialDecay):
        return float(schedule.final_sparsity)
    if isinstance(schedule, tfmot.sparsity.keras.ConstantSparsity):
        return float(schedule.target_sparsity)
    return None
