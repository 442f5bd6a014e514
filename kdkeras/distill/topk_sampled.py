"""Top-k targets with a *sampled* tail: the teacher's largest probabilities kept exactly, the
rest of its distribution represented by draws from it.

:func:`~kdkeras.distill.topk.top_k_targets` folds the teacher's probability outside its top k
into one tail bucket. That tells the student how much mass lies outside the top k but not
where: for a language model whose teacher spreads a third of its mass over thousands of tokens,
the student then learns the tail from the hard next-token loss alone, and top-32 KD of a
5,852-token GPT came out *worse* than training from scratch (README, "Causal language models").

Here the ``k`` slots are split: the ``head`` largest probabilities are kept exactly, and the
other ``n = k - head`` slots hold tokens drawn from the teacher's distribution over the tail
(its probabilities with the head removed, renormalised) by *systematic sampling*: one uniform
``u`` per row and the ``n`` evenly spaced positions ``(u + i) / n``, ``i = 0 .. n - 1``, looked
up on the tail's cumulative distribution. Each draw carries ``tail / n`` of the mass (repeated
draws are merged into one slot with their masses added, and the slots left over get weight 0).
A token with tail probability ``q`` is drawn ``floor(n q)`` or ``ceil(n q)`` times, ``n q`` on
average, so in expectation over ``u`` this is the teacher's full distribution and the gradient
of the KL loss is an unbiased estimate of the full-logit gradient (the argument of Anshumann et
al. 2025 for sampled sparse logits). Its count has the least variance an unbiased whole number
of draws can have, ``f (1 - f)`` with ``f`` the fraction of ``n q``: a token with ``q >= 1/n``
is always drawn, where ``n`` i.i.d. (multinomial) draws, the method of caches whose
``cache.json`` records no ``draws``, miss it with probability ``(1 - q)^n`` and give its count
variance ``n q (1 - q)``. An exact head slot removes its token's variance but leaves one draw
fewer for the tail, whose variance grows as ``tail² / n``: for a flat tail, which gains little
from systematic draws, a larger head can add variance. The draws are made once, when the cache
is written, from a seeded generator.

The targets have the form :func:`~kdkeras.distill.topk.top_k_kl` already takes, so the
Distiller and :class:`~kdkeras.distill.TopKShards` need nothing new::

    {"ids": int32 [..., k],       # head ids (largest first), then the drawn ids, then 0s
     "logits": float16 [..., k],  # T · log(weight), minus the row's largest (-60000: weight 0)
     "tail": float32 [...] = 0,   # every bit of mass is in the k slots
     "temperature": float32 [...], "classes": int32 [...]}

Example:

>>> import numpy as np
>>> z = np.log(np.array([[0.5, 0.2, 0.1, 0.1, 0.05, 0.05]], "float32"))
>>> t = sampled_top_k_targets(z, k=4, temperature=1.0, head=2, seed=0)
>>> t["ids"][0, :2].tolist(), float(t["tail"][0])
([0, 1], 0.0)
>>> w = np.exp(t["logits"][0].astype("float64")); w /= w.sum()
>>> round(float(w[:2].sum()), 3)  # the head keeps its exact mass, the draws share the rest
0.7

References:
    Anshumann, Zaidi, Kedia, Ahn, Kwon, Lee, Lee, Lee. "Sparse Logit Sampling: Accelerating
    Knowledge Distillation in LLMs", ACL 2025.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from kdkeras.distill.topk import (CLASSES, IDS, LOGITS, TAIL, TEMPERATURE, check_finite_logits,
                                  check_top_k, top_k_targets)
from kdkeras.validation import check_int, check_temperature

__all__ = ["sampled_top_k_targets", "default_head", "ZERO_WEIGHT", "TAILS", "DRAWS"]

#: The stored logit of an empty slot: exp(-60000 / T) is exactly 0 in float32 for T < 600.
ZERO_WEIGHT = -60000.0
#: How a top-k cache represents the teacher's mass outside the top k.
TAILS = ("bucket", "sampled")
#: How a sampled tail is drawn (recorded in the cache's metadata; older caches: i.i.d. draws).
DRAWS = "systematic"
_ROWS = 1024  # rows per chunk: bounds the float64 cumulative sums at 1024 x vocabulary


def default_head(k: int) -> int:
    """The exact slots of a sampled-tail target when none are given: half of ``k``."""
    return max(int(k) // 2, 1) if int(k) > 1 else 0


def _draws(p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` systematic draws per row of the (unnormalised, non-negative) rows of ``p`` [R, V]:
    one uniform ``u`` per row, positions ``(u + i) / n`` on the row's CDF. One flat cumulative
    sum, each row shifted by its index so one ``searchsorted`` serves all rows."""
    rows, classes = p.shape
    offset = np.arange(rows, dtype=np.float64)[:, None]
    cdf = np.cumsum(p, axis=-1, dtype=np.float64)
    cdf /= np.maximum(cdf[:, -1:], 1e-300)
    cdf += offset
    u = rng.random((rows, 1)) * (1.0 - 1e-12)
    at = offset + (u + np.arange(n)) / n
    at = np.minimum(at, np.nextafter(offset + 1.0, 0.0))  # rounding never leaves the row
    flat = np.searchsorted(cdf.ravel(), at.ravel(), side="right").reshape(rows, n)
    return np.clip(flat - np.arange(rows)[:, None] * classes, 0, classes - 1)


def _merge(ids: np.ndarray, weight: np.ndarray, classes: int):
    """Repeated ids of a row merged into one slot (weights added); slots left over: id 0,
    weight 0. ``ids``, ``weight``: [R, n]."""
    rows, n = ids.shape
    key = (ids + np.arange(rows)[:, None] * classes).ravel()
    unique, inverse = np.unique(key, return_inverse=True)
    summed = np.bincount(inverse, weights=np.broadcast_to(weight, ids.shape).ravel())
    row = unique // classes
    col = np.arange(len(unique)) - np.searchsorted(row, np.arange(rows))[row]
    out_ids, out_w = np.zeros((rows, n), np.int64), np.zeros((rows, n))
    out_ids[row, col], out_w[row, col] = unique % classes, summed
    return out_ids, out_w


def sampled_top_k_targets(logits, k: int, temperature: float, head: Optional[int] = None,
                          seed=None) -> Dict[str, np.ndarray]:
    """Top-k targets whose tail is sampled from the teacher instead of folded into a bucket.

    Args:
        logits: array ``[..., classes]`` of teacher logits (finite; ``-inf`` rules a class out).
        k: int in [1, classes]. Slots per example (the cache cost, as for
            :func:`~kdkeras.distill.topk.top_k_targets`).
        temperature: float > 0. The distillation temperature: the teacher's distribution is
            taken (and sampled) at it, and only a Distiller with it may use the targets.
        head: int in [0, k - 1] or None. Slots kept exactly (largest first); the other
            ``k - head`` are systematic draws from the tail. None: :func:`default_head`
            (k // 2).
        seed: int, ``np.random.Generator`` or None. Where the draws' uniforms come from.

    Returns:
        A top-k target dict (module docstring) with ``tail`` 0. With ``k`` = classes it is
        :func:`~kdkeras.distill.topk.top_k_targets` (every class exact, nothing to draw).

    Raises:
        ValueError: ``k`` or ``head`` out of range, a bad temperature, NaN / ``+inf`` logits.
    """
    temperature = check_temperature(temperature)
    z = np.asarray(logits, dtype=np.float32)
    if z.ndim < 1 or z.shape[-1] < 1:
        raise ValueError(f"logits must have a class axis. Received shape {z.shape}")
    classes = z.shape[-1]
    k = check_top_k(k, classes)
    head = default_head(k) if head is None else check_int(head, "head", 0)
    if head >= k:
        raise ValueError(f"head must be below top_k ({k}): the other slots hold the draws from "
                         f"the tail. Received: head={head}. Use top_k_targets for no draws.")
    if k == classes:
        return top_k_targets(z, k, temperature)
    check_finite_logits(z)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    shape = z.shape[:-1]
    flat = z.reshape(-1, classes)
    ids_out = np.zeros((len(flat), k), np.int64)
    w_out = np.zeros((len(flat), k))
    for start in range(0, len(flat), _ROWS):
        part = flat[start:start + _ROWS].astype(np.float64) / temperature
        p = np.exp(part - part.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        hid = np.argpartition(-p, head - 1, axis=-1)[:, :head] if head else \
            np.zeros((len(p), 0), np.int64)  # O(classes) selection, then sort only the head
        hid = np.take_along_axis(hid, np.argsort(-np.take_along_axis(p, hid, axis=-1), axis=-1,
                                                 kind="stable"), axis=-1)
        p_head = np.take_along_axis(p, hid, axis=-1)
        np.put_along_axis(p, hid, 0.0, axis=-1)  # the tail: the head's classes removed
        tail = np.clip(1.0 - p_head.sum(axis=-1), 0.0, 1.0)
        draws = _draws(p, k - head, rng)
        ids, w = _merge(draws, (tail / (k - head))[:, None], classes)
        rows = slice(start, start + len(part))
        ids_out[rows] = np.concatenate([hid, ids], axis=-1)
        w_out[rows] = np.concatenate([p_head, w], axis=-1)
    with np.errstate(divide="ignore"):
        stored = temperature * np.log(w_out)
    stored = np.maximum(stored - stored.max(axis=-1, keepdims=True), ZERO_WEIGHT)
    return {
        IDS: ids_out.astype(np.int32).reshape(shape + (k,)),
        LOGITS: stored.astype(np.float16).reshape(shape + (k,)),
        TAIL: np.zeros(shape, np.float32),
        TEMPERATURE: np.full(shape, temperature, np.float32),
        CLASSES: np.full(shape, classes, np.int32),
    }
