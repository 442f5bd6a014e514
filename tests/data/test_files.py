import csv
import logging

import numpy as np
import pytest
from PIL import Image

from kdkeras.data import SplitData, WordPieceEncoder, load_files, tokenize


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_image(path, value, size=(6, 10), rgb=False):
    """An image of constant grey `value` (or RGB triple), `size` = (height, width)."""
    shape = size + ((3,) if rgb else ())
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


@pytest.fixture()
def xy_npz(tmp_path):
    # x[:, 0] == label so every row can be checked against its label after the split.
    y = np.repeat([0, 1, 2], 10)
    x = np.stack([y, np.arange(30)], axis=1).astype("float64")
    path = tmp_path / "xy.npz"
    np.savez(path, x=x, y=y)
    return path


# --------------------------------------------------------------------------- .npz


def test_npz_x_y_is_split_stratified_and_reproducibly(xy_npz):
    d = load_files(xy_npz, test_fraction=0.2, seed=3)
    assert isinstance(d, SplitData)
    assert d.kind == "features" and d.class_names == ["0", "1", "2"]
    assert d.x_train.shape == (24, 2) and d.x_test.shape == (6, 2)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert np.bincount(d.y_test).tolist() == [2, 2, 2]  # stratified
    np.testing.assert_array_equal(d.x_train[:, 0], d.y_train)  # rows kept with their labels
    np.testing.assert_array_equal(d.x_test[:, 0], d.y_test)
    assert sorted(np.concatenate([d.x_train[:, 1], d.x_test[:, 1]])) == list(range(30))
    again = load_files(xy_npz, test_fraction=0.2, seed=3)
    np.testing.assert_array_equal(again.x_test, d.x_test)
    other = load_files(xy_npz, test_fraction=0.2, seed=4)
    assert not np.array_equal(other.x_test[:, 1], d.x_test[:, 1])
    assert d.num_classes == 3 and d.input_shape == (2,)
    assert d.texts_train is None and d.vocabulary is None


def test_npz_own_split_uint8_images_get_scaled_and_a_channel_axis(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (8, 5, 4), dtype=np.uint8)
    x_test = np.full((3, 5, 4), 255, np.uint8)
    path = tmp_path / "own.npz"
    np.savez(path, x_train=x_train, y_train=np.array([0, 1] * 4), x_test=x_test,
             y_test=np.array([[1], [0], [1]]), class_names=np.array(["no", "yes"]))
    d = load_files(path)
    assert d.kind == "images" and d.class_names == ["no", "yes"]
    assert d.x_train.shape == (8, 5, 4, 1) and d.x_test.shape == (3, 5, 4, 1)
    np.testing.assert_allclose(d.x_train[..., 0], x_train / 255.0, rtol=1e-6)
    assert d.x_test.max() == 1.0 and d.x_train.dtype == np.float32
    assert d.y_test.tolist() == [1, 0, 1]


def test_npz_four_dimensional_float_images_are_kept(tmp_path):
    x = np.random.default_rng(0).random((12, 4, 4, 3)).astype("float32")
    path = tmp_path / "rgb.npz"
    np.savez(path, x=x, y=np.arange(12) % 2)
    d = load_files(path, test_fraction=0.25)
    assert d.kind == "images" and d.x_train.shape == (9, 4, 4, 3)
    assert np.isin(d.x_test, x).all()


def test_npz_integer_labels_with_gaps_are_mapped_in_order(tmp_path):
    path = tmp_path / "gaps.npz"
    np.savez(path, x=np.zeros((8, 2)), y=np.array([7, 3] * 4))
    d = load_files(path, test_fraction=0.5)
    assert d.class_names == ["3", "7"]
    assert sorted(set(d.y_train.tolist())) == [0, 1]


def test_npz_missing_keys_lists_found_and_expected_keys(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((4, 2)), targets=np.zeros(4))
    with pytest.raises(ValueError, match=r"keys \['images', 'targets'\].*x_train, y_train"):
        load_files(path)


def test_npz_class_names_must_cover_the_labels(tmp_path):
    path = tmp_path / "names.npz"
    np.savez(path, x=np.zeros((6, 2)), y=np.array([0, 1, 2] * 2), class_names=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"integers in \[0, 1\]"):
        load_files(path)


# --------------------------------------------------------------------------- .csv


def test_csv_features_with_string_labels(tmp_path):
    names = ["zebra", "ant", "mole"]
    rows = [[f"{i}", names[i % 3], f"{(i % 3) * 10}"] for i in range(30)]
    path = write_csv(tmp_path / "f.csv", ["id", "kind", "code"], rows)
    d = load_files(path, label_column="kind", test_fraction=0.3, seed=1)
    assert d.kind == "features" and d.class_names == ["ant", "mole", "zebra"]
    assert d.x_train.shape == (21, 2) and d.x_test.shape == (9, 2)
    # code = 10 * index in `names`; check every row still carries its own label.
    expected = {0: 10, 1: 20, 2: 0}  # ant -> 10, mole -> 20, zebra -> 0
    assert [expected[c] for c in d.y_train] == d.x_train[:, 1].tolist()
    assert np.bincount(d.y_test).tolist() == [3, 3, 3]


def test_csv_non_numeric_cell_names_row_column_and_value(tmp_path):
    path = write_csv(tmp_path / "f.csv", ["a", "label", "b"],
                     [["1", "0", "2"], ["3", "1", "oops"]])
    with pytest.raises(ValueError, match=r"row 3, column 'b' holds 'oops'"):
        load_files(path)


def test_csv_missing_label_column_lists_the_header(tmp_path):
    path = write_csv(tmp_path / "f.csv", ["a", "target"], [["1", "0"], ["2", "1"]])
    with pytest.raises(ValueError, match=r"label_column='label'.*\['a', 'target'\]"):
        load_files(path)


def test_csv_text_builds_vocabulary_from_training_split_only(tmp_path):
    rows = [["good great fine", "pos"]] * 8 + [["bad awful poor", "neg"]] * 8
    rows += [["Good ZEBRA", "pos"], ["bad zebra", "neg"]]
    path = write_csv(tmp_path / "t.csv", ["text", "label"], rows)
    d = load_files(path, test_fraction=0.5, seed=0, sequence_length=5)
    assert d.kind == "text" and d.class_names == ["neg", "pos"]
    assert d.x_train.shape == (9, 5) and d.x_train.dtype == np.int32
    assert d.vocabulary[:2] == ["", "[UNK]"]
    train_words = {w for t in d.texts_train for w in t.lower().split()}
    assert set(d.vocabulary[2:]) == train_words
    np.testing.assert_array_equal(d.x_test, tokenize(d.texts_test, d.vocabulary, 5))
    for text, label in zip(d.texts_train + d.texts_test, np.concatenate([d.y_train, d.y_test])):
        assert ("good" in text.lower()) == (d.class_names[label] == "pos")
    if "zebra" not in train_words:  # a test-only word maps to [UNK]
        row = next(i for i, t in enumerate(d.texts_test) if "zebra" in t.lower())
        assert d.x_test[row, 1] == 1


def test_csv_integer_labels_and_blank_lines(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("x,label\n1.5,1\n\n2.5,0\n3.5,1\n4.5,0\n")
    d = load_files(path, test_fraction=0.5)
    assert d.class_names == ["0", "1"]
    assert len(d.y_train) + len(d.y_test) == 4


# --------------------------------------------------------------------------- directories


@pytest.fixture()
def image_dir(tmp_path):
    root = tmp_path / "imgs"
    for cls, value in (("dark", 0), ("light", 255)):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            write_image(root / cls / f"{i}.png", value)
    write_image(root / "dark" / "extra.JPG", 0)
    (root / "dark" / ".hidden.png").write_bytes(b"not an image")
    (root / ".cache").mkdir()
    return root


def test_image_folders_grayscale_resized(image_dir):
    d = load_files(image_dir, image_size=(4, 3), test_fraction=0.25)
    assert d.kind == "images" and d.class_names == ["dark", "light"]
    assert d.x_train.shape[1:] == (4, 3, 1) and len(d.x_train) + len(d.x_test) == 11
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        np.testing.assert_array_equal(x.reshape(len(x), -1).max(-1), y.astype("float32"))


def test_image_folders_rgb(image_dir):
    d = load_files(image_dir, image_size=(8, 8), color_mode="rgb")
    assert d.x_train.shape[1:] == (8, 8, 3) and d.x_train.dtype == np.float32


def test_train_test_folders_are_the_split(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        for cls, value in (("a", 10), ("b", 200)):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                write_image(tmp_path / split / cls / f"{i}.bmp", value, rgb=True)
    d = load_files(tmp_path, test_fraction=0.9)  # ignored: the source has its own split
    assert len(d.x_train) == 8 and len(d.x_test) == 4
    assert d.y_test.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(d.x_test[:, 0, 0, 0], [10 / 255] * 2 + [200 / 255] * 2, rtol=1e-6)


def test_text_folders(tmp_path):
    for cls, text in (("ham", "hello friend"), ("spam", "win money now \u00e9")):
        (tmp_path / cls).mkdir()
        for i in range(4):
            (tmp_path / cls / f"{i}.txt").write_bytes(text.encode())
    d = load_files(tmp_path, sequence_length=4, test_fraction=0.5)
    assert d.kind == "text" and d.class_names == ["ham", "spam"]
    assert d.x_train.shape == (4, 4) and d.tokenizer is None and d.truncated is None
    assert np.bincount(d.y_test).tolist() == [2, 2]
    assert sorted(set(d.texts_train)) == ["hello friend", "win money now \u00e9"]


def test_a_non_utf8_txt_file_is_refused_by_name(tmp_path):
    for cls in ("ham", "spam"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            (tmp_path / cls / f"{i}.txt").write_text(f"{cls} text {i}")
    (tmp_path / "spam" / "1.txt").write_bytes(b"caf\xe9 latin-1")
    with pytest.raises(ValueError, match=r"1 \.txt file\(s\) are not UTF-8 text: 'spam/1\.txt' "
                                         r"\(byte 3 is b'\\xe9'\).*iconv"):
        load_files(tmp_path)


def test_empty_txt_files_are_skipped_counted_and_named(tmp_path, caplog):
    for cls in ("ham", "spam"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            (tmp_path / cls / f"{i}.txt").write_text(f"{cls} text {i}")
    (tmp_path / "ham" / "0.txt").write_text("")
    (tmp_path / "spam" / "3.txt").write_text(" \n\t")
    with caplog.at_level(logging.WARNING, logger="kdkeras.data"):
        d = load_files(tmp_path, test_fraction=0.25)
    assert len(d.x_train) + len(d.x_test) == 6
    assert all(t.strip() for t in d.texts_train + d.texts_test)
    assert len(d.texts_train) == len(d.x_train) == len(d.y_train)
    assert "Skipped 2 empty text file(s) (ham/0.txt, spam/3.txt)" in caplog.text
    assert (len(d.x_train), len(d.x_test)) == (4, 2)  # split drawn on the 6 kept


WORDPIECE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "movie", "##s", "!", "very"]


def test_csv_text_with_a_wordpiece_vocabulary(tmp_path, caplog):
    (tmp_path / "vocab.txt").write_text("\n".join(WORDPIECE), encoding="utf-8")
    rows = [["good movies !", "pos"], ["bad movie", "neg"]] * 4 + [["very very very good", "pos"],
                                                                  ["very bad movie !", "neg"],
                                                                  ["  ", "neg"]]
    path = write_csv(tmp_path / "t.csv", ["text", "label"], rows)
    with caplog.at_level(logging.WARNING, logger="kdkeras.data"):
        d = load_files(path, sequence_length=5, test_fraction=0.3, wordpiece=tmp_path / "vocab.txt")
    assert "Skipped 1 CSV row(s) with an empty text (rows 12)" in caplog.text
    assert len(d.x_train) + len(d.x_test) == 10 and d.x_train.shape[1] == 5
    assert d.vocabulary == WORDPIECE and d.tokenizer["max_length"] == 5
    texts, ids = d.texts_train + d.texts_test, np.concatenate([d.x_train, d.x_test])
    assert ids[texts.index("good movies !")].tolist() == [2, 4, 6, 7, 3]   # cut: 4 pieces
    assert ids[texts.index("bad movie")].tolist() == [2, 5, 6, 3, 0]
    assert d.truncated == 4 + 2                   # 4x "good movies !", the two long ones
    word = load_files(path, sequence_length=5, test_fraction=0.3)   # default: word-level
    assert word.vocabulary[:2] == ["", "[UNK]"] and word.tokenizer is None
    np.testing.assert_array_equal(word.y_train, d.y_train)


def test_text_folder_with_a_wordpiece_preset_folder(tmp_path):
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "vocab.txt").write_text("\n".join(WORDPIECE), encoding="utf-8")
    for cls, text in (("neg", "Bad movie!"), ("pos", "GOOD movies")):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "d" / cls / f"{i}.txt").write_text(text)
    d = load_files(tmp_path / "d", wordpiece=preset, sequence_length=8, test_fraction=0.34)
    assert d.kind == "text" and d.truncated == 0 and d.tokenizer["type"] == "wordpiece"
    rows = {tuple(r) for r in np.concatenate([d.x_train, d.x_test]).tolist()}
    assert rows == {(2, 5, 6, 8, 3, 0, 0, 0), (2, 4, 6, 7, 3, 0, 0, 0)}


def test_wordpiece_bad_uses_are_refused(tmp_path, xy_npz):
    (tmp_path / "vocab.txt").write_text("\n".join(WORDPIECE[1:]), encoding="utf-8")
    path = write_csv(tmp_path / "t.csv", ["text", "label"], [["good", "a"], ["bad", "b"]] * 3)
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[PAD\]'\]"):
        load_files(path, wordpiece=tmp_path / "vocab.txt")
    with pytest.raises(ValueError, match=r"wordpiece= encodes text, but source=.*holds features"):
        load_files(xy_npz, wordpiece=WordPieceEncoder(WORDPIECE))
    with pytest.raises(FileNotFoundError, match=r"vocabulary not found.*nothing/vocab\.txt"):
        load_files(path, wordpiece=tmp_path / "nothing" / "vocab.txt")
    with pytest.raises(ValueError, match="sequence_length must be an integer >= 3"):
        load_files(path, wordpiece=WordPieceEncoder(WORDPIECE), sequence_length=2)


def test_unsupported_files_are_ignored_with_a_warning(image_dir, caplog):
    (image_dir / "light" / "notes.md").write_text("hi")
    with caplog.at_level(logging.WARNING, logger="kdkeras.data"):
        d = load_files(image_dir)
    assert len(d.x_train) + len(d.x_test) == 11
    assert "notes.md" in caplog.text


def test_class_folder_without_usable_files(image_dir):
    (image_dir / "empty").mkdir()
    (image_dir / "empty" / "readme.md").write_text("x")
    with pytest.raises(ValueError, match=r"'.*empty' has no usable files.*readme\.md"):
        load_files(image_dir)


def test_mixed_images_and_text(image_dir):
    (image_dir / "light" / "note.txt").write_text("x")
    with pytest.raises(ValueError, match="mix images and .txt"):
        load_files(image_dir)


def test_fewer_than_two_classes(tmp_path):
    (tmp_path / "only").mkdir()
    write_image(tmp_path / "only" / "a.png", 3)
    with pytest.raises(ValueError, match=r"at least 2 classes.*found 1 \(\['only'\]\)"):
        load_files(tmp_path)
    path = write_csv(tmp_path / "one.csv", ["x", "label"], [["1", "a"], ["2", "a"]])
    with pytest.raises(ValueError, match="at least 2 classes"):
        load_files(path)


def test_unreadable_image_names_the_file(image_dir):
    (image_dir / "light" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"broken\.png"):
        load_files(image_dir)


# --------------------------------------------------------------------------- errors


def test_missing_source(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_files(missing)


def test_unknown_extension_says_what_is_supported(tmp_path):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"'\.parquet'.*Supported: a \.npz file, a \.csv file"):
        load_files(path)


@pytest.mark.parametrize("kwargs,match", [
    (dict(test_fraction=0), "test_fraction=0"),
    (dict(test_fraction=1.0), "test_fraction=1.0"),
    (dict(test_fraction=-0.2), "test_fraction=-0.2"),
    (dict(color_mode="cmyk"), "color_mode='cmyk'"),
    (dict(image_size=(28,)), r"image_size=\(28,\)"),
    (dict(image_size=(0, 28)), r"image_size=\(0, 28\)"),
    (dict(image_size=(28.0, 28)), r"image_size=\(28.0, 28\)"),
    (dict(sequence_length=0), "sequence_length=0"),
    (dict(max_tokens=2), "max_tokens=2"),
])
def test_bad_arguments(xy_npz, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_files(xy_npz, **kwargs)


def test_too_few_examples_to_split(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, x=np.zeros((2, 2)), y=np.array([0, 1]))
    d = load_files(path, test_fraction=0.5)  # unstratified fallback when a split is tiny
    assert sorted(d.y_train.tolist() + d.y_test.tolist()) == [0, 1]
    with pytest.raises(ValueError, match="too few to split"):
        load_files(path, test_fraction=0.9)
