"""Word-level text encoding for user text data sets: a vocabulary built from the training
split, and token ids with padding (0) and ``[UNK]`` (1).

Example:

>>> vocab = build_vocabulary(["the cat", "the dog"], max_tokens=4)
>>> tokenize(["the bird"], vocab, 3)
array([[2, 1, 0]], dtype=int32)
"""

from __future__ import annotations

import collections
import re
from typing import Iterable, List, Sequence

import numpy as np

from kdkeras.validation import check_int

__all__ = ["build_vocabulary", "tokenize", "describe_words", "PAD_TOKEN", "UNK_TOKEN"]

PAD_TOKEN = ""
UNK_TOKEN = "[UNK]"
_WORD = re.compile(r"[a-z0-9']+")


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
    check_int(max_tokens, "max_tokens", 3)
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
        vocabulary: Sequence[str]. ``SplitData.vocabulary``: ``""`` at 0, ``"[UNK]"`` at 1.
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
    check_int(sequence_length, "sequence_length", 1)
    vocabulary = list(vocabulary)
    if vocabulary[:2] != [PAD_TOKEN, UNK_TOKEN]:
        raise ValueError(
            'vocabulary must start with "" (id 0, padding) and "[UNK]" (id 1). Received: '
            f"vocabulary[:2]={vocabulary[:2]!r}. Use SplitData.vocabulary or build_vocabulary()."
        )
    index = {w: i for i, w in enumerate(vocabulary) if i >= 2}
    texts = _check_texts(texts, "texts")
    out = np.zeros((len(texts), int(sequence_length)), dtype=np.int32)
    for row, text in enumerate(texts):
        ids = [index.get(w, 1) for w in _words(text)[: int(sequence_length)]]
        out[row, : len(ids)] = ids
    return out


def describe_words(sequence_length: int, vocabulary_size: int) -> dict:
    """How :func:`tokenize` encodes text, for an app (the Android bundle's ``model.json``).

    The counterpart of :meth:`kdkeras.data.wordpiece.WordPieceEncoder.describe` for word-level
    vocabularies; ``vocab.txt`` writes the padding token (id 0) as ``[PAD]``.

    Example:

    >>> describe_words(64, 20000)["pattern"]
    "[a-z0-9']+"
    """
    return {"type": "word", "lowercase": True, "pattern": _WORD.pattern, "pad_id": 0,
            "unk_id": 1, "truncation": "the first max_length words are kept",
            "max_length": check_int(sequence_length, "sequence_length", 1),
            "vocabulary_size": check_int(vocabulary_size, "vocabulary_size", 3),
            "vocabulary_file": "vocab.txt"}
