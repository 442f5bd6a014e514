"""The one data type of kdkeras: :class:`SplitData`, a labelled data set split into train and
test, as every loader (built-in or user files) returns it; plus ``tf.data`` wrapping.

Conventions: images ``float32 (N, H, W, C)`` in ``[0, 1]``; features ``float32 (N, F)``; text
``int32 (N, sequence_length)`` token ids; labels ``int64`` class indices ``0..C-1``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from kdkeras.validation import check_int, check_number

__all__ = ["SplitData", "subset_indices", "to_dataset"]


@dataclasses.dataclass
class SplitData:
    """A labelled data set, split into train and test.

    Attributes:
        x_train: np.ndarray. Images ``float32 (N, H, W, C)`` in [0, 1], features
            ``float32 (N, F)``, or token ids ``int32 (N, sequence_length)``.
        y_train: np.ndarray. ``int64`` class indices ``(N,)``.
        x_test: np.ndarray. As ``x_train``.
        y_test: np.ndarray. As ``y_train``.
        class_names: List[str]. ``class_names[i]`` names label ``i``.
        kind: str. ``"images"``, ``"features"`` or ``"text"``.
        texts_train: Optional[List[str]]. Text only: the raw strings, in the order of
            ``x_train``.
        texts_test: Optional[List[str]]. Text only: as ``texts_train`` for the test split.
        vocabulary: Optional[List[str]]. Text only: ``vocabulary[i]`` is the token of id ``i``.
            Word-level (:mod:`kdkeras.data.text`): id 0 is ``""`` (padding), id 1 ``"[UNK]"``;
            WordPiece (:mod:`kdkeras.data.wordpiece`): the pieces of ``vocab.txt``.
        name: str. The built-in name or the source file/folder name (reports).
        normalization: Optional[dict]. How the raw inputs became ``x``: ``x = (raw - mean) /
            std`` with ``{"mean": m, "std": s}`` (``{"mean": 0, "std": 255}`` for uint8
            pixels scaled to [0, 1]); what an app must do to its raw inputs (the Android
            bundle's ``model.json``). None for token ids (text).
        labelled: Optional[np.ndarray]. A label budget (:meth:`with_label_budget`): which
            training labels a student may see (bool, one per training example); the others
            are learned from the teacher's soft targets. None: every label.
        tokenizer: Optional[dict]. WordPiece text only: how the texts became ids
            (:meth:`kdkeras.data.wordpiece.WordPieceEncoder.describe`: type, lowercase,
            max_length, special token ids, ...), the Android bundle's ``model.json`` entry.
            None for images, features and word-level text.
        truncated: Optional[int]. WordPiece text only: how many texts (train + test) had more
            pieces than fit and were cut; :meth:`subset` counts those it keeps.

    Example:

    >>> import numpy as np
    >>> d = SplitData(np.zeros((10, 3)), np.arange(10) % 2, np.zeros((4, 3)), np.arange(4) % 2,
    ...               ["a", "b"], "features")
    >>> d.num_classes, d.input_shape, len(d.subset(n_train=5, seed=0).x_train)
    (2, (3,), 5)
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: List[str]
    kind: str
    texts_train: Optional[List[str]] = None
    texts_test: Optional[List[str]] = None
    vocabulary: Optional[List[str]] = None
    name: str = ""
    normalization: Optional[Dict[str, Any]] = None
    labelled: Optional[np.ndarray] = None
    tokenizer: Optional[Dict[str, Any]] = None
    truncated: Optional[int] = None

    #: The label of a training example outside the label budget (``Distiller.compile``'s
    #: ``ignore_class``).
    UNLABELLED = -1

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """Per-example shape of ``x_train`` (no batch axis), what the model builders take."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def n_labels(self) -> int:
        """How many training labels a student may see (all of them without a budget)."""
        return int(len(self.y_train) if self.labelled is None else self.labelled.sum())

    @property
    def student_labels(self) -> np.ndarray:
        """``y_train`` with :attr:`UNLABELLED` (-1) outside the label budget."""
        if self.labelled is None:
            return self.y_train
        return np.where(self.labelled, self.y_train, self.UNLABELLED).astype(self.y_train.dtype)

    def with_label_budget(self, labels: float, seed: int = 0) -> "SplitData":
        """A copy whose students may see only ``labels`` of the training labels.

        Args:
            labels: float or int. A share in (0, 1] of the training examples, or a count
                (an integer > 1) of them, drawn at random with ``seed`` (1: every label).
            seed: int. Seed of the draw.

        Raises:
            ValueError: a share outside (0, 1], a count that is not an integer or exceeds the
                training examples.
        """
        n = len(self.y_train)
        check_number(labels, "labels", low=0, low_open=True)  # a share or a count, finite
        if labels <= 1:
            count = max(1, int(round(float(labels) * n)))
        elif float(labels).is_integer() and labels <= n:
            count = int(labels)
        else:
            raise ValueError(f"labels={labels!r} is more than the {n:,} training examples (or "
                             "not a whole count). Give a share in (0, 1] or a count up to "
                             f"{n:,}.")
        keep = np.zeros(n, bool)
        keep[np.random.default_rng(seed).permutation(n)[:count]] = True
        return dataclasses.replace(self, labelled=None if count == n else keep)

    def summary(self) -> Dict[str, Any]:
        """Name, kind, sizes, labels, classes and input shape, JSON-ready (``report.json``);
        plus the tokenizer type and the truncated texts when the data has them."""
        out = {"name": self.name, "kind": self.kind, "n_train": int(len(self.x_train)),
               "n_labels": self.n_labels, "n_test": int(len(self.x_test)),
               "num_classes": self.num_classes, "input_shape": list(self.input_shape)}
        if self.tokenizer is not None:
            out["tokenizer"] = self.tokenizer.get("type")
        if self.truncated is not None:
            out["truncated"] = int(self.truncated)
        return out

    def subset(self, n_train: Optional[int] = None, n_test: Optional[int] = None,
               seed: int = 0) -> "SplitData":
        """A copy holding random subsets of ``n_train`` / ``n_test`` examples (None or 0: all).

        The train subset is drawn with ``seed``, the test subset with ``seed + 1``; raw texts
        follow their token ids, and ``truncated`` is counted again on the kept texts.
        """
        out = dataclasses.replace(self)
        changed = False
        for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
            x = getattr(out, f"x_{split}")
            idx = subset_indices(len(x), n or None, s)
            if idx is None:
                continue
            changed = True
            setattr(out, f"x_{split}", x[idx])
            setattr(out, f"y_{split}", getattr(out, f"y_{split}")[idx])
            if split == "train" and out.labelled is not None:
                out.labelled = out.labelled[idx]
            texts = getattr(out, f"texts_{split}")
            if texts is not None:
                setattr(out, f"texts_{split}", [texts[i] for i in idx])
        if changed and out.truncated is not None:
            out.truncated = _count_truncated(out)
        return out


def _count_truncated(data: SplitData) -> Optional[int]:
    """Texts of ``data`` cut to fit (None when the raw texts or the tokenizer are unknown)."""
    if data.tokenizer is None or data.texts_train is None or data.texts_test is None:
        return None
    from kdkeras.data.wordpiece import count_truncated

    return sum(count_truncated(texts, x, data.tokenizer, data.vocabulary)
               for texts, x in ((data.texts_train, data.x_train),
                                (data.texts_test, data.x_test)))


def subset_indices(size: int, n: Optional[int], seed: int) -> Optional[np.ndarray]:
    """Sorted indices of a random subset of ``n`` out of ``size`` (None: keep all)."""
    if n is None or n >= size:
        return None
    if n <= 0:
        raise ValueError(f"subset sizes must be > 0. Received: {n}")
    return np.sort(np.random.default_rng(seed).permutation(size)[:n])


def to_dataset(
    x,
    y=None,
    batch_size: int = 128,
    shuffle: bool = False,
    seed: Optional[int] = None,
    teacher_logits=None,
) -> tf.data.Dataset:
    """Wraps numpy arrays into a batched, prefetched ``tf.data.Dataset``.

    Yields ``x``, ``(x, y)`` or ``(x, y, teacher_logits)``; the latter is what
    :class:`kdkeras.Distiller` reads for offline distillation.
    """
    check_int(batch_size, "batch_size", 1)
    parts = tuple(p for p in (x, y, teacher_logits) if p is not None)
    lengths = {len(next(iter(p.values())) if isinstance(p, dict) else p) for p in parts}
    if len(lengths) > 1:
        raise ValueError(
            "x, y and teacher_logits must have the same length. Received lengths: "
            + ", ".join(str(len(p)) for p in parts)
        )
    ds = tf.data.Dataset.from_tensor_slices(parts[0] if len(parts) == 1 else parts)
    if shuffle:
        ds = ds.shuffle(min(lengths.pop(), 10_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
