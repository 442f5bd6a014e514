"""Data: built-in sets (offline first), a user's own files, text encoding, one data type.

Every loader returns numpy arrays in the same conventions (:mod:`kdkeras.data.dataset`); the
pipeline works on :class:`SplitData`.
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
from kdkeras.data.dataset import SplitData, subset_indices, to_dataset
from kdkeras.data.files import load_files
from kdkeras.data.text import build_vocabulary, tokenize

__all__ = [
    "SplitData",
    "DATASETS",
    "CLASS_NAMES",
    "FASHION_MNIST_CLASSES",
    "build_vocabulary",
    "class_names",
    "digits",
    "fashion_mnist",
    "load_builtin",
    "load_files",
    "read_idx",
    "subset_indices",
    "to_dataset",
    "tokenize",
]
