"""The job of :func:`tests.pipeline.test_strategy.test_mirrored_pipeline_trains_like_one_device`,
run in a fresh process: a collective op aborted by an earlier test poisons every later
MirroredStrategy of the same process ("Restart your program to reset"), so this comparison
gets a process of its own::

    python -m tests.pipeline.mirrored_job WORKDIR

It runs the tiny digits pipeline with ``strategy = "mirrored"`` (two logical CPUs) and with
``"default"``, checks them here and prints one JSON line (replicas, the largest weight gap).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from kdkeras.pipeline.runner import Runner  # noqa: E402
from kdkeras.pipeline.strategy import worker_folder  # noqa: E402
from tests.pipeline.runs import Log, tiny  # noqa: E402


def main(work: Path) -> dict:
    changes = dict(data={"n_train": 256, "n_test": 128}, teacher={"builder": "mlp", "epochs": 2},
                   student={"builder": "mlp"}, scratch={"enabled": False},
                   prune={"enabled": False}, qat={"enabled": False}, export={"enabled": False},
                   verify={"enabled": False})
    runs = {}
    for name in ("mirrored", "default"):
        log = Log()
        runner = Runner(tiny(strategy=name, **changes), work / name, log=log)
        report = runner.run()
        runs[name] = runner, report, log
    runner, report, log = runs["mirrored"]
    assert isinstance(runner.strategy, tf.distribute.MirroredStrategy)
    assert runner.strategy.num_replicas_in_sync == 2
    assert any("strategy: mirrored, 2 replica(s) in sync" in line for line in log), log
    gap = 0.0
    for stage in ("teacher", "distill"):
        model = runner.state[stage]
        assert model.distribute_strategy is runner.strategy
        assert all(len(v.values) == 2 for v in model.weights)  # one copy per replica
        for a, b in zip(model.get_weights(), runs["default"][0].state[stage].get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
            gap = max(gap, float(np.max(np.abs(a - b))))
    assert report["config"]["strategy"] == "mirrored"
    assert (work / "mirrored" / "report.json").exists()
    assert not any("strategy:" in line for line in runs["default"][2])
    assert worker_folder(runner.strategy, work / "x") == work / "x"  # one worker: --out
    return {"replicas": runner.strategy.num_replicas_in_sync, "max_weight_gap": gap}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))), flush=True)
