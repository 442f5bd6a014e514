import json
import os

import pytest

from kdkeras import cli, pipeline
from kdkeras.pipeline import RunConfig


def test_config_defaults_and_toml_round_trip(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('dataset = "digits"\nepochs = 3\nalpha = 0.2\nstudent = "mlp"\n[student_kwargs]\nhidden = [16]\n')
    cfg = RunConfig.from_toml(path)
    assert (cfg.dataset, cfg.epochs, cfg.alpha, cfg.student, cfg.student_kwargs) == ("digits", 3, 0.2, "mlp", {"hidden": [16]})
    assert cfg.teacher_epochs == RunConfig().teacher_epochs


def test_unknown_key_names_nearest():
    with pytest.raises(ValueError, match="Unknown config key 'temprature'. Did you mean 'temperature'"):
        RunConfig.from_dict({"temprature": 2.0})


@pytest.mark.parametrize("values,match", [
    ({"epochs": "3"}, "epochs' must be int. Received: epochs='3'"),
    ({"alpha": True}, "alpha' must be float"),
    ({"epochs": 0}, "epochs must be > 0. Received: epochs=0"),
    ({"alpha": 1.5}, r"alpha must be a number in \[0, 1\]. Received: alpha=1.5"),
    ({"dataset": "mnist"}, "Unknown dataset 'mnist'"),
    ({"student": "resnet"}, "Unknown model builder 'resnet'"),
])
def test_bad_values(values, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RunConfig.from_dict(values)


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="teacher_path does not exist"):
        RunConfig.from_dict({"teacher_path": str(tmp_path / "t.keras")})
    with pytest.raises(FileNotFoundError, match="Config file does not exist"):
        RunConfig.from_toml(tmp_path / "none.toml")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_out_not_writable(tmp_path):  # pragma: no cover - CI runs as root
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="is not writable"):
        pipeline.run(RunConfig(dataset="digits"), ro)


def test_out_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is not writable"):
        pipeline.run(RunConfig(dataset="digits"), f / "sub", log=lambda *_: None)


def test_cli_run_on_digits_writes_report(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('dataset = "digits"\nteacher = "mlp"\nstudent = "mlp"\nteacher_epochs = 3\nepochs = 3\n')
    code = cli.main(["run", str(cfg), "--out", str(tmp_path / "out"), "--seed", "1"])
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["teacher", "student_scratch", "student_distilled"]
    assert report["config"]["seed"] == 1 and report["dataset"]["name"] == "digits"
    for m in report["models"]:
        assert 0.1 < m["accuracy"] <= 1.0 and m["params"] > 0
        assert os.path.exists(m["path"])
    assert "| student_distilled |" in (tmp_path / "out" / "report.md").read_text()
    out = capsys.readouterr().out
    assert "teacher: train mlp" in out and "student_distilled" in out


def test_cli_errors_are_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("epoch = 3\n")
    assert cli.main(["run", str(cfg)]) == 2
    assert "Unknown config key 'epoch'. Did you mean 'epochs'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_run_quick_default(tmp_path):
    assert cli.main(["run", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dataset"] == {"name": "fashion_mnist", "n_train": 3000, "n_test": 500}
    teacher, scratch, distilled = report["models"]
    assert teacher["params"] / distilled["params"] >= 10
    assert teacher["accuracy"] > 0.7 and distilled["accuracy"] > 0.7
