"""A text student's Android bundle as a MediaPipe drop-in, checked with MediaPipe's own client.

MediaPipe Tasks' ``TextClassifier`` runs a BERT-style file (int32 inputs ``ids``, ``mask``,
``segment_ids``, as :mod:`kdkeras.export.text` writes them) when the file carries TFLite
metadata naming those tensors and holding a WordPiece tokenizer with its ``vocab.txt``.
:func:`mediapipe_text_ready` writes that metadata with MediaPipe's own
``metadata_writers.text_classifier.MetadataWriter.create_for_bert_model`` in the MediaPipe
environment (:mod:`kdkeras.export.mediapipe_env`), then has ``TextClassifier`` load the file
and classify a trial text: a file MediaPipe cannot run (e.g. an int8 op its TFLite runtime
lacks) is bundled as converted, with MediaPipe's error as the reason.
:func:`check_mediapipe_text` gives ``TextClassifier`` the raw texts (it tokenizes them itself)
and compares each top-1 with the LiteRT interpreter's on the ids kdkeras made from the same
texts (what :func:`kdkeras.evaluate_tflite` scores).

MediaPipe's BERT preprocessing (``BertPreprocessorCalculator``, MediaPipe 0.10.21) matches
kdkeras's :class:`~kdkeras.data.wordpiece.WordPieceEncoder` layout: ``[CLS] pieces [SEP]``, cut
to ``max_length`` (``[SEP]`` kept last), padded with id 0, ``mask`` 1 on tokens, ``segment_ids``
0; pieces from a greedy WordPiece with ``##`` suffixes and ``[UNK]``, words split on whitespace,
ASCII punctuation and symbols, Unicode punctuation and CJK characters. It differs in casing and
accents: it lower-cases ASCII letters only (always: a cased vocabulary is refused) and never
strips accents, while kdkeras (keras-hub) case-folds all of Unicode (NFKC) and strips accents
when the tokenizer says so; keras-hub also splits on control and format characters. So a text
of printable ASCII gets the same ids from both (:func:`same_ids_expected`); another may not, and
the check counts such texts and measures the agreement on all of them.

Example (the refusals need no MediaPipe):

>>> tok = {"type": "wordpiece", "lowercase": False, "cls_id": 1, "sep_id": 2, "pad_id": 0,
...        "unk_id": 3}
>>> text_refusal(tok, ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "Hi"])[:38]
'a cased WordPiece tokenizer (lowercase'
>>> same_ids_expected("Great film, 10/10!"), same_ids_expected("Café")
(True, False)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from kdkeras.export.mediapipe_bundle import MIN_AGREEMENT, compare_top1
from kdkeras.export.mediapipe_env import MediaPipeUnavailable, mediapipe_status, run_worker
from kdkeras.export.text import text_input_details

__all__ = ["TEXT_TASK", "check_mediapipe_text", "mediapipe_text_ready", "same_ids_expected",
           "text_file_refusal", "text_refusal"]

TEXT_TASK = "TextClassifier"
#: Output dtypes MediaPipe's TextClassifier reads ("UINT8 or FLOAT32 or BOOL").
OUTPUT_DTYPES = ("float32", "uint8")
#: The special tokens MediaPipe's BERT preprocessing looks up by name, by tokenizer key.
SPECIAL = {"cls_id": "[CLS]", "sep_id": "[SEP]", "unk_id": "[UNK]"}
_PLAIN = frozenset(chr(c) for c in range(32, 127)) | frozenset("\t\n\f\r")


def same_ids_expected(text: str) -> bool:
    """Whether MediaPipe's tokenizer gives ``text`` the ids kdkeras's does: True for printable
    ASCII (plus tab, newline, form feed, carriage return); other characters are lower-cased,
    accent-stripped or split differently by the two."""
    return all(c in _PLAIN for c in text)


def text_refusal(tokenizer: Optional[Dict[str, Any]], vocabulary: Sequence[str]
                 ) -> Optional[str]:
    """Why MediaPipe's ``TextClassifier`` would not tokenize as kdkeras did (None: it would).

    Args:
        tokenizer: dict. The bundle's ``tokenizer`` description (``SplitData.tokenizer``).
        vocabulary: list of str. The tokens of its ``vocab.txt`` (index = id).
    """
    kind = (tokenizer or {}).get("type")
    if kind != "wordpiece":
        return (f"a {kind!r} tokenizer: MediaPipe's TextClassifier tokenizes a model with inputs "
                "ids, mask, segment_ids with WordPiece (BertTokenizer) only; train on WordPiece "
                "ids (data.wordpiece) for a MediaPipe text bundle")
    if not tokenizer.get("lowercase", True):
        return ("a cased WordPiece tokenizer (lowercase=False): MediaPipe's BERT preprocessing "
                "lower-cases every text before tokenizing, so it would feed this model other ids "
                "than training did; use an uncased vocabulary (lowercase=True)")
    if tokenizer.get("suffix_indicator", "##") != "##":
        return (f"the WordPiece suffix indicator {tokenizer['suffix_indicator']!r}: MediaPipe's "
                "BertTokenizer uses '##'")
    wrong = {k: (tokenizer.get(k), t) for k, t in SPECIAL.items()
             if not (isinstance(tokenizer.get(k), int) and 0 <= tokenizer[k] < len(vocabulary)
                     and vocabulary[tokenizer[k]] == t)}
    if wrong or tokenizer.get("pad_id", 0) != 0:
        return (f"special tokens MediaPipe does not use (id, wanted token: {wrong}, pad_id "
                f"{tokenizer.get('pad_id', 0)}): its BERT preprocessing writes [CLS], [SEP] and "
                "[UNK] by name and pads with id 0")
    if len(set(vocabulary)) != len(vocabulary):
        return ("a vocabulary with a token on two lines: MediaPipe's BertTokenizer maps it to "
                "the last of its ids, kdkeras's to the first")
    return None


def text_file_refusal(inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]],
                      quantization: str, num_labels: int) -> Optional[str]:
    """Why MediaPipe's ``TextClassifier`` cannot run this text file (None: it can), from its
    ``inspect_tflite`` entries; ``quantization`` (the mode's name) is named in the reason."""
    ordered = text_input_details(inputs)
    if ordered is None:
        return (f"the file's inputs {[t['name'] for t in inputs]} are not ids, mask, "
                "segment_ids")
    shapes = {t["name"]: list(t["shape"]) for t in ordered}
    if any(len(s) != 2 or s[0] != 1 or s != shapes[ordered[0]["name"]]
           for s in shapes.values()) or any(t["dtype"] != "int32" for t in ordered):
        return (f"MediaPipe's BERT preprocessing feeds three int32 tensors [1, max_length]; the "
                f"file takes {[(t['name'], list(t['shape']), t['dtype']) for t in ordered]}")
    out = outputs[0] if len(outputs) == 1 else None
    if out is None or len(out["shape"]) != 2 or out["shape"] != [1, num_labels]:
        return (f"MediaPipe's TextClassifier reads one [1, classes] score tensor with a score per "
                f"label; the file has outputs {[list(t['shape']) for t in outputs]} for "
                f"{num_labels} labels")
    if out["dtype"] not in OUTPUT_DTYPES:
        return (f"MediaPipe's TextClassifier reads float32 or uint8 scores (\"Expected output "
                f"tensor at index 0 to have type UINT8 or FLOAT32 or BOOL\"); the "
                f"{quantization!r} file outputs {out['dtype']}. Export with "
                "quantization='dynamic' (int8 weights, float32 output) for a MediaPipe bundle")
    return None


def mediapipe_text_ready(data: bytes, inputs: List[Dict[str, Any]],
                         outputs: List[Dict[str, Any]], labels: Sequence[str],
                         vocabulary: Sequence[str], tokenizer: Dict[str, Any],
                         quantization: str, mediapipe: Optional[bool] = None
                         ) -> Tuple[bytes, Dict[str, Any]]:
    """A converted text file made ready for MediaPipe's ``TextClassifier``, and what was done.

    Args:
        data: bytes. The converted TFLite file (inputs ``ids``, ``mask``, ``segment_ids``).
        inputs, outputs: its ``inspect_tflite`` entries.
        labels: class names in output order (written into the metadata).
        vocabulary: list of str. The WordPiece tokens (packed into the file as ``vocab.txt``).
        tokenizer: dict. How kdkeras tokenized (the bundle's ``tokenizer`` section).
        quantization: str. The export mode's name (named in refusals).
        mediapipe: None (make it ready when MediaPipe can run it, else say why), True (require
            it: raise instead), False (leave the file as converted).

    Returns:
        ``(bytes, section)``: the file, and ``model.json``'s ``mediapipe`` section: ``ready``,
        ``task`` (``"TextClassifier"``), ``input_adapter`` (None), ``metadata``,
        ``mediapipe_version``, ``normalization`` (None), ``tokenization`` (where MediaPipe's
        tokenizer differs from kdkeras's) and ``reason`` (why not ready).

    Raises:
        ValueError: ``mediapipe=True`` and MediaPipe cannot run the file or tokenize as kdkeras
            did (the reason is in the message).
        MediaPipeUnavailable: ``mediapipe=True`` and there is no MediaPipe environment.
        MediaPipeError: the metadata writer failed (its stderr is in the message).
    """
    section: Dict[str, Any] = {"ready": False, "task": TEXT_TASK, "input_adapter": None,
                               "metadata": False, "mediapipe_version": None,
                               "normalization": None, "tokenization": None, "reason": None}
    if mediapipe is False:
        return data, dict(section, reason="mediapipe=False: the file is bundled as converted")
    refusal = (text_file_refusal(inputs, outputs, quantization, len(labels))
               or text_refusal(tokenizer, vocabulary))
    if refusal is None:
        status = mediapipe_status()
        if not status["available"]:
            if mediapipe:
                raise MediaPipeUnavailable(f"mediapipe=True, but {status['reason']}.")
            return data, dict(section, reason=f"no MediaPipe metadata: {status['reason']}")
        names = [t["name"] for t in text_input_details(inputs)]
        with tempfile.TemporaryDirectory(prefix="kdkeras-metadata-") as tmp:
            src, dst = os.path.join(tmp, "in.tflite"), os.path.join(tmp, "out.tflite")
            vocab = os.path.join(tmp, "vocab.txt")
            with open(src, "wb") as f:
                f.write(data)
            with open(vocab, "w", encoding="utf-8") as f:
                f.write("\n".join(vocabulary) + "\n")
            written = run_worker({"command": "write_text_metadata", "model": src, "out": dst,
                                  "labels": list(labels), "vocab": vocab, "ids_name": names[0],
                                  "mask_name": names[1], "segment_name": names[2]},
                                 timeout=300)
            if written["refused"]:
                refusal = (f"MediaPipe {status['mediapipe_version']}'s TextClassifier cannot run "
                           f"the {quantization!r} file: {written['refused']}. Export with "
                           "quantization='dynamic' (int8 weights, float activations)")
            else:
                with open(dst, "rb") as f:
                    data = f.read()
    if refusal is not None:
        if mediapipe:
            raise ValueError(f"mediapipe=True, but MediaPipe cannot run this bundle: {refusal}.")
        return data, dict(section, reason=refusal)
    accents = " and strips accents" if tokenizer.get("strip_accents") else ""
    return data, dict(section, ready=True, metadata=True,
                      mediapipe_version=status["mediapipe_version"], tokenization=(
                          "MediaPipe lower-cases ASCII letters only and keeps accents; kdkeras "
                          f"case-folds all of Unicode{accents}: texts of printable ASCII get "
                          "the same ids, others may not"))


def check_mediapipe_text(path: str, texts: Sequence[str], ids: np.ndarray, *,
                         min_agreement: float = MIN_AGREEMENT,
                         max_examples: Optional[int] = None,
                         file_outputs: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Classifies ``texts`` with MediaPipe Tasks' ``TextClassifier`` on the file at ``path``
    and compares each top-1 with the LiteRT interpreter's on ``ids``, kdkeras's tokenization of
    the same texts (MediaPipe tokenizes the raw texts itself, with the file's metadata).

    Args:
        path: str. A MediaPipe-ready text file (:func:`mediapipe_text_ready`).
        texts: list of str. The raw texts.
        ids: np.ndarray. int ``[N, T]``: ``texts`` as kdkeras tokenized them (e.g.
            ``data.x_test`` with ``data.texts_test``), row for row.
        min_agreement: float. The share of equal top-1 that passes.
        max_examples: Optional[int]. Check only the first ones (None: all).
        file_outputs: Optional[np.ndarray]. The LiteRT outputs of the file on ``ids`` when the
            caller already has them; None: run it.

    Returns:
        dict as :func:`~kdkeras.export.mediapipe_bundle.check_mediapipe` returns (``status``,
        ``reason``, ``agreement``, ``n``, ``disagreements``, ``min_agreement``,
        ``max_score_difference``, ``mediapipe_version``, ``task``, ``seconds``) plus
        ``texts_not_plain_ascii``: how many checked texts MediaPipe may tokenize otherwise
        (:func:`same_ids_expected` is False).

    Raises:
        ValueError: ``texts`` is not a list of strings, or its length differs from ``ids``.
        MediaPipeError: the worker failed (e.g. MediaPipe refused the file; its message is in
            the error).
    """
    from kdkeras.export.evaluate import predict_tflite

    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"texts must be a list of strings (the raw texts of ids). Received: "
                         f"{type(texts).__name__} {str(texts)[:60]!r}.")
    ids = np.asarray(ids)
    if len(texts) != len(ids):
        raise ValueError(f"texts and ids must hold the same examples, row for row. Received: "
                         f"{len(texts)} texts and ids of shape {ids.shape}.")
    texts, ids = list(texts)[:max_examples], ids[:max_examples]
    result: Dict[str, Any] = {"status": "skipped", "reason": None, "task": TEXT_TASK,
                              "agreement": None, "n": 0, "disagreements": None,
                              "min_agreement": min_agreement, "max_score_difference": None,
                              "mediapipe_version": None, "seconds": None,
                              "texts_not_plain_ascii": sum(not same_ids_expected(t)
                                                           for t in texts)}
    status = mediapipe_status()
    if not status["available"]:
        return dict(result, reason=status["reason"])
    lite = (predict_tflite(path, ids) if file_outputs is None
            else np.asarray(file_outputs)[:max_examples])
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="kdkeras-classify-") as tmp:
        texts_path, scores_path = os.path.join(tmp, "texts.json"), os.path.join(tmp, "s.npz")
        with open(texts_path, "w", encoding="utf-8") as f:
            json.dump(texts, f)
        run_worker({"command": "classify_text", "model": os.path.abspath(path),
                    "texts": texts_path, "scores": scores_path},
                   timeout=300 + 0.05 * len(texts))
        scores = np.load(scores_path)["scores"]
    return compare_top1(dict(result, mediapipe_version=status["mediapipe_version"]), scores,
                        lite, start)
