"""A sharded, on-disk cache of a teacher's top-k targets, for corpora too large for memory.

A causal language model's teacher emits one logit per vocabulary entry per token: for 400k
tokens and a 5,886-entry vocabulary that is 9.4 GB of float32. :func:`cache_top_k_shards`
runs the teacher once, one batch at a time, and keeps only its top-k targets
(:mod:`kdkeras.distill.topk`, ``6k + 4`` bytes per token) for several ``k`` at once, in shard
files of ``shard_examples`` windows::

    folder/cache.json                     # written last: its presence marks a complete cache
    folder/k{k}/shard-{i:05d}.npz         # x, y, sample_weight, ids, logits, tail, temperature

The folder is assembled under a temporary name and moved into place whole, so an error or a
Ctrl-C never leaves a folder that passes for a cache. ``cache.json`` records who made the
targets (``identity``: the teacher's weights, the tokenizer, the data, each a short hash from
:mod:`kdkeras.distill.fingerprint`); :meth:`TopKShards.open` refuses a cache whose identity
differs from the one expected.
:meth:`TopKShards.dataset` feeds a ``Distiller(student, teacher=None)``, holding at most two
shards and a shuffle buffer in memory.

Example:

>>> import tempfile, numpy as np, tf_keras as keras
>>> teacher = keras.Sequential([keras.layers.Embedding(20, 4), keras.layers.Dense(20)])
>>> x = np.random.default_rng(0).integers(1, 20, (10, 8)).astype("int32")
>>> data = (x, np.roll(x, -1, axis=1), np.ones((10, 8), "float32"))
>>> folder = tempfile.mkdtemp() + "/cache"
>>> meta = cache_top_k_shards(teacher, data, folder, top_k=(4, 20), batch_size=4,
...                           shard_examples=6)
>>> meta["top_k"], meta["examples"], meta["bytes"]["4"] == 10 * 8 * (6 * 4 + 4)
([4, 20], 10, True)
>>> cache = TopKShards.open(folder, top_k=4, expect={"teacher": fingerprint_weights(teacher)})
>>> batch = next(iter(cache.dataset(batch_size=5)))
>>> tuple(batch["teacher_logits"]["ids"].shape), tuple(batch["x"].shape)
((5, 8, 4), (5, 8))

References:
    Shen, Xing. "A Fast Knowledge Distillation Framework for Visual Recognition", 2022 (FKD).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from kdkeras._io import atomic_dir, atomic_path, atomic_write_bytes
from kdkeras.distill.fingerprint import fingerprint_arrays, fingerprint_tokens, fingerprint_weights
from kdkeras.distill.teachers import as_teacher
from kdkeras.distill.topk import (CLASSES, IDS, LOGITS, TAIL, TEMPERATURE, check_top_k,
                                  narrow_top_k, top_k_targets)
from kdkeras.distill.topk_sampled import DRAWS, TAILS, sampled_top_k_targets
from kdkeras.validation import check_int, check_temperature

__all__ = ["cache_top_k_shards", "TopKShards", "fingerprint_weights", "fingerprint_tokens",
           "fingerprint_arrays", "narrow_top_k", "CACHE_FILE", "FORMAT"]

CACHE_FILE = "cache.json"
FORMAT = "kdkeras.top_k_shards"
VERSION = 1
DATA_KEYS = ("x", "y", "sample_weight")
TARGET_KEYS = (IDS, LOGITS, TAIL)
_OWN_FILE = re.compile(r"\.?(cache\.json|shard-\d+\.npz)(\..+\.tmp\.\w+)?")  # + atomic temps
WHAT = {"teacher": "another teacher", "tokenizer": "another tokenizer", "data": "other data"}


def _check_data(data):
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ValueError("data must be (x, y, sample_weight) numpy arrays (or (x, y)). "
                         f"Received: {type(data).__name__}")
    arrays = [np.asarray(a) for a in data]
    if len(arrays) == 2:
        arrays.append(np.ones(arrays[1].shape, np.float32))
    x, y, sw = arrays
    if x.ndim != 2 or not (x.shape == y.shape == sw.shape):
        raise ValueError("x, y and sample_weight must have the same length and one 2-D shape "
                         f"[N, T] (a target and a weight per token). Received: x.shape={x.shape}"
                         f", y.shape={y.shape}, sample_weight.shape={sw.shape}")
    if len(x) == 0:
        raise ValueError("cache_top_k_shards received no data (x is empty).")
    return x, y, sw.astype(np.float32)


def _check_top_ks(top_k) -> List[int]:
    ks = [top_k] if not isinstance(top_k, (tuple, list)) else list(top_k)
    if not ks:
        raise ValueError("top_k must name at least one k, e.g. top_k=(8, 32, 128). Received: "
                         f"top_k={top_k!r}")
    return sorted({check_int(k, "top_k", 1) for k in ks})


def _prepare_folder(folder: Path) -> None:
    """Refuses to replace a folder that holds anything but a cache (it would be deleted):
    ``cache.json``, ``k*/shard-*.npz`` and the hidden temporary files of their atomic writes."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder. Choose a folder for the cache.")
    entries = sorted(folder.iterdir()) if folder.is_dir() else []
    if entries and not (folder / CACHE_FILE).exists():
        raise ValueError(f"{folder} holds files but no {CACHE_FILE}, so it is not a top-k cache "
                         "and rebuilding would delete them. Choose a new or empty folder.")
    shards = [e for e in entries if e.is_dir() and re.fullmatch(r"k\d+", e.name)]
    other = sorted([e.name for e in entries if e not in shards and not _OWN_FILE.fullmatch(e.name)]
                   + [f"{e.name}/{f.name}" for e in shards for f in e.iterdir()
                      if not (f.is_file() and _OWN_FILE.fullmatch(f.name))])
    if other:
        raise ValueError(f"{folder} holds {other[:5]}{' ...' if len(other) > 5 else ''} besides "
                         "the cache; rebuilding replaces the folder whole and would delete them. "
                         "Move them out or choose a new folder.")


def _write_npz(path: Path, arrays: Dict[str, np.ndarray]) -> int:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return path.stat().st_size


class _ShardWriter:
    """Buffers per-batch targets and writes one shard per ``shard_examples`` windows."""

    def __init__(self, root: Path, ks: List[int], temperature: float, shard_examples: int):
        self.root, self.ks, self.temperature, self.size = root, ks, temperature, shard_examples
        self.pending: List[Dict[str, Any]] = []
        self.shards: List[Dict[str, Any]] = []
        self.files = {str(k): [] for k in ks}
        self.nbytes = {str(k): 0 for k in ks}
        for k in ks:
            (root / f"k{k}").mkdir()

    def add(self, part: Dict[str, Any], last: bool) -> None:
        self.pending.append(part)
        while sum(len(p["x"]) for p in self.pending) >= self.size or (last and self.pending):
            self._flush()

    def _flush(self) -> None:
        merged = {key: np.concatenate([p[key] for p in self.pending]) for key in DATA_KEYS}
        merged.update({k: {key: np.concatenate([p[k][key] for p in self.pending])
                           for key in TARGET_KEYS} for k in self.ks})
        n = min(self.size, len(merged["x"]))
        rest = {key: value[n:] for key, value in merged.items() if key in DATA_KEYS}
        rest.update({k: {key: v[n:] for key, v in merged[k].items()} for k in self.ks})
        self.pending = [rest] if len(rest["x"]) else []
        name = f"shard-{len(self.shards):05d}.npz"
        data = {key: merged[key][:n] for key in DATA_KEYS}
        for k in self.ks:
            targets = {key: merged[k][key][:n] for key in TARGET_KEYS}
            self.nbytes[str(k)] += sum(int(v.nbytes) for v in targets.values())
            size = _write_npz(self.root / f"k{k}" / name,
                              {**data, **targets, TEMPERATURE: np.float32(self.temperature)})
            self.files[str(k)].append(size)
        self.shards.append({"name": name, "examples": int(n),
                            "tokens": float(data["sample_weight"].sum())})


def cache_top_k_shards(
    teacher: Any,
    data,
    folder: Union[str, os.PathLike],
    top_k: Union[int, Sequence[int]] = (8, 32, 128),
    temperature: float = 1.0,
    batch_size: int = 32,
    shard_examples: int = 1024,
    identity: Optional[Dict[str, str]] = None,
    tail: str = "bucket",
    seed: int = 0,
) -> Dict[str, Any]:
    """Runs the teacher once over ``data`` and writes its top-k targets for each k, in shards.

    With ``tail="bucket"`` each batch's full logits are reduced to the largest k's targets
    with :func:`~kdkeras.distill.topk.top_k_targets`, and each smaller k is derived from those
    (:func:`~kdkeras.distill.topk.narrow_top_k`, exact). With ``tail="sampled"`` each k gets
    its own :func:`~kdkeras.distill.topk_sampled.sampled_top_k_targets` (half the slots
    exact, half systematic draws from the teacher's tail; an unbiased estimate of the full
    distribution, which the bucket is not: for a language model it is the one that pays, see
    README). Then the logits are dropped, so memory holds one batch of logits and one shard of
    targets, never the corpus's logits.

    Args:
        teacher: anything :func:`~kdkeras.distill.as_teacher` accepts; called once per batch.
        data: ``(x, y, sample_weight)`` numpy arrays, all ``[N, T]`` (language-model
            windows), or ``(x, y)`` (weights 1).
        folder: str or PathLike. Where the cache goes; an existing cache there is replaced
            whole, a folder holding anything else (named) is refused, never deleted.
        top_k: int or sequence of ints in [1, vocabulary]. The k values to cache.
        temperature: float > 0. The Distiller's temperature (the tail mass depends on it).
        batch_size: int > 0. Windows per teacher call.
        shard_examples: int > 0. Windows per shard file.
        identity: dict or None. Extra identity entries, e.g. ``{"tokenizer":
            fingerprint_tokens(vocabulary, ...)}``; ``teacher`` (:func:`fingerprint_weights`)
            and ``data`` (:func:`fingerprint_arrays` of x, y, sample_weight) are added unless
            given here.
        tail: ``"bucket"`` or ``"sampled"``. How the teacher's mass outside the top k is kept
            (above); recorded in ``cache.json`` and checked by :meth:`TopKShards.open`.
        seed: int. The seed of the draws of a sampled tail (the same seed, teacher and data
            give the same cache).

    Returns:
        The metadata written to ``cache.json``: ``format``, ``version``, ``top_k``,
        ``temperature``, ``vocabulary_size``, ``examples``, ``tokens`` (sum of sample_weight),
        ``shard_examples``, ``shards`` (name, examples, tokens each), ``file_sizes`` (per k, per
        shard), ``bytes`` (per k: the ids, logits and tail arrays), ``full_logit_bytes``
        (``N·T·V·4``), ``identity``, ``batch_size``, ``tail``, ``seed`` and ``draws`` (a sampled
        tail's draws: ``"systematic"``; absent from older caches, whose draws are i.i.d.).

    Raises:
        ValueError: bad ``top_k`` (< 1 or above the vocabulary), temperature, sizes, data or
            ``tail``,
            a folder holding other files, or a teacher that cannot be fingerprinted without
            ``identity={"teacher": ...}``.
    """
    ks = _check_top_ks(top_k)
    temperature = check_temperature(temperature)
    batch_size = check_int(batch_size, "batch_size", 1)
    shard_examples = check_int(shard_examples, "shard_examples", 1)
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {list(TAILS)}. Received: tail={tail!r}")
    rng = np.random.default_rng(check_int(seed, "seed", 0))
    x, y, sw = _check_data(data)
    t = as_teacher(teacher)
    if t is None:
        raise ValueError("cache_top_k_shards needs a teacher. Received: teacher=None")
    ident = {key: str(value) for key, value in (identity or {}).items()}
    if "teacher" not in ident:
        ident["teacher"] = fingerprint_weights(t)
    ident.setdefault("data", fingerprint_arrays(x, y, sw))
    folder = Path(folder)
    _prepare_folder(folder)
    with atomic_dir(folder, tag="partial") as tmp:
        writer = _ShardWriter(tmp, ks, temperature, shard_examples)
        vocabulary = None
        for start in range(0, len(x), batch_size):
            stop = start + batch_size
            logits = np.asarray(t(x[start:stop], temperature=temperature), np.float32)
            if vocabulary is None:
                vocabulary = int(logits.shape[-1])
                for k in ks:
                    check_top_k(k, vocabulary)
            part = {"x": x[start:stop], "y": y[start:stop], "sample_weight": sw[start:stop]}
            if tail == "sampled":
                part.update({k: sampled_top_k_targets(logits, k, temperature, seed=rng)
                             for k in ks})
            else:
                top = top_k_targets(logits, ks[-1], temperature)
                exact = np.take_along_axis(logits, top[IDS], axis=-1)
                part.update({k: narrow_top_k(top, k, exact) for k in ks})
            del logits  # one batch of full logits at a time
            writer.add(part, last=stop >= len(x))
        n, steps = len(x), int(np.prod(x.shape[1:], dtype=np.int64))
        meta = {
            "format": FORMAT, "version": VERSION, "top_k": ks, "temperature": temperature,
            "vocabulary_size": vocabulary, "examples": n, "tokens": float(sw.sum()),
            "shard_examples": shard_examples, "batch_size": batch_size,
            "shapes": {key: list(a.shape[1:]) for key, a in zip(DATA_KEYS, (x, y, sw))},
            "dtypes": {key: a.dtype.str for key, a in zip(DATA_KEYS, (x, y, sw))},
            "shards": writer.shards, "file_sizes": writer.files, "bytes": writer.nbytes,
            "full_logit_bytes": n * steps * vocabulary * 4, "identity": ident,
            "tail": tail, "seed": int(seed), "draws": DRAWS if tail == "sampled" else None,
        }
        atomic_write_bytes(tmp / CACHE_FILE, json.dumps(meta, indent=1).encode())  # last
    return meta


def _read_meta(folder: Path) -> Dict[str, Any]:
    path = folder / CACHE_FILE
    if not path.exists():
        raise FileNotFoundError(f"No top-k cache at {folder} (no {CACHE_FILE}). Create it with "
                                "cache_top_k_shards(teacher, data, folder).")
    try:
        meta = json.loads(path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r} is not {FORMAT!r}")
        if meta.get("version") != VERSION:
            raise ValueError(f"version {meta.get('version')!r} is not {VERSION}")
        for key in ("top_k", "shards", "file_sizes", "identity", "temperature", "dtypes",
                    "vocabulary_size"):
            meta[key]  # noqa: B018 - raises KeyError for a missing field
    except Exception as err:  # json, key and type errors from a damaged file
        raise ValueError(f"{path} is not a readable top-k cache ({err!r}). Delete {folder} and "
                         "create it again with cache_top_k_shards.") from None
    return meta


class TopKShards:
    """One k of a cache written by :func:`cache_top_k_shards`; open it with :meth:`open`.

    Attributes:
        folder: the cache folder.
        top_k: the k read.
        metadata: the contents of ``cache.json``.
    """

    def __init__(self, folder: Path, top_k: int, metadata: Dict[str, Any]):
        self.folder, self.top_k, self.metadata = folder, top_k, metadata
        self.paths = [folder / f"k{top_k}" / s["name"] for s in metadata["shards"]]

    @classmethod
    def open(cls, folder: Union[str, os.PathLike], top_k: int,
             expect: Optional[Dict[str, str]] = None, tail: Optional[str] = None
             ) -> "TopKShards":
        """Opens the cache's targets for ``top_k``, checking its identity and shard files.

        Args:
            folder: str or PathLike. A folder written by :func:`cache_top_k_shards`.
            top_k: int. One of the cached k values.
            expect: dict or None. Identity entries the cache must match, e.g.
                ``{"teacher": fingerprint_weights(teacher), "tokenizer": ...}``.
            tail: ``"bucket"``, ``"sampled"`` or None. The tail the cache must hold (None:
                either; caches written before the choice existed hold a bucket).

        Returns:
            A :class:`TopKShards`.

        Raises:
            FileNotFoundError: no ``cache.json`` in ``folder``.
            ValueError: a damaged ``cache.json``, a k not cached, an identity that differs from
                ``expect``, another ``tail``, or a missing or truncated shard file (named).
        """
        folder = Path(folder)
        meta = _read_meta(folder)
        cached = [int(k) for k in meta["top_k"]]
        k = check_int(top_k, "top_k", 1)
        if k not in cached:
            raise ValueError(f"The cache at {folder} holds top_k in {cached}, not top_k={k}. "
                             "Open one of those, or rebuild it with that k.")
        for key, want in (expect or {}).items():
            have = meta["identity"].get(key)
            if have is None:
                raise ValueError(f"The cache at {folder} records no {key!r} identity (it records "
                                 f"{sorted(meta['identity'])}); cannot check expect[{key!r}].")
            if str(have) != str(want):
                raise ValueError(
                    f"This cache was made by {WHAT.get(key, f'another {key}')}: {key} "
                    f"fingerprint {have} != {want}. Delete the folder {folder} or point at the "
                    "right one.")
        have = meta.get("tail", "bucket")
        if tail is not None and have != tail:
            raise ValueError(f"The cache at {folder} holds a {have!r} tail, not a {tail!r} one. "
                             "Rebuild it (cache_top_k_shards(..., tail="
                             f"{tail!r}); in kdkeras run: --force logits).")
        cache = cls(folder, k, meta)
        for path, size in zip(cache.paths, meta["file_sizes"][str(k)]):
            if not path.exists():
                raise ValueError(f"The shard {path} is missing. Delete {folder} and rebuild it.")
            if path.stat().st_size != size:
                raise ValueError(f"The shard {path} is truncated or damaged: {path.stat().st_size}"
                                 f" bytes, {size} expected. Delete {folder} and rebuild it.")
        return cache

    @property
    def examples(self) -> int:
        return int(self.metadata["examples"])

    @property
    def tokens(self) -> float:
        """Sum of the sample weights: the real (non-padding) target tokens."""
        return float(self.metadata["tokens"])

    @property
    def nbytes(self) -> int:
        """Bytes of this k's targets (ids, logits, tail), not the windows."""
        return int(self.metadata["bytes"][str(self.top_k)])

    @property
    def tail(self) -> str:
        """``"bucket"`` or ``"sampled"``: how the teacher's mass outside the top k is kept."""
        return str(self.metadata.get("tail", "bucket"))

    @property
    def temperature(self) -> float:
        return float(self.metadata["temperature"])

    @property
    def identity(self) -> Dict[str, str]:
        return dict(self.metadata["identity"])

    def read_shard(self, path: Union[str, os.PathLike, bytes]) -> tuple:
        """The arrays of one shard: ``(x, y, sample_weight, ids, logits, tail)``.

        Raises:
            ValueError: an unreadable (truncated) file, named.
        """
        path = os.fsdecode(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                return tuple(f[key] for key in DATA_KEYS + TARGET_KEYS)
        except Exception as err:  # numpy and zipfile raise several types for a damaged file
            raise ValueError(f"The shard {path} is truncated or damaged ({err!r}). Delete "
                             f"{self.folder} and rebuild it.") from None

    def dataset(self, batch_size: int = 32, shuffle: bool = True,
                seed: Optional[int] = None) -> tf.data.Dataset:
        """Batches of ``{"x", "y", "sample_weight", "teacher_logits": {ids, logits, tail,
        temperature, classes}}`` for a ``Distiller(student, teacher=None)`` (``classes``: the
        teacher's vocabulary size from ``cache.json``, so a student of another is refused).

        Shards are read whole (in a background tf.data thread) and sliced; with ``shuffle``
        the shard order is reshuffled every epoch, two shards are interleaved and a buffer
        of one shard's windows shuffles within them. Memory: about three shards.

        Args:
            batch_size: int > 0.
            shuffle: bool. Shuffle every epoch; False keeps the order of the data.
            seed: int or None. Shuffle seed.

        Returns:
            A ``tf.data.Dataset``.
        """
        batch_size = check_int(batch_size, "batch_size", 1)
        meta, k = self.metadata, self.top_k
        dtypes = [tf.as_dtype(np.dtype(meta["dtypes"][key])) for key in DATA_KEYS]
        dtypes += [tf.int32, tf.float16, tf.float32]
        shapes = [meta.get("shapes", {}).get(key) for key in DATA_KEYS]
        steps = shapes[2]
        shapes += [None if steps is None else steps + [k]] * 2 + [steps]

        def load(path):
            arrays = tf.numpy_function(self.read_shard, [path], dtypes, stateful=False)
            for a, shape in zip(arrays, shapes):
                if shape is not None:
                    a.set_shape([None] + list(shape))
            return tf.data.Dataset.from_tensor_slices(tuple(arrays))

        paths = tf.data.Dataset.from_tensor_slices([str(p) for p in self.paths])
        if shuffle:
            paths = paths.shuffle(len(self.paths), seed=seed, reshuffle_each_iteration=True)
            ds = paths.interleave(load, cycle_length=2, block_length=1)
            ds = ds.shuffle(min(self.examples, int(meta["shard_examples"])), seed=seed,
                            reshuffle_each_iteration=True)
        else:
            ds = paths.flat_map(load)
        temperature, classes = self.temperature, int(meta["vocabulary_size"])

        def to_batch(x, y, sw, ids, logits, tail):
            fill = lambda value, dtype: tf.fill(tf.shape(tail), tf.constant(value, dtype))
            return {"x": x, "y": y, "sample_weight": sw, "teacher_logits": {
                IDS: ids, LOGITS: logits, TAIL: tail, TEMPERATURE: fill(temperature, tf.float32),
                CLASSES: fill(classes, tf.int32)}}  # the teacher's vocabulary: checked by fit

        return ds.batch(batch_size).map(to_batch).prefetch(tf.data.AUTOTUNE)

    def __repr__(self) -> str:
        return (f"TopKShards({str(self.folder)!r}, top_k={self.top_k}, examples={self.examples},"
                f" shards={len(self.paths)})")

