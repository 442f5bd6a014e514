"""An Android-ready bundle: ``model.tflite``, ``labels.txt`` and ``model.json``.

A text model adds ``vocab.txt`` (see :func:`export_android`).

``model.json`` holds what an app needs to call the model correctly: the input tensor's shape
and dtype, the normalization to apply to raw inputs (``input = (raw - mean) / std``), the
quantization parameters of integer inputs/outputs (``q = round(input / scale) + zero_point``,
``value = (q - zero_point) * scale``), the class names in output order, and, when evaluation
data is given, the accuracy measured on the exported file itself.

An image classifier's ``model.tflite`` is a drop-in for MediaPipe Tasks' ``ImageClassifier``
(:mod:`kdkeras.export.mediapipe_bundle`): RGB input (a grayscale model averages the 3
channels inside the file), MediaPipe's own metadata (normalization, labels), and, with
evaluation data, MediaPipe's top-1 checked against the file's; ``model.json``'s ``mediapipe``
section says what was done, or why not (a mode with int8 input, no MediaPipe environment). A
text model's ``model.tflite`` is likewise a drop-in for MediaPipe's ``TextClassifier``
(:mod:`kdkeras.export.mediapipe_text`: MediaPipe's BERT metadata, WordPiece ``vocab.txt``
packed in; with ``texts_eval``, MediaPipe tokenizes and classifies the raw texts).

The bundle is built in a temporary directory next to ``out_dir`` and renamed into place only
when complete, so a failure never leaves half a bundle (and an old bundle stays intact).

Example:

>>> import os, numpy as np, kdkeras as kd
>>> m = kd.keras.Sequential([kd.keras.layers.Input((4,)), kd.keras.layers.Dense(2)])
>>> x = np.random.rand(16, 4).astype("float32")
>>> out = kd.export_android(m, "/tmp/kd_doc/android", labels=["cat", "dog"],
...                        quantization="int8", representative_data=x)
>>> sorted(os.listdir(out))
['labels.txt', 'model.json', 'model.tflite']
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from kdkeras._io import atomic_dir
from kdkeras.export.evaluate import evaluate_tflite, predict_tflite
from kdkeras.export.mediapipe_bundle import check_mediapipe, mediapipe_ready
from kdkeras.export.mediapipe_text import check_mediapipe_text, mediapipe_text_ready
from kdkeras.export.modes import QuantizationMode, get_mode
from kdkeras.export.tflite import convert
from kdkeras.export.tflite_file import check_tflite_file
from kdkeras.export.text import check_text_bundle, text_input_details
from kdkeras.export.tflite_info import inspect_tflite

BUNDLE_FORMAT = "kdkeras-android-bundle"
BUNDLE_FILES = ("model.tflite", "labels.txt", "model.json", "vocab.txt")
ADAPTER_NOTE = ("; the input has 3 channels (RGB), averaged to the one gray channel the model was "
                "trained on inside the file: give a gray image as 3 equal channels")


def _check_labels(labels: Any) -> list:
    if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) == 0:
        raise ValueError(
            f"labels must be a non-empty list of class names in output order. Received: "
            f"labels={labels!r}. Pass e.g. labels=['cat', 'dog']."
        )
    labels = [str(l) for l in labels]
    bad = [l for l in labels if "\n" in l or "\r" in l or not l.strip()]
    if bad:
        raise ValueError(
            f"Class names must be non-empty and on one line (labels.txt has one per line). "
            f"Received: {bad!r}."
        )
    return labels


def _check_normalization(normalization: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if normalization is None:
        return {"mean": 0.0, "std": 1.0}
    if not isinstance(normalization, dict) or set(normalization) != {"mean", "std"}:
        raise ValueError(
            "normalization must be a dict with keys 'mean' and 'std' (input = (raw - mean) / "
            f"std). Received: normalization={normalization!r}. Example: "
            "{'mean': 0, 'std': 255} for [0, 255] pixels and a model trained on [0, 1]."
        )
    std = np.asarray(normalization["std"], dtype=np.float64)
    if np.any(std == 0) or not np.all(np.isfinite(std)):
        raise ValueError(
            f"normalization['std'] must be finite and non-zero. Received: "
            f"std={normalization['std']!r}."
        )
    return {k: np.asarray(v).tolist() for k, v in normalization.items()}


def _check_texts_eval(texts_eval: Any, x_eval: Any, text: bool) -> None:
    if texts_eval is None:
        return
    n = None if isinstance(texts_eval, str) else len(texts_eval)
    rows = None if x_eval is None else len(x_eval)
    if not text or n is None or n != rows:
        raise ValueError(
            "texts_eval holds the raw texts of a text model's x_eval, row for row. Received: "
            f"texts_eval={'one str' if n is None else f'{n} texts'}, x_eval="
            f"{'None' if rows is None else f'{rows} rows'}, "
            f"{'a text model' if text else 'a model without text inputs'}. Pass e.g. "
            "texts_eval=data.texts_test with x_eval=data.x_test, or leave it out.")


def _tensor_entry(t: Dict[str, Any]) -> Dict[str, Any]:
    entry = {
        "name": t["name"],
        "shape": t["shape_signature"],
        "dtype": t["dtype"],
        "quantization": None,
    }
    if t["dtype"] in ("int8", "uint8", "int16") and t["scale"]:
        entry["quantization"] = {"scale": t["scale"], "zero_point": t["zero_point"]}
    return entry


def export_android(
    model: Any,
    out_dir: str,
    labels: Sequence[str],
    quantization: Union[str, QuantizationMode] = "int8",
    representative_data: Any = None,
    *,
    x_eval: Optional[np.ndarray] = None,
    y_eval: Optional[np.ndarray] = None,
    normalization: Optional[Dict[str, Any]] = None,
    max_calibration_samples: Optional[int] = 500,
    vocabulary: Optional[Sequence[str]] = None,
    tokenizer: Optional[Dict[str, Any]] = None,
    text_inputs: Optional[bool] = None,
    mediapipe: Optional[bool] = None,
    texts_eval: Optional[Sequence[str]] = None,
) -> str:
    """Writes ``model.tflite``, ``labels.txt`` and ``model.json`` to ``out_dir``, atomically.

    A text model (int32 inputs ``ids``, ``mask``, ``segment_ids``, see
    :mod:`kdkeras.export.text`; a text student is wrapped into them) also gets ``vocab.txt``
    (one WordPiece token per line, line index = token id) and a ``tokenizer`` section in
    ``model.json`` saying how to tokenise exactly as in training; it has no normalization.

    Args:
        model: a tf-keras or Keras 3 model or a saved-model path (see ``export_tflite``), or
            a ``.tflite`` file, bundled as it is (but for ``mediapipe``; ``quantization`` is
            then only recorded: pass the mode it was converted with).
        out_dir: str. Bundle directory. An existing bundle there is replaced whole; a non-empty
            directory that is not a kdkeras bundle is refused.
        labels: list of str. Class names in the order of the model's output units.
        quantization: str or QuantizationMode. Any ``export_tflite`` mode (default
            ``"int8"``); its name is recorded in ``model.json``.
        representative_data: calibration inputs for integer modes (see ``export_tflite``).
        x_eval: optional float inputs; with ``y_eval``, the accuracy of the exported file is
            measured and written to ``model.json``.
        y_eval: optional labels for ``x_eval``.
        normalization: optional ``{"mean": m, "std": s}`` (scalars or per-channel lists) with
            ``model_input = (raw - mean) / std``; default ``{"mean": 0, "std": 1}``.
        max_calibration_samples: Optional[int]. Calibration examples used at most.
        vocabulary: list of str. The WordPiece vocabulary (index = token id); required for a
            text model, refused otherwise.
        tokenizer: dict. How the app tokenises, e.g. ``{"type": "wordpiece", "lowercase":
            True, "max_length": T, "cls_id": 101, "sep_id": 102, "pad_id": 0, "unk_id": 100,
            "vocabulary_size": 30522}`` (``SplitData.tokenizer``); required with
            ``vocabulary``. ``vocabulary_file`` is set to ``"vocab.txt"``.
        text_inputs: None, True or False. See ``export_tflite``.
        mediapipe: None, True or False. None (default): an image classifier in a mode
            MediaPipe takes (float32 input: ``none``, ``float16``, ``dynamic``, ``int8``,
            ``dynamic_wi8_afp32``) is made a drop-in for MediaPipe Tasks' ``ImageClassifier``:
            a grayscale model gets the RGB input adapter (its 3 channels averaged to gray inside
            the file) and the file gets MediaPipe's metadata (normalization, labels) when the
            MediaPipe environment exists (:mod:`kdkeras.export.mediapipe_env`); with
            ``x_eval``, MediaPipe's ImageClassifier then classifies the images and its top-1 is
            compared with the file's (``model.json``'s ``mediapipe.check``). Any other model
            or mode is bundled as converted, and ``model.json`` says why. True: require all
            that (raise otherwise). False: bundle the file as converted. A text model is
            made a drop-in for MediaPipe's ``TextClassifier`` the same way (BERT metadata with
            the WordPiece vocabulary; refused for a word-level or cased tokenizer, an integer
            output, or a file MediaPipe's runtime cannot run, e.g. ``int8`` with an int8 op it
            lacks) and checked on ``texts_eval``.
        texts_eval: list of str. A text model's raw texts that ``x_eval`` was tokenized from,
            row for row: MediaPipe's TextClassifier tokenizes and classifies them and its
            top-1 is compared with the file's on ``x_eval``. Without them a text bundle's
            MediaPipe check is skipped, and says so.

    Returns:
        ``out_dir`` as a string.

    Raises:
        ValueError: bad labels (or a count that differs from the model's outputs), bad
            normalization, half-given eval data, a non-bundle directory, a vocabulary missing
            for a text model (or given for another), a vocabulary whose size differs from
            ``tokenizer["vocabulary_size"]`` or is smaller than the model's embedding table,
            normalization given for a text model, ``mediapipe=True`` for a model or mode
            MediaPipe cannot run, ``texts_eval`` without ``x_eval``, for a model that is not a
            text model, or of another length, or any ``export_tflite`` error.
        MediaPipeUnavailable: ``mediapipe=True`` without the MediaPipe environment.
        MediaPipeError: MediaPipe's metadata writer or classifier failed (stderr shown).
    """
    import kdkeras

    mode = get_mode(quantization)
    labels = _check_labels(labels)
    text_normalization = normalization
    norm = _check_normalization(normalization)
    if (x_eval is None) != (y_eval is None):
        raise ValueError(
            "Pass both x_eval and y_eval to measure the exported file's accuracy, or neither. "
            f"Received: x_eval is {'None' if x_eval is None else 'given'}, y_eval is "
            f"{'None' if y_eval is None else 'given'}."
        )
    out_dir = os.fspath(out_dir).rstrip("/\\") or "."
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise ValueError(f"out_dir exists and is a file. Received: out_dir={out_dir!r}.")
        existing = set(os.listdir(out_dir))
        if existing and not existing <= set(BUNDLE_FILES):
            raise ValueError(
                f"out_dir exists and holds files that are not part of a kdkeras Android bundle "
                f"({sorted(existing - set(BUNDLE_FILES))}). Received: out_dir={out_dir!r}. "
                "Choose a new or empty directory."
            )
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".tflite"):
        with open(check_tflite_file(model), "rb") as f:  # an exported file, bundled as is
            data = f.read()
    else:
        data = convert(
            model, mode, representative_data,
            max_calibration_samples=max_calibration_samples, text_inputs=text_inputs,
        )
    with atomic_dir(out_dir) as tmp:
        tflite_path = os.path.join(tmp, "model.tflite")
        with open(tflite_path, "wb") as f:
            f.write(data)
        info = inspect_tflite(tflite_path)
        text = text_input_details(info["inputs"]) is not None
        tok, vocabulary = check_text_bundle(data, text, vocabulary, tokenizer,
                                            text_normalization)
        out = info["outputs"][0]
        num_outputs = int(np.prod(out["shape"][1:])) if len(out["shape"]) > 1 else 1
        if num_outputs != len(labels) and not (num_outputs == 1 and len(labels) == 2):
            raise ValueError(
                f"labels has {len(labels)} names but the model outputs {num_outputs} values "
                f"(output shape {out['shape']}). Received: labels={labels!r}. Pass one name per "
                "output unit, in output order."
            )
        _check_texts_eval(texts_eval, x_eval, text)
        if text:
            data, mp = mediapipe_text_ready(data, info["inputs"], info["outputs"], labels,
                                            vocabulary, tok, mode.name, mediapipe)
        else:
            data, mp = mediapipe_ready(data, info["inputs"], info["outputs"], labels, norm,
                                       mode.name, mediapipe)
        if mp["input_adapter"] or mp["metadata"]:
            with open(tflite_path, "wb") as f:
                f.write(data)
            info = inspect_tflite(tflite_path)
        evaluation = None
        if x_eval is not None:
            x_file = np.repeat(x_eval, 3, axis=-1) if mp["input_adapter"] else x_eval
            outputs = predict_tflite(tflite_path, x_file)  # run once: accuracy and MediaPipe
            evaluation = evaluate_tflite(tflite_path, x_file, y_eval, outputs=outputs)
            if not mp["ready"]:
                mp["check"] = {"status": "skipped", "reason": mp["reason"]}
            elif not text:
                mp["check"] = check_mediapipe(tflite_path, x_eval, norm, file_outputs=outputs)
            elif texts_eval is None:
                mp["check"] = {"status": "skipped", "reason": (
                    "no raw texts: pass texts_eval= (the texts x_eval was tokenized from) so "
                    "MediaPipe's TextClassifier can tokenize and classify them")}
            else:
                mp["check"] = check_mediapipe_text(tflite_path, texts_eval, x_eval,
                                                   file_outputs=outputs)
            if mp["check"]["status"] == "failed":
                warnings.warn(f"MediaPipe check of {out_dir}: {mp['check']['reason']}.")
        with open(os.path.join(tmp, "labels.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(labels) + "\n")
        if text:
            with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(vocabulary) + "\n")
        spec = {
            "format": BUNDLE_FORMAT,
            "format_version": 1,
            "kdkeras_version": kdkeras.__version__,
            "model_file": "model.tflite",
            "labels_file": "labels.txt",
            "quantization": mode.name,
            "input": dict(_tensor_entry(info["inputs"][0]), adapter=mp["input_adapter"]),
            "output": _tensor_entry(out),
            "normalization": norm,
            "preprocessing": (
                "input = (raw - mean) / std; if input.quantization is set: "
                "q = clamp(round(input / scale) + zero_point) in input.dtype"
                + (ADAPTER_NOTE if mp["input_adapter"] else "")
            ),
            "postprocessing": (
                "if output.quantization is set: value = (q - zero_point) * scale; "
                "class = argmax(value) indexes class_names"
            ),
            "num_classes": len(labels),
            "class_names": labels,
            "accuracy": None if evaluation is None else evaluation["accuracy"],
            "accuracy_n": None if evaluation is None else evaluation["n"],
            "size_bytes": info["size_bytes"],
            "gzip_bytes": info["gzip_bytes"],
            "op_counts": info["op_counts"],
            "mediapipe": mp,
        }
        if text:
            spec.pop("normalization")
            spec["input"] = _tensor_entry(info["inputs"][0])
            spec["inputs"] = [_tensor_entry(t) for t in info["inputs"]]
            spec["vocabulary_file"] = "vocab.txt"
            spec["tokenizer"] = tok
            spec["preprocessing"] = (
                "tokenise the text as tokenizer says ([CLS] wordpieces [SEP], truncated to "
                "max_length, then pad_id); ids = token ids, mask = 1 for tokens and 0 for "
                "padding, segment_ids = 0; all int32 of shape [1, max_length]")
        with open(os.path.join(tmp, "model.json"), "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=2)
            f.write("\n")
    return out_dir
