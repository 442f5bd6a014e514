"""The ``strategy`` key of ``kdkeras run``: the names, the TPU and multi-worker refusals, the
chief rule, and the pipeline's training under ``MirroredStrategy``."""

import json

import pytest
import tensorflow as tf

from kdkeras.pipeline import RunConfig, default_toml
from kdkeras.pipeline.strategy import STRATEGIES, is_chief, make_strategy


@pytest.mark.parametrize("name,match", [
    ("gpu", r"Unknown strategy 'gpu'\. Known: default, mirrored, multi_worker, tpu\. "
            r"Received: strategy='gpu'"),
    ("mirror", r"Unknown strategy 'mirror'\. Did you mean 'mirrored'\? Known: default, "
               "mirrored, multi_worker, tpu"),
    ("MultiWorkerMirroredStrategy", r"Known: default, mirrored, multi_worker, tpu"),
])
def test_unknown_strategy_is_refused_with_the_list(name, match):
    with pytest.raises(ValueError, match=match):
        RunConfig.from_dict({"strategy": name})
    with pytest.raises(ValueError, match=match):
        make_strategy(name)


def test_strategy_must_be_a_string():
    with pytest.raises(TypeError, match="'strategy' must be a string. Received: strategy=2"):
        RunConfig.from_dict({"strategy": 2})


def test_init_writes_the_key_with_its_doc(tmp_path):
    text = default_toml()
    lines = text.splitlines()
    at = lines.index('strategy = "default"')
    doc = " ".join(line[2:] for line in lines[at - 5:at] if line.startswith("# "))
    assert all(name in doc for name in STRATEGIES) and "TF_CONFIG" in doc
    path = tmp_path / "run.toml"
    path.write_text(text.replace('strategy = "default"', 'strategy = "mirrored"'))
    assert RunConfig.from_toml(path).strategy == "mirrored"
    assert RunConfig().strategy == "default"


def test_tpu_without_a_tpu_names_the_fix(monkeypatch):
    for var in ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match=r'strategy = "tpu" found no TPU \(.+\)\. On Colab '
                                           r"choose Runtime > Change runtime type > a TPU.*"
                                           r'TPU_NAME.*strategy = "mirrored"'):
        make_strategy("tpu")


def test_multi_worker_without_tf_config_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=r'"multi_worker" reads its cluster from the TF_CONFIG '
                                         r"environment variable, which is not set.*\"index\": I"):
        make_strategy("multi_worker")


def resolver(monkeypatch, cluster, task_type, index):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                               "task": {"type": task_type, "index": index}}))
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def test_chief_rule_is_tensorflows(monkeypatch):
    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    with_chief = {"chief": ["127.0.0.1:3"], **workers}
    assert is_chief(None)
    assert is_chief(resolver(monkeypatch, workers, "worker", 0))
    assert not is_chief(resolver(monkeypatch, workers, "worker", 1))
    assert is_chief(resolver(monkeypatch, with_chief, "chief", 0))
    assert not is_chief(resolver(monkeypatch, with_chief, "worker", 0))


def test_mirrored_pipeline_trains_like_one_device(tmp_path):
    """``strategy = "mirrored"`` builds and fits the pipeline's models under a two-replica
    MirroredStrategy (two logical CPUs), and gives the weights of a one-device run on the same
    global batches. In a process of its own (:mod:`tests.pipeline.mirrored_job`): a collective
    op aborted by an earlier test of the suite poisons later MirroredStrategies in-process."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run([sys.executable, "-m", "tests.pipeline.mirrored_job", str(tmp_path)],
                              cwd=root, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the mirrored job hung: {err.stderr[-3000:] if err.stderr else ''}")
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["max_weight_gap"] < 1e-3
