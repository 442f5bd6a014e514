"""Short fingerprints (sha256, 16 hex digits) of what a cache was made from: the data, the
teacher's weights and the tokenizer, so a cache is never replayed against something else.

Example:

>>> fingerprint_arrays(np.arange(3)) == fingerprint_arrays(np.arange(3))
True
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import numpy as np

from kdkeras.distill.teachers import EnsembleTeacher, Teacher

__all__ = ["fingerprint_arrays", "fingerprint_weights", "fingerprint_tokens"]


def _short(digest: "hashlib._Hash") -> str:
    return digest.hexdigest()[:16]


def fingerprint_arrays(*arrays) -> str:
    """A short sha256 of arrays (shape, dtype and bytes), so a cache is never used on other data.

    >>> fingerprint_arrays(np.zeros(3, "int32")) == fingerprint_arrays(np.zeros(3, "int64"))
    False
    """
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return _short(h)


def fingerprint_weights(model: Any) -> str:
    """A short sha256 of a model's weights (shapes, dtypes, values, in order; not names).

    Args:
        model: a tf-keras or Keras 3 model, a :class:`~kdkeras.distill.Teacher` or an
            :class:`~kdkeras.distill.EnsembleTeacher` (its members' fingerprints and weights).

    Returns:
        16 hex digits; equal for a model and its saved-and-loaded copy.

    Raises:
        ValueError: an object without weights (a plain function), naming the fix.

    >>> import tf_keras as keras
    >>> m = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    >>> copy = keras.models.clone_model(m)
    >>> fingerprint_weights(m) == fingerprint_weights(copy)  # new random weights
    False
    >>> copy.set_weights(m.get_weights())
    >>> fingerprint_weights(m) == fingerprint_weights(copy)
    True
    """
    if isinstance(model, EnsembleTeacher):
        parts = [fingerprint_weights(m) for m in model.members]
        return _short(hashlib.sha256(json.dumps([parts, model.weights]).encode()))
    if isinstance(model, Teacher):
        model = model.model
    variables = getattr(model, "weights", None)
    if variables is None:
        variables = getattr(model, "variables", None)
    if not variables:
        raise ValueError(
            f"Cannot fingerprint {type(model).__name__}: it has no weights. Name the teacher "
            "yourself: cache_top_k_shards(..., identity={'teacher': '<name and version>'}).")
    # Keras 3 dropout layers keep a seed-generator state among their weights; it is not part
    # of what the model computes with training=False.
    kept = [v for v in variables if "seed_generator" not in str(getattr(v, "path", v.name))]
    return fingerprint_arrays(*(np.asarray(v.numpy()) for v in kept))


def fingerprint_tokens(vocabulary: Sequence[str], **settings) -> str:
    """A short sha256 of a tokenizer: its vocabulary (in order) and settings (JSON values).

    >>> fingerprint_tokens(["[PAD]", "a"], lowercase=False) == fingerprint_tokens(["[PAD]", "a"])
    False
    """
    text = json.dumps({"vocabulary": [str(v) for v in vocabulary], "settings": settings},
                      sort_keys=True, default=str)
    return _short(hashlib.sha256(text.encode()))
