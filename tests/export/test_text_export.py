"""Text students on phones: the ids/mask/segment_ids layout, its modes, bundle and pruning."""

import json
import os

import numpy as np
import pytest
import tf_keras as keras

from kdkeras.export import (
    benchmark_tflite,
    evaluate_tflite,
    export_android,
    export_tflite,
    inspect_tflite,
    predict_tflite,
)
from kdkeras.export.text import (
    TEXT_INPUTS,
    embedding_rows,
    finalize_text_file,
    resolve_text_inputs,
    text_feeds,
    text_layout,
    text_phone_model,
)
from kdkeras.export.tflite_info import weight_sparsity
from tests.export.export_models import tiny_cnn
from tests.export.text_models import SEQ, VOCAB, toy_text_data, toy_text_student, trained_toy

TOKENIZER = {"type": "wordpiece", "lowercase": True, "max_length": SEQ, "cls_id": 1,
             "sep_id": 2, "pad_id": 0, "unk_id": 3, "vocabulary_size": VOCAB}
VOCABULARY = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"] + [f"tok{i}" for i in range(VOCAB - 4)]


@pytest.fixture(scope="module")
def toy():
    """(model, x_calib, x_test, y_test), trained to ~90% on the toy task."""
    return trained_toy()


@pytest.fixture(scope="module")
def float_file(toy, tmp_path_factory):
    return export_tflite(toy[0], tmp_path_factory.mktemp("text") / "f32.tflite")


def _signature_run(path, ids, mask, segment_ids):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner()
    return runner(ids=ids, mask=mask, segment_ids=segment_ids)["output"]


# ------------------------------------------------------------------------- the wrapper


def test_layout_is_detected_and_text_inputs_true_refuses_other_models():
    import keras as keras3

    assert text_layout(toy_text_student()) == "ids"
    assert text_layout(text_phone_model(toy_text_student())) == "phone"
    assert text_layout(tiny_cnn()) is None
    assert text_layout(keras3.Sequential([keras3.Input((6,), dtype="int32"),
                                          keras3.layers.Embedding(5, 2)])) is None
    assert resolve_text_inputs(toy_text_student(), False) is None
    with pytest.raises(ValueError, match=r"text_inputs=True needs a tf-keras text student.*"
                                         r"\(None, 8, 8, 1\), 'float32'"):
        resolve_text_inputs(tiny_cnn(), True)
    with pytest.raises(ValueError, match="text_inputs=1"):
        resolve_text_inputs(tiny_cnn(), 1)


def test_phone_model_shares_weights_honours_mask_and_ignores_segments():
    student = toy_text_student()
    phone = text_phone_model(student)
    assert phone.input_names == list(TEXT_INPUTS) and phone.output_names == ["output"]
    assert all(t.dtype == "int32" and tuple(t.shape) == (None, SEQ) for t in phone.inputs)
    assert {id(w) for w in student.weights} == {id(w) for w in phone.weights}
    ids, _ = toy_text_data(4)
    feeds = text_feeds(ids)
    np.testing.assert_allclose(phone.predict(feeds, verbose=0), student.predict(ids, verbose=0),
                               atol=1e-6)
    feeds["mask"][:, 2:] = 0  # the app masks all but [CLS] and the first piece
    feeds["segment_ids"][:] = 1
    cut = ids.copy()
    cut[:, 2:] = 0
    np.testing.assert_allclose(phone.predict(feeds, verbose=0), student.predict(cut, verbose=0),
                               atol=1e-6)
    assert text_phone_model(student, batch_size=1).inputs[0].shape[0] == 1
    with pytest.raises(ValueError, match="batch_size=4"):
        text_phone_model(student, batch_size=4)


def test_text_feeds_refuses_floats():
    with pytest.raises(ValueError, match=r"int token ids of shape \[N, T\].*float"):
        text_feeds(np.zeros((2, 3), np.float32))


# ------------------------------------------------------------------------ the file


def test_float_file_inputs_are_named_ordered_and_signed(float_file):
    info = inspect_tflite(float_file)
    assert [(t["name"], t["dtype"], t["shape_signature"]) for t in info["inputs"]] == [
        (n, "int32", [-1, SEQ]) for n in TEXT_INPUTS]
    assert [t["name"] for t in info["outputs"]] == ["output"]
    from ai_edge_litert.interpreter import Interpreter

    assert Interpreter(model_path=float_file).get_signature_list() == {
        "serving_default": {"inputs": list(TEXT_INPUTS), "outputs": ["output"]}}
    data = open(float_file, "rb").read()
    assert finalize_text_file(data) == data  # idempotent
    assert embedding_rows(data) == VOCAB


def test_file_is_fed_from_ids_and_honours_the_apps_mask(toy, float_file):
    model, _, x, y = toy
    np.testing.assert_allclose(predict_tflite(float_file, x, batch_size=50),
                               model.predict(x, verbose=0), atol=1e-5)
    res = evaluate_tflite(float_file, x, y, keras_model=model)
    assert res["agreement_with_keras"] == 1.0 and res["accuracy"] == res["keras_accuracy"] > 0.7
    feeds = text_feeds(x[:1])
    feeds["mask"][:, 3:] = 0
    cut = x[:1].copy()
    cut[:, 3:] = 0
    np.testing.assert_allclose(_signature_run(float_file, **feeds),
                               model.predict(cut, verbose=0), atol=1e-5)
    assert benchmark_tflite(float_file, runs=5, x=x[:1]).median_ms > 0
    assert benchmark_tflite(float_file, runs=5).runs == 5
    with pytest.raises(ValueError, match="text model.*int token ids"):
        predict_tflite(float_file, x.astype(np.float32))


def test_text_inputs_false_keeps_the_single_ids_input(toy, tmp_path):
    model, _, x, _ = toy
    path = export_tflite(model, tmp_path / "ids.tflite", text_inputs=False)
    assert [t["dtype"] for t in inspect_tflite(path)["inputs"]] == ["int32"]
    np.testing.assert_allclose(predict_tflite(path, x[:8]), model.predict(x[:8], verbose=0),
                               atol=1e-5)


def test_phone_model_converts_as_it_is(toy, tmp_path):
    model, calib, x, _ = toy
    path = export_tflite(text_phone_model(model), tmp_path / "p.tflite",
                         representative_data=calib[:16])
    assert [t["name"] for t in inspect_tflite(path)["inputs"]] == list(TEXT_INPUTS)
    np.testing.assert_allclose(predict_tflite(path, x[:8]), model.predict(x[:8], verbose=0),
                               atol=1e-5)


def test_int8_keeps_int32_inputs_and_agrees(toy, tmp_path):
    # Calibration feeds dicts: a list would reach the converter's input order (ids,
    # segment_ids, mask), which halved the toy's accuracy.
    model, calib, x, y = toy
    path = export_tflite(model, tmp_path / "int8.tflite", "int8", representative_data=calib[:64])
    info = inspect_tflite(path)
    assert [t["dtype"] for t in info["inputs"]] == ["int32"] * 3
    assert info["outputs"][0]["dtype"] == "float32" and info["op_counts"]["QUANTIZE"] >= 1
    assert evaluate_tflite(path, x, y, keras_model=model)["agreement_with_keras"] >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize("mode,out_dtype", [("float16", "float32"), ("dynamic", "float32"),
                                            ("int8_io", "int8"),
                                            ("dynamic_wi8_afp32", "float32"),
                                            ("static_wi8_ai8", "int8")])
def test_every_mode_exports_a_text_file(toy, tmp_path, mode, out_dtype):
    model, calib, x, y = toy
    path = export_tflite(model, tmp_path / f"{mode}.tflite", mode, representative_data=calib[:64])
    info = inspect_tflite(path)
    assert [(t["name"], t["dtype"]) for t in info["inputs"]] == [(n, "int32") for n in TEXT_INPUTS]
    assert info["outputs"][0]["dtype"] == out_dtype
    assert evaluate_tflite(path, x, y, keras_model=model)["agreement_with_keras"] >= 0.8


# ---------------------------------------------------------------------- Android bundle


def test_android_bundle_for_text(toy, float_file, tmp_path):
    model, _, x, y = toy
    out = export_android(float_file, tmp_path / "app", ["neg", "neu", "pos"], "none",
                         x_eval=x, y_eval=y, vocabulary=VOCABULARY, tokenizer=TOKENIZER)
    assert sorted(os.listdir(out)) == ["labels.txt", "model.json", "model.tflite", "vocab.txt"]
    assert open(os.path.join(out, "vocab.txt"), encoding="utf-8").read().split("\n")[:3] == [
        "[PAD]", "[CLS]", "[SEP]"]
    spec = json.load(open(os.path.join(out, "model.json")))
    assert spec["tokenizer"] == dict(TOKENIZER, vocabulary_file="vocab.txt")
    assert [(t["name"], t["shape"], t["dtype"]) for t in spec["inputs"]] == [
        (n, [-1, SEQ], "int32") for n in TEXT_INPUTS]
    assert "normalization" not in spec and spec["vocabulary_file"] == "vocab.txt"
    assert spec["accuracy"] == pytest.approx(
        evaluate_tflite(float_file, x, y)["accuracy"])


def test_android_text_refusals_leave_no_bundle(float_file, tmp_path):
    labels = ["neg", "neu", "pos"]
    out = tmp_path / "app"
    cases = [
        (dict(vocabulary=VOCABULARY[:-1], tokenizer=TOKENIZER),
         f"{VOCAB - 1} tokens but tokenizer\\['vocabulary_size'\\] is {VOCAB}"),
        (dict(vocabulary=VOCABULARY[:100], tokenizer=dict(TOKENIZER, vocabulary_size=100)),
         f"100 tokens but the model's embedding takes {VOCAB} token ids"),
        (dict(vocabulary=VOCABULARY, tokenizer=dict(TOKENIZER, max_length=8)),
         f"max_length'\\] is 8 but the model takes sequences of {SEQ}"),
        (dict(tokenizer=TOKENIZER), "needs vocabulary="),
        (dict(vocabulary=VOCABULARY, tokenizer=TOKENIZER, normalization={"mean": 0, "std": 255}),
         "no normalization applies"),
        (dict(vocabulary=VOCABULARY[:4] + [""] + VOCABULARY[5:], tokenizer=TOKENIZER),
         r"\(4, ''\)"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            export_android(float_file, out, labels, "none", **kwargs)
        assert not out.exists() and os.listdir(tmp_path) == []
    cnn = export_tflite(tiny_cnn(), tmp_path / "cnn.tflite")
    with pytest.raises(ValueError, match="no text inputs"):
        export_android(cnn, out, ["a", "b", "c", "d"], "none", vocabulary=VOCABULARY,
                       tokenizer=TOKENIZER)
    assert not out.exists()


def test_android_bundle_from_a_keras_text_student(toy, tmp_path):
    model, calib, _, _ = toy
    out = export_android(model, tmp_path / "app", ["neg", "neu", "pos"], "dynamic",
                         vocabulary=VOCABULARY, tokenizer=TOKENIZER)
    spec = json.load(open(os.path.join(out, "model.json")))
    assert spec["quantization"] == "dynamic" and spec["input"]["name"] == "ids"


# ------------------------------------------------------------------------------ pruning


@pytest.mark.slow
def test_pruned_transformer_keeps_its_zeros_in_the_int8_file(toy, tmp_path):
    from kdkeras.compress import ensure_pruning_callbacks, prune, sparsity_report, strip

    model, calib, x, y = toy
    pruned = prune(model, target_sparsity=0.5, schedule="constant", frequency=1,
                   skip=("output",))
    wrapped = {l.name for l in pruned.layers if type(l).__name__ == "PruneLowMagnitude"}
    assert "prune_low_magnitude_attention" in wrapped  # MultiHeadAttention kernels
    pruned.compile(keras.optimizers.Adam(1e-3),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    _, y_calib = toy_text_data(len(calib) + 128)
    pruned.fit(calib, y_calib[: len(calib)], epochs=1, batch_size=32, verbose=0,
               callbacks=ensure_pruning_callbacks(pruned))
    small = strip(pruned)
    assert sparsity_report(small).layers[3].name == "attention"
    path = export_tflite(pruned, tmp_path / "pruned.tflite", "int8",
                         representative_data=calib[:64])
    kernels = weight_sparsity(open(path, "rb").read())  # the 96-weight classifier: too small
    assert len(kernels) == 8  # q, k, v, o, ffn_in, ffn_out, token and position tables
    assert all(v["dtype"] == "int8" and v["sparsity"] == pytest.approx(0.5, abs=0.01)
               for v in kernels.values()), kernels
    assert evaluate_tflite(path, x, y, keras_model=small)["agreement_with_keras"] >= 0.8


def test_android_bundle_of_a_word_level_student_from_its_split_vocabulary(tmp_path):
    """A word-level SplitData.vocabulary ("" at id 0) bundles as it is: vocab.txt writes the
    padding token [PAD], model.json describes the word tokenizer kdkeras.data.tokenize uses."""
    import kdkeras as kd
    from kdkeras.data import build_vocabulary, tokenize

    texts = ["good film", "bad film", "good good", "bad bad day"]
    vocab = build_vocabulary(texts, max_tokens=8)
    x, y = tokenize(texts, vocab, 6), np.array([1, 0, 1, 0])
    student = kd.models.build_text_student((6,), 2, vocab_size=len(vocab), embed_dim=4)
    out = export_android(student, str(tmp_path / "android"), labels=["neg", "pos"],
                         quantization="none", vocabulary=vocab, x_eval=x, y_eval=y)
    lines = (tmp_path / "android" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert lines == ["[PAD]"] + vocab[1:] and len(lines) == len(vocab)
    tok = json.loads((tmp_path / "android" / "model.json").read_text())["tokenizer"]
    assert (tok["type"], tok["max_length"], tok["vocabulary_size"], tok["unk_id"]) == \
        ("word", 6, len(vocab), 1)
    assert os.path.isdir(out)
