"""Causal LMs as .litertlm files: the prefill/decode file, the package, the LiteRT-LM runtime."""

import io
import os

import numpy as np
import pytest

from kdkeras.export.litert_lm import (
    export_litert_lm,
    hf_tokenizer_json,
    litert_lm_tflite,
    run_litert_lm,
)
from kdkeras.generation import generate, keras_next_logits
from tests.export.lm_models import PATTERN, SEQ, VOCAB, trained_toy_lm

# The special tokens take ids the toy's pattern never uses, so the end-of-document (stop)
# id does not cut the pattern short.
CLS, SEP = 14, 15
VOCABULARY = [f"tok{i}" for i in range(VOCAB)]
VOCABULARY[0], VOCABULARY[1], VOCABULARY[CLS], VOCABULARY[SEP] = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
TOKENIZER = {"type": "wordpiece", "lowercase": False, "max_length": SEQ, "cls_id": CLS,
             "sep_id": SEP, "pad_id": 0, "unk_id": 1, "eos_id": SEP, "vocabulary_size": VOCAB,
             "task": "causal_lm"}


@pytest.fixture(scope="module")
def toy():
    return trained_toy_lm()[0]


@pytest.fixture(scope="module")
def packaged(toy, tmp_path_factory):
    return export_litert_lm(toy, str(tmp_path_factory.mktemp("litertlm") / "toy.litertlm"),
                            VOCABULARY, TOKENIZER)


def test_prefill_and_decode_run_the_student_on_the_token_history(toy):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=litert_lm_tflite(toy, "none"))
    assert sorted(interp.get_signature_list()) == ["decode", "prefill"]
    prefill, decode = interp.get_signature_runner("prefill"), interp.get_signature_runner("decode")
    prompt = [SEP, 5, 9, 13]
    tokens = np.zeros((1, SEQ), np.int32)  # the runtime pads a short prefill with id 0 ...
    tokens[0, :4] = prompt
    pos = np.zeros(SEQ, np.int32)  # ... at position 0
    pos[:4] = np.arange(4)
    out = prefill(tokens=tokens, input_pos=pos, kv_cache_k_0=np.zeros((1, 1, SEQ, 1), np.float32),
                  kv_cache_v_0=np.zeros((1, 1, 1, 1), np.float32))
    window = np.zeros((1, SEQ), np.int32)
    window[0, :4] = prompt
    np.testing.assert_array_equal(out["kv_cache_k_0"].reshape(-1), window[0])
    np.testing.assert_allclose(out["logits"][0, :4], toy.predict(window, verbose=0)[0, :4],
                               atol=1e-4)
    out = decode(tokens=np.array([[2]], np.int32), input_pos=np.array([4], np.int32),
                 kv_cache_k_0=out["kv_cache_k_0"], kv_cache_v_0=out["kv_cache_v_0"])
    window[0, 4] = 2
    assert out["logits"].shape == (1, 1, VOCAB)
    np.testing.assert_allclose(out["logits"][0, 0], toy.predict(window, verbose=0)[0, 4],
                               atol=1e-4)


def test_package_holds_model_tokenizer_and_greedy_metadata(packaged, tmp_path):
    from litert_lm_builder import peek_litertlm_file, unpack

    assert os.path.getsize(packaged) < 200_000  # dynamic-range int8 weights
    folder = tmp_path / "unpacked"
    toml = open(unpack(packaged, str(folder))).read()
    assert 'model_type = "prefill_decode"' in toml and 'section_type = "HF_Tokenizer"' in toml
    listing = io.StringIO()
    peek_litertlm_file(packaged, None, output_stream=listing)
    assert "prefer_activation_type, Value (String): fp32" in listing.getvalue()
    meta = (folder / "LlmMetadataProto.pbtext").read_text()
    for line in (f"ids: {SEP}", "type: GREEDY", f"max_num_tokens: {SEQ}"):
        assert line in meta


def test_tokenizer_json_follows_the_casing_and_adds_no_special_tokens():
    from tokenizers import Tokenizer

    cased = Tokenizer.from_str(hf_tokenizer_json(VOCABULARY, TOKENIZER))
    assert cased.encode("tok5 tok9 Tok7").ids == [5, 9, 1]
    uncased = Tokenizer.from_str(hf_tokenizer_json(VOCABULARY, dict(TOKENIZER, lowercase=True)))
    assert uncased.encode("tok5 tok9 Tok7").ids == [5, 9, 7]


@pytest.mark.parametrize("change, message", [
    ({"quantization": "int8"}, "without calibration data"),
    ({"tokenizer": dict(TOKENIZER, type="sentencepiece")}, "WordPiece"),
    ({"vocabulary": VOCABULARY[:-1]}, "49 tokens"),
    ({"stop_ids": [VOCAB]}, "stop_ids"),
])
def test_refuses_what_it_cannot_package(toy, tmp_path, change, message):
    args = dict(vocabulary=VOCABULARY, tokenizer=TOKENIZER, quantization="dynamic")
    args.update(change)
    with pytest.raises(ValueError, match=message):
        export_litert_lm(toy, str(tmp_path / "x.litertlm"), args.pop("vocabulary"),
                         args.pop("tokenizer"), **args)
    assert not (tmp_path / "x.litertlm").exists()


def test_runtime_greedy_equals_keras_greedy(toy, packaged):
    pytest.importorskip("litert_lm", reason="pip install litert-lm-api")
    for length in (1, 6, 14):  # the runtime feeds [start id] + prompt; all fits in SEQ
        prompt = PATTERN[:length]
        n = SEQ - 1 - length
        result = run_litert_lm(packaged, prompt, n)
        expected = generate(keras_next_logits(toy), [SEP, *prompt], n)
        assert result.prompt_ids == prompt.tolist()
        assert result.ids == expected.tolist(), (length, result.text)
        assert result.text == " ".join(VOCABULARY[i] for i in expected)
    assert len(set(generate(keras_next_logits(toy), [SEP, 5], 14).tolist())) >= 12
    assert run_litert_lm(packaged, "tok5 tok9", 3).ids == [13, 2, 7]
    assert os.listdir(os.path.dirname(packaged)) == ["toy.litertlm"]  # no XNNPACK cache left


def test_generated_ids_read_a_continuation_piece_after_the_prompt():
    # The runtime detokenizes the generated ids alone: a first piece that continues the
    # prompt's last word comes back as "##ing ...", which tokenized alone reads as "#", "#", ...
    from tokenizers import Tokenizer

    from kdkeras.export.litert_lm import generated_ids

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "rever", "##ing", "the", "States", "#",
                  "ing", ","]
    tok = Tokenizer.from_str(hf_tokenizer_json(vocabulary, dict(
        TOKENIZER, cls_id=2, sep_id=3, eos_id=3, vocabulary_size=len(vocabulary))))
    tokenize = lambda text: tok.encode(text).ids  # noqa: E731
    text = tok.decode([5, 6, 7, 10])
    assert text.startswith("##ing the")  # what the runtime returned in the benchmark
    assert tokenize(text)[:3] == [8, 8, 9]  # the old comparison: shifted by two
    assert generated_ids(tokenize, "the rever", text) == [5, 6, 7, 10]
    assert generated_ids(tokenize, "the rever", "the States") == [6, 7]
    assert generated_ids(tokenize, "the rever", "") == []
