"""Learning-rate schedules for training teachers and students in a few epochs."""

from __future__ import annotations

import tf_keras as keras


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
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0. Received: learning_rate={learning_rate}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1. Received: steps={steps}")
    if not 0 <= int(warmup_steps) < int(steps):
        raise ValueError(
            f"warmup_steps must be in [0, steps={steps}). Received: warmup_steps={warmup_steps}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha}")
    warmup = int(warmup_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else float(learning_rate),
        decay_steps=int(steps) - warmup,
        alpha=float(alpha),
        warmup_target=float(learning_rate) if warmup else None,
        warmup_steps=warmup,
    )
