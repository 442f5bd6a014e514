"""`kdkeras export | eval | bench | inspect`: flags -> Python API, errors -> exit code 2."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tf_keras as keras

from kdkeras.cli import main


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny saved .keras model, calibration and test .npz files, and the model itself."""
    root = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(3)])
    rng = np.random.default_rng(0)
    x = rng.random((32, 6), dtype=np.float32)
    y = m.predict(x, verbose=0).argmax(-1)
    m.save(root / "m.keras")
    np.savez(root / "calib.npz", x=x)
    np.savez(root / "test.npz", x=x, y=y)
    return root, m, x, y


@pytest.mark.parametrize("cmd", ["export", "eval", "bench", "inspect"])
def test_help_shows_an_example(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"kdkeras {cmd} " in out


def test_export_eval_bench_inspect_round_trip(saved, capsys):
    root, m, x, y = saved
    out = str(root / "int8.tflite")
    assert main(["export", str(root / "m.keras"), out, "--quantization", "int8",
                 "--calib", str(root / "calib.npz")]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert open(out, "rb").read(8)[4:8] == b"TFL3"

    assert main(["eval", out, "--data", str(root / "test.npz"), "--json",
                 "--keras-model", str(root / "m.keras")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 32 and res["accuracy"] >= 0.85
    assert res["agreement_with_keras"] == res["accuracy"]  # y are the Keras predictions

    assert main(["bench", out, "--threads", "1", "--runs", "7", "--warmup", "1", "--json"]) == 0
    lat = json.loads(capsys.readouterr().out)
    assert lat["runs"] == 7 and lat["num_threads"] == 1 and lat["p90_ms"] >= lat["median_ms"] > 0

    assert main(["inspect", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size_bytes"] == os.path.getsize(out)
    assert info["op_counts"]["FULLY_CONNECTED"] == 2 and info["op_counts"]["QUANTIZE"] == 1

    assert main(["inspect", out]) == 0
    assert "FULLY_CONNECTED" in capsys.readouterr().out
    assert main(["eval", out, "--data", str(root / "test.npz")]) == 0
    assert capsys.readouterr().out.startswith("accuracy ")


def test_export_float32_from_savedmodel_matches_keras(saved, tmp_path, capsys):
    root, m, x, _ = saved
    sm = str(tmp_path / "sm")
    m.save(sm, save_format="tf")
    out = str(tmp_path / "f32.tflite")
    assert main(["export", sm, out]) == 0
    from kdkeras.export import predict_tflite

    np.testing.assert_allclose(predict_tflite(out, x), m.predict(x, verbose=0), atol=1e-5)


def test_eval_agreement_with_a_savedmodel_keras_model(saved, tmp_path, capsys):
    root, m, x, y = saved
    sm = str(tmp_path / "sm")
    m.save(sm, save_format="tf")
    out = str(tmp_path / "f32.tflite")
    assert main(["export", str(root / "m.keras"), out]) == 0
    capsys.readouterr()
    assert main(["eval", out, "--data", str(root / "test.npz"), "--keras-model", sm,
                 "--batch-size", "10", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["accuracy"] == 1.0 and res["agreement_with_keras"] == 1.0
    assert res["keras_accuracy"] == 1.0


def _err(argv, capsys):
    code = main(argv)
    assert code == 2
    return capsys.readouterr().err


def test_unknown_mode(saved, tmp_path, capsys):
    root, *_ = saved
    err = _err(["export", str(root / "m.keras"), str(tmp_path / "o.tflite"), "-q", "int9"], capsys)
    assert "Unknown quantization 'int9'" in err and "int8_io" in err


def test_int8_without_calib(saved, tmp_path, capsys):
    root, *_ = saved
    err = _err(["export", str(root / "m.keras"), str(tmp_path / "o.tflite"), "-q", "int8"], capsys)
    assert "needs representative_data" in err
    assert not os.path.exists(tmp_path / "o.tflite")


def test_calib_of_the_wrong_shape(saved, tmp_path, capsys):
    root, *_ = saved
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 7), np.float32))
    err = _err(["export", str(root / "m.keras"), str(tmp_path / "o.tflite"), "-q", "int8",
                "--calib", str(tmp_path / "bad.npz")], capsys)
    assert "(7,)" in err and "(6,)" in err


def test_npz_without_the_keys(saved, tmp_path, capsys):
    root, *_ = saved
    np.savez(tmp_path / "t.npz", images=np.zeros((2, 6)), labels=np.zeros(2))
    err = _err(["eval", str(tmp_path / "any.tflite"), "--data", str(tmp_path / "t.npz")], capsys)
    assert "['images', 'labels']" in err and "--x-key" in err


def test_xy_length_mismatch(saved, tmp_path, capsys):
    root, m, x, y = saved
    from kdkeras.export import export_tflite

    path = export_tflite(m, tmp_path / "f.tflite")
    np.savez(tmp_path / "t.npz", x=x, y=y[:-2])
    err = _err(["eval", path, "--data", str(tmp_path / "t.npz")], capsys)
    assert "len(x)=32, len(y)=30" in err


@pytest.mark.parametrize("cmd", [["bench"], ["inspect"], ["eval", "--data", "DATA"]])
def test_not_a_tflite_file(saved, tmp_path, capsys, cmd):
    root, *_ = saved
    argv = [c if c != "DATA" else str(root / "test.npz") for c in cmd]
    err = _err(argv[:1] + [str(root / "m.keras")] + argv[1:], capsys)
    assert "Not a TFLite file" in err and "m.keras" in err


def test_bad_bench_counts(saved, tmp_path, capsys):
    root, m, *_ = saved
    from kdkeras.export import export_tflite

    path = export_tflite(m, tmp_path / "f.tflite")
    assert "runs=0" in _err(["bench", path, "--runs", "0"], capsys)
