import gzip
import struct

import numpy as np
import pytest

import kdkeras as kd
from kdkeras import data
from kdkeras.data import builtin


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype("uint8").tobytes())


@pytest.fixture()
def fake_fashion(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (50, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, (50,)),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, (20,)),
    }
    for name, arr in arrays.items():
        write_idx(tmp_path / name, arr)
    return tmp_path, arrays


def test_read_idx_round_trip(fake_fashion):
    folder, arrays = fake_fashion
    got = data.read_idx(folder / "train-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(got, arrays["train-images-idx3-ubyte.gz"])


def test_read_idx_rejects_other_files(tmp_path):
    bad = tmp_path / "x.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="is not an IDX file"):
        data.read_idx(bad)


def test_fashion_mnist_from_local_folder(fake_fashion):
    folder, arrays = fake_fashion
    (x, y), (xt, yt) = kd.fashion_mnist(data_dir=str(folder))
    assert x.shape == (50, 28, 28, 1) and x.dtype == np.float32 and xt.shape == (20, 28, 28, 1)
    np.testing.assert_allclose(x[..., 0] * 255, arrays["train-images-idx3-ubyte.gz"], atol=1e-3)
    np.testing.assert_array_equal(yt, arrays["t10k-labels-idx1-ubyte.gz"])
    (xs, ys), _ = kd.fashion_mnist(n_train=10, data_dir=str(folder), seed=1)
    assert xs.shape == (10, 28, 28, 1)
    assert 0.0 <= xs.min() and xs.max() <= 1.0


def test_fashion_mnist_missing_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(builtin, "FASHION_MNIST_DIRS", (str(tmp_path / "nowhere"),))
    monkeypatch.delenv("KDKERAS_FASHION_MNIST_DIR", raising=False)
    import tf_keras

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(tf_keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        kd.fashion_mnist()


@pytest.mark.slow
def test_fashion_mnist_full_debian_copy():
    (x, y), (xt, yt) = kd.fashion_mnist()
    assert x.shape == (60000, 28, 28, 1) and xt.shape == (10000, 28, 28, 1)
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10


def test_digits_split_is_stratified_and_deterministic():
    (x, y), (xt, yt) = kd.digits(seed=0)
    (x2, _), _ = kd.digits(seed=0)
    np.testing.assert_array_equal(x, x2)
    assert x.shape[1:] == (8, 8, 1) and len(x) + len(xt) == 1797
    assert np.bincount(yt).min() >= 40
    with pytest.raises(ValueError, match="test_size=1.5"):
        kd.digits(test_size=1.5)


def test_dataset_registry():
    assert data.DATASETS.names() == ["digits", "fashion_mnist", "tweets"]
    with pytest.raises(ValueError, match="Unknown dataset 'fashion'. Did you mean 'fashion_mnist'"):
        data.DATASETS.get("fashion")
    assert len(data.class_names("fashion_mnist")) == 10
