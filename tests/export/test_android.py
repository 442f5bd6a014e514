import json
import os

import pytest

from kdkeras.export import evaluate_tflite, export_android, inspect_tflite

LABELS = ["cat", "dog", "bird", "fish"]


def test_bundle_contents(tmp_path, model, data):
    import kdkeras

    x, y = data
    out = export_android(model, str(tmp_path / "android"), labels=LABELS, quantization="int8_io",
                         representative_data=x, x_eval=x, y_eval=y,
                         normalization={"mean": 0, "std": 255})
    assert sorted(os.listdir(out)) == ["labels.txt", "model.json", "model.tflite"]
    assert open(os.path.join(out, "labels.txt")).read().splitlines() == LABELS
    spec = json.load(open(os.path.join(out, "model.json")))
    tfl = os.path.join(out, "model.tflite")
    info = inspect_tflite(tfl)
    assert spec["kdkeras_version"] == kdkeras.__version__
    assert spec["class_names"] == LABELS and spec["num_classes"] == 4
    assert spec["input"]["shape"] == [-1, 8, 8, 1] and spec["input"]["dtype"] == "int8"
    assert spec["input"]["quantization"] == {"scale": info["inputs"][0]["scale"],
                                             "zero_point": info["inputs"][0]["zero_point"]}
    assert spec["output"]["dtype"] == "int8" and spec["output"]["quantization"]["scale"] > 0
    assert spec["normalization"] == {"mean": 0, "std": 255}
    assert spec["accuracy"] == evaluate_tflite(tfl, x, y)["accuracy"] and spec["accuracy_n"] == 48
    assert spec["size_bytes"] == os.path.getsize(tfl) and spec["quantization"] == "int8_io"
    assert [p for p in os.listdir(tmp_path) if p != "android"] == []  # no temp dir left


def test_defaults_float_interface_no_eval(tmp_path, model, data):
    out = export_android(model, str(tmp_path / "a"), labels=LABELS, quantization="none")
    spec = json.load(open(os.path.join(out, "model.json")))
    assert spec["input"]["quantization"] is None and spec["input"]["dtype"] == "float32"
    assert spec["normalization"] == {"mean": 0.0, "std": 1.0}
    assert spec["accuracy"] is None


def test_failure_leaves_the_old_bundle_intact_and_no_half_bundle(tmp_path, model, data):
    out = str(tmp_path / "android")
    export_android(model, out, labels=LABELS, quantization="none")
    before = {f: open(os.path.join(out, f), "rb").read() for f in os.listdir(out)}
    with pytest.raises(ValueError, match=r"labels has 3 names but the model outputs 4"):
        export_android(model, out, labels=LABELS[:3], quantization="none")
    assert {f: open(os.path.join(out, f), "rb").read() for f in os.listdir(out)} == before
    assert os.listdir(tmp_path) == ["android"]
    with pytest.raises(ValueError, match=r"labels has 3 names"):
        export_android(model, str(tmp_path / "new"), labels=LABELS[:3], quantization="none")
    assert os.listdir(tmp_path) == ["android"]


def test_replaces_an_existing_bundle(tmp_path, model, data):
    out = str(tmp_path / "android")
    export_android(model, out, labels=LABELS, quantization="none")
    export_android(model, out, labels=["a", "b", "c", "d"], quantization="dynamic")
    assert open(os.path.join(out, "labels.txt")).read() == "a\nb\nc\nd\n"
    assert json.load(open(os.path.join(out, "model.json")))["quantization"] == "dynamic"
    assert os.listdir(tmp_path) == ["android"]


@pytest.mark.parametrize("kwargs, match", [
    ({"labels": "cat,dog"}, "labels='cat,dog'"),
    ({"labels": []}, r"labels=\[\]"),
    ({"labels": ["a\nb", "c", "d", "e"]}, "one line"),
    ({"labels": LABELS, "normalization": {"mean": 0}}, "normalization=\\{'mean': 0\\}"),
    ({"labels": LABELS, "normalization": {"mean": 0, "std": 0}}, "std=0"),
    ({"labels": LABELS, "quantization": "int9"}, "Unknown quantization 'int9'"),
    ({"labels": LABELS, "quantization": "int8"}, "needs representative_data"),
])
def test_bad_input(tmp_path, model, kwargs, match):
    kwargs.setdefault("quantization", "none")
    with pytest.raises(ValueError, match=match):
        export_android(model, str(tmp_path / "out"), **kwargs)
    assert not os.path.exists(tmp_path / "out")


def test_half_eval_data_and_foreign_directory(tmp_path, model, data):
    x, y = data
    with pytest.raises(ValueError, match="both x_eval and y_eval"):
        export_android(model, str(tmp_path / "o"), labels=LABELS, quantization="none", x_eval=x)
    foreign = tmp_path / "src"
    foreign.mkdir()
    (foreign / "main.py").write_text("print(1)")
    with pytest.raises(ValueError, match=r"\['main.py'\].*Choose a new or empty directory"):
        export_android(model, str(foreign), labels=LABELS, quantization="none")
    assert os.listdir(foreign) == ["main.py"]


def test_an_exported_tflite_file_is_bundled_byte_for_byte(tmp_path, model, data):
    from kdkeras.export import export_tflite

    x, y = data
    path = export_tflite(model, str(tmp_path / "m.tflite"), "int8", representative_data=x)
    out = export_android(path, str(tmp_path / "android"), labels=LABELS, quantization="int8",
                         x_eval=x, y_eval=y, mediapipe=False)  # default: the MediaPipe drop-in
    assert open(os.path.join(out, "model.tflite"), "rb").read() == open(path, "rb").read()
    spec = json.load(open(os.path.join(out, "model.json")))
    assert spec["accuracy"] == evaluate_tflite(path, x, y)["accuracy"]
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError):
        export_android(str(tmp_path / "bad.tflite"), str(tmp_path / "b"), labels=LABELS)
    assert not (tmp_path / "b").exists()
