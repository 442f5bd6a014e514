"""TOML output of a config: the file `kdkeras init` writes and the config section of report.md."""

import math

import pytest

from kdkeras.pipeline import RunConfig, default_toml
from kdkeras.pipeline.config import tomllib
from kdkeras.pipeline.toml_format import config_items, config_toml, toml_value


def test_default_toml_parses_back_to_the_defaults():
    text = default_toml()
    assert RunConfig.from_dict(tomllib.loads(text)) == RunConfig()
    # commented: a comment line above every key
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), line


def test_toml_round_trip_of_a_changed_config(tmp_path):
    cfg = RunConfig.from_dict({"seed": 4, "data": {"source": "digits", "n_train": 100},
                               "student": {"builder": "mlp", "kwargs": {"hidden": [16]}},
                               "prune": {"skip": ["output"], "sparsity": 0.5}})
    path = tmp_path / "c.toml"
    path.write_text(default_toml(cfg))
    back = RunConfig.from_toml(path)
    assert back == cfg and back.student.kwargs == {"hidden": [16]}


@pytest.mark.parametrize("value,text", [
    (True, "true"), (False, "false"), (3, "3"), (0.001, "0.001"),
    ('a "b" \\c', '"a \\"b\\" \\\\c"'), ([1, "x"], '[1, "x"]'),
    ({"hidden": [64, 32], "act": "relu"}, '{hidden = [64, 32], act = "relu"}'),
])
def test_toml_value_parses_back(value, text):
    assert toml_value(value) == text
    assert tomllib.loads(f"k = {text}")["k"] == value


def test_toml_value_refuses_what_toml_cannot_hold():
    with pytest.raises(TypeError, match="no TOML form for None"):
        toml_value(None)


def test_config_toml_of_a_plain_dict_parses_back_to_it():
    values = RunConfig.from_dict({"seed": 2, "prune": {"skip": ["output"]}}).to_dict()
    assert tomllib.loads("\n".join(config_toml(values))) == values
    assert ("prune.skip", ["output"]) in config_items(values) and config_items(values)[0] == (
        "seed", 2)


def test_config_toml_never_validates():
    # a path that does not exist, a key this version does not know, a value out of range
    values = {"seed": -1, "future_key": 1.5, "data": {"source": "/nowhere/d.npz"},
              "distill": {"learning_rate": math.inf}}
    lines = config_toml(values)
    assert lines == ["seed = -1", "future_key = 1.5", "", "[data]", 'source = "/nowhere/d.npz"',
                     "", "[distill]", "learning_rate = inf"]
