"""Load a user's own data set from files: ``.npz``, ``.csv`` or a folder of class folders.

This is what ``kdkeras run`` uses for ``[data] source = "<path>"``. :func:`load_files` reads
the file(s), encodes the labels as class indices, splits off a test set when the source has
none, and returns a :class:`FileData` in the same conventions as the built-in loaders of
:mod:`kdkeras.data`:

* images: ``float32 (N, H, W, C)`` in ``[0, 1]``;
* features: ``float32 (N, F)``;
* text: ``int32 (N, sequence_length)`` token ids (0 is padding, 1 is ``[UNK]``), from a
  vocabulary built on the training split only; :func:`tokenize` encodes new text the same way;
* labels: ``int64`` class indices ``0..C-1``, ``class_names[i]`` naming class ``i``.

Supported sources:

* ``.npz`` with ``x_train, y_train, x_test, y_test`` (its own split) or ``x, y`` (split here),
  optionally ``class_names``. Arrays of 3 or 4 dimensions are images (``uint8`` ones are divided
  by 255), 2 dimensions features.
* ``.csv`` with a header row. ``label_column`` holds the labels (integers or strings); when
  ``text_column`` is a column the data set is text, otherwise every other column must be numeric.
* a directory ``<root>/<class>/<files>`` or ``<root>/train/<class>/...`` plus
  ``<root>/test/<class>/...`` (its own split), holding images (``.png .jpg .jpeg .bmp .gif``,
  read with Pillow) or ``.txt`` files (one example per file).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import logging
import math
import numbers
import os
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "FileData",
    "load_files",
    "tokenize",
    "build_vocabulary",
    "IMAGE_EXTENSIONS",
    "TEXT_EXTENSIONS",
    "PAD_TOKEN",
    "UNK_TOKEN",
]

logger = logging.getLogger("kdkeras.data_files")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TEXT_EXTENSIONS = (".txt",)
PAD_TOKEN = ""
UNK_TOKEN = "[UNK]"
COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3)}

_WORD = re.compile(r"[a-z0-9']+")
_SUPPORTED = (
    "a .npz file, a .csv file, or a directory with one folder per class (images: "
    + " ".join(IMAGE_EXTENSIONS)
    + "; text: .txt)"
)
_NPZ_KEYS = "x_train, y_train, x_test, y_test (own split) or x, y (split by kdkeras)"


@dataclasses.dataclass
class FileData:
    """A data set loaded by :func:`load_files`, split into train and test.

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
        vocabulary: Optional[List[str]]. Text only: ``vocabulary[i]`` is the word of token id
            ``i``; id 0 is ``""`` (padding), id 1 ``"[UNK]"``.
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

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """Per-example shape of ``x_train`` (no batch axis), what the model builders take."""
        return tuple(int(d) for d in self.x_train.shape[1:])


# --------------------------------------------------------------------------- text


def _words(text: str) -> List[str]:
    return _WORD.findall(text.lower())


def _check_texts(texts: Iterable[str], name: str) -> List[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"{name} must be a list of strings, not a single string. Received: "
            f"{name}={texts[:40]!r}. Wrap one text in a list: [text]."
        )
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(
                f"{name} must hold strings. Received: {name}[{i}] of type {type(t).__name__}."
            )
    return texts


def build_vocabulary(texts: Iterable[str], max_tokens: int = 20000) -> List[str]:
    """Builds the vocabulary of ``texts``: padding, ``[UNK]``, then the most frequent words.

    Text is lower-cased and split into words with the regular expression ``[a-z0-9']+``. Words
    are ordered by descending count, ties alphabetically, and cut so the vocabulary holds at
    most ``max_tokens`` entries in all.

    Args:
        texts: Iterable[str]. The training texts (never the test texts).
        max_tokens: int. Size of the vocabulary, padding and ``[UNK]`` included (>= 3).

    Returns:
        List[str]: ``["", "[UNK]", word, ...]``, index = token id.

    Raises:
        ValueError: ``max_tokens < 3``.
        TypeError: ``texts`` is a single string or holds non-strings.

    Example:

    >>> build_vocabulary(["the cat", "The dog", "a cat"], max_tokens=4)
    ['', '[UNK]', 'cat', 'the']
    """
    _check_int(max_tokens, "max_tokens", 3)
    counts = collections.Counter(w for t in _check_texts(texts, "texts") for w in _words(t))
    words = sorted(counts, key=lambda w: (-counts[w], w))[: int(max_tokens) - 2]
    return [PAD_TOKEN, UNK_TOKEN] + words


def tokenize(texts: Iterable[str], vocabulary: Sequence[str], sequence_length: int) -> np.ndarray:
    """Encodes texts as token ids the way :func:`load_files` does.

    Lower-cases, splits into ``[a-z0-9']+`` words, maps each to its index in ``vocabulary``
    (unknown words to 1, ``[UNK]``), keeps the first ``sequence_length`` tokens and pads the
    rest with 0.

    Args:
        texts: Iterable[str]. The texts to encode.
        vocabulary: Sequence[str]. ``FileData.vocabulary``: ``""`` at 0, ``"[UNK]"`` at 1.
        sequence_length: int. Length of every encoded row (>= 1).

    Returns:
        np.ndarray: ``int32 (len(texts), sequence_length)``.

    Raises:
        ValueError: ``sequence_length <= 0`` or a vocabulary that does not start with
            ``["", "[UNK]"]``.
        TypeError: ``texts`` is a single string or holds non-strings.

    Example:

    >>> tokenize(["The cat sat", "a dog"], ["", "[UNK]", "cat", "the"], 4)
    array([[3, 2, 1, 0],
           [1, 1, 0, 0]], dtype=int32)
    """
    _check_int(sequence_length, "sequence_length", 1)
    vocabulary = list(vocabulary)
    if vocabulary[:2] != [PAD_TOKEN, UNK_TOKEN]:
        raise ValueError(
            'vocabulary must start with "" (id 0, padding) and "[UNK]" (id 1). Received: '
            f"vocabulary[:2]={vocabulary[:2]!r}. Use FileData.vocabulary or build_vocabulary()."
        )
    index = {w: i for i, w in enumerate(vocabulary) if i >= 2}
    texts = _check_texts(texts, "texts")
    out = np.zeros((len(texts), int(sequence_length)), dtype=np.int32)
    for row, text in enumerate(texts):
        ids = [index.get(w, 1) for w in _words(text)[: int(sequence_length)]]
        out[row, : len(ids)] = ids
    return out


# --------------------------------------------------------------------------- validation


def _check_int(value, name: str, minimum: int) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}. Received: {name}={value!r}")


def _check_arguments(
    test_fraction, label_column, text_column, image_size, color_mode, sequence_length, max_tokens
) -> Tuple[int, int]:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not (
        0 < test_fraction < 1
    ):
        raise ValueError(
            "test_fraction must be a number in (0, 1), the share of examples held out for "
            f"testing. Received: test_fraction={test_fraction!r}"
        )
    for name, value in (("label_column", label_column), ("text_column", text_column)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string. Received: {name}={value!r}")
    if color_mode not in COLOR_MODES:
        raise ValueError(
            f"color_mode must be one of {sorted(COLOR_MODES)}. Received: color_mode={color_mode!r}"
        )
    size = tuple(image_size) if isinstance(image_size, (list, tuple)) else ()
    if len(size) != 2 or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in size
    ):
        raise ValueError(
            "image_size must be two positive integers (height, width). Received: "
            f"image_size={image_size!r}"
        )
    _check_int(sequence_length, "sequence_length", 1)
    _check_int(max_tokens, "max_tokens", 3)
    return int(size[0]), int(size[1])


# --------------------------------------------------------------------------- labels and splits


def _encode_labels(
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
    ints = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            break
        if not f.is_integer() or (isinstance(v, str) and not re.fullmatch(r"\s*[+-]?\d+\s*", v)):
            break
        ints.append(int(f))
    else:
        uniq = sorted(set(ints))
        if uniq == list(range(len(uniq))):
            return np.asarray(ints, dtype=np.int64), [str(u) for u in uniq]
        lookup = {u: i for i, u in enumerate(uniq)}
        return np.asarray([lookup[v] for v in ints], np.int64), [str(u) for u in uniq]
    strings = [str(v) for v in values]
    uniq = sorted(set(strings))
    lookup = {u: i for i, u in enumerate(uniq)}
    return np.asarray([lookup[s] for s in strings], np.int64), uniq


def _check_classes(class_names: Sequence[str], source: str) -> None:
    if len(class_names) < 2:
        raise ValueError(
            f"A classification data set needs at least 2 classes; found {len(class_names)} "
            f"({list(class_names)}). Received: source={source!r}."
        )


def _split_indices(
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


def _finish(
    examples: Dict[str, list],
    raw_labels: Dict[str, list],
    kind: str,
    source: str,
    test_fraction: float,
    seed: int,
    sequence_length: int,
    max_tokens: int,
    class_names: Optional[Sequence[str]] = None,
) -> FileData:
    """Encodes labels, splits (unless ``"test"`` is given) and tokenizes text."""
    if "test" in raw_labels:
        n_train = len(raw_labels["train"])
        y_all, names = _encode_labels(
            list(raw_labels["train"]) + list(raw_labels["test"]), source, class_names
        )
        _check_classes(names, source)
        y_train, y_test = y_all[:n_train], y_all[n_train:]
        x_train, x_test = examples["train"], examples["test"]
        for split, y in (("train", y_train), ("test", y_test)):
            if len(y) == 0:
                raise ValueError(f"The {split} split of source={source!r} holds no examples.")
    else:
        y, names = _encode_labels(raw_labels["all"], source, class_names)
        _check_classes(names, source)
        idx_train, idx_test = _split_indices(y, test_fraction, seed, source)
        x = examples["all"]
        if isinstance(x, np.ndarray):
            x_train, x_test = x[idx_train], x[idx_test]
        else:
            x_train, x_test = [x[i] for i in idx_train], [x[i] for i in idx_test]
        y_train, y_test = y[idx_train], y[idx_test]
    data = FileData(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        class_names=list(names), kind=kind,
    )
    if kind == "text":
        data.texts_train, data.texts_test = list(x_train), list(x_test)
        data.vocabulary = build_vocabulary(data.texts_train, max_tokens)
        data.x_train = tokenize(data.texts_train, data.vocabulary, sequence_length)
        data.x_test = tokenize(data.texts_test, data.vocabulary, sequence_length)
    return data


# --------------------------------------------------------------------------- .npz


def _npz_x(x: np.ndarray, key: str, source: str) -> Tuple[np.ndarray, str]:
    if x.ndim in (3, 4):
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        return (x[..., None] if x.ndim == 3 else x), "images"
    if x.ndim == 2:
        return x.astype(np.float32), "features"
    raise ValueError(
        f"{key} must have 2 dimensions (features, (N, F)), 3 or 4 (images, (N, H, W) or "
        f"(N, H, W, C)). Received: {key}.shape={x.shape} in source={source!r}."
    )


def _npz_y(y: np.ndarray, key: str, n: int, source: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"{key} must hold one class label per example, shape (N,). Received: "
            f"{key}.shape={y.shape} in source={source!r}. Convert one-hot labels with "
            "y.argmax(-1)."
        )
    if len(y) != n:
        raise ValueError(
            f"x and y lengths differ: {n} examples but {len(y)} labels in {key}. "
            f"Received: source={source!r}."
        )
    return y


def _load_npz(source: str, test_fraction: float, seed: int) -> FileData:
    try:
        with np.load(source, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as e:  # object arrays need pickle, which we do not load
        raise ValueError(
            f"Could not read source={source!r} as a .npz of plain arrays ({e}). Save numeric "
            "arrays and class_names as a string array (no Python objects)."
        ) from e
    names = arrays.get("class_names")
    if names is not None:
        names = [str(c) for c in np.asarray(names).reshape(-1)]
    if all(k in arrays for k in ("x_train", "y_train", "x_test", "y_test")):
        x_train, kind = _npz_x(arrays["x_train"], "x_train", source)
        x_test, kind_test = _npz_x(arrays["x_test"], "x_test", source)
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(
                f"x_train and x_test per-example shapes differ: {x_train.shape[1:]} vs "
                f"{x_test.shape[1:]}. Received: source={source!r}."
            )
        y_train = _npz_y(arrays["y_train"], "y_train", len(x_train), source)
        y_test = _npz_y(arrays["y_test"], "y_test", len(x_test), source)
        return _finish(
            {"train": x_train, "test": x_test},
            {"train": list(y_train.tolist()), "test": list(y_test.tolist())},
            kind, source, test_fraction, seed, 1, 3, names,
        )
    if "x" in arrays and "y" in arrays:
        x, kind = _npz_x(arrays["x"], "x", source)
        y = _npz_y(arrays["y"], "y", len(x), source)
        return _finish(
            {"all": x}, {"all": list(y.tolist())}, kind, source, test_fraction, seed, 1, 3, names
        )
    raise ValueError(
        f"The .npz file has keys {sorted(arrays)}; expected {_NPZ_KEYS}, and optionally "
        f"class_names. Received: source={source!r}."
    )


# --------------------------------------------------------------------------- .csv


def _load_csv(
    source: str, test_fraction: float, seed: int, label_column: str, text_column: str,
    sequence_length: int, max_tokens: int,
) -> FileData:
    with open(source, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(
                f"The CSV file is empty; it needs a header row naming its columns. Received: "
                f"source={source!r}."
            )
        header = [h.strip() for h in header]
        if label_column not in header:
            raise ValueError(
                f"label_column={label_column!r} is not a column of the CSV header {header}. "
                f"Received: source={source!r}. Pass label_column= one of those names."
            )
        label_at = header.index(label_column)
        text_at = header.index(text_column) if text_column in header else None
        feature_at = [i for i in range(len(header)) if i != label_at]
        if text_at is None and not feature_at:
            raise ValueError(
                f"The CSV file has only the label column {label_column!r}: no feature columns "
                f"and no text column {text_column!r}. Received: source={source!r}."
            )
        labels: List[str] = []
        rows: list = []
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            row = reader.line_num
            if len(cells) != len(header):
                raise ValueError(
                    f"CSV row {row} has {len(cells)} cells but the header has {len(header)} "
                    f"columns {header}. Received: source={source!r}."
                )
            label = cells[label_at].strip()
            if not label:
                raise ValueError(
                    f"CSV row {row} has an empty label in column {label_column!r}. "
                    f"Received: source={source!r}."
                )
            labels.append(label)
            if text_at is not None:
                rows.append(cells[text_at])
                continue
            values = []
            for i in feature_at:
                try:
                    v = float(cells[i])
                except ValueError:
                    v = math.nan
                if not math.isfinite(v):
                    raise ValueError(
                        f"CSV row {row}, column {header[i]!r} holds {cells[i]!r}, which is not "
                        f"a finite number; without a text column {text_column!r} every column "
                        f"but the label must be numeric. Received: source={source!r}."
                    )
                values.append(v)
            rows.append(values)
    if not rows:
        raise ValueError(f"The CSV file has a header but no rows. Received: source={source!r}.")
    if text_at is not None:
        return _finish(
            {"all": rows}, {"all": labels}, "text", source, test_fraction, seed,
            sequence_length, max_tokens,
        )
    x = np.asarray(rows, dtype=np.float32)
    return _finish({"all": x}, {"all": labels}, "features", source, test_fraction, seed, 1, 3)


# --------------------------------------------------------------------------- directories


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _class_files(folder: Path) -> List[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / n for n in sorted(filenames) if not n.startswith(".")]
    return files


def _scan_classes(root: Path, source: str) -> Dict[str, Dict[str, List[Path]]]:
    """``{class_name: {"images": [...], "text": [...]}}`` for the class folders of ``root``."""
    out: Dict[str, Dict[str, List[Path]]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p)):
        found: Dict[str, List[Path]] = {"images": [], "text": []}
        ignored = []
        for f in _class_files(folder):
            ext = f.suffix.lower()
            if ext in IMAGE_EXTENSIONS:
                found["images"].append(f)
            elif ext in TEXT_EXTENSIONS:
                found["text"].append(f)
            else:
                ignored.append(f.name)
        if not found["images"] and not found["text"]:
            raise ValueError(
                f"Class folder {str(folder)!r} has no usable files (images: "
                f"{' '.join(IMAGE_EXTENSIONS)}; text: .txt); it holds {ignored[:5] or 'nothing'}. "
                f"Received: source={source!r}. Add examples or remove the folder."
            )
        if ignored:
            logger.warning(
                "Ignored %d file(s) of unsupported type in %s: %s", len(ignored), folder,
                ", ".join(ignored[:5]),
            )
        out[folder.name] = found
    return out


def _read_image(path: Path, size: Tuple[int, int], color_mode: str) -> np.ndarray:
    from PIL import Image

    mode, _ = COLOR_MODES[color_mode]
    try:
        with Image.open(path) as im:
            im = im.convert(mode).resize((size[1], size[0]), Image.BILINEAR)
            x = np.asarray(im, dtype=np.float32) / 255.0
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad files
        raise ValueError(
            f"Could not read image {str(path)!r} ({type(e).__name__}: {e}). Remove or replace "
            "the file."
        ) from e
    return x[..., None] if x.ndim == 2 else x


def _read_text(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _load_directory(
    root: Path, source: str, test_fraction: float, seed: int, image_size: Tuple[int, int],
    color_mode: str, sequence_length: int, max_tokens: int,
) -> FileData:
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))
    if "train" in subdirs and "test" in subdirs:
        others = [d for d in subdirs if d not in ("train", "test")]
        if others:
            raise ValueError(
                f"The directory has train/ and test/ and also {others}. Use either train/ and "
                "test/ (each with one folder per class) or one folder per class. Received: "
                f"source={source!r}."
            )
        splits = {"train": _scan_classes(root / "train", source),
                  "test": _scan_classes(root / "test", source)}
        unknown = sorted(set(splits["test"]) - set(splits["train"]))
        if unknown:
            raise ValueError(
                f"test/ has class folders {unknown} that train/ lacks; the model could not learn "
                f"them. Received: source={source!r}."
            )
    else:
        splits = {"all": _scan_classes(root, source)}
    names = sorted({c for classes in splits.values() for c in classes})
    if len(names) < 2:
        raise ValueError(
            f"A classification data set needs at least 2 classes (one folder each); found "
            f"{len(names)} ({names}). Received: source={source!r}. Lay out files as "
            "<root>/<class>/<file> or <root>/train/<class>/<file> + <root>/test/<class>/<file>."
        )
    kinds = sorted({k for classes in splits.values() for found in classes.values()
                    for k, files in found.items() if files})
    if len(kinds) != 1:
        raise ValueError(
            "The class folders mix images and .txt files; a data set is either images "
            f"({' '.join(IMAGE_EXTENSIONS)}) or text (.txt). Received: source={source!r}."
        )
    kind = kinds[0]
    lookup = {c: i for i, c in enumerate(names)}
    examples: Dict[str, list] = {}
    labels: Dict[str, list] = {}
    for split, classes in splits.items():
        xs, ys = [], []
        for cls, found in classes.items():
            for path in found[kind]:
                if kind == "images":
                    xs.append(_read_image(path, image_size, color_mode))
                else:
                    xs.append(_read_text(path))
                ys.append(lookup[cls])
        examples[split] = np.stack(xs) if kind == "images" else xs
        labels[split] = ys
    return _finish(
        examples, labels, kind, source, test_fraction, seed, sequence_length, max_tokens,
        class_names=names,
    )


# --------------------------------------------------------------------------- entry point


def load_files(
    source,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    label_column: str = "label",
    text_column: str = "text",
    image_size: Sequence[int] = (28, 28),
    color_mode: str = "grayscale",
    sequence_length: int = 64,
    max_tokens: int = 20000,
) -> FileData:
    """Loads a user's data set from a ``.npz`` file, a ``.csv`` file or a directory.

    A source with its own test split (``x_test``/``y_test`` in a ``.npz``, ``train/`` and
    ``test/`` folders) keeps it; otherwise a test split of ``test_fraction`` is drawn with
    scikit-learn's ``train_test_split`` (stratified by class when every class has at least 2
    examples), so the same ``seed`` always gives the same split.

    Labels become ``int64`` class indices. String labels (CSV) and folder names are sorted
    to give ``class_names``. Integer labels that already are ``0..C-1`` are kept; other
    integers are mapped in sorted order and ``class_names`` holds their values. A ``.npz`` may
    carry ``class_names``; its integer labels then index that list.

    Args:
        source: str or PathLike. A ``.npz`` file, a ``.csv`` file, or a directory (see the
            module docstring for the layouts).
        test_fraction: float in (0, 1). Share of the examples held out for testing when the
            source has no test split.
        seed: int. Seed of that split.
        label_column: str. CSV column holding the labels.
        text_column: str. CSV column holding the text; when the header has no such column,
            every column but the label must be numeric (a features data set).
        image_size: (int, int). ``(height, width)`` that directory images are resized to.
        color_mode: str. ``"grayscale"`` (1 channel) or ``"rgb"`` (3 channels), for directory
            images.
        sequence_length: int. Token ids per text example; longer texts are truncated, shorter
            ones padded with 0.
        max_tokens: int. Vocabulary size, padding and ``[UNK]`` included (>= 3).

    Returns:
        FileData: the train and test arrays, ``class_names``, ``kind`` (``"images"``,
        ``"features"`` or ``"text"``) and, for text, the raw texts and the vocabulary.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: an unsupported file type, missing ``.npz`` keys, a CSV without
            ``label_column`` or with a non-numeric feature cell, fewer than 2 classes, a class
            folder without usable files, images mixed with text, or a bad argument
            (``test_fraction``, ``color_mode``, ``image_size``, ``sequence_length``,
            ``max_tokens``).
        TypeError: ``source`` is not a path.

    Example:

    >>> import os, numpy as np
    >>> os.makedirs("/tmp/kd_doc", exist_ok=True)
    >>> rng = np.random.default_rng(0)
    >>> np.savez("/tmp/kd_doc/files.npz", x=rng.random((20, 3)), y=np.arange(20) % 2,
    ...          class_names=np.array(["cat", "dog"]))
    >>> data = load_files("/tmp/kd_doc/files.npz", test_fraction=0.25)
    >>> data.kind, data.x_train.shape, data.x_test.shape, data.class_names
    ('features', (15, 3), (5, 3), ['cat', 'dog'])
    >>> data.x_train.dtype, data.y_train.dtype, sorted(np.bincount(data.y_test).tolist())
    (dtype('float32'), dtype('int64'), [2, 3])
    """
    size = _check_arguments(
        test_fraction, label_column, text_column, image_size, color_mode, sequence_length,
        max_tokens,
    )
    try:
        path = Path(os.fspath(source))
    except TypeError as e:
        raise TypeError(
            f"source must be a path (str or os.PathLike). Received: source={source!r} of type "
            f"{type(source).__name__}."
        ) from e
    src = str(path)
    if not path.exists():
        raise FileNotFoundError(
            f"Data source not found. Received: source={src!r}. Pass {_SUPPORTED}."
        )
    if path.is_dir():
        return _load_directory(
            path, src, test_fraction, seed, size, color_mode, sequence_length, max_tokens
        )
    ext = path.suffix.lower()
    if ext == ".npz":
        return _load_npz(src, test_fraction, seed)
    if ext == ".csv":
        return _load_csv(
            src, test_fraction, seed, label_column, text_column, sequence_length, max_tokens
        )
    raise ValueError(
        f"Unsupported data file type {ext or '(no extension)'!r}. Received: source={src!r}. "
        f"Supported: {_SUPPORTED}."
    )
