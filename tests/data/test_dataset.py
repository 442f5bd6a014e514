import numpy as np
import pytest

from kdkeras import data
from kdkeras.data import SplitData


def test_to_dataset_batches_and_checks_lengths():
    x = np.zeros((10, 3), "float32")
    y = np.arange(10)
    batches = list(data.to_dataset(x, y, batch_size=4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    with pytest.raises(ValueError, match="same length. Received lengths: 10, 9"):
        data.to_dataset(x, y[:9])
    with pytest.raises(ValueError, match="batch_size=0"):
        data.to_dataset(x, y, batch_size=0)


def _split(n_train=10, n_test=6, text=False):
    x = np.arange(n_train * 2, dtype=np.float32).reshape(n_train, 2)
    xt = -np.arange(n_test * 2, dtype=np.float32).reshape(n_test, 2)
    d = SplitData(x, np.arange(n_train) % 2, xt, np.arange(n_test) % 2, ["a", "b"], "features",
                  name="toy")
    if text:
        d.texts_train = [f"t{i}" for i in range(n_train)]
        d.texts_test = [f"u{i}" for i in range(n_test)]
    return d


def test_split_data_summary_is_json_ready():
    assert _split().summary() == {"name": "toy", "kind": "features", "n_train": 10, "n_labels": 10,
                                  "n_test": 6,
                                  "num_classes": 2, "input_shape": [2]}


def test_subset_keeps_rows_labels_and_texts_aligned_and_leaves_the_original():
    d = _split(text=True)
    s = d.subset(n_train=4, n_test=3, seed=5)
    assert len(s.x_train) == 4 and len(s.x_test) == 3 and len(d.x_train) == 10
    rows = (s.x_train[:, 0] / 2).astype(int)          # row i of x_train is [2i, 2i+1]
    np.testing.assert_array_equal(s.y_train, rows % 2)
    assert s.texts_train == [f"t{i}" for i in rows]
    np.testing.assert_array_equal(s.x_train, d.subset(n_train=4, n_test=3, seed=5).x_train)
    assert d.subset(n_train=0).x_train is d.x_train    # 0: all


def test_every_loader_says_how_it_scaled_the_raw_inputs(tmp_path):
    from kdkeras.data import load_builtin, load_files

    digits = load_builtin("digits")
    assert digits.normalization == {"mean": 0.0, "std": 16.0}
    from sklearn.datasets import load_digits

    raw = load_digits().images.astype("float32")[..., None]
    # (raw - mean) / std gives exactly what the model was trained on
    assert np.isclose(((raw - 0.0) / 16.0).sum(), digits.x_train.sum() + digits.x_test.sum())
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "u8.npz", x=rng.integers(0, 256, (20, 4, 4), dtype=np.uint8),
             y=np.arange(20) % 2)
    np.savez(tmp_path / "f.npz", x=rng.random((20, 3)), y=np.arange(20) % 2)
    assert load_files(tmp_path / "u8.npz").normalization == {"mean": 0.0, "std": 255.0}
    assert load_files(tmp_path / "f.npz").normalization == {"mean": 0.0, "std": 1.0}
    (tmp_path / "t.csv").write_text("text,label\n" + "".join(f"w{i} x,{i % 2}\n" for i in range(10)))
    assert load_files(tmp_path / "t.csv").normalization is None


def test_label_budget_marks_the_rest_unlabelled_and_follows_subsets():
    d = _split(n_train=10)
    b = d.with_label_budget(0.3, seed=1)
    assert b.n_labels == 3 and d.labelled is None and d.n_labels == 10
    y = b.student_labels
    assert (y == SplitData.UNLABELLED).sum() == 7
    np.testing.assert_array_equal(y[b.labelled], d.y_train[b.labelled])
    assert b.with_label_budget(4, seed=1).n_labels == 4
    assert d.with_label_budget(1.0).labelled is None and d.with_label_budget(10).labelled is None
    s = b.subset(n_train=5, seed=2)  # the budget follows the rows
    assert len(s.labelled) == 5
    rows = (s.x_train[:, 0] / 2).astype(int)
    np.testing.assert_array_equal(s.labelled, b.labelled[rows])
    for bad in (0, -0.5, 1.5, 11, float("nan"), True):
        with pytest.raises(ValueError, match="labels"):
            d.with_label_budget(bad)
