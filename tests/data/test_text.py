import numpy as np
import pytest

from kdkeras.data import build_vocabulary, tokenize


def test_vocabulary_orders_by_count_then_alphabetically_and_is_capped():
    texts = ["b a c", "a B d", "c don't", "e"]
    assert build_vocabulary(texts, max_tokens=100) == [
        "", "[UNK]", "a", "b", "c", "d", "don't", "e"]
    assert build_vocabulary(texts, max_tokens=4) == ["", "[UNK]", "a", "b"]


def test_tokenize_pads_truncates_and_maps_unknown_words():
    vocab = ["", "[UNK]", "the", "cat"]
    ids = tokenize(["The CAT, the cat!", "dog", ""], vocab, 3)
    assert ids.dtype == np.int32
    assert ids.tolist() == [[2, 3, 2], [1, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize("texts,vocab,exc,match", [
    ("one text", ["", "[UNK]"], TypeError, "single string"),
    (["ok", 3], ["", "[UNK]"], TypeError, r"texts\[1\]"),
    (["ok"], ["[UNK]", ""], ValueError, "must start with"),
])
def test_tokenize_errors(texts, vocab, exc, match):
    with pytest.raises(exc, match=match):
        tokenize(texts, vocab, 4)
