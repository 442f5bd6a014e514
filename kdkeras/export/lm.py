"""Causal language models as ``.tflite`` files: export, decode, measure, bundle for an app.

A kdkeras causal LM takes int32 ids ``[batch, T]`` (input ``ids``) and returns float logits
``[batch, T, V]``. :func:`export_causal_lm` converts it with :func:`kdkeras.export.convert`
(keeping the single ids input: no text-classifier ``mask`` / ``segment_ids`` wrapper) and names
the file's tensors ``ids`` and ``logits``. The converted file is checked before it is written:
per-token top-1 agreement with the Keras model on the real positions of the calibration
windows (:mod:`kdkeras.export.selfcheck`).

Quantization: ``"dynamic"`` (int8 weights, float activations; no calibration) is the default;
``"none"`` keeps float32 (numerically the Keras model) and ``"float16"`` halves the weights.
Full ``"int8"`` needs ``representative`` windows of ids and quantizes every activation,
the attention softmax and the logits included: measure the file (:func:`tflite_perplexity`)
before shipping it.

The file runs in the decoding loop of :func:`kdkeras.generation.generate` through
:func:`tflite_next_logits`; :func:`tflite_perplexity` scores held-out windows;
:func:`export_lm_bundle` writes ``model.tflite``, ``vocab.txt`` and ``model.json`` (how to
tokenise, the special ids, the tensors) for an app.

Example:

>>> import numpy as np, kdkeras as kd
>>> from kdkeras.generation import generate
>>> ids = kd.keras.Input((8,), dtype="int32", name="ids")
>>> lm = kd.keras.Model(ids, kd.keras.layers.Dense(12)(kd.keras.layers.Embedding(12, 4)(ids)))
>>> path = export_causal_lm(lm, "/tmp/kd_doc/lm.tflite", quantization="none")
>>> next_logits = tflite_next_logits(path)
>>> next_logits.context, next_logits.vocabulary_size, next_logits.input_name
(8, 12, 'ids')
>>> len(generate(next_logits, [3, 4], max_new_tokens=5))
5
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from kdkeras._io import atomic_dir, atomic_write_bytes
from kdkeras.export.android import _tensor_entry
from kdkeras.export.evaluate import dequantize_output, make_interpreter
from kdkeras.export.modes import QuantizationMode, get_mode
from kdkeras.export.text import _rename, check_vocabulary_tokens
from kdkeras.export.tflite import convert
from kdkeras.export.tflite_file import check_tflite_file
from kdkeras.export.tflite_info import inspect_tflite
from kdkeras.generation import perplexity

__all__ = ["export_causal_lm", "TFLiteLM", "tflite_next_logits", "tflite_perplexity",
           "export_lm_bundle", "LM_BUNDLE_FILES", "name_lm_tensors"]

LM_BUNDLE_FORMAT = "kdkeras-lm-bundle"
LM_BUNDLE_FILES = ("model.tflite", "vocab.txt", "model.json")
#: Windows of random ids the file is checked on when no representative windows are given.
CHECK_WINDOWS = 16


def name_lm_tensors(data: bytes) -> bytes:
    """Renames a one-input, one-output file's tensors to ``ids`` and ``logits`` (in place:
    the converter's names ``serving_default_ids:0`` / ``StatefulPartitionedCall:0`` are longer).
    Returns ``data`` unchanged for another layout or when the patch does not read back."""
    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(data)
    graph = schema.Model.GetRootAsModel(buf, 0).Subgraphs(0)
    if graph.InputsLength() != 1 or graph.OutputsLength() != 1:
        return data
    _rename(buf, graph.Tensors(graph.Inputs(0)), "ids")
    _rename(buf, graph.Tensors(graph.Outputs(0)), "logits")
    patched = bytes(buf)
    try:
        check = schema.Model.GetRootAsModel(patched, 0).Subgraphs(0)
        ok = (check.Tensors(check.Inputs(0)).Name() == b"ids"
              and check.Tensors(check.Outputs(0)).Name() == b"logits")
    except Exception:  # noqa: BLE001 - an unreadable patch is refused
        ok = False
    return patched if ok else data


def _lm_shape(model: Any) -> tuple:
    inputs = getattr(model, "inputs", None) or []
    outputs = getattr(model, "outputs", None) or []
    shape_in = tuple(inputs[0].shape) if len(inputs) == 1 else None
    shape_out = tuple(outputs[0].shape) if len(outputs) == 1 else None
    if (shape_in is None or len(shape_in) != 2 or not shape_in[1] or shape_out is None
            or len(shape_out) != 3 or not shape_out[2]):
        raise ValueError(
            "export_causal_lm needs a causal LM: one int ids input [batch, T] (T fixed) and "
            f"one logits output [batch, T, V]. Received: inputs {shape_in}, outputs {shape_out} "
            f"for model {getattr(model, 'name', type(model).__name__)!r}.")
    return int(shape_in[1]), int(shape_out[2])


def export_causal_lm(student: Any, path: Union[str, "os.PathLike[str]"],
                     quantization: Union[str, QuantizationMode] = "dynamic",
                     representative: Any = None, *, min_agreement: Optional[float] = 0.8,
                     max_calibration_samples: int = 200) -> str:
    """Converts a causal LM to a ``.tflite`` file (input ``ids``, output ``logits``), checked.

    Args:
        student: a tf-keras (or Keras 3) model ids int32 ``[B, T]`` -> logits ``[B, T, V]``.
            Never modified.
        path: str. The file; written atomically, only when the conversion and its check pass.
        quantization: str or QuantizationMode. ``"dynamic"`` (default), ``"none"``,
            ``"float16"``, ``"int8"`` (needs ``representative``) or any other mode.
        representative: int ids ``[N, T]`` or None. Calibration windows for full-integer
            modes, and the windows the file is checked on. Without them the check runs on
            random ids.
        min_agreement: float or None. Minimum per-token top-1 agreement of the file with the
            model on the check windows (None: only check that it loads).
        max_calibration_samples: int. Calibration windows used at most.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: not a causal LM (shapes named), ids outside the vocabulary, an int8 mode
            without ``representative``, or a file that fails its check.
    """
    mode = get_mode(quantization)
    context, vocab = _lm_shape(student)
    if representative is not None:
        representative = np.asarray(representative)
        if representative.ndim != 2 or representative.shape[1] != context \
                or representative.dtype.kind not in "iu":
            raise ValueError(f"representative must be int ids [N, {context}]. Received: "
                             f"dtype {representative.dtype}, shape {representative.shape}.")
        if representative.size and not 0 <= representative.min() <= representative.max() < vocab:
            raise ValueError(f"representative holds ids outside [0, {vocab}): min "
                             f"{representative.min()}, max {representative.max()}. Pass windows "
                             "encoded with the model's vocabulary.")
        check = representative.astype(np.int32)
    elif not mode.needs_representative_data:
        check = np.random.default_rng(0).integers(1, vocab, (CHECK_WINDOWS, context), np.int32)
    else:
        check = None  # convert() refuses with its explanation
    data = convert(student, mode, check, text_inputs=False, min_agreement=min_agreement,
                   max_calibration_samples=max_calibration_samples)
    return atomic_write_bytes(path, name_lm_tensors(data))


class TFLiteLM:
    """A causal-LM ``.tflite`` file as a function ids ``[B, T]`` -> logits ``[B, T, V]``.

    It runs batch 1 at the file's fixed context (a batch is run row by row), so it is the
    ``next_logits`` of :func:`kdkeras.generation.generate` and the ``model`` of
    :func:`kdkeras.generation.perplexity`.

    Attributes:
        path: str. The file.
        context: int. ``T``.
        vocabulary_size: int. ``V``.
        input_name, output_name: str. The file's tensor names.
    """

    def __init__(self, path: str, num_threads: Optional[int] = 1):
        self.path = check_tflite_file(path)
        self._interp = make_interpreter(self.path, num_threads=num_threads)
        inputs = self._interp.get_input_details()
        outputs = self._interp.get_output_details()
        shape = list(inputs[0]["shape"]) if len(inputs) == 1 else []
        if (len(inputs) != 1 or len(outputs) != 1 or len(shape) != 2
                or len(outputs[0]["shape"]) != 3 or np.dtype(inputs[0]["dtype"]).kind not in "iu"):
            raise ValueError(
                f"{self.path!r} is not a causal-LM file (one int ids input [1, T], one logits "
                f"output [1, T, V]). Received: inputs "
                f"{[(d['name'], list(d['shape'])) for d in inputs]}, outputs "
                f"{[(d['name'], list(d['shape'])) for d in outputs]}. Export it with "
                "export_causal_lm.")
        if shape[0] != 1:
            self._interp.resize_tensor_input(inputs[0]["index"], [1, shape[1]], strict=False)
            self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        self.context = int(shape[1])
        self.vocabulary_size = int(self._out["shape"][2])
        self.input_name = self._in["name"]
        self.output_name = self._out["name"]

    def __call__(self, ids: Any) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] != self.context or ids.dtype.kind not in "iu":
            raise ValueError(f"{self.path!r} takes int ids [B, {self.context}]. Received: "
                             f"dtype {ids.dtype}, shape {ids.shape}.")
        dtype = np.dtype(self._in["dtype"])
        rows = []
        for row in ids:
            self._interp.set_tensor(self._in["index"], row[None].astype(dtype))
            self._interp.invoke()
            rows.append(dequantize_output(self._interp.get_tensor(self._out["index"]), self._out))
        return np.concatenate(rows, axis=0)


def tflite_next_logits(path: str, num_threads: Optional[int] = 1) -> TFLiteLM:
    """The :func:`kdkeras.generation.generate` adapter of a causal-LM ``.tflite`` file
    (ai_edge_litert interpreter, batch 1, the file's context; ``.context`` is set)."""
    return TFLiteLM(path, num_threads=num_threads)


def tflite_perplexity(path: str, x: Any, y: Any, sample_weight: Any = None,
                      num_threads: Optional[int] = None) -> float:
    """Perplexity of the ``.tflite`` file on windows ``x`` -> targets ``y``
    (:func:`kdkeras.generation.perplexity`, run window by window on the file)."""
    return perplexity(TFLiteLM(path, num_threads=num_threads), x, y, sample_weight,
                      batch_size=64)


def _check_vocabulary(vocabulary: Any, size: int) -> list:
    vocabulary = check_vocabulary_tokens(vocabulary)
    if len(vocabulary) != size:
        raise ValueError(f"The vocabulary has {len(vocabulary)} tokens but the model's logits "
                         f"have {size}. Pass the vocabulary the model was trained with.")
    return list(vocabulary)


def _special_tokens(tokenizer: Dict[str, Any], size: int) -> Dict[str, int]:
    """``{"pad": id, "unk": id, "eos": id, ...}`` from the tokenizer's ``*_id`` entries."""
    special = {key[:-3]: value for key, value in tokenizer.items() if key.endswith("_id")}
    if "eos" not in special and "sep" in special:
        special["eos"] = special["sep"]  # an LM's end of document is [SEP]
    for role, value in special.items():
        if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                or not 0 <= value < size):
            raise ValueError(f"tokenizer['{role}_id'] must be a token id in [0, {size}). "
                             f"Received: {role}_id={value!r}.")
    return {role: int(value) for role, value in sorted(special.items())}


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays (nested in dicts and lists) as JSON types."""
    if isinstance(value, dict):
        return {str(key): _plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def export_lm_bundle(tflite_path: str, folder: str, vocabulary: Sequence[str],
                     tokenizer: Dict[str, Any]) -> str:
    """Writes ``model.tflite``, ``vocab.txt`` and ``model.json`` to ``folder``, atomically.

    Args:
        tflite_path: str. A causal-LM file (:func:`export_causal_lm`), copied byte for byte.
        folder: str. The bundle folder; an older bundle there is replaced whole, a folder
            holding other files is refused.
        vocabulary: list of str. One token per id; its length must be the file's ``V``.
        tokenizer: dict. How the app tokenises (``LMData.tokenizer``: type, lowercase,
            ``max_length`` = ``context_length`` = context, ``pad_id``, ``unk_id``, ``sep_id``,
            ``eos_id`` ...). Sizes it leaves out are filled in from the file; numpy values are
            written as plain JSON numbers.

    Returns:
        ``folder`` as a string.

    Raises:
        ValueError: not a causal-LM file, a vocabulary of another size or with bad tokens, a
            tokenizer whose ``vocabulary_size`` / ``max_length`` / ``context_length`` / ids
            disagree with the file (bool ids included), a folder holding other files.
    """
    import kdkeras

    lm = TFLiteLM(tflite_path)
    vocabulary = _check_vocabulary(vocabulary, lm.vocabulary_size)
    if not isinstance(tokenizer, dict):
        raise ValueError(f"tokenizer must be a dict. Received: tokenizer={tokenizer!r}.")
    for key, want in (("vocabulary_size", lm.vocabulary_size), ("max_length", lm.context),
                      ("context_length", lm.context)):
        have = tokenizer.get(key, want)
        if isinstance(have, (bool, np.bool_)) or have != want:
            raise ValueError(f"tokenizer[{key!r}] is {have!r} but the file has {want}. "
                             "Pass the tokenizer the model was trained with.")
    special = _special_tokens(tokenizer, lm.vocabulary_size)
    folder = os.fspath(folder).rstrip("/\\") or "."
    if os.path.exists(folder):
        if not os.path.isdir(folder):
            raise ValueError(f"folder exists and is a file. Received: folder={folder!r}.")
        other = sorted(set(os.listdir(folder)) - set(LM_BUNDLE_FILES))
        if other:
            raise ValueError(f"folder holds files that are not part of an LM bundle ({other}). "
                             f"Received: folder={folder!r}. Choose a new or empty folder.")
    info = inspect_tflite(lm.path)
    spec = {
        "format": LM_BUNDLE_FORMAT, "format_version": 1,
        "kdkeras_version": kdkeras.__version__, "task": "causal_lm",
        "model_file": "model.tflite", "vocabulary_file": "vocab.txt",
        "context_length": lm.context, "vocabulary_size": lm.vocabulary_size,
        "tokenizer": dict(_plain(tokenizer), vocabulary_file="vocab.txt", task="causal_lm",
                          vocabulary_size=lm.vocabulary_size, max_length=lm.context,
                          context_length=lm.context),
        "special_tokens": special,
        "inputs": [_tensor_entry(t) for t in info["inputs"]],
        "outputs": [_tensor_entry(t) for t in info["outputs"]],
        "decoding": (
            "ids int32 [1, context_length]: the last context_length token ids, right-padded "
            "with special_tokens.pad; the next token's logits are logits[0, i] at the last "
            "real position i; append the chosen id and repeat until special_tokens.eos"),
        "size_bytes": info["size_bytes"], "gzip_bytes": info["gzip_bytes"],
        "op_counts": info["op_counts"],
    }
    with atomic_dir(folder) as tmp:
        shutil.copyfile(lm.path, os.path.join(tmp, "model.tflite"))
        with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(vocabulary) + "\n")
        with open(os.path.join(tmp, "model.json"), "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=2)
            f.write("\n")
    return folder
