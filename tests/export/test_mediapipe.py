"""The Android bundle as a MediaPipe drop-in, checked with MediaPipe Tasks itself.

These tests run the real MediaPipe 0.10.21 in its own environment (``.ci/run`` creates it with
``python -m kdkeras.export.mediapipe_setup create``); without it they fail and say how to make
it. The student is a small CNN trained on sklearn digits (8x8 gray images, pixels 0..16).
"""

import json
import os

import numpy as np
import pytest

import kdkeras as kd
from kdkeras.export import (
    MediaPipeError,
    evaluate_tflite,
    export_android,
    export_tflite,
    inspect_tflite,
    predict_tflite,
    read_mediapipe_metadata,
    rgb_adapter,
    top1,
)
from kdkeras.export.mediapipe_bundle import pixels_from_inputs
from kdkeras.export.mediapipe_env import run_worker

LABELS = [str(i) for i in range(10)]
DIGITS = {"mean": 0, "std": 16}  # kd.digits() gives pixels / 16


@pytest.fixture(scope="module")
def digits(digits_data):
    """``(model, (x, y), (x_test, y_test))``: a CNN trained on digits for 8 epochs."""
    (x, y), test = digits_data
    kd.keras.utils.set_random_seed(0)
    model = kd.keras.Sequential([
        kd.keras.layers.Input((8, 8, 1)), kd.keras.layers.Conv2D(8, 3, activation="relu"),
        kd.keras.layers.Flatten(), kd.keras.layers.Dense(10)])
    model.compile(kd.keras.optimizers.Adam(1e-2),
                  kd.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=8, batch_size=64, verbose=0)
    return model, (x, y), test


@pytest.fixture(scope="module")
def gray_file(digits, tmp_path_factory):
    """gray_file(mode) -> the digits CNN converted in ``mode`` (one-channel input), cached."""
    model, (x, _), _ = digits
    root, cache = tmp_path_factory.mktemp("gray"), {}

    def get(mode):
        if mode not in cache:
            cache[mode] = export_tflite(model, str(root / f"{mode}.tflite"), mode,
                                        representative_data=x[:200])
        return cache[mode]

    return get


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.mark.parametrize("mode", ["none", "float16", "int8", "int8_io"])
def test_adapter_gives_the_original_outputs(gray_file, digits, tmp_path, mode):
    _, _, (xt, _) = digits
    gray = gray_file(mode)
    rgb = _write(tmp_path / "rgb.tflite", rgb_adapter(open(gray, "rb").read()))
    before, after = predict_tflite(gray, xt), predict_tflite(rgb, np.repeat(xt, 3, axis=-1))
    assert (top1(after) == top1(before)).all()
    if mode in ("int8", "int8_io"):  # integer kernels, pixels k/16: bit for bit
        np.testing.assert_array_equal(after, before)
    else:
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    a, b = inspect_tflite(gray), inspect_tflite(rgb)
    assert b["inputs"][0]["shape_signature"] == [-1, 8, 8, 3]
    assert b["inputs"][0]["dtype"] == a["inputs"][0]["dtype"]
    assert b["op_counts"] == {**a["op_counts"], "MEAN": a["op_counts"].get("MEAN", 0) + 1}
    assert 0 < b["size_bytes"] - a["size_bytes"] < 512


def test_adapter_refuses_what_is_not_one_gray_channel(tmp_path):
    rgb_model = kd.keras.Sequential([kd.keras.layers.Input((4, 4, 3)), kd.keras.layers.Flatten(),
                                     kd.keras.layers.Dense(2)])
    path = export_tflite(rgb_model, str(tmp_path / "rgb.tflite"))
    with pytest.raises(ValueError, match=r"one-channel image input .*Received: input shape "
                                         r"\[-1, 4, 4, 3\]"):
        rgb_adapter(open(path, "rb").read())


def test_the_bundle_is_a_mediapipe_dropin(mediapipe, digits, gray_file, tmp_path):
    _, _, (xt, yt) = digits
    gray = gray_file("int8")
    out = export_android(gray, tmp_path / "android", LABELS, "int8", x_eval=xt, y_eval=yt,
                         normalization=DIGITS)
    spec = json.load(open(os.path.join(out, "model.json")))
    bundle = os.path.join(out, "model.tflite")
    mp = spec["mediapipe"]
    assert (mp["ready"], mp["metadata"], mp["input_adapter"], mp["mediapipe_version"]) == \
        (True, True, "channel_mean", "0.10.21")
    assert mp["normalization"] == {"mean": [0.0] * 3, "std": [16.0] * 3}
    assert spec["input"]["shape"] == [-1, 8, 8, 3] and spec["input"]["adapter"] == "channel_mean"
    assert "averaged to the one gray channel" in spec["preprocessing"]
    # the file's accuracy is unchanged by the adapter and the metadata
    x3 = np.repeat(xt, 3, axis=-1)
    assert spec["accuracy"] == evaluate_tflite(bundle, x3, yt)["accuracy"] \
        == evaluate_tflite(gray, xt, yt)["accuracy"] > 0.8
    # the recorded check, recomputed here from MediaPipe's scores and LiteRT's outputs
    check = mp["check"]
    assert check["status"] == "passed" and check["n"] == len(xt) == 450
    images, why = pixels_from_inputs(xt, DIGITS)
    assert why is None and images.shape == (450, 8, 8, 3) and images.max() == 16
    np.savez(tmp_path / "images.npz", images=images)
    got = run_worker({"command": "classify", "model": bundle, "scores": str(tmp_path / "s.npz"),
                      "images": str(tmp_path / "images.npz")})
    assert got["category_names"] == LABELS
    scores, lite = np.load(tmp_path / "s.npz")["scores"], predict_tflite(bundle, x3)
    same = top1(scores) == top1(lite)
    assert check["agreement"] == float(np.mean(same)) >= 0.995
    assert check["disagreements"] == int(np.sum(~same))
    assert check["max_score_difference"] == pytest.approx(float(np.abs(scores - lite).max()))


def test_an_rgb_model_keeps_its_input_and_per_channel_normalization_is_refused(mediapipe,
                                                                               tmp_path):
    kd.keras.utils.set_random_seed(0)
    model = kd.keras.Sequential([
        kd.keras.layers.Input((6, 6, 3)), kd.keras.layers.Conv2D(4, 3, activation="relu"),
        kd.keras.layers.Flatten(), kd.keras.layers.Dense(5)])
    norm = {"mean": [127.5], "std": [127.5]}  # [-1, 1], one value for every channel
    raw = np.random.default_rng(1).integers(0, 256, (64, 6, 6, 3)).astype(np.float32)
    x = ((raw - 127.5) / 127.5).astype(np.float32)
    out = export_android(model, tmp_path / "a", list("abcde"), "dynamic", x_eval=x,
                         y_eval=np.arange(64) % 5, normalization=norm)
    spec = json.load(open(os.path.join(out, "model.json")))
    mp = spec["mediapipe"]
    assert mp["ready"] and mp["input_adapter"] is None
    assert mp["normalization"] == {"mean": [127.5] * 3, "std": [127.5] * 3}
    assert spec["input"]["shape"] == [-1, 6, 6, 3] and "averaged" not in spec["preprocessing"]
    check = mp["check"]
    assert check["status"] == "passed" and check["n"] == 64 and check["agreement"] >= 0.995
    assert check["max_score_difference"] < 1e-3  # MediaPipe normalizes as the model expects
    # per-channel normalization: MediaPipe itself refuses it, so the bundle says so
    per_channel = {"mean": [120.0, 110.0, 100.0], "std": [60.0, 50.0, 40.0]}
    plain = export_tflite(model, str(tmp_path / "plain.tflite"), "dynamic")
    run_worker({"command": "write_metadata", "model": plain, "out": str(tmp_path / "pc.tflite"),
                "labels": list("abcde"), **per_channel})
    np.savez(tmp_path / "i.npz", images=raw[:1].astype(np.uint8))
    with pytest.raises(MediaPipeError, match="Per-channel image normalization is not available"):
        run_worker({"command": "classify", "model": str(tmp_path / "pc.tflite"),
                    "images": str(tmp_path / "i.npz"), "scores": str(tmp_path / "s.npz")})
    out = export_android(model, tmp_path / "b", list("abcde"), "dynamic",
                         normalization=per_channel)
    mp = json.load(open(os.path.join(out, "model.json")))["mediapipe"]
    assert mp["ready"] is False and mp["reason"].startswith(
        "a per-channel normalization (mean [120.0, 110.0, 100.0], std [60.0, 50.0, 40.0]): "
        "MediaPipe's ImageClassifier refuses it")


def test_metadata_is_mediapipes_and_reads_back(mediapipe, gray_file, tmp_path):
    out = export_android(gray_file("none"), tmp_path / "a", LABELS, "none", normalization=DIGITS)
    spec = json.load(open(os.path.join(out, "model.json")))
    assert spec["accuracy"] is None and "check" not in spec["mediapipe"]  # no eval data
    shown = read_mediapipe_metadata(os.path.join(out, "model.tflite"))
    meta = shown["metadata"]
    assert meta["name"] == "ImageClassifier"
    graph = meta["subgraph_metadata"][0]
    image = graph["input_tensor_metadata"][0]
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    norm = image["process_units"][0]["options"]
    assert (norm["mean"], norm["std"]) == ([0.0] * 3, [16.0] * 3)
    assert graph["output_tensor_metadata"][0]["associated_files"][0]["name"] == "labels.txt"
    assert shown["associated_files"]["labels.txt"].splitlines() == LABELS


def test_mediapipe_refuses_gray_and_int8_inputs(mediapipe, gray_file, tmp_path):
    """What the bundle refuses, MediaPipe itself refuses: a gray input, an int8 input."""
    def classify(data):
        src = _write(tmp_path / "in.tflite", data)
        run_worker({"command": "write_metadata", "model": src, "out": str(tmp_path / "m.tflite"),
                    "labels": LABELS, "mean": [0.0], "std": [16.0]})
        np.savez(tmp_path / "i.npz", images=np.zeros((1, 8, 8, 3), np.uint8))
        run_worker({"command": "classify", "model": str(tmp_path / "m.tflite"),
                    "images": str(tmp_path / "i.npz"), "scores": str(tmp_path / "s.npz")})

    with pytest.raises(MediaPipeError, match=r"depth = 3 or 4. Got 1 x 8 x 8 x 1"):
        classify(open(gray_file("int8"), "rb").read())
    int8_io = open(gray_file("int8_io"), "rb").read()
    with pytest.raises(MediaPipeError, match=r"uint8/float32, got INT8"):
        classify(rgb_adapter(int8_io))
    out = export_android(gray_file("int8_io"), tmp_path / "b", LABELS, "int8_io",
                         normalization=DIGITS)
    spec = json.load(open(os.path.join(out, "model.json")))
    assert spec["mediapipe"]["ready"] is False and spec["mediapipe"]["input_adapter"] is None
    assert "feeds float32 or uint8 images; the 'int8_io' file takes int8" in \
        spec["mediapipe"]["reason"]
    assert open(os.path.join(out, "model.tflite"), "rb").read() == int8_io  # as converted
    with pytest.raises(ValueError, match=r"mediapipe=True, but MediaPipe cannot run this bundle: "
                                         r"MediaPipe ImageClassifier feeds float32 or uint8"):
        export_android(gray_file("int8_io"), tmp_path / "c", LABELS, "int8_io",
                       normalization=DIGITS, mediapipe=True)
    assert not (tmp_path / "c").exists()


def test_not_an_image_or_not_pixels_is_skipped_with_a_reason(mediapipe, digits, gray_file,
                                                             tmp_path):
    features = kd.keras.Sequential([kd.keras.layers.Input((4,)), kd.keras.layers.Dense(3)])
    x = np.random.default_rng(0).random((16, 4), dtype=np.float32)
    out = export_android(features, tmp_path / "f", ["a", "b", "c"], "none", x_eval=x,
                         y_eval=np.arange(16) % 3)
    mp = json.load(open(os.path.join(out, "model.json")))["mediapipe"]
    assert mp["ready"] is False and mp["check"]["status"] == "skipped"
    assert "input is not an image [batch, height, width, 1 or 3] (inputs [[-1, 4]])" in \
        mp["check"]["reason"]
    _, _, (xt, yt) = digits  # an image model, but normalization says nothing of pixels
    out = export_android(gray_file("none"), tmp_path / "g", LABELS, "none", x_eval=xt, y_eval=yt)
    mp = json.load(open(os.path.join(out, "model.json")))["mediapipe"]
    assert mp["ready"] is True and mp["check"]["status"] == "skipped"
    assert mp["check"]["reason"].startswith("the inputs are not 8-bit pixel values under "
                                            "normalization mean=0.0, std=1.0")


def test_mediapipe_false_bundles_the_file_as_converted(gray_file, tmp_path):
    gray = gray_file("int8")
    out = export_android(gray, tmp_path / "a", LABELS, "int8", mediapipe=False)
    assert open(os.path.join(out, "model.tflite"), "rb").read() == open(gray, "rb").read()
    mp = json.load(open(os.path.join(out, "model.json")))["mediapipe"]
    assert mp["ready"] is False and mp["reason"].startswith("mediapipe=False")
