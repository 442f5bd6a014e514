"""The Android bundle as a MediaPipe drop-in, and its check with MediaPipe's own client.

Android apps mostly run classifiers through MediaPipe Tasks, whose ``ImageClassifier`` needs
an RGB input (``1 x H x W x 3``) and TFLite metadata in the file (input normalization, labels).
:func:`mediapipe_ready` makes a converted file so: the RGB adapter for a grayscale student
(:func:`~kdkeras.export.mediapipe_adapter.rgb_adapter`) and the metadata written by MediaPipe's
own ``metadata_writers.image_classifier.MetadataWriter``, in the MediaPipe environment
(:mod:`kdkeras.export.mediapipe_env`). :func:`check_mediapipe` loads a file with MediaPipe
Tasks' ``ImageClassifier`` there, classifies 8-bit images made from the evaluation inputs, and
compares each top-1 with the LiteRT interpreter's on the same file
(:func:`kdkeras.export.predict_tflite`, what :func:`kdkeras.evaluate_tflite` scores).

Example (the refusals need no MediaPipe):

>>> pixels_from_inputs(np.full((1, 2, 2, 1), 0.4, np.float32), {"mean": 0, "std": 255})[0][0, 0, 0]
array([102, 102, 102], dtype=uint8)
>>> pixels_from_inputs(np.full((1, 2, 2, 1), 0.5, np.float32), {"mean": 0, "std": 1})[1][:37]
'the inputs are not 8-bit pixel values'
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from kdkeras.export.mediapipe_adapter import image_input, mediapipe_refusal, rgb_adapter
from kdkeras.export.mediapipe_env import MediaPipeUnavailable, mediapipe_status, run_worker

__all__ = ["MIN_AGREEMENT", "bundle_check", "check_mediapipe", "compare_top1", "mediapipe_ready",
           "pixels_from_inputs", "read_mediapipe_metadata"]

#: The share of examples on which MediaPipe's top-1 must equal the LiteRT interpreter's.
MIN_AGREEMENT = 0.995
TASK = "ImageClassifier"


def _channel_values(value: Any, channels: int, what: str) -> List[float]:
    values = [float(v) for v in np.ravel(np.asarray(value, dtype=np.float64))]
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ValueError(f"normalization['{what}'] has {len(values)} values but the image has "
                         f"{channels} channels. Received: {what}={value!r}. Pass one value, or "
                         "one per channel.")
    return values


def mediapipe_ready(data: bytes, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]],
                    labels: Sequence[str], normalization: Dict[str, Any], quantization: str,
                    mediapipe: Optional[bool] = None) -> Tuple[bytes, Dict[str, Any]]:
    """A converted file made ready for MediaPipe's ``ImageClassifier``, and what was done.

    Args:
        data: bytes. The converted TFLite file.
        inputs, outputs: its ``inspect_tflite`` entries.
        labels: class names in output order (written into the metadata).
        normalization: ``{"mean", "std"}`` with ``model_input = (pixel - mean) / std``.
        quantization: str. The export mode's name (named in refusals).
        mediapipe: None (make it ready when the model and mode allow; without the MediaPipe
            environment, add the adapter and say why there is no metadata), True (require it:
            raise instead), False (leave the file as converted).

    Returns:
        ``(bytes, section)``: the file, and ``model.json``'s ``mediapipe`` section: ``ready``
        (MediaPipe's ImageClassifier takes the file), ``task``, ``input_adapter``
        (``"channel_mean"`` or None), ``metadata`` (bool), ``mediapipe_version``,
        ``normalization`` (per channel, as in the metadata) and ``reason`` (why not ready).

    Raises:
        ValueError: ``mediapipe=True`` and the model, mode or normalization cannot run in
            MediaPipe (per-channel values differ), or a per-channel normalization of the wrong
            length.
        MediaPipeUnavailable: ``mediapipe=True`` and there is no MediaPipe environment.
        MediaPipeError: the metadata writer failed (its stderr is in the message).
    """
    section: Dict[str, Any] = {"ready": False, "task": TASK, "input_adapter": None,
                               "metadata": False, "mediapipe_version": None,
                               "normalization": None, "reason": None}
    if mediapipe is False:
        return data, dict(section, reason="mediapipe=False: the file is bundled as converted")
    refusal = mediapipe_refusal(inputs, outputs, quantization, len(labels))
    if refusal is None:
        channels = int(image_input(inputs)["shape_signature"][3])
        norm = {k: _channel_values(normalization[k], channels, k) for k in ("mean", "std")}
        if any(len(set(v)) > 1 for v in norm.values()):
            refusal = (f"a per-channel normalization (mean {norm['mean']}, std {norm['std']}): "
                       "MediaPipe's ImageClassifier refuses it (\"Per-channel image "
                       "normalization is not available\"); train on one mean and std for every "
                       "channel")
    if refusal is not None:
        if mediapipe:
            raise ValueError(f"mediapipe=True, but MediaPipe cannot run this bundle: {refusal}.")
        return data, dict(section, reason=refusal)
    if channels == 1:
        data = rgb_adapter(data)
        section["input_adapter"] = "channel_mean"
        norm = {k: v * 3 for k, v in norm.items()}
    section["normalization"] = norm
    status = mediapipe_status()
    if not status["available"]:
        if mediapipe:
            raise MediaPipeUnavailable(f"mediapipe=True, but {status['reason']}.")
        return data, dict(section, reason=f"no MediaPipe metadata: {status['reason']}")
    with tempfile.TemporaryDirectory(prefix="kdkeras-metadata-") as tmp:
        src, dst = os.path.join(tmp, "in.tflite"), os.path.join(tmp, "out.tflite")
        with open(src, "wb") as f:
            f.write(data)
        run_worker({"command": "write_metadata", "model": src, "out": dst,
                    "labels": list(labels), "mean": norm["mean"], "std": norm["std"]},
                   timeout=300)
        with open(dst, "rb") as f:
            data = f.read()
    return data, dict(section, ready=True, metadata=True,
                      mediapipe_version=status["mediapipe_version"])


def pixels_from_inputs(x: np.ndarray, normalization: Dict[str, Any]
                       ) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """``(images, None)``: the uint8 RGB images ``[N, H, W, 3]`` whose normalization gives
    ``x`` (``pixel = x * std + mean``; gray repeated to 3 channels), or ``(None, reason)``
    when ``x`` is not 8-bit pixels under ``normalization``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        return None, f"the inputs are not images [N, H, W, 1 or 3] (shape {x.shape})"
    channels = x.shape[-1]
    mean = np.asarray(_channel_values(normalization["mean"], channels, "mean"))
    std = np.asarray(_channel_values(normalization["std"], channels, "std"))
    raw = x * std + mean
    off = np.abs(raw - np.round(raw))
    if raw.min() < -0.01 or raw.max() > 255.01 or off.max() > 0.01:
        at = np.unravel_index(int(np.argmax(off if off.max() > 0.01 else np.abs(raw))),
                              raw.shape)
        return None, (f"the inputs are not 8-bit pixel values under normalization "
                      f"mean={normalization['mean']}, std={normalization['std']} "
                      f"(pixel = x * std + mean gives {raw[at]:.4g} at index {tuple(at)}); "
                      "MediaPipe feeds 8-bit images: pass the normalization the data was "
                      "made with, e.g. {'mean': 0, 'std': 255} for pixels / 255")
    images = np.clip(np.round(raw), 0, 255).astype(np.uint8)
    return (np.repeat(images, 3, axis=-1) if channels == 1 else images), None


def check_mediapipe(path: str, x: np.ndarray, normalization: Dict[str, Any], *,
                    min_agreement: float = MIN_AGREEMENT,
                    max_examples: Optional[int] = None,
                    file_outputs: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Classifies ``x`` with MediaPipe Tasks' ``ImageClassifier`` on the file at ``path`` and
    compares each top-1 with the LiteRT interpreter's on the same file.

    MediaPipe gets the 8-bit RGB images ``x`` was made from (:func:`pixels_from_inputs`) and
    normalizes them with the file's metadata; LiteRT gets ``x`` itself (gray repeated to the
    file's 3 channels), as :func:`kdkeras.evaluate_tflite` does.

    Args:
        path: str. A MediaPipe-ready file (:func:`mediapipe_ready`).
        x: np.ndarray. Normalized inputs ``[N, H, W, C]``, as for the Keras model.
        normalization: ``{"mean", "std"}``: how ``x`` was made from pixels.
        min_agreement: float. The share of equal top-1 that passes.
        max_examples: Optional[int]. Check only the first ones (None: all).
        file_outputs: Optional[np.ndarray]. The LiteRT outputs of the file on ``x`` when the
            caller already has them (:func:`kdkeras.export.export_android` does); None: run it.

    Returns:
        dict with ``status`` (``"passed"``, ``"failed"`` or ``"skipped"``), ``reason`` (why
        skipped, or the failure), ``agreement``, ``n``, ``disagreements``, ``min_agreement``,
        ``max_score_difference`` (largest gap between a MediaPipe score and the LiteRT output),
        ``mediapipe_version``, ``task`` and ``seconds`` (the MediaPipe worker's run).

    Raises:
        MediaPipeError: the worker failed (e.g. MediaPipe refused the file; its message is in
            the error).
    """
    from kdkeras.export.evaluate import predict_tflite

    result: Dict[str, Any] = {"status": "skipped", "reason": None, "task": TASK,
                              "agreement": None, "n": 0, "disagreements": None,
                              "min_agreement": min_agreement, "max_score_difference": None,
                              "mediapipe_version": None, "seconds": None}
    x = np.asarray(x)[:max_examples]
    status = mediapipe_status()
    if not status["available"]:
        return dict(result, reason=status["reason"])
    images, why = pixels_from_inputs(x, normalization)
    if images is None:
        return dict(result, reason=why)
    if file_outputs is None:
        x_file = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
        lite = predict_tflite(path, x_file.astype(np.float32))
    else:
        lite = np.asarray(file_outputs)[:max_examples]
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="kdkeras-classify-") as tmp:
        np.savez(os.path.join(tmp, "images.npz"), images=images)
        scores_path = os.path.join(tmp, "scores.npz")
        run_worker({"command": "classify", "model": os.path.abspath(path),
                    "images": os.path.join(tmp, "images.npz"), "scores": scores_path},
                   timeout=300 + 0.05 * len(images))
        scores = np.load(scores_path)["scores"]
    return compare_top1(dict(result, mediapipe_version=status["mediapipe_version"]), scores,
                        lite, start)


def compare_top1(result: Dict[str, Any], scores: np.ndarray, lite: np.ndarray,
                 start: float) -> Dict[str, Any]:
    """``result`` (a check dict holding ``min_agreement``) completed with the comparison of
    MediaPipe's ``scores`` ``[N, classes]`` with the LiteRT outputs ``lite`` of the same
    examples: ``status``, ``n``, ``agreement``, ``disagreements``, ``max_score_difference``,
    ``seconds`` (since ``start``) and ``reason`` (why it failed).

    Example:

    >>> r = compare_top1({"min_agreement": 0.995}, np.eye(3), np.eye(3) * 2, time.time())
    >>> r["status"], r["agreement"], r["max_score_difference"]
    ('passed', 1.0, 1.0)
    """
    from kdkeras.export.evaluate import top1

    lite = np.asarray(lite).reshape(len(lite), -1)
    if scores.shape != lite.shape or not np.all(np.isfinite(scores)):
        return dict(result, status="failed", n=int(len(lite)), reason=(
            f"MediaPipe gave scores of shape {scores.shape} for a file with outputs "
            f"{lite.shape}"))
    same = top1(scores) == top1(lite)
    agreement, min_agreement = float(np.mean(same)), result["min_agreement"]
    passed = agreement >= min_agreement
    return dict(result, status="passed" if passed else "failed", n=int(len(lite)),
                agreement=agreement, disagreements=int(np.sum(~same)),
                max_score_difference=float(np.max(np.abs(scores - lite))),
                seconds=round(time.time() - start, 2),
                reason=None if passed else (
                    f"MediaPipe's top-1 equals the LiteRT interpreter's on only "
                    f"{100 * agreement:.2f}% of {len(lite):,} examples (required: "
                    f"{100 * min_agreement:.1f}%)"))


def read_mediapipe_metadata(path: str) -> Dict[str, Any]:
    """The metadata MediaPipe reads from the file at ``path`` (MediaPipe's own
    ``MetadataDisplayer``, in the MediaPipe environment): ``{"metadata": <its JSON>,
    "associated_files": {name: text}}``.

    Raises:
        MediaPipeUnavailable: no MediaPipe environment. MediaPipeError: the file has no
            metadata, or the worker failed.
    """
    return run_worker({"command": "read_metadata", "model": os.path.abspath(path)},
                      timeout=180)



def bundle_check(bundle_dir: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The MediaPipe check an Android bundle records in its ``model.json``: the
    :func:`check_mediapipe` dict, or ``{"status": "skipped", "reason": ...}`` saying why the
    bundle was not checked (not ready for MediaPipe, or no evaluation data)."""
    spec = json.loads((Path(bundle_dir) / "model.json").read_text(encoding="utf-8"))
    section = spec.get("mediapipe") or {}
    check = section.get("check")
    if check is None:
        why = (section.get("reason") or "the bundle was made without evaluation data"
               if section else "the bundle was made by a kdkeras without the MediaPipe check")
        return {"status": "skipped", "reason": why}
    return dict(check)
