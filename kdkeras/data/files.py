"""Load a user's own data set from files: ``.npz``, ``.csv`` or a folder of class folders.

This is what ``kdkeras run`` uses for ``[data] source = "<path>"``. :func:`load_files` reads
the file(s), encodes the labels as class indices, splits off a test set when the source has
none, and returns a :class:`~kdkeras.data.dataset.SplitData` in the same conventions as the built-in loaders of
:mod:`kdkeras.data.builtin`:

* images: ``float32 (N, H, W, C)`` in ``[0, 1]``;
* features: ``float32 (N, F)``;
* text: ``int32 (N, sequence_length)`` token ids (0 is padding, 1 is ``[UNK]``), from a
  vocabulary built on the training split only; :func:`tokenize` encodes new text the same way.
  With ``wordpiece=`` (a ``vocab.txt`` or a BERT preset folder) the ids are a teacher's
  WordPiece ids instead, ``[CLS] pieces [SEP] 0...`` (:mod:`kdkeras.data.wordpiece`);
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

Bad text: a ``.txt`` file that is not UTF-8 is refused, named in the error; an empty (or blank)
``.txt`` file or CSV text cell is skipped, counted and named in a warning."""

from __future__ import annotations

import csv
import logging
import math
import numbers
import os
import zipfile
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from kdkeras.data.dataset import SplitData
from kdkeras.data.folders import COLOR_MODES, IMAGE_EXTENSIONS, TEXT_EXTENSIONS, load_directory
from kdkeras.data.splits import finish
from kdkeras.data.wordpiece import encode_split, load_encoder
from kdkeras.validation import check_int

__all__ = ["load_files"]

logger = logging.getLogger("kdkeras.data")

_SUPPORTED = (
    "a .npz file, a .csv file, or a directory with one folder per class (images: "
    + " ".join(IMAGE_EXTENSIONS)
    + "; text: .txt)"
)
_NPZ_KEYS = "x_train, y_train, x_test, y_test (own split) or x, y (split by kdkeras)"


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
    check_int(sequence_length, "sequence_length", 1)
    check_int(max_tokens, "max_tokens", 3)
    return int(size[0]), int(size[1])


# --------------------------------------------------------------------------- .npz


def _npz_x(x: np.ndarray, key: str, source: str) -> Tuple[np.ndarray, str]:
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{key} must hold numbers. Received: {key}.dtype={x.dtype} in "
                         f"source={source!r}.")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))
        raise ValueError(
            f"{key} holds {len(bad)} NaN or infinite value(s), the first at index "
            f"{tuple(int(i) for i in bad[0])} ({x[tuple(bad[0])]}). Received: source={source!r}. "
            "Fill or drop them before training: a model trained on them diverges.")
    if x.ndim in (3, 4):
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        return (x[..., None] if x.ndim == 3 else x), "images"
    if x.ndim == 2:
        return x.astype(np.float32), "features"
    raise ValueError(
        f"{key} must have 2 dimensions (features, (N, F)), 3 or 4 (images, (N, H, W) or "
        f"(N, H, W, C)). Received: {key}.shape={x.shape} in source={source!r}."
    )


def _scaling(raw: np.ndarray) -> dict:
    """``x = (raw - mean) / std`` as :func:`_npz_x` computes it: uint8 images are divided by 255."""
    return {"mean": 0.0, "std": 255.0 if raw.dtype == np.uint8 and raw.ndim in (3, 4) else 1.0}


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


def _load_npz(source: str, test_fraction: float, seed: int) -> SplitData:
    try:
        with np.load(source, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as e:  # object arrays need pickle, which we do not load
        raise ValueError(
            f"Could not read source={source!r} as a .npz of plain arrays ({e}). Save numeric "
            "arrays and class_names as a string array (no Python objects)."
        ) from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:  # empty, truncated or not a zip
        raise ValueError(
            f"Could not read source={source!r}: it is empty, truncated or not a .npz file "
            f"({type(e).__name__}). Write it again with numpy.savez(path, x=..., y=...)."
        ) from e
    names = arrays.get("class_names")
    if names is not None:
        names = [str(c) for c in np.asarray(names).reshape(-1)]
    if all(k in arrays for k in ("x_train", "y_train", "x_test", "y_test")):
        x_train, kind = _npz_x(arrays["x_train"], "x_train", source)
        x_test, _ = _npz_x(arrays["x_test"], "x_test", source)  # kinds follow from the shape check
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(
                f"x_train and x_test per-example shapes differ: {x_train.shape[1:]} vs "
                f"{x_test.shape[1:]}. Received: source={source!r}."
            )
        y_train = _npz_y(arrays["y_train"], "y_train", len(x_train), source)
        y_test = _npz_y(arrays["y_test"], "y_test", len(x_test), source)
        return finish(
            {"train": x_train, "test": x_test},
            {"train": list(y_train.tolist()), "test": list(y_test.tolist())},
            kind, source, test_fraction, seed, 1, 3, names, _scaling(arrays["x_train"]),
        )
    if "x" in arrays and "y" in arrays:
        x, kind = _npz_x(arrays["x"], "x", source)
        y = _npz_y(arrays["y"], "y", len(x), source)
        return finish(
            {"all": x}, {"all": list(y.tolist())}, kind, source, test_fraction, seed, 1, 3, names,
            _scaling(arrays["x"]),
        )
    raise ValueError(
        f"The .npz file has keys {sorted(arrays)}; expected {_NPZ_KEYS}, and optionally "
        f"class_names. Received: source={source!r}."
    )


# --------------------------------------------------------------------------- .csv


def _load_csv(
    source: str, test_fraction: float, seed: int, label_column: str, text_column: str,
    sequence_length: int, max_tokens: int,
) -> SplitData:
    with open(source, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(
                f"The CSV file is empty; it needs a header row naming its columns. Received: "
                f"source={source!r}."
            )
        header = [h.strip() for h in header]
        twice = sorted({h for h in header if header.count(h) > 1})
        if twice:
            raise ValueError(
                f"The CSV header names column(s) {twice} more than once; each column needs its "
                f"own name. Received: source={source!r}.")
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
        empty_rows: List[int] = []
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
            if text_at is not None:
                if not cells[text_at].strip():
                    empty_rows.append(row)
                    continue
                labels.append(label)
                rows.append(cells[text_at])
                continue
            labels.append(label)
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
    if empty_rows:
        logger.warning("Skipped %d CSV row(s) with an empty text (rows %s%s) in %s.",
                       len(empty_rows), ", ".join(map(str, empty_rows[:5])),
                       " ..." * (len(empty_rows) > 5), source)
    if not rows:
        raise ValueError(f"The CSV file has a header but no rows{' with text' * bool(empty_rows)}."
                         f" Received: source={source!r}.")
    if text_at is not None:
        return finish(
            {"all": rows}, {"all": labels}, "text", source, test_fraction, seed,
            sequence_length, max_tokens,
        )
    x = np.asarray(rows, dtype=np.float32)
    return finish({"all": x}, {"all": labels}, "features", source, test_fraction, seed, 1, 3)


# --------------------------------------------------------------------------- directories


# --------------------------------------------------------------------------- text


def _check_text_files(root: Path, source: str) -> List[str]:
    """Refuses non-UTF-8 ``.txt`` files under ``root`` (named); returns the empty ones."""
    bad, empty = [], []
    for f in sorted(p for p in root.rglob("*") if p.suffix.lower() in TEXT_EXTENSIONS):
        rel = f.relative_to(root).parts
        if any(p.startswith(".") for p in rel) or not f.is_file():
            continue
        raw = f.read_bytes()
        try:
            if not raw.decode("utf-8-sig").strip():
                empty.append("/".join(rel))
        except UnicodeDecodeError as e:
            bad.append(f"{'/'.join(rel)!r} (byte {e.start} is {raw[e.start:e.start + 1]!r})")
    if bad:
        raise ValueError(
            f"{len(bad)} .txt file(s) are not UTF-8 text: {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''} in source={source!r}. Re-save them as "
            "UTF-8 (e.g. iconv -f latin1 -t utf-8) or remove them.")
    return empty


def _without_empty_texts(data: SplitData, root: Path, source: str, empty_files: Sequence[str],
                        test_fraction, seed, sequence_length, max_tokens) -> SplitData:
    """A text folder's ``data`` drawn again without its empty texts (counted, warned)."""
    keep = {s: [bool(t.strip()) for t in getattr(data, f"texts_{s}")] for s in ("train", "test")}
    dropped = sum(k.count(False) for k in keep.values())
    if not dropped:
        return data
    logger.warning("Skipped %d empty text file(s) (%s%s) in %s.", dropped, ", ".join(
        empty_files[:5]), " ..." if len(empty_files) > 5 else "", source)
    texts = {s: [t for t, ok in zip(getattr(data, f"texts_{s}"), keep[s]) if ok] for s in keep}
    labels = {s: getattr(data, f"y_{s}")[np.asarray(keep[s], bool)].tolist() for s in keep}
    if not ((root / "train").is_dir() and (root / "test").is_dir()):  # split here: split again
        texts = {"all": texts["train"] + texts["test"]}
        labels = {"all": labels["train"] + labels["test"]}
    return finish(texts, labels, "text", source, test_fraction, seed, sequence_length, max_tokens,
                  class_names=data.class_names)


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
    wordpiece=None,
) -> SplitData:
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
        max_tokens: int. Vocabulary size, padding and ``[UNK]`` included (>= 3); unused with
            ``wordpiece``.
        wordpiece: None, a ``vocab.txt`` file, a BERT preset folder (``vocab.txt`` inside, or
            what ``keras_hub.models.BertTokenizer.from_preset`` loads) or a
            :class:`~kdkeras.data.wordpiece.WordPieceEncoder`. Text only: encode with that
            WordPiece vocabulary (a teacher's) instead of a word-level one built here;
            ``sequence_length`` (>= 3) then counts ``[CLS]`` and ``[SEP]``.

    Returns:
        SplitData: the train and test arrays, ``class_names``, ``kind`` (``"images"``,
        ``"features"`` or ``"text"``) and, for text, the raw texts and the vocabulary (with
        ``wordpiece``: also ``tokenizer``, the ``describe()`` dict, and ``truncated``).

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: an unsupported file type, missing ``.npz`` keys, a CSV without
            ``label_column`` or with a non-numeric feature cell, fewer than 2 classes, a class
            folder without usable files, images mixed with text, or a bad argument
            (``test_fraction``, ``color_mode``, ``image_size``, ``sequence_length``,
            ``max_tokens``), a non-UTF-8 ``.txt`` file (named), ``wordpiece`` with images or
            features, a WordPiece vocabulary without ``[CLS] [SEP] [PAD] [UNK]``.
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
        raise FileNotFoundError(f"Data source not found. Received: source={src!r}. Pass "
                                f"{_SUPPORTED}.")
    encoder = None if wordpiece is None else load_encoder(wordpiece)
    check_int(sequence_length, "sequence_length", 1 if encoder is None else 3)
    # Non-UTF-8 .txt files are refused here, before any is read (named in the error).
    empty_files = _check_text_files(path, src) if path.is_dir() else []
    data = _load(path, src, test_fraction, seed, label_column, text_column, size, color_mode,
                 sequence_length, max_tokens)
    if data.kind != "text":
        if encoder is not None:
            raise ValueError(
                f"wordpiece= encodes text, but source={src!r} holds {data.kind}. Drop "
                "wordpiece=, or give a CSV with a text column or a folder of .txt files.")
        return data
    data = _without_empty_texts(data, path, src, empty_files, test_fraction, seed,
                                sequence_length, max_tokens)
    return data if encoder is None else encode_split(data, encoder, sequence_length)


def _load(path: Path, src: str, test_fraction, seed, label_column, text_column, size,
          color_mode, sequence_length, max_tokens) -> SplitData:
    if path.is_dir():
        return load_directory(path, src, test_fraction, seed, size, color_mode, sequence_length,
                              max_tokens)
    ext = path.suffix.lower()
    if ext == ".npz":
        return _load_npz(src, test_fraction, seed)
    if ext == ".csv":
        try:
            return _load_csv(
                src, test_fraction, seed, label_column, text_column, sequence_length, max_tokens
            )
        except UnicodeDecodeError as e:
            raise ValueError(
                f"The CSV file is not UTF-8 text: byte {e.start} is "
                f"{bytes(e.object[e.start:e.start + 1])!r}. Received: source={src!r}. Re-save "
                "it as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
            ) from None
    raise ValueError(
        f"Unsupported data file type {ext or '(no extension)'!r}. Received: source={src!r}. "
        f"Supported: {_SUPPORTED}."
    )
