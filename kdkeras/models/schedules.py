"""Learning-rate schedules for training teachers and students in a few epochs."""

from __future__ import annotations

import tf_keras as keras

from kdkeras.validation import check_int, check_number


def cosine_decay(
    learning_rate: float,
    steps: int,
    warmup_steps: int = 0,
    alpha: float = 0.0,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up to ``learning_rate``, then cosine decay over the rest of training.

    Step ``t`` (the optimizer's iteration count) gets ``learning_rate * t / warmup_steps``
    while ``t < warmup_steps``, then ``learning_rate * ((1 - alpha) * (1 + cos(pi * s)) / 2 +
    alpha)`` with ``s = (t - warmup_steps) / (steps - warmup_steps)`` capped at 1. A short
    schedule that ends near zero lets a higher peak rate train further in the same epochs
    (Loshchilov & Hutter 2017; with warm-up, close to the one-cycle policy of Smith 2018).

    Args:
        learning_rate: float. Peak learning rate (> 0), reached at the end of the warm-up.
        steps: int. Total optimizer steps of training, warm-up included (epochs × batches).
        warmup_steps: int. Steps of linear warm-up from 0 (0 <= warmup_steps < steps).
        alpha: float. Final learning rate as a share of ``learning_rate``, in [0, 1].

    Returns:
        A tf-keras ``CosineDecay`` schedule (serializable with the optimizer), to pass as
        ``keras.optimizers.Adam(cosine_decay(...))``.

    Raises:
        ValueError: a non-positive ``learning_rate`` or ``steps``, ``warmup_steps`` outside
            ``[0, steps)`` or ``alpha`` outside [0, 1].

    References:
        Loshchilov, Hutter. SGDR: Stochastic Gradient Descent with Warm Restarts. ICLR 2017.
        Smith, Topin. Super-Convergence: Very Fast Training of Neural Networks Using Large
        Learning Rates. 2018.

    Example:

    >>> s = cosine_decay(1e-3, steps=100, warmup_steps=10)
    >>> [round(float(s(t)), 6) for t in (0, 5, 10, 55, 100)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0]
    """
    learning_rate = check_number(learning_rate, "learning_rate", low=0, low_open=True)
    steps = check_int(steps, "steps", 1)
    warmup = check_int(warmup_steps, "warmup_steps", 0)
    if warmup >= steps:
        raise ValueError(
            f"warmup_steps must be in [0, steps={steps}). Received: warmup_steps={warmup_steps}")
    alpha = check_number(alpha, "alpha", low=0, high=1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else learning_rate,
        decay_steps=steps - warmup,
        alpha=alpha,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )
