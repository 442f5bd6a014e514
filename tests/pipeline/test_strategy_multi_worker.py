"""``kdkeras run`` with ``strategy = "multi_worker"``: two worker processes (``TF_CONFIG`` on
free 127.0.0.1 ports, each with its own ``--out``, as on two hosts) train the pipeline together;
only the chief writes its ``--out``, the other worker's files go to a temporary folder that is
deleted at the end; the chief's models are those of a one-device run."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from kdkeras.models import load_model
from kdkeras.pipeline.runner import Runner
from kdkeras.pipeline.toml_format import config_toml
from tests.distill.test_multi_worker import ROOT, free_ports, wait_all
from tests.pipeline.runs import tiny

CLI = "import sys; from kdkeras.cli import main; sys.exit(main(sys.argv[1:]))"


def epoch_losses(log: str) -> list:
    return re.findall(r"(\w+): epoch \d+/\d+ loss ([0-9.]+)", log)


@pytest.mark.slow  # two processes that each start TensorFlow and run the pipeline
def test_two_workers_run_the_pipeline_and_only_the_chief_writes(tmp_path):
    cfg = tiny(strategy="multi_worker", data={"n_train": 256, "n_test": 128},
               teacher={"builder": "mlp", "epochs": 2}, student={"builder": "mlp"},
               scratch={"enabled": False}, prune={"enabled": False}, qat={"enabled": False},
               export={"enabled": False}, verify={"enabled": False})
    config = tmp_path / "run.toml"
    config.write_text("\n".join(config_toml(cfg.to_dict())) + "\n")
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    outs = [tmp_path / "out0", tmp_path / "out1"]
    temps = [tmp_path / "tmp0", tmp_path / "tmp1"]
    procs = []
    for i in range(2):
        temps[i].mkdir()
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1",
                   TMPDIR=str(temps[i]), TF_CONFIG=json.dumps(
                       {"cluster": cluster, "task": {"type": "worker", "index": i}}))
        with open(tmp_path / f"worker{i}.log", "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", CLI, "run", str(config), "--out", str(outs[i])],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:  # the reference: one process, one device, same config, trained while they run
        reference = Runner(dataclasses.replace(cfg, strategy="default"), tmp_path / "one",
                           log=lambda line: None)
        reference.run()
    finally:
        wait_all(procs, tmp_path)
    logs = [(tmp_path / f"worker{i}.log").read_text(errors="replace") for i in range(2)]
    assert "2 replica(s) in sync, 2 workers; this is worker 0 (chief, writes --out)" in logs[0]
    assert "this is worker 1 (not the chief: its files go to a temporary folder" in logs[1]
    # the chief wrote every artifact and the report; the other worker nothing that stays
    written = {p.name for p in outs[0].iterdir()}
    assert {"teacher.keras", "teacher_logits.npy", "student_distilled.keras",
            "report.json", "report.md"} <= written
    report = json.loads((outs[0] / "report.json").read_text())
    assert report["config"]["strategy"] == "multi_worker"
    assert [m["name"] for m in report["models"]] == ["teacher", "student_distilled"]
    assert not outs[1].exists()
    assert list(temps[1].iterdir()) == []  # its temporary folder was deleted
    # both trained the same model: the same synchronized losses, epoch after epoch
    losses = [epoch_losses(log) for log in logs]
    assert [stage for stage, _ in losses[0]] == ["teacher"] * 2 + ["distill"] * 2
    assert losses[0] == losses[1]
    # ... and the model one device trains on the same global batches
    for stage, name in (("teacher", "teacher.keras"), ("distill", "student_distilled.keras")):
        ours = load_model(str(outs[0] / name)).get_weights()
        for a, b in zip(ours, reference.state[stage].get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
