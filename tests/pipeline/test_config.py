"""The `kdkeras run` config: defaults, reading TOML, and every kind of bad input."""

import pytest

from kdkeras import cli
from kdkeras.pipeline import RunConfig


def test_defaults_are_the_documented_job():
    cfg = RunConfig()
    assert cfg.data.source == "fashion_mnist" and cfg.data.n_train == 0
    assert (cfg.prune.enabled, cfg.prune.sparsity, cfg.qat.enabled, cfg.qat.preserve_sparsity) == (
        True, 0.8, True, True)
    assert cfg.export.quantization == "int8" and cfg.export.android and cfg.verify.enabled


def test_int_is_accepted_for_float_keys():
    cfg = RunConfig.from_dict({"distill": {"alpha": 0, "temperature": 2}})
    assert cfg.distill.alpha == 0.0 and isinstance(cfg.distill.temperature, float)


def test_quick_is_small_and_keeps_user_choices():
    q = RunConfig.from_dict({"distill": {"epochs": 2}, "data": {"n_train": 700}}).quick()
    assert (q.data.n_train, q.data.n_test, q.distill.epochs, q.qat.epochs) == (700, 500, 2, 1)
    assert q.teacher.epochs <= 4 and q.prune.epochs <= 2 and q.min_steps <= 60


@pytest.mark.parametrize("values,match", [
    ({"sed": 1}, "Unknown config key 'sed'. Did you mean 'seed'"),
    ({"prune": {"sparsty": 0.5}}, "Unknown config key 'prune.sparsty'. Did you mean 'prune.sparsity'"),
    ({"prunning": {}}, "Unknown config key 'prunning'. Did you mean 'prune'"),
    ({"distill": {"temprature": 2.0}}, "Did you mean 'distill.temperature'"),
])
def test_unknown_keys_name_the_nearest(values, match):
    with pytest.raises(ValueError, match=match):
        RunConfig.from_dict(values)


@pytest.mark.parametrize("values,match", [
    ({"distill": {"epochs": "3"}}, "'distill.epochs' must be an integer. Received: distill.epochs='3'"),
    ({"seed": True}, "'seed' must be an integer. Received: seed=True"),
    ({"distill": {"alpha": "0.5"}}, "'distill.alpha' must be a number"),
    ({"prune": {"enabled": 1}}, "'prune.enabled' must be true or false. Received: prune.enabled=1"),
    ({"prune": 0.5}, r"'prune' must be a table \(\[prune\]"),
    ({"student": {"kwargs": [16]}}, "'student.kwargs' must be a table"),
])
def test_wrong_types(values, match):
    with pytest.raises(TypeError, match=match):
        RunConfig.from_dict(values)


@pytest.mark.parametrize("values,match", [
    ({"distill": {"epochs": 0}}, "distill.epochs must be > 0. Received: distill.epochs=0"),
    ({"distill": {"alpha": 1.5}},
     r"distill.alpha must be a number in \[0, 1\]. Received: distill.alpha=1.5"),
    ({"prune": {"sparsity": 1.0}}, r"prune.sparsity must be in \[0, 1\). Received: prune.sparsity=1.0"),
    ({"export": {"quantization": "int9"}}, "Unknown quantization 'int9'"),
    ({"student": {"builder": "resnet"}}, "student.builder: Unknown model builder 'resnet'"),
    ({"data": {"test_fraction": 1.0}}, r"data.test_fraction must be in \(0, 1\)"),
    ({"data": {"n_train": -1}}, "data.n_train must be >= 0"),
    ({"distill": {"learning_rate": -1e-3}}, "distill.learning_rate must be > 0. Received: "
                                            "distill.learning_rate=-0.001"),
    ({"distill": {"learning_rate": float("nan")}}, "distill.learning_rate must be a finite number "
                                                   "> 0. Received: distill.learning_rate=nan"),
    ({"qat": {"learning_rate": float("inf")}}, "qat.learning_rate must be a finite number > 0"),
    ({"verify": {"max_accuracy_drop": float("nan")}}, r"verify.max_accuracy_drop must be in"),
    ({"teacher": {"schedule": "step"}}, "teacher.schedule must be one of cosine, constant. "
                                        "Received: teacher.schedule='step'"),
])
def test_bad_values(values, match):
    with pytest.raises(ValueError, match=match):
        RunConfig.from_dict(values)


def test_paths_that_do_not_exist(tmp_path):
    missing = str(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="data.source '.*nope.npz' is neither a built-in"):
        RunConfig.from_dict({"data": {"source": missing}})
    with pytest.raises(FileNotFoundError, match="teacher.path does not exist"):
        RunConfig.from_dict({"teacher": {"path": str(tmp_path / "t.keras")}})
    with pytest.raises(FileNotFoundError, match="student.path does not exist"):
        RunConfig.from_dict({"student": {"path": str(tmp_path / "s.keras")}})
    with pytest.raises(FileNotFoundError, match="Config file does not exist"):
        RunConfig.from_toml(tmp_path / "none.toml")


def test_stage_that_needs_a_disabled_one():
    with pytest.raises(ValueError, match="Stage 'verify' needs stage 'export', which is disabled"):
        RunConfig.from_dict({"export": {"enabled": False}})
    cfg = RunConfig.from_dict({"export": {"enabled": False}, "verify": {"enabled": False}})
    assert not cfg.export.enabled


def test_nan_in_a_toml_file_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[teacher]\nlearning_rate = nan\n")
    with pytest.raises(ValueError, match="teacher.learning_rate must be a finite number"):
        RunConfig.from_toml(path)


def test_invalid_toml_says_so(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[prune\nsparsity = 0.5\n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        RunConfig.from_toml(path)


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[distill]\nepoch = 3\n")
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Unknown config key 'distill.epoch'. Did you mean 'distill.epochs'" in err
    assert "Traceback" not in err
