"""Cached augmented views: the teacher labels K views per example once; the student replays them.

Consistent-view distillation (:mod:`kdkeras.distill.views`) runs the teacher on every
augmented batch. FKD (Shen & Xing 2022) moves that cost out of training: for each example draw
K views, store each view's augmentation parameters and the teacher's top-k targets on it
(:mod:`kdkeras.distill.topk`), then train the student offline on exactly those views, one drawn
at random per example per epoch, at the speed of a plain augmented ``fit``.

Memory per example is ``K · (3·4 + k·6 + 8)`` bytes (view parameters, top-k ids and logits,
tail mass and temperature): for K = 8 views and k = 5 of 10 classes, 400 bytes, beside the
3,136 bytes of one 28×28 float32 image.

Example:

>>> import kdkeras as kd
>>> (x, y), _ = kd.digits()
>>> teacher = kd.build_mlp_student((8, 8, 1), 10)
>>> cache = cache_teacher_views(teacher, (x[:64], y[:64]), kd.distill.ShiftFlip(0.125, 0.125),
...                             views=2, top_k=3, temperature=2.0)
>>> cache.views, cache.top_k, cache.nbytes // 64
(2, 3, 76)
>>> xb, yb, targets = next(iter(cache.dataset(batch_size=32)))
>>> tuple(xb.shape), tuple(targets["ids"].shape)
((32, 8, 8, 1), (32, 3))

References:
    Shen, Xing. "A Fast Knowledge Distillation Framework for Visual Recognition", 2022 (FKD).
    Beyer et al. "Knowledge distillation: A good teacher is patient and consistent", 2022.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any, Dict, Optional, Union

import numpy as np
import tensorflow as tf
import tf_keras as keras

from kdkeras._io import atomic_write_bytes
from kdkeras.distill.logit_cache import teacher_logits_for
from kdkeras.distill.topk import KEYS, TEMPERATURE, check_top_k, top_k_targets
from kdkeras.validation import check_int, check_temperature

__all__ = ["ViewCache", "cache_teacher_views"]


def _fingerprint(x: np.ndarray) -> str:
    """A short hash of the inputs, so a cache is never replayed on other data."""
    x = np.ascontiguousarray(x)
    return hashlib.sha256(str((x.shape, x.dtype.str)).encode() + x.tobytes()).hexdigest()[:16]


class ViewCache:
    """K stored views per example (augmentation parameters + the teacher's top-k targets).

    Made by :func:`cache_teacher_views`; :meth:`dataset` feeds a
    ``Distiller(student, teacher=None)``; :meth:`save` / :meth:`load` keep it on disk beside
    the data it was made from (the inputs are not stored, only their fingerprint).

    Attributes:
        augmentation: the layer whose ``apply(x, params)`` makes a view (e.g. ``ShiftFlip``).
        params: float32 ``[n, K, p]``: each view's parameters.
        targets: top-k target dict with arrays ``[n, K, ...]``.
    """

    def __init__(self, augmentation, params: np.ndarray, targets: Dict[str, np.ndarray], x,
                 y=None):
        self.augmentation, self.params, self.targets = augmentation, params, targets
        self.x, self.y = np.asarray(x), None if y is None else np.asarray(y)
        if len(self.x) != len(params) or (self.y is not None and len(self.y) != len(params)):
            raise ValueError(f"The cache has views for {len(params)} examples, but x has "
                             f"{len(self.x)}" + ("" if self.y is None else f" and y {len(self.y)}"))

    @property
    def views(self) -> int:
        return int(self.params.shape[1])

    @property
    def top_k(self) -> int:
        return int(self.targets["ids"].shape[-1])

    @property
    def temperature(self) -> float:
        return float(self.targets[TEMPERATURE].flat[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the stored views and targets (not the inputs)."""
        return int(self.params.nbytes + sum(v.nbytes for v in self.targets.values()))

    def dataset(self, batch_size: int = 128, shuffle: bool = True,
                seed: Optional[int] = None) -> tf.data.Dataset:
        """``(view, y, top-k targets)`` batches (``(view, targets)``-only dicts without ``y``):
        each example once per epoch, in one of its K views chosen at random."""
        check_int(batch_size, "batch_size", 1)
        parts = (self.x, self.params, self.targets) + (() if self.y is None else (self.y,))
        ds = tf.data.Dataset.from_tensor_slices(parts)
        if shuffle:
            ds = ds.shuffle(min(len(self.x), 60_000), seed=seed, reshuffle_each_iteration=True)
        views, apply = self.views, self.augmentation.apply

        def pick(x, params, targets, *y):
            v = tf.random.uniform(tf.shape(params)[:1], 0, views, tf.int32, seed=seed)
            view = apply(x, tf.gather(params, v, batch_dims=1))
            chosen = {key: tf.gather(t, v, batch_dims=1) for key, t in targets.items()}
            if y:
                return view, y[0], chosen
            return {"x": view, "teacher_logits": chosen}

        return ds.batch(batch_size).map(pick, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Writes the parameters, targets and the augmentation's config to one ``.npz``,
        atomically."""
        meta = {"augmentation": keras.utils.serialize_keras_object(self.augmentation),
                "fingerprint": _fingerprint(self.x)}
        buf = io.BytesIO()
        np.savez(buf, params=self.params, meta=np.array(json.dumps(meta)),
                 **{f"target_{key}": value for key, value in self.targets.items()})
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Union[str, os.PathLike], x, y=None) -> "ViewCache":
        """Reads :meth:`save`'s file for the same inputs ``x`` (and labels ``y``).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: a damaged file, or one made from other inputs.
        """
        if not os.path.exists(path):
            raise FileNotFoundError(f"No view cache at {path}. Create it with "
                                    "cache_teacher_views(...).save(path).")
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                params = f["params"]
                targets = {key: f[f"target_{key}"] for key in KEYS}
            augmentation = keras.utils.deserialize_keras_object(meta["augmentation"])
        except Exception as err:  # numpy and json raise several types for a damaged file
            raise ValueError(f"{path} is not a readable view cache ({err}). Delete it and create "
                             "it again.") from None
        if meta["fingerprint"] != _fingerprint(np.asarray(x)):
            raise ValueError(f"The view cache {path} was made from other inputs than the x given "
                             "(their fingerprints differ). Rebuild it for this data.")
        return cls(augmentation, params, targets, x, y)


def cache_teacher_views(
    teacher: Any,
    data,
    augmentation,
    views: int = 4,
    top_k: Optional[int] = None,
    temperature: float = 1.0,
    batch_size: int = 256,
    seed: int = 0,
) -> ViewCache:
    """Draws ``views`` augmented views per example and has the teacher label each, once.

    Args:
        teacher: anything :func:`kdkeras.distill.as_teacher` accepts.
        data: ``(x, y)`` numpy arrays, or ``x`` alone (an unlabelled transfer set).
        augmentation: a layer with ``sample(n, shape, rng)`` and ``apply(x, params)``, such as
            :class:`kdkeras.distill.ShiftFlip`.
        views: int > 0. Views per example (K).
        top_k: int in [1, classes] or None (every class). Logits kept per view.
        temperature: float > 0. The Distiller's temperature (the tail mass depends on it).
        batch_size: int > 0. Batch size of the teacher pass.
        seed: int. Seeds the view parameters.

    Returns:
        A :class:`ViewCache`.

    Raises:
        ValueError: ``views`` or ``top_k`` out of range, a bad temperature, an augmentation
            without stored parameters, or NaN teacher logits.
    """
    views = check_int(views, "views", 1)
    temperature = check_temperature(temperature)
    if not (hasattr(augmentation, "sample") and hasattr(augmentation, "apply")):
        raise ValueError("Cached views need an augmentation whose draws can be stored and "
                         "replayed (sample(n, shape, rng) and apply(x, params)), such as "
                         f"kdkeras.distill.ShiftFlip. Received: {augmentation!r}")
    x, y = data if isinstance(data, tuple) and len(data) == 2 else (data, None)
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("cache_teacher_views received no data (an empty array).")
    rng = np.random.default_rng(check_int(seed, "seed", 0))
    params = np.stack([augmentation.sample(len(x), x.shape, rng) for _ in range(views)], axis=1)
    per_view = []
    for v in range(views):
        shown = np.concatenate([augmentation.apply(x[i: i + batch_size], params[i: i + batch_size, v])
                                for i in range(0, len(x), batch_size)])
        logits = teacher_logits_for(teacher, shown, batch_size, temperature=temperature)
        k = check_top_k(logits.shape[-1] if top_k is None else top_k, logits.shape[-1])
        per_view.append(top_k_targets(logits, k, temperature))
    targets = {key: np.stack([t[key] for t in per_view], axis=1) for key in KEYS}
    return ViewCache(augmentation, params, targets, x, y)
