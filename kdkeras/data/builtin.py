"""The built-in data sets, offline first: Fashion-MNIST (the default job), scikit-learn digits
and the tweet-sentiment texts (:mod:`kdkeras.data.tweets`).

Each loader looks for a local copy first, falls back to the download where there is a network
(Colab), and otherwise fails with a message that says how to install the data.

Images come back as ``float32`` in ``[0, 1]`` with a channel axis, ``(N, H, W, 1)``; labels as
``int64`` class indices.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from kdkeras.data.dataset import SplitData, subset_indices
from kdkeras.data.tweets import TWEET_CLASSES, tweets
from kdkeras.registry import Registry

Split = Tuple[np.ndarray, np.ndarray]

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}

DATASETS = Registry("dataset")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzipped or not, into a numpy array.

    Raises:
        ValueError: if the file is not an IDX file of unsigned bytes.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (bad magic {data[:4]!r}).")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    arr = np.frombuffer(data, dtype=np.uint8, offset=offset)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {dims}, found {arr.size} values.")
    return arr.reshape(dims)


def _subset(x: np.ndarray, y: np.ndarray, n: Optional[int], seed: int) -> Split:
    idx = subset_indices(len(x), n, seed)
    return (x, y) if idx is None else (x[idx], y[idx])


def _images(x: np.ndarray) -> np.ndarray:
    x = x.astype("float32") / 255.0
    return x[..., None] if x.ndim == 3 else x


@DATASETS.register("fashion_mnist")
def fashion_mnist(
    n_train: Optional[int] = None,
    n_test: Optional[int] = None,
    seed: int = 0,
    data_dir: Optional[str] = None,
) -> Tuple[Split, Split]:
    """Fashion-MNIST (60k train / 10k test, 28×28 grey, 10 classes), offline first.

    Looks in ``data_dir``, then ``$KDKERAS_FASHION_MNIST_DIR``, then
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``), then tries
    ``keras.datasets.fashion_mnist`` (needs a network).

    Args:
        n_train: int or None. Random subset of the training split (None: all 60,000).
        n_test: int or None. Random subset of the test split (None: all 10,000).
        seed: int. Seed of the subset choice.
        data_dir: str or None. A folder holding the four ``*-ubyte.gz`` IDX files.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``, images ``float32 (N, 28, 28, 1)`` in [0, 1].

    Raises:
        FileNotFoundError: when no local copy exists and the download fails; the message says
            ``apt-get install dataset-fashion-mnist``.

    Example:

    >>> (x, y), (xt, yt) = fashion_mnist(n_train=100, n_test=10)  # doctest: +SKIP
    >>> x.shape, xt.shape  # doctest: +SKIP
    ((100, 28, 28, 1), (10, 28, 28, 1))
    """
    dirs = [d for d in (data_dir, os.environ.get("KDKERAS_FASHION_MNIST_DIR")) if d]
    dirs += list(FASHION_MNIST_DIRS)
    for d in dirs:
        files = {k: Path(d) / v for k, v in _FASHION_FILES.items()}
        if all(p.exists() for p in files.values()):
            arrays = {k: read_idx(p) for k, p in files.items()}
            break
    else:
        try:
            import tf_keras as keras

            (xa, ya), (xb, yb) = keras.datasets.fashion_mnist.load_data()
            arrays = {"x_train": xa, "y_train": ya, "x_test": xb, "y_test": yb}
        except Exception as e:  # no network: every failure mode of the download
            raise FileNotFoundError(
                "Fashion-MNIST was not found locally (looked in "
                f"{', '.join(dirs)}) and the download failed ({type(e).__name__}). "
                "Install it with `apt-get update && apt-get install -y dataset-fashion-mnist`, "
                "or pass data_dir= a folder with the four *-ubyte.gz files."
            ) from e
    train = _subset(_images(arrays["x_train"]), arrays["y_train"].astype("int64"), n_train, seed)
    test = _subset(_images(arrays["x_test"]), arrays["y_test"].astype("int64"), n_test, seed + 1)
    return train, test


@DATASETS.register("digits")
def digits(test_size: float = 0.25, seed: int = 0) -> Tuple[Split, Split]:
    """scikit-learn's digits (1,797 8×8 images, 10 classes): the tiny smoke-test data set.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``, images ``float32 (N, 8, 8, 1)`` in [0, 1],
        split stratified by class.

    Example:

    >>> (x, y), (xt, yt) = digits()
    >>> x.shape[1:], bool(x.max() <= 1.0), len(x) + len(xt)
    ((8, 8, 1), True, 1797)
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1). Received: test_size={test_size}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target.astype("int64")
    xa, xb, ya, yb = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return (xa, ya), (xb, yb)


#: The raw pixel range of each built-in set: its images are ``raw / RAW_SCALE[name]``.
RAW_SCALE = {"fashion_mnist": 255.0, "digits": 16.0}

DATASETS.register("tweets", tweets)

CLASS_NAMES = {"fashion_mnist": FASHION_MNIST_CLASSES, "digits": tuple(str(i) for i in range(10)),
               "tweets": TWEET_CLASSES}


def class_names(name: str) -> Sequence[str]:
    """Human-readable class names of a built-in data set."""
    DATASETS.get(name)  # raises the standard unknown-name error
    return CLASS_NAMES[name]


def load_builtin(name: str, seed: int = 0, **options) -> SplitData:
    """The built-in data set ``name`` as a :class:`~kdkeras.data.dataset.SplitData`.

    Loaders of images return ``(train, test)`` arrays, wrapped here; a text loader
    (``"tweets"``) returns its :class:`SplitData` itself. ``options`` go to the loader
    (e.g. ``sequence_length=64`` for ``"tweets"``).

    Raises:
        ValueError: an unknown name, with the known ones.
    """
    loaded = DATASETS.get(name)(seed=seed, **options)
    if isinstance(loaded, SplitData):
        return loaded
    (x, y), (xt, yt) = loaded
    return SplitData(x, y, xt, yt, list(class_names(name)), "images", name=name,
                     normalization={"mean": 0.0, "std": RAW_SCALE[name]})
