"""Sequence-level distillation: the student learns from text the teacher writes.

Token-level KD matches the teacher's next-token distribution at every position of real text;
sequence-level KD (Kim & Rush 2016) instead trains the student, with the plain next-token loss,
on the teacher's own continuations: each window keeps its first ``prompt_length`` tokens and the
teacher writes the rest (greedy, the mode of its distribution, or sampled at a temperature).
It needs no logits at all, so it also works when teacher and student do not share a vocabulary
(decode the teacher's text and tokenize it with the student's tokenizer); here, with one shared
vocabulary, the windows come back as ids ready for ``student.fit``.

The teacher has no key/value cache here: each new token costs one teacher call on the whole
batch of windows, so a window of ``T`` tokens with prompt ``P`` costs ``T - P + 1`` calls.

Example:

>>> import numpy as np
>>> from kdkeras.models import build_gpt_student
>>> teacher = build_gpt_student(context=8, vocab_size=20, width=8, depth=1, heads=1)
>>> x = np.random.default_rng(0).integers(4, 20, (3, 8)).astype("int32")
>>> xs, ys, ws = teacher_continuations(teacher, x, prompt_length=4, seed=0)
>>> bool((xs[:, :4] == x[:, :4]).all()), bool((xs[:, 1:] == ys[:, :-1]).all()), ws.shape
(True, True, (3, 8))

References:
    Kim, Rush. "Sequence-Level Knowledge Distillation", EMNLP 2016.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from kdkeras.distill.teachers import as_teacher
from kdkeras.validation import check_int, check_temperature

__all__ = ["teacher_continuations"]

SAMPLING = ("greedy", "sample")


def _next(logits: np.ndarray, sampling: str, temperature: float,
          rng: np.random.Generator) -> np.ndarray:
    """One token per row of ``logits [B, V]``."""
    if sampling == "greedy":
        return np.argmax(logits, axis=-1).astype(np.int32)
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    u = rng.random((len(p), 1))
    return np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), p.shape[1] - 1).astype(np.int32)


def teacher_continuations(
    teacher: Any,
    x,
    prompt_length: int,
    sampling: str = "greedy",
    temperature: float = 1.0,
    seed: Optional[int] = None,
    batch_size: int = 32,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows whose tokens after the first ``prompt_length`` are written by the teacher.

    Args:
        teacher: a causal LM (anything :func:`~kdkeras.distill.as_teacher` accepts) mapping
            int32 ids ``[B, T]`` to logits ``[B, T, V]``.
        x: int ids ``[N, T]``: real text windows (e.g. ``LMData.windows("train")[0]``) whose
            first ``prompt_length`` tokens are kept as prompts.
        prompt_length: int in [1, T]. Tokens of each window kept as the prompt.
        sampling: ``"greedy"`` (the teacher's most likely token) or ``"sample"`` (drawn from
            its softmax at ``temperature``).
        temperature: float > 0. Sampling temperature (``"sample"`` only).
        seed: int or None. Seed of the sampler.
        batch_size: int >= 1. Windows per teacher call.

    Returns:
        ``(x, y, sample_weight)``: int32 ``[N, T]`` windows, their next tokens (the last one
        also written by the teacher) and float32 ones: train the student with the plain
        next-token loss (``student.fit(x, y, sample_weight=...)``).

    Raises:
        ValueError: ``x`` not 2-D or with negative ids, a bad ``prompt_length`` /
            ``batch_size`` / ``temperature``, an unknown ``sampling`` (listing them), or teacher
            logits that are not ``[B, T, V]`` or not finite.
    """
    if sampling not in SAMPLING:
        raise ValueError(f"Unknown sampling {sampling!r}. Known: {list(SAMPLING)}.")
    temperature = check_temperature(temperature)
    batch_size = check_int(batch_size, "batch_size", 1)
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer) or x.size == 0:
        raise ValueError(f"x must be int token ids [N, T] with N, T >= 1. Received: x of shape "
                         f"{x.shape} and dtype {x.dtype}.")
    if x.min() < 0:
        raise ValueError(f"x holds negative ids (min {x.min()}): token ids are >= 0.")
    steps = x.shape[1]
    prompt_length = check_int(prompt_length, "prompt_length", 1)
    if prompt_length > steps:
        raise ValueError(f"prompt_length must be <= T = {steps}, the window length. Received: "
                         f"prompt_length={prompt_length}")
    t = as_teacher(teacher)
    rng = np.random.default_rng(seed)
    windows = np.zeros((len(x), steps + 1), np.int32)
    windows[:, :prompt_length] = x[:, :prompt_length]
    for start in range(0, len(x), batch_size):
        part = windows[start: start + batch_size]
        for pos in range(prompt_length, steps + 1):  # the token at `pos`, read at pos - 1
            logits = np.asarray(t(part[:, :steps]))
            if logits.ndim != 3 or logits.shape[:2] != (len(part), steps):
                raise ValueError(f"The teacher must return logits [B, T, V] = [{len(part)}, "
                                 f"{steps}, V]. Received: shape {logits.shape}.")
            row = logits[:, pos - 1]
            if not np.isfinite(row).all():
                raise ValueError(f"The teacher gave NaN or infinite logits at position "
                                 f"{pos - 1}: check the teacher.")
            part[:, pos] = _next(row, sampling, temperature, rng)
    return (windows[:, :steps].copy(), windows[:, 1:].copy(),
            np.ones((len(x), steps), np.float32))
