"""A text student's Android bundle as a MediaPipe drop-in, checked with MediaPipe's own
TextClassifier (it tokenizes the raw texts itself, from the vocabulary packed in the file).

These tests run the real MediaPipe 0.10.21 in its own environment (``.ci/run`` creates it with
``python -m kdkeras.export.mediapipe_setup create``); without it they fail and say how to make
it, as ``test_mediapipe.py`` does. The student is the toy transformer of ``text_models`` on
WordPiece ids of made-up texts with capitals, punctuation, ``##`` suffixes, unknown words and
texts longer than its 16 tokens.
"""

import json
import os

import numpy as np
import pytest
import tf_keras as keras

from kdkeras.data.wordpiece import WordPieceEncoder
from kdkeras.export import (
    check_mediapipe_text,
    evaluate_tflite,
    export_android,
    export_tflite,
    inspect_tflite,
    predict_tflite,
    read_mediapipe_metadata,
    top1,
)
from kdkeras.export.mediapipe_env import run_worker
from kdkeras.export.mediapipe_text import (
    mediapipe_text_ready,
    same_ids_expected,
    text_file_refusal,
    text_refusal,
)
from tests.export.export_models import tiny_cnn
from tests.export.text_models import SEQ, toy_text_student

LABELS = ["neg", "neu", "pos"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
SUFFIXES = ["s", "ed", "ing", "ly"]


def _vocabulary(rng):
    """Specials, punctuation, ``##`` suffixes, 3 x 40 class stems and 60 neutral ones (four
    lower-case letters each, so a stem plus a suffix is always ``stem ##suffix``), ``cafe``."""
    stems = set()
    while len(stems) < 180:
        stems.add("".join(rng.choice(list("bdfgklmnprstvz"))) + rng.choice(list("aeiou"))
                  + rng.choice(list("bdfgklmnprstvz")) + rng.choice(list("aeiou")))
    stems = sorted(stems)
    rng.shuffle(stems)
    vocab = SPECIAL + list(".,!?'-") + [f"##{s}" for s in SUFFIXES] + stems + ["cafe"]
    return vocab, [stems[40 * c: 40 * (c + 1)] for c in range(3)], stems[120:]


def _texts(n, rng, bands, neutral):
    """``(texts, labels)``: most words from the label's band, some capitalised, suffixed,
    followed by punctuation, or unknown; 3 to 14 words (many texts exceed 16 tokens)."""
    texts, y = [], rng.integers(0, 3, n)
    for label in y:
        words = []
        for _ in range(int(rng.integers(3, 15))):
            pool = bands[label] if rng.random() < 0.6 else neutral
            word = str(rng.choice(pool))
            if rng.random() < 0.2:
                word += str(rng.choice(SUFFIXES))
            if rng.random() < 0.05:
                word = "".join(rng.choice(list("qxjwy"), 6))  # no stem: [UNK]
            word = word.title() if rng.random() < 0.2 else (
                word.upper() if rng.random() < 0.05 else word)
            words.append(word + (str(rng.choice(list(",.!?"))) if rng.random() < 0.15 else ""))
        texts.append(" ".join(words))
    return texts, y


@pytest.fixture(scope="module")
def wordpiece_toy():
    """``(model, encoder, vocab, (ids, y), (texts_test, ids_test, y_test))``: the toy
    transformer trained for 6 epochs on 512 texts; 200 test texts."""
    rng = np.random.default_rng(0)
    vocab, bands, neutral = _vocabulary(rng)
    texts, y = _texts(712, rng, bands, neutral)
    encoder = WordPieceEncoder(vocab, lowercase=True)
    ids, cut = encoder.encode(texts, SEQ, return_truncated=True)
    assert cut > 50 and (ids == vocab.index("##s")).any() and (ids == 1).any()  # cut, ##, UNK
    model = toy_text_student(0, vocab=len(vocab))
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ids[:512], y[:512], epochs=6, batch_size=32, verbose=0)
    return model, encoder, vocab, (ids[:512], y[:512]), (texts[512:], ids[512:], y[512:])


@pytest.fixture(scope="module")
def text_bundle(mediapipe, wordpiece_toy, tmp_path_factory):
    """The ``dynamic`` Android bundle of the toy, checked on its 200 test texts."""
    model, encoder, vocab, _, (texts, ids, y) = wordpiece_toy
    return export_android(model, tmp_path_factory.mktemp("text") / "android", LABELS, "dynamic",
                          x_eval=ids, y_eval=y, vocabulary=vocab,
                          tokenizer=encoder.describe(SEQ), texts_eval=texts)


def test_the_text_bundle_is_a_mediapipe_dropin(mediapipe, wordpiece_toy, text_bundle, tmp_path):
    _, _, vocab, _, (texts, ids, y) = wordpiece_toy
    spec = json.load(open(os.path.join(text_bundle, "model.json")))
    bundle = os.path.join(text_bundle, "model.tflite")
    mp = spec["mediapipe"]
    assert (mp["ready"], mp["metadata"], mp["task"], mp["mediapipe_version"], mp["reason"]) == \
        (True, True, "TextClassifier", "0.10.21", None)
    assert mp["tokenization"].startswith("MediaPipe lower-cases ASCII letters only")
    assert spec["accuracy"] == evaluate_tflite(bundle, ids, y)["accuracy"] > 0.6
    check = mp["check"]
    assert check["status"] == "passed" and check["n"] == len(texts) == 200
    assert check["texts_not_plain_ascii"] == 0 and all(same_ids_expected(t) for t in texts)
    # the recorded check, recomputed here from MediaPipe's scores on the raw texts and LiteRT's
    # outputs on kdkeras's ids of the same texts
    with open(tmp_path / "texts.json", "w", encoding="utf-8") as f:
        json.dump(texts, f)
    got = run_worker({"command": "classify_text", "model": bundle,
                      "texts": str(tmp_path / "texts.json"), "scores": str(tmp_path / "s.npz")})
    assert got["category_names"] == LABELS and got["n"] == 200
    scores, lite = np.load(tmp_path / "s.npz")["scores"], predict_tflite(bundle, ids)
    same = top1(scores) == top1(lite)
    assert check["agreement"] == float(np.mean(same)) >= 0.995
    assert check["disagreements"] == int(np.sum(~same))
    assert check["max_score_difference"] == pytest.approx(float(np.abs(scores - lite).max()))
    # The same ids: MediaPipe tokenized as kdkeras. The scores are logits (-5..8 here) of a
    # ``dynamic`` file, whose activations each runtime quantizes with its own kernels: on an
    # AVX512-VNNI CPU MediaPipe's and LiteRT's differ by 1.4e-3 (a float32 bundle of the same
    # model: 1.9e-6), while one token of each text set to [UNK] moved all 200 texts' logits by
    # more than 5e-3 (median 0.52).
    assert check["max_score_difference"] < 5e-3
    alone = check_mediapipe_text(bundle, texts, ids, max_examples=50)
    assert (alone["status"], alone["n"], alone["agreement"]) == ("passed", 50, 1.0)


def test_the_run_stage_checks_the_text_bundle_on_the_raw_test_texts(mediapipe, wordpiece_toy,
                                                                    tmp_path):
    """``kdkeras run``'s android stage hands the test split's raw texts to the check."""
    from kdkeras.data.dataset import SplitData
    from kdkeras.pipeline import RunConfig
    from kdkeras.pipeline import stages as S

    model, encoder, vocab, (x, y), (texts, ids, y_test) = wordpiece_toy
    data = SplitData(x, y, ids[:40], y_test[:40], LABELS, "text", texts_train=["?"] * len(x),
                     texts_test=texts[:40], vocabulary=vocab, tokenizer=encoder.describe(SEQ))
    cfg = RunConfig.from_dict({"export": {"quantization": "none"}})
    out = S.android(cfg, export_tflite(model, tmp_path / "f.tflite"), data, tmp_path / "android")
    check = json.load(open(os.path.join(out, "model.json")))["mediapipe"]["check"]
    assert (check["status"], check["task"], check["n"], check["agreement"]) == \
        ("passed", "TextClassifier", 40, 1.0)


def test_the_metadata_is_mediapipes_and_reads_back(mediapipe, wordpiece_toy, text_bundle):
    vocab = wordpiece_toy[2]
    shown = read_mediapipe_metadata(os.path.join(text_bundle, "model.tflite"))
    meta = shown["metadata"]
    assert meta["name"] == "TextClassifier"
    graph = meta["subgraph_metadata"][0]
    assert [t["name"] for t in graph["input_tensor_metadata"]] == ["ids", "mask", "segment_ids"]
    unit = graph["input_process_units"][0]
    assert unit["options_type"] == "BertTokenizerOptions"
    assert unit["options"]["vocab_file"][0]["name"] == "vocab.txt"
    assert graph["output_tensor_metadata"][0]["associated_files"][0]["name"] == "labels.txt"
    assert shown["associated_files"]["vocab.txt"].splitlines() == vocab
    assert shown["associated_files"]["labels.txt"].splitlines() == LABELS
    bundled = open(os.path.join(text_bundle, "vocab.txt"), encoding="utf-8").read()
    assert bundled.splitlines() == vocab


def test_accents_are_where_mediapipe_tokenizes_otherwise(mediapipe, wordpiece_toy, text_bundle,
                                                         tmp_path):
    """An accent-stripping tokenizer reads "Café" as ``cafe``; MediaPipe keeps the accent and
    gets [UNK]: its scores are the file's on the [UNK] ids, and the check counts such texts."""
    _, encoder, vocab, _, _ = wordpiece_toy
    bundle = os.path.join(text_bundle, "model.tflite")
    texts = [f"Café {w} {w}" for w in vocab[20:28]]
    stripped = WordPieceEncoder(vocab, lowercase=True, strip_accents=True).encode(texts, SEQ)
    kept = encoder.encode(texts, SEQ)
    assert (stripped[:, 1] == vocab.index("cafe")).all() and (kept[:, 1] == 1).all()
    with open(tmp_path / "texts.json", "w", encoding="utf-8") as f:
        json.dump(texts, f)
    run_worker({"command": "classify_text", "model": bundle,
                "texts": str(tmp_path / "texts.json"), "scores": str(tmp_path / "s.npz")})
    scores = np.load(tmp_path / "s.npz")["scores"]
    np.testing.assert_allclose(scores, predict_tflite(bundle, kept), atol=1e-4)
    assert np.abs(scores - predict_tflite(bundle, stripped)).max() > 1e-3
    check = check_mediapipe_text(bundle, texts, stripped)
    assert check["texts_not_plain_ascii"] == len(texts) == check["n"]


def test_modes_and_models_mediapipe_refuses(mediapipe, wordpiece_toy, tmp_path):
    """What the bundle refuses, MediaPipe itself refuses: an int8 output, and (MediaPipe
    0.10.21's TFLite runtime) the int8 DIV of the toy's mean pooling."""
    model, encoder, vocab, (calib, _), (texts, ids, y) = wordpiece_toy
    tok = encoder.describe(SEQ)
    int8_io = export_tflite(model, tmp_path / "int8_io.tflite", "int8_io",
                            representative_data=calib[:64])
    open(tmp_path / "vocab.txt", "w", encoding="utf-8").write("\n".join(vocab) + "\n")
    written = run_worker({"command": "write_text_metadata", "model": int8_io,
                          "out": str(tmp_path / "m.tflite"), "labels": LABELS,
                          "vocab": str(tmp_path / "vocab.txt"), "ids_name": "ids",
                          "mask_name": "mask", "segment_name": "segment_ids"})
    assert written["refused"] == ("Expected output tensor at index 0 to have type UINT8 or "
                                  "FLOAT32 or BOOL, found INT8 instead.")
    out = export_android(int8_io, tmp_path / "a", LABELS, "int8_io", x_eval=ids, y_eval=y,
                         vocabulary=vocab, tokenizer=tok, texts_eval=texts)
    mp = json.load(open(os.path.join(out, "model.json")))["mediapipe"]
    assert mp["ready"] is False and mp["check"]["status"] == "skipped"
    assert "the 'int8_io' file outputs int8" in mp["reason"] == mp["check"]["reason"]
    assert open(os.path.join(out, "model.tflite"), "rb").read() == open(int8_io, "rb").read()
    int8 = export_tflite(model, tmp_path / "int8.tflite", "int8", representative_data=calib[:64])
    out = export_android(int8, tmp_path / "b", LABELS, "int8", vocabulary=vocab, tokenizer=tok)
    mp = json.load(open(os.path.join(out, "model.json")))["mediapipe"]
    assert mp["ready"] is False and mp["reason"].startswith(
        "MediaPipe 0.10.21's TextClassifier cannot run the 'int8' file: Div only supports "
        "FLOAT32, INT32 and quantized UINT8 now, got 9; Node number")
    assert open(os.path.join(out, "model.tflite"), "rb").read() == open(int8, "rb").read()
    with pytest.raises(ValueError, match=r"mediapipe=True, but MediaPipe cannot run this bundle: "
                                         r"MediaPipe 0.10.21's TextClassifier cannot run"):
        export_android(int8, tmp_path / "c", LABELS, "int8", vocabulary=vocab, tokenizer=tok,
                       mediapipe=True)
    assert not (tmp_path / "c").exists()


def test_a_text_bundle_without_texts_or_with_a_word_tokenizer_says_why(mediapipe, tmp_path):
    import kdkeras as kd
    from kdkeras.data import build_vocabulary, tokenize

    texts = ["good film", "bad film", "good good", "bad bad day"]
    vocab = build_vocabulary(texts, max_tokens=8)
    x, y = tokenize(texts, vocab, 6), np.array([1, 0, 1, 0])
    student = kd.models.build_text_student((6,), 2, vocab_size=len(vocab), embed_dim=4)
    out = export_android(student, tmp_path / "w", ["neg", "pos"], "none", vocabulary=vocab,
                         x_eval=x, y_eval=y, texts_eval=texts)
    mp = json.load(open(os.path.join(out, "model.json")))["mediapipe"]
    assert mp["ready"] is False and mp["check"]["reason"] == mp["reason"]
    assert mp["reason"].startswith("a 'word' tokenizer: MediaPipe's TextClassifier tokenizes")
    wp = SPECIAL + vocab[2:]
    ids = WordPieceEncoder(wp).encode(texts, 6)
    student = kd.models.build_text_student((6,), 2, vocab_size=len(wp), embed_dim=4)
    out = export_android(student, tmp_path / "n", ["neg", "pos"], "none", vocabulary=wp,
                         tokenizer=WordPieceEncoder(wp).describe(6), x_eval=ids, y_eval=y)
    mp = json.load(open(os.path.join(out, "model.json")))["mediapipe"]
    assert mp["ready"] is True and mp["check"]["status"] == "skipped"
    assert mp["check"]["reason"].startswith("no raw texts: pass texts_eval=")


def test_refusals_without_mediapipe(tmp_path):
    tok = WordPieceEncoder(SPECIAL + ["hi"]).describe(8)
    vocab = SPECIAL + ["hi"]
    assert text_refusal(tok, vocab) is None
    assert text_refusal(dict(tok, lowercase=False), vocab).startswith(
        "a cased WordPiece tokenizer (lowercase=False): MediaPipe's BERT preprocessing "
        "lower-cases every text")
    assert "{'cls_id': (2, '[CLS]')}" in text_refusal(tok, ["[PAD]", "[UNK]", "<s>", "[SEP]"])
    assert "on two lines" in text_refusal(tok, vocab + ["hi"])
    assert (same_ids_expected("Hello, World!\n"), same_ids_expected("naïve"),
            same_ids_expected("a\x00b")) == (True, False, False)
    cnn = export_tflite(tiny_cnn(), tmp_path / "cnn.tflite")
    info = inspect_tflite(cnn)
    assert text_file_refusal(info["inputs"], info["outputs"], "none", 4).startswith(
        "the file's inputs ['serving_default_")
    data = open(cnn, "rb").read()
    with pytest.raises(ValueError, match=r"mediapipe=True, but MediaPipe cannot run this bundle: "
                                         r"the file's inputs \['serving_default_"):
        mediapipe_text_ready(data, info["inputs"], info["outputs"], list("abcd"), vocab, tok,
                             "none", mediapipe=True)
    assert mediapipe_text_ready(data, info["inputs"], info["outputs"], list("abcd"), vocab, tok,
                                "none", mediapipe=False)[1]["reason"].startswith("mediapipe=False")
    x = np.zeros((3,) + tuple(info["inputs"][0]["shape"][1:]), np.float32)
    with pytest.raises(ValueError, match=r"texts_eval holds the raw texts of a text model's "
                                         r"x_eval.*texts_eval=3 texts, x_eval=3 rows, a model "
                                         r"without text inputs"):
        export_android(cnn, tmp_path / "a", list("abcd"), "none", x_eval=x, y_eval=np.zeros(3),
                       texts_eval=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"texts and ids must hold the same examples.*2 texts"):
        check_mediapipe_text(cnn, ["a", "b"], np.zeros((3, 4), np.int32))
    assert not (tmp_path / "a").exists()
