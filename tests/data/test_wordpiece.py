import json
import re
from pathlib import Path

import numpy as np
import pytest

from kdkeras.data import SplitData, WordPieceEncoder
from kdkeras.data.wordpiece import count_truncated, encode_split, load_encoder

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "##s", "on", "mat", ".", "un",
         "##believ", "##able", "!"]


@pytest.fixture(scope="module")
def enc():
    return WordPieceEncoder(VOCAB)


def test_ids_match_hand_computed_layout(enc):
    ids = enc.encode(["The cats sat on the mat.", "Unbelievable!", "", "dog"], 10)
    assert ids.dtype == np.int32 and ids.shape == (4, 10)
    assert ids.tolist() == [
        [2, 4, 5, 7, 6, 8, 4, 9, 10, 3],       # [CLS] the cat ##s sat on the mat . [SEP]
        [2, 11, 12, 13, 14, 3, 0, 0, 0, 0],    # lowercased, split into pieces
        [2, 3, 0, 0, 0, 0, 0, 0, 0, 0],        # empty text: [CLS] [SEP]
        [2, 1, 3, 0, 0, 0, 0, 0, 0, 0],        # unknown word: [UNK]
    ]


def test_truncation_keeps_sep_last_and_is_counted(enc):
    texts = ["the cat sat on the mat", "the cat", "the cat sat on"]   # 6, 2, 4 pieces
    ids, cut = enc.encode(texts, 6, return_truncated=True)
    assert cut == 1                                        # 4 pieces fit exactly in 6
    assert ids[0].tolist() == [2, 4, 5, 6, 8, 3] and ids[2].tolist() == [2, 4, 5, 6, 8, 3]
    assert ids[1].tolist() == [2, 4, 5, 3, 0, 0]
    assert enc.encode(texts, 8, return_truncated=True)[1] == 0   # 6 pieces fit exactly in 8
    np.testing.assert_array_equal(enc.count_pieces(texts), [6, 2, 4])


def test_many_texts_go_through_several_batches(enc, monkeypatch):
    from kdkeras.data import wordpiece

    monkeypatch.setattr(wordpiece, "_BATCH", 3)
    texts = ["the cat", "sat", "on the mat.", "cats", "!", "the"] * 2 + ["mat"]
    ids = enc.encode(texts, 5)
    assert ids.shape == (13, 5)
    assert ids[12].tolist() == [2, 9, 3, 0, 0] and ids[3].tolist() == [2, 5, 7, 3, 0]
    assert enc.encode([], 5).shape == (0, 5)


def test_cased_encoder_keeps_case(tmp_path):
    cased = WordPieceEncoder(VOCAB + ["The"], lowercase=False)
    assert cased.encode(["The the"], 5).tolist() == [[2, 15, 4, 3, 0]]


def test_describe_is_the_bundle_entry(enc):
    d = enc.describe(48)
    assert d == {"type": "wordpiece", "lowercase": True, "strip_accents": False,
                 "suffix_indicator": "##", "max_length": 48, "cls_id": 2, "sep_id": 3,
                 "pad_id": 0, "unk_id": 1, "vocabulary_size": 15, "vocabulary_file": "vocab.txt"}
    assert json.loads(json.dumps(d)) == d
    again = WordPieceEncoder.from_description(d, VOCAB)
    assert again.encode(["the cats"], 6).tolist() == enc.encode(["the cats"], 6).tolist()


def test_vocab_file_and_preset_folder(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    from_file = WordPieceEncoder(tmp_path / "vocab.txt")
    assert from_file.vocabulary == VOCAB and from_file.vocabulary_file.endswith("vocab.txt")
    preset = WordPieceEncoder.from_preset(tmp_path)
    assert preset.lowercase is False and WordPieceEncoder.from_preset(tmp_path, True).lowercase
    assert load_encoder(str(tmp_path)).vocabulary_size == 15
    assert load_encoder(tmp_path / "vocab.txt").encode(["mat"], 3).tolist() == [[2, 9, 3]]
    with pytest.raises(FileNotFoundError, match=r"vocabulary not found.*nowhere/vocab\.txt"):
        load_encoder(tmp_path / "nowhere" / "vocab.txt")
    with pytest.raises(TypeError, match="must be a vocab.txt file.*Received: wordpiece=3"):
        load_encoder(3)


@pytest.mark.parametrize("missing", ["[CLS]", "[SEP]", "[PAD]", "[UNK]"])
def test_vocabulary_without_a_special_token_names_it(missing):
    vocab = [t for t in VOCAB if t != missing]
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['"
                                         + re.escape(missing) + r"'\]"):
        WordPieceEncoder(vocab)


def test_pad_must_be_id_zero_and_vocab_file_must_exist(tmp_path):
    with pytest.raises(ValueError, match=r"\[PAD\] must be id 0.*Received: \[PAD\] at id 1"):
        WordPieceEncoder(["[UNK]", "[PAD]", "[CLS]", "[SEP]"])
    with pytest.raises(FileNotFoundError, match="vocabulary file not found"):
        WordPieceEncoder(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="vocabulary is empty"):
        WordPieceEncoder([])


def test_bad_texts_and_lengths_are_refused(enc):
    with pytest.raises(ValueError, match="sequence_length must be an integer >= 3. Received: "
                                         "sequence_length=2"):
        enc.encode(["the cat"], 2)
    with pytest.raises(TypeError, match=r"not a single string.*Wrap one text in a list"):
        enc.encode("the cat", 8)
    with pytest.raises(TypeError, match=r"texts\[1\]=3 of type int"):
        enc.encode(["the cat", 3], 8)
    with pytest.raises(TypeError, match="texts must be a list of strings"):
        enc.encode(None, 8)


def test_count_truncated_recounts_only_full_rows(enc):
    texts = ["the cat sat on the mat", "the cat", "the cat sat on"]
    ids = enc.encode(texts, 6)
    assert count_truncated(texts, ids, enc.describe(6), VOCAB) == 1   # row 2 is full, not cut
    assert count_truncated(texts[1:], ids[1:], enc.describe(6), VOCAB) == 0


def test_encode_split_and_subset_keep_the_truncation_count(enc):
    texts = ["the cat sat on the mat", "the cat", "the cat sat on", "mat", "on the mat.", "cat"]
    d = SplitData(np.zeros((4, 1)), np.array([0, 1, 0, 1]), np.zeros((2, 1)), np.array([0, 1]),
                  ["a", "b"], "text", texts_train=texts[:4], texts_test=texts[4:])
    w = encode_split(d, enc, 5)
    assert w.x_train.shape == (4, 5) and w.x_test.shape == (2, 5) and w.truncated == 3
    assert w.tokenizer["max_length"] == 5 and w.vocabulary == VOCAB
    assert w.summary()["truncated"] == 3 and w.summary()["tokenizer"] == "wordpiece"
    kept = w.subset(n_train=2, seed=0)
    expected = int((enc.count_pieces(kept.texts_train + kept.texts_test) > 3).sum())
    assert kept.truncated == expected and kept.tokenizer == w.tokenizer
    assert w.with_label_budget(2).truncated == 3 and w.subset().truncated == 3
    with pytest.raises(ValueError, match="needs the raw texts"):
        encode_split(SplitData(*[np.zeros((2, 1))] * 4, ["a", "b"], "features"), enc, 5)


@pytest.mark.slow
def test_ids_equal_the_minilm_teachers_bert_tokenizer():
    """Ids equal keras-hub's BertTokenizer on MiniLM's vocabulary for unaccented text, and
    accents are stripped as MiniLM's own tokenizer_config.json says (strip_accents null with
    do_lower_case: stripped, as BERT's BasicTokenizer does; keras-hub's tokenizer does not,
    and once turned "Café" into [UNK] for the app too)."""
    import keras_hub

    from kdkeras.data.tweets import minilm_path

    path = minilm_path()
    texts = ["I just don't trust my life in google's hands #driverless cars_\ufffd_.no thank you",
             "Self-driving cars are AWESOME!!! http://t.co/abc123", "🚗 deja vu", ""]
    enc = WordPieceEncoder.from_preset(path)
    assert enc.ids == {"cls": 101, "sep": 102, "pad": 0, "unk": 100}
    assert enc.vocabulary_size == 30522 and enc.lowercase and enc.strip_accents
    assert enc.describe(64)["strip_accents"] is True  # what the app is told
    teacher = keras_hub.models.BertTokenizer.from_preset(path)
    ids = enc.encode(texts, 64)
    for row, text in zip(ids, texts):
        pieces = [int(i) for i in teacher([text])[0]]
        assert row.tolist() == [101] + pieces + [102] + [0] * (62 - len(pieces))
    accented, plain = enc.encode(["Café naïve résumé über", "cafe naive resume uber"], 8)
    assert accented.tolist() == plain.tolist() and 100 not in accented.tolist()
    assert load_encoder(str(Path(path) / "vocab.txt")).strip_accents  # its folder's config

@pytest.mark.parametrize("lines, message", [
    (["[PAD]", "[UNK]", "", "[CLS]", "[SEP]"], "line 3 is empty"),
    (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "cat", "[UNK]"], "'\\[UNK\\]' is on line 2 and line 6"),
])
def test_a_vocab_txt_with_an_empty_line_or_a_duplicate_is_refused_by_line(tmp_path, lines, message):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")  # final newlines are fine
    with pytest.raises(ValueError, match=message):
        WordPieceEncoder(path)
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "cat"]) + "\n\n", "utf-8")
    assert WordPieceEncoder(path).vocabulary_size == 5
