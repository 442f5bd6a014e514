"""Causal LMs as .tflite files: export, decoding over the file, perplexity, the app bundle."""

import json
import os

import numpy as np
import pytest

from kdkeras.export import export_tflite
from kdkeras.export.lm import (
    LM_BUNDLE_FILES,
    TFLiteLM,
    export_causal_lm,
    export_lm_bundle,
    tflite_next_logits,
    tflite_perplexity,
)
from kdkeras.export.selfcheck import ExportCheckError, check_exported
from kdkeras.generation import generate, generation_speed, keras_next_logits, perplexity
from tests.export.export_models import tiny_cnn
from tests.export.lm_models import PATTERN, SEQ, VOCAB, trained_toy_lm

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"tok{i}" for i in range(VOCAB - 4)]
TOKENIZER = {"type": "wordpiece", "lowercase": False, "max_length": SEQ, "cls_id": 2,
             "sep_id": 3, "pad_id": 0, "unk_id": 1, "eos_id": 3, "vocabulary_size": VOCAB,
             "task": "causal_lm"}


@pytest.fixture(scope="module")
def toy():
    return trained_toy_lm()


@pytest.fixture(scope="module")
def files(toy, tmp_path_factory):
    """files(mode) -> path of the toy LM exported in `mode` (int8 calibrated), cached."""
    root, cache = tmp_path_factory.mktemp("lm"), {}

    def get(mode):
        if mode not in cache:
            rep = toy[1][0][:64] if mode == "int8" else None
            cache[mode] = export_causal_lm(toy[0], str(root / f"{mode}.tflite"), mode, rep)
        return cache[mode]

    return get


def test_float32_file_is_the_keras_model_with_named_int32_io(toy, files):
    model, _, (x, y, w) = toy
    lm = tflite_next_logits(files("none"))
    assert (lm.context, lm.vocabulary_size, lm.input_name, lm.output_name) == (
        SEQ, VOCAB, "ids", "logits")
    detail = lm._interp.get_input_details()[0]
    assert detail["dtype"] == np.int32 and list(detail["shape"]) == [1, SEQ]
    np.testing.assert_allclose(lm(x[:3]), model.predict(x[:3], verbose=0), atol=1e-4)
    keras_ppl = perplexity(model, x, y, w)
    assert tflite_perplexity(files("none"), x, y, w) == pytest.approx(keras_ppl, rel=0.01)


@pytest.mark.parametrize("mode", ["none", "dynamic"])
def test_greedy_over_the_file_equals_greedy_over_keras(toy, files, mode):
    model = toy[0]
    prompt = PATTERN[:3]
    expected = generate(keras_next_logits(model), prompt, 20)
    assert len(set(expected.tolist())) >= 15  # a real continuation, not one token repeated
    np.testing.assert_array_equal(generate(tflite_next_logits(files(mode)), prompt, 20), expected)
    long_prompt = np.tile(PATTERN, 2)[:SEQ + 3]  # decoding past the context: sliding window
    np.testing.assert_array_equal(generate(tflite_next_logits(files(mode)), long_prompt, 20),
                                  generate(keras_next_logits(model), long_prompt, 20))


def test_dynamic_is_smaller_and_keeps_perplexity(toy, files):
    model, _, (x, y, w) = toy
    assert os.path.getsize(files("dynamic")) < 0.7 * os.path.getsize(files("none"))
    assert tflite_perplexity(files("dynamic"), x, y, w) == pytest.approx(
        perplexity(model, x, y, w), rel=0.05)
    speed = generation_speed(tflite_next_logits(files("dynamic")), PATTERN[:3], 5)
    assert speed > 0 and np.isfinite(speed)


def test_full_int8_with_representative_ids_exports_and_stays_close(toy, files):
    model, train, (x, y, w) = toy
    # Measured: per-token logits move by up to ~4 (the softmax and logits are int8 too), but
    # the top-1 token agrees on ~98% of positions and the perplexity stays within ~2%.
    assert tflite_perplexity(files("int8"), x, y, w) == pytest.approx(
        perplexity(model, x, y, w), rel=0.1)
    with pytest.raises(ValueError, match="needs representative_data"):
        export_causal_lm(model, os.path.join(os.path.dirname(files("none")), "x.tflite"), "int8")


def test_non_lm_models_and_bad_representative_windows_are_refused(toy, tmp_path):
    model = toy[0]
    with pytest.raises(ValueError,
                       match=r"needs a causal LM.*inputs \(None, 8, 8, 1\), outputs \(None, 4\)"):
        export_causal_lm(tiny_cnn(), tmp_path / "a.tflite")
    with pytest.raises(ValueError, match=rf"int ids \[N, {SEQ}\]"):
        export_causal_lm(model, tmp_path / "a.tflite", representative=np.zeros((4, SEQ + 1), int))
    with pytest.raises(ValueError, match=rf"outside \[0, {VOCAB}\)"):
        export_causal_lm(model, tmp_path / "a.tflite", "int8",
                         representative=np.full((4, SEQ), VOCAB))
    assert not os.listdir(tmp_path)


def test_self_check_compares_per_token_on_real_positions(files):
    data = open(files("none"), "rb").read()
    x = np.random.default_rng(0).integers(1, VOCAB, (8, SEQ)).astype(np.int32)
    good = TFLiteLM(files("none"))
    assert check_exported(data, good, x)["agreement"] == 1.0

    def shifted(ids):  # the top-1 token moved by one at every position
        return np.roll(good(ids), 1, axis=-1)

    with pytest.raises(ExportCheckError, match="token positions"):
        check_exported(data, shifted, x)
    padded = x.copy()
    padded[:, 4:] = 0

    def wrong_on_padding(ids):  # only padding positions disagree: not counted
        out = good(ids)
        out[ids == 0] = np.roll(out[ids == 0], 1, axis=-1)
        return out

    assert check_exported(data, wrong_on_padding, padded)["agreement"] == 1.0


def test_tflite_lm_refuses_other_files_and_bad_ids(files, tmp_path):
    clf = export_tflite(tiny_cnn(), tmp_path / "clf.tflite")
    with pytest.raises(ValueError, match="not a causal-LM file"):
        TFLiteLM(clf)
    with pytest.raises(ValueError, match=rf"int ids \[B, {SEQ}\]"):
        TFLiteLM(files("none"))(np.zeros((1, SEQ), np.float32))
    with pytest.raises(FileNotFoundError):
        tflite_next_logits(str(tmp_path / "missing.tflite"))


def test_bundle_holds_the_file_vocabulary_and_spec(files, tmp_path):
    out = export_lm_bundle(files("dynamic"), tmp_path / "bundle", VOCABULARY, TOKENIZER)
    assert sorted(os.listdir(out)) == sorted(LM_BUNDLE_FILES)
    assert open(os.path.join(out, "model.tflite"), "rb").read() == \
        open(files("dynamic"), "rb").read()
    assert open(os.path.join(out, "vocab.txt")).read().splitlines() == VOCABULARY
    spec = json.load(open(os.path.join(out, "model.json")))
    assert (spec["task"], spec["context_length"], spec["vocabulary_size"]) == (
        "causal_lm", SEQ, VOCAB)
    assert spec["special_tokens"] == {"cls": 2, "eos": 3, "pad": 0, "sep": 3, "unk": 1}
    assert spec["tokenizer"]["vocabulary_file"] == "vocab.txt"
    assert spec["tokenizer"]["max_length"] == SEQ
    assert [(t["name"], t["shape"], t["dtype"]) for t in spec["inputs"]] == [
        ("ids", [-1, SEQ], "int32")]
    assert [(t["name"], t["shape"], t["dtype"]) for t in spec["outputs"]] == [
        ("logits", [-1, SEQ, VOCAB], "float32")]
    assert spec["size_bytes"] == os.path.getsize(files("dynamic"))


def test_bundle_refuses_mismatched_vocabulary_tokenizer_and_folder(files, tmp_path):
    path = files("none")
    with pytest.raises(ValueError, match=f"has {VOCAB - 1} tokens but the model's logits have "
                                         f"{VOCAB}"):
        export_lm_bundle(path, tmp_path / "b", VOCABULARY[:-1], TOKENIZER)
    with pytest.raises(ValueError, match="non-empty one-line"):
        export_lm_bundle(path, tmp_path / "b", VOCABULARY[:-1] + ["a\nb"], TOKENIZER)
    with pytest.raises(ValueError, match=rf"tokenizer\['max_length'\] is 8 but the file has {SEQ}"):
        export_lm_bundle(path, tmp_path / "b", VOCABULARY, dict(TOKENIZER, max_length=8))
    with pytest.raises(ValueError, match=r"\['eos_id'\] must be a token id in \[0, 50\)"):
        export_lm_bundle(path, tmp_path / "b", VOCABULARY, dict(TOKENIZER, eos_id=50))
    with pytest.raises(ValueError, match="tokenizer must be a dict"):
        export_lm_bundle(path, tmp_path / "b", VOCABULARY, None)
    assert not os.path.exists(tmp_path / "b")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="notes.txt"):
        export_lm_bundle(path, tmp_path / "mine", VOCABULARY, TOKENIZER)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_bundle_checks_context_length_and_writes_plain_json(files, tmp_path):
    path = files("none")
    with pytest.raises(ValueError, match=rf"tokenizer\['context_length'\] is 128 but the file "
                                         rf"has {SEQ}"):
        export_lm_bundle(path, tmp_path / "b", VOCABULARY, dict(TOKENIZER, context_length=128))
    with pytest.raises(ValueError, match=r"\['unk_id'\] must be a token id .* unk_id=True"):
        export_lm_bundle(path, tmp_path / "b", VOCABULARY, dict(TOKENIZER, unk_id=True))
    numpy_tokenizer = dict(TOKENIZER, pad_id=np.int64(0), vocabulary_size=np.int64(VOCAB),
                           lowercase=np.bool_(False), context_length=np.int32(SEQ))
    out = export_lm_bundle(path, tmp_path / "b", VOCABULARY, numpy_tokenizer)
    spec = json.load(open(os.path.join(out, "model.json")))
    assert spec["tokenizer"]["context_length"] == spec["context_length"] == SEQ
    assert spec["tokenizer"]["lowercase"] is False and spec["special_tokens"]["pad"] == 0
    without = {k: v for k, v in TOKENIZER.items() if k != "context_length"}
    spec = json.load(open(os.path.join(export_lm_bundle(path, tmp_path / "c", VOCABULARY,
                                                        without), "model.json")))
    assert spec["tokenizer"]["context_length"] == SEQ  # filled in from the file


def test_second_bundle_in_the_same_folder_replaces_the_first_cleanly(files, tmp_path):
    folder = tmp_path / "bundle"
    export_lm_bundle(files("none"), folder, VOCABULARY, TOKENIZER)
    other = VOCABULARY[:4] + [f"new{i}" for i in range(VOCAB - 4)]
    export_lm_bundle(files("dynamic"), folder, other, TOKENIZER)
    assert sorted(os.listdir(folder)) == sorted(LM_BUNDLE_FILES)
    assert sorted(os.listdir(tmp_path)) == ["bundle"]  # no temporary or backup folder left
    assert open(folder / "vocab.txt").read().splitlines() == other
    assert open(folder / "model.tflite", "rb").read() == open(files("dynamic"), "rb").read()
