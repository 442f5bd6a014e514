"""Labels and splits of a user data set: class indices from raw labels, a seeded stratified
test split, and the :class:`~kdkeras.data.dataset.SplitData` that every loader returns."""

from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from kdkeras.data.dataset import SplitData
from kdkeras.data.text import build_vocabulary, tokenize


def encode_labels(
    values: Sequence, source: str, class_names: Optional[Sequence[str]] = None
) -> Tuple[np.ndarray, List[str]]:
    """Class indices ``0..C-1`` and class names for raw labels (ints or strings).

    Integer labels that are already ``0..C-1`` are kept; other integers are mapped in sorted
    order (class names are their values); strings are mapped in sorted order.
    """
    if class_names is not None:
        names = [str(c) for c in class_names]
        y = np.asarray(values)
        if y.dtype.kind not in "iu" or (len(y) and (y.min() < 0 or y.max() >= len(names))):
            raise ValueError(
                f"With class_names of {len(names)} entries, labels must be integers in "
                f"[0, {len(names) - 1}]. Received: labels {sorted(set(y.tolist()))[:10]} in "
                f"source={source!r}."
            )
        return y.astype(np.int64), names
    ints = _exact_ints(values, source)
    if ints is not None:
        uniq = sorted(set(ints))
        if uniq == list(range(len(uniq))):
            return np.asarray(ints, dtype=np.int64), [str(u) for u in uniq]
        lookup = {u: i for i, u in enumerate(uniq)}
        return np.asarray([lookup[v] for v in ints], np.int64), [str(u) for u in uniq]
    strings = [str(v) for v in values]
    uniq = sorted(set(strings))
    lookup = {u: i for i, u in enumerate(uniq)}
    return np.asarray([lookup[s] for s in strings], np.int64), uniq


_INT = re.compile(r"\s*[+-]?\d+\s*")
_MISSING = {"nan", "na", "n/a", "null", "none", "inf", "+inf", "-inf", "infinity"}


def _exact_ints(values: Sequence, source: str) -> Optional[List[int]]:
    """The labels as exact Python ints when every one is an integer, else None (strings).

    Integers are never routed through float, so 2**53 and 2**53 + 1 stay two classes. A NaN or
    infinite label (a float, or a string such as "nan") is refused: it is a missing value, not
    a class.
    """
    for i, v in enumerate(values):
        if isinstance(v, (float, np.floating)) and not math.isfinite(v):
            raise ValueError(f"Label {i} is {v}, a missing value, not a class. Received: "
                             f"source={source!r}. Drop or fill the examples without a label.")
        if isinstance(v, str) and v.strip().lower() in _MISSING:
            raise ValueError(f"Label {i} is {v!r}, which reads as a missing value, not a class. "
                             f"Received: source={source!r}. Drop or fill the examples without "
                             "a label.")
    ints = []
    for v in values:
        if isinstance(v, (bool, np.bool_)):
            return None
        if isinstance(v, (int, np.integer)):
            ints.append(int(v))
        elif isinstance(v, (float, np.floating)) and float(v).is_integer():
            ints.append(int(v))
        elif isinstance(v, str) and _INT.fullmatch(v):
            ints.append(int(v.strip()))
        else:
            return None
    return ints


def check_classes(class_names: Sequence[str], source: str) -> None:
    if len(class_names) < 2:
        raise ValueError(
            f"A classification data set needs at least 2 classes; found {len(class_names)} "
            f"({list(class_names)}). Received: source={source!r}."
        )


def split_indices(
    y: np.ndarray, test_fraction: float, seed: int, source: str
) -> Tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    n = len(y)
    n_test = math.ceil(test_fraction * n)
    n_train = n - n_test
    if n_test < 1 or n_train < 1:
        raise ValueError(
            f"{n} example(s) are too few to split with test_fraction={test_fraction}: the train "
            f"or test split would be empty. Received: source={source!r}. Add examples or give "
            "the source its own test split."
        )
    counts = np.bincount(y)
    present = int((counts > 0).sum())
    stratify = None
    if counts[counts > 0].min() >= 2 and n_test >= present and n_train >= present:
        stratify = y
    idx_train, idx_test = train_test_split(
        np.arange(n), test_size=test_fraction, random_state=seed, stratify=stratify
    )
    return np.asarray(idx_train), np.asarray(idx_test)


def finish(
    examples: Dict[str, list],
    raw_labels: Dict[str, list],
    kind: str,
    source: str,
    test_fraction: float,
    seed: int,
    sequence_length: int,
    max_tokens: int,
    class_names: Optional[Sequence[str]] = None,
    normalization: Optional[Dict[str, float]] = None,
) -> SplitData:
    """Encodes labels, splits (unless ``"test"`` is given) and tokenizes text.

    ``normalization`` says how the loader scaled raw inputs (``x = (raw - mean) / std``);
    None means unscaled (``{"mean": 0, "std": 1}``) for numbers and nothing for text.
    """
    if "test" in raw_labels:
        n_train = len(raw_labels["train"])
        y_all, names = encode_labels(
            list(raw_labels["train"]) + list(raw_labels["test"]), source, class_names
        )
        check_classes(names, source)
        y_train, y_test = y_all[:n_train], y_all[n_train:]
        x_train, x_test = examples["train"], examples["test"]
        for split, y in (("train", y_train), ("test", y_test)):
            if len(y) == 0:
                raise ValueError(f"The {split} split of source={source!r} holds no examples.")
    else:
        y, names = encode_labels(raw_labels["all"], source, class_names)
        check_classes(names, source)
        idx_train, idx_test = split_indices(y, test_fraction, seed, source)
        x = examples["all"]
        if isinstance(x, np.ndarray):
            x_train, x_test = x[idx_train], x[idx_test]
        else:
            x_train, x_test = [x[i] for i in idx_train], [x[i] for i in idx_test]
        y_train, y_test = y[idx_train], y[idx_test]
    data = SplitData(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        class_names=list(names), kind=kind,
        normalization=None if kind == "text" else dict(normalization or {"mean": 0.0, "std": 1.0}),
    )
    if kind == "text":
        data.texts_train, data.texts_test = list(x_train), list(x_test)
        data.vocabulary = build_vocabulary(data.texts_train, max_tokens)
        if len(data.vocabulary) <= 2:
            raise ValueError(
                f"No text found in source={source!r}: the training examples hold no words "
                "(every text is empty or has no letters or digits). Add text, or check the "
                "text column / the .txt files.")
        data.x_train = tokenize(data.texts_train, data.vocabulary, sequence_length)
        data.x_test = tokenize(data.texts_test, data.vocabulary, sequence_length)
    return data
