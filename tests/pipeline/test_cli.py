"""`kdkeras run` / `kdkeras init` behind the command line: progress bars, the init file."""

from kdkeras import cli, pipeline
from kdkeras.pipeline import RunConfig
from kdkeras.pipeline import cli as pipeline_cli


def test_the_cli_entry_points_are_reexported():
    assert pipeline.run_from_cli is pipeline_cli.run_from_cli
    assert pipeline.init_from_cli is pipeline_cli.init_from_cli


def test_keras_bars_only_on_a_terminal_and_never_under_ci(monkeypatch):
    from kdkeras.pipeline.cli import progress_verbosity

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert progress_verbosity() == 1
    monkeypatch.setenv("CI", "true")
    assert progress_verbosity() == 0
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert progress_verbosity() == 0


def test_init_writes_the_default_config_and_never_overwrites_silently(tmp_path, capsys):
    path = tmp_path / "kd.toml"
    assert cli.main(["init", str(path)]) == 0
    assert RunConfig.from_toml(path) == RunConfig()
    path.write_text("seed = 3\n")
    assert cli.main(["init", str(path)]) == 2
    assert "exists. Pass --force" in capsys.readouterr().err
    assert path.read_text() == "seed = 3\n"
    assert cli.main(["init", str(path), "--force"]) == 0
    assert RunConfig.from_toml(path) == RunConfig()
