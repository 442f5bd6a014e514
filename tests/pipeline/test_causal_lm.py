"""``kdkeras run`` with ``task = "causal_lm"``: a tiny GPT run end to end on a synthetic corpus,
resumed, its report and bundle, and the configs it refuses."""

import json

import numpy as np
import pytest

from kdkeras.pipeline import RunConfig, run
from kdkeras.pipeline import graph as G
from tests.pipeline.runs import Log

WORDS = ("the nation people congress states union year government world peace war law "
         "freedom work economy trade tax budget health school future america we our must "
         "will can have has been and of to in for on with").split()
STAGES = ["data", "teacher", "logits", "scratch", "distill", "prune", "export", "verify",
          "android"]


def corpus(folder, documents=12, sentences=30, seed=0):
    """A folder of ``documents`` .txt files of random sentences over :data:`WORDS`."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(documents):
        text = "\n".join(" ".join(rng.choice(WORDS, rng.integers(4, 10))).capitalize() + "."
                         for _ in range(sentences))
        (folder / f"doc{i:02d}.txt").write_text(text, encoding="utf-8")
    return folder


def tiny(source, **changes) -> RunConfig:
    base = {"task": "causal_lm", "batch_size": 16, "min_steps": 0,
            "data": {"source": str(source), "sequence_length": 16, "vocabulary_size": 120,
                     "test_every": 4, "teacher_tokens": 0, "train_tokens": 0,
                     "test_tokens": 400},
            "teacher": {"epochs": 2, "kwargs": {"width": 32, "depth": 1, "heads": 2}},
            "student": {"kwargs": {"width": 16, "depth": 1, "heads": 2}},
            "distill": {"epochs": 1, "learning_rate": 3e-3, "top_k": 8},
            "prune": {"epochs": 1, "sparsity": 0.5},
            "verify": {"latency_runs": 3, "greedy_tokens": 8}}
    for key, value in changes.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return RunConfig.from_dict(base)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One run, then the same run again (which must reuse every stage)."""
    root = tmp_path_factory.mktemp("lm")
    cfg = tiny(corpus(root / "corpus"))
    first, second = Log(), Log()
    report = run(cfg, root / "out", log=first)
    again = run(cfg, root / "out", log=second)
    return cfg, root / "out", report, again, first, second


@pytest.mark.slow
def test_a_causal_lm_run_measures_every_model_by_perplexity(finished):
    cfg, out, report, _, first, _ = finished
    names = [m["name"] for m in report["models"]]
    assert names == ["teacher", "student_scratch", "student_distilled", "student_pruned",
                     "student_tflite_dynamic"]
    vocab = report["dataset_info"]["vocabulary_size"]
    for m in report["models"]:
        assert 1 < m["perplexity"] < vocab, m  # better than a uniform guess over the pieces
        assert m["tokens_per_s"] > 0 and m["size_bytes"] > 0
    v = report["verify"]
    assert v["perplexity_increase"] <= cfg.verify.max_perplexity_increase
    assert v["greedy_equal"] == v["greedy_tokens"] == 8
    assert report["cache"]["top_k"] == [8] and report["cache"]["tail"] == "sampled"
    ratio = report["cache"]["full_logit_bytes"] / report["cache"]["bytes"]["8"]
    assert ratio == pytest.approx(vocab * 4 / (6 * 8 + 4))  # float32 logits vs top-8 targets
    assert json.loads((out / "report.json").read_text())["task"] == "causal_lm"
    md = (out / "report.md").read_text()
    png = (out / "report.png").read_bytes()  # perplexity vs size and vs speed
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "| perplexity |" in md.replace("| model | format | perplexity |", "| perplexity |")
    assert "## Samples" in md and "student_pruned" in md and "Distillation:" in md
    assert "top-4 probabilities and 4 tokens drawn from the rest" in md
    assert not any("qat" in line or "teacher_tflite" in line for line in first)


@pytest.mark.slow
def test_the_bundle_holds_the_tokenizer_and_the_context(finished):
    cfg, out, report, *_ = finished
    spec = json.loads((out / "android" / "model.json").read_text())
    vocab = (out / "android" / "vocab.txt").read_text().splitlines()
    assert spec["task"] == "causal_lm" and spec["context_length"] == 16
    assert spec["vocabulary_size"] == len(vocab) == report["dataset_info"]["vocabulary_size"]
    assert spec["special_tokens"]["eos"] == vocab.index("[SEP]")
    assert (out / "android" / "model.tflite").read_bytes() == \
        (out / "student_tflite_dynamic.tflite").read_bytes()


@pytest.mark.slow
def test_a_second_run_reuses_every_stage(finished):
    _, _, report, again, _, second = finished
    assert second.reused() == STAGES
    assert [m["perplexity"] for m in again["models"]] == \
        pytest.approx([m["perplexity"] for m in report["models"]])


@pytest.mark.slow
def test_a_changed_cache_is_redone_and_another_teachers_refused(finished, tmp_path):
    import shutil

    cfg, out, *_ = finished
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    meta = copy / "teacher_topk" / "cache.json"
    data = json.loads(meta.read_text())
    data["identity"]["teacher"] = "0" * 16
    meta.write_text(json.dumps(data))
    # the manifest still matches only if the file is the one written: the runner redoes the
    # stage (a changed artifact); opening the cache directly names the other teacher
    from kdkeras.distill import TopKShards

    with pytest.raises(ValueError, match="another teacher"):
        TopKShards.open(copy / "teacher_topk", 8, expect={"teacher": "1" * 16})
    log = Log()
    run(cfg, copy, log=log)
    assert any("teacher_topk/cache.json is not the file this stage wrote" in line for line in log)


def test_the_stage_table_of_causal_lm(tmp_path):
    cfg = tiny(corpus(tmp_path / "c"))
    assert [s.name for s in G.enabled_stages(cfg)] == STAGES + ["report"]
    assert cfg.export.quantization == "dynamic" and not cfg.qat.enabled
    assert not cfg.export.teacher_tflite
    off = tiny(tmp_path / "c", prune={"enabled": False}, export={"android": False})
    assert G.needs(off, "export") == ("distill",)
    assert "android" not in [s.name for s in G.enabled_stages(off)]
    assert G.stage_keys(cfg)["teacher"] != G.stage_keys(tiny(
        tmp_path / "c", data={"teacher_tokens": 100}))["teacher"]
    assert G.stage_keys(cfg)["data"] == G.stage_keys(tiny(
        tmp_path / "c", data={"teacher_tokens": 100}))["data"]
    assert RunConfig.from_dict({"data": {"source": "digits"}}).task == "classification"


@pytest.mark.parametrize("changes, key", [
    ({"task": "causal_llm"}, "Unknown task 'causal_llm'. Did you mean 'causal_lm'"),
    ({"distill": {"top_k": 500}}, "distill.top_k = 500 is more than the vocabulary"),
    ({"qat": {"enabled": True}}, "qat.enabled = true"),
    ({"export": {"teacher_tflite": True}}, "export.teacher_tflite = true"),
    ({"teacher": {"builder": "bert"}}, "teacher.builder = 'bert'"),
    ({"student": {"kwargs": {"filters": 3}}}, "student.kwargs: the gpt builder takes no"),
    ({"data": {"n_train": 100}}, "data.n_train is not read"),
    ({"data": {"test_every": 1}}, "data.test_every"),
])
def test_bad_causal_lm_configs_are_refused_naming_the_key(tmp_path, changes, key):
    source = corpus(tmp_path / "c", documents=4, sentences=2)
    with pytest.raises(ValueError, match=key.replace("(", r"\(").replace(".", r"\.")):
        tiny(source, **changes)


def test_top_k_is_checked_against_a_given_vocabulary_file(tmp_path):
    source = corpus(tmp_path / "c", documents=4, sentences=2)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + WORDS) + "\n")
    with pytest.raises(ValueError, match="data.wordpiece has 41 pieces"):
        tiny(source, data={"wordpiece": str(vocab)}, distill={"top_k": 42})
    assert tiny(source, data={"wordpiece": str(vocab)}, distill={"top_k": 41}).distill.top_k == 41


def test_init_writes_a_causal_lm_config_that_reads_back(tmp_path):
    from kdkeras import cli

    path = tmp_path / "lm.toml"
    assert cli.main(["init", str(path), "--task", "causal_lm"]) == 0
    cfg = RunConfig.from_toml(path)
    assert cfg == RunConfig.from_dict({"task": "causal_lm", "data": {"source": "sotu"}})
    assert (cfg.data.source, cfg.export.quantization, cfg.distill.top_k) == ("sotu", "dynamic", 32)
    # The benchmark's recipe: batches of 8 windows (888 student steps), unless the config says.
    assert cfg.batch_size == 8 and "batch_size = 8" in path.read_text()
    assert RunConfig.from_dict({"task": "causal_lm", "batch_size": 32,
                                "data": {"source": "sotu"}}).batch_size == 32
    assert RunConfig.from_dict({}).batch_size == 128  # a classification run keeps its own


@pytest.mark.parametrize("verify, message", [
    ({"perplexity": 11.0, "keras_perplexity": 10.0, "perplexity_increase": 0.1,
      "greedy_tokens": 0}, "10.00% above its Keras model's"),
    ({"perplexity": 10.0, "keras_perplexity": 10.0, "perplexity_increase": 0.0,
      "greedy_tokens": 8, "greedy_equal": 3, "greedy_keras": "a b", "greedy_tflite": "a c"},
     "after 3 of verify.greedy_tokens = 8"),
])
def test_a_file_worse_than_its_keras_model_fails_the_run(tmp_path, verify, message):
    from kdkeras.pipeline import VerificationError

    cfg = tiny(corpus(tmp_path / "c", documents=4, sentences=2))
    with pytest.raises(VerificationError, match=message):
        G.check_run(cfg, verify, tmp_path)
    G.check_run(cfg, {**verify, "perplexity_increase": 0.01, "greedy_equal": 8}, tmp_path)
