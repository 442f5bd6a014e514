"""Causal LMs as ``.litertlm`` files for the LiteRT-LM runtime (``pip install litert-lm-api``).

LiteRT-LM runs a ``.tflite`` file with a ``prefill`` and a ``decode`` signature that pass a
key/value cache from call to call (inputs ``tokens`` int32 ``[1, L]``, ``input_pos`` int32
``[L]``, ``kv_cache_k_0`` / ``kv_cache_v_0``; outputs ``logits`` ``[1, L, V]`` and the updated
caches). A kdkeras causal LM has no cache: it maps a whole window of ids ``[1, T]`` to logits
``[1, T, V]``. :func:`export_litert_lm` bridges the two with a token-history "cache":

* ``kv_cache_k_0`` float32 ``[1, 1, T, 1]`` holds the ids seen so far at their positions (0,
  the padding id, elsewhere); ``kv_cache_v_0`` is a one-slot placeholder the runtime needs;
* each call writes its ``tokens`` at ``input_pos`` (the runtime pads a short prefill with
  position 0, so a slot after the first with position 0 is padding and writes nothing), runs
  the student on the whole history and returns the logits at ``input_pos``.

Every step therefore recomputes the full window, as :class:`kdkeras.export.lm.TFLiteLM` does,
and greedy decoding on the runtime is greedy :func:`kdkeras.generation.generate` on
``[start id] + prompt`` (the runtime always feeds the start token first) while it fits in
``T`` tokens. The file also holds a Hugging Face ``tokenizer.json`` (WordPiece, the casing of
the ``tokenizer`` dict) and the LLM metadata: start token (``bos_id``, else the end-of-document
id), stop tokens, ``max_num_tokens = T``, greedy sampling, float32 activations (the
runtime's default for a text decoder is float16).

The runtime's Python API is text in, text out: :func:`run_litert_lm` takes text or ids (turned
into text by the file's tokenizer) and returns the generated text and its ids re-tokenized.

Example (needs ``litert-lm-api``; not run as a doctest):

    path = export_litert_lm(student, "lm.litertlm", vocabulary, data.tokenizer)
    run_litert_lm(path, "the cat", 10).text
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from kdkeras._io import atomic_path
from kdkeras.export.lm import _check_vocabulary, _lm_shape, _special_tokens
from kdkeras.export.modes import QuantizationMode, get_mode

__all__ = ["export_litert_lm", "run_litert_lm", "litert_lm_tflite", "hf_tokenizer_json",
           "LiteRTLMResult"]


def litert_lm_tflite(student: Any, quantization: Union[str, QuantizationMode] = "dynamic"
                     ) -> bytes:
    """The ``.tflite`` bytes with LiteRT-LM's ``prefill`` / ``decode`` signatures.

    Args:
        student: a tf-keras causal LM, ids int32 ``[B, T]`` -> logits ``[B, T, V]``. Never
            modified.
        quantization: str or QuantizationMode. A mode without calibration data: ``"dynamic"``
            (default), ``"none"``, ``"float16"`` ...

    Raises:
        ValueError: not a causal LM, or a mode that needs representative data.
    """
    import tensorflow as tf

    context, _ = _lm_shape(student)
    mode = get_mode(quantization)
    if mode.requires_representative_data(qat=False):
        raise ValueError(f"export_litert_lm takes modes without calibration data. Received: "
                         f"quantization={mode.name!r}. Use 'dynamic', 'none' or 'float16'.")

    def step(tokens, input_pos, kv_cache_k_0, kv_cache_v_0):
        n = tokens.shape[1]
        real = tf.logical_or(tf.range(n) == 0, input_pos > 0)  # padding slots have position 0
        where = tf.one_hot(input_pos, context) * tf.cast(real, tf.float32)[:, None]  # [n, T]
        written = tf.reduce_max(where, axis=0)  # positions >= T write nothing
        new = tf.matmul(tf.cast(tokens, tf.float32), where)[0]  # exact for ids < 2**24
        history = tf.reshape(kv_cache_k_0, [context]) * (1.0 - written) + new
        ids = tf.cast(tf.round(history), tf.int32)[None]
        logits = student(ids, training=False)
        at = tf.minimum(input_pos, context - 1)
        return {"logits": tf.gather(logits, at, axis=1),
                "kv_cache_k_0": tf.reshape(history, [1, 1, context, 1]),
                "kv_cache_v_0": kv_cache_v_0 + 0.0}

    def specs(n):
        return [tf.TensorSpec([1, n], tf.int32, name="tokens"),
                tf.TensorSpec([n], tf.int32, name="input_pos"),
                tf.TensorSpec([1, 1, context, 1], tf.float32, name="kv_cache_k_0"),
                tf.TensorSpec([1, 1, 1, 1], tf.float32, name="kv_cache_v_0")]

    def prefill(tokens, input_pos, kv_cache_k_0, kv_cache_v_0):
        return step(tokens, input_pos, kv_cache_k_0, kv_cache_v_0)

    def decode(tokens, input_pos, kv_cache_k_0, kv_cache_v_0):
        return step(tokens, input_pos, kv_cache_k_0, kv_cache_v_0)

    holder = tf.Module()
    holder.student = student
    functions = [tf.function(prefill, input_signature=specs(context)).get_concrete_function(),
                 tf.function(decode, input_signature=specs(1)).get_concrete_function()]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, holder)
    mode.configure(converter, None, qat=False)
    data = mode.quantize(converter.convert(), None)
    signatures = _signatures(data)
    if sorted(signatures) != ["decode", "prefill"]:
        raise ValueError(f"The converted file has signatures {sorted(signatures)}, not prefill "
                         "and decode. Report this with your TensorFlow version.")
    return data


def _signatures(data: bytes) -> Dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=data).get_signature_list()


def hf_tokenizer_json(vocabulary: Sequence[str], tokenizer: Dict[str, Any]) -> str:
    """The Hugging Face ``tokenizer.json`` of a kdkeras WordPiece tokenizer (BERT normalizer
    with its ``lowercase`` / ``strip_accents``, BERT pre-tokenizer, ``##`` pieces, no added
    [CLS] / [SEP]: an LM's text is continued, not classified)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    if tokenizer.get("type", "wordpiece") != "wordpiece":
        raise ValueError(f"export_litert_lm writes WordPiece tokenizers. Received: "
                         f"type={tokenizer.get('type')!r}.")
    special = _special_tokens(tokenizer, len(vocabulary))
    if "unk" not in special:
        raise ValueError("tokenizer needs 'unk_id' (the id of unknown words). Received: "
                         f"{sorted(tokenizer)}.")
    prefix = tokenizer.get("suffix_indicator", "##")
    lowercase = bool(tokenizer.get("lowercase", True))
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocabulary)},
                                     unk_token=vocabulary[special["unk"]],
                                     continuing_subword_prefix=prefix))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, lowercase=lowercase,
        strip_accents=bool(tokenizer.get("strip_accents", False)))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix=prefix)
    tok.add_special_tokens(sorted({vocabulary[i] for i in special.values()}))
    return tok.to_str()


def _metadata(start: int, stops: List[int], context: int) -> bytes:
    from litert_lm_builder.runtime.proto import llm_metadata_pb2, sampler_params_pb2

    msg = llm_metadata_pb2.LlmMetadata(max_num_tokens=context)
    msg.start_token.token_ids.ids.append(start)
    for stop in stops:
        msg.stop_tokens.add().token_ids.ids.append(stop)
    msg.llm_model_type.generic_model.SetInParent()
    msg.sampler_params.type = sampler_params_pb2.SamplerParameters.GREEDY
    msg.sampler_params.k = 1
    return msg.SerializeToString()


def export_litert_lm(student: Any, path: Union[str, "os.PathLike[str]"],
                     vocabulary: Sequence[str], tokenizer: Dict[str, Any], *,
                     stop_ids: Optional[Sequence[int]] = None,
                     quantization: Union[str, QuantizationMode] = "dynamic") -> str:
    """Packages a causal LM, its tokenizer and generation settings as one ``.litertlm`` file.

    Args:
        student: a tf-keras causal LM, ids int32 ``[B, T]`` -> logits ``[B, T, V]``. Never
            modified.
        path: str. The ``.litertlm`` file; written atomically.
        vocabulary: list of str. One WordPiece token per id (``len == V``).
        tokenizer: dict. The kdkeras tokenizer description (``LMData.tokenizer``):
            ``lowercase``, ``strip_accents``, ``unk_id``, ``eos_id`` / ``sep_id``, optional
            ``bos_id`` (the start token; default the end-of-document id).
        stop_ids: ints or None. Ids that end generation (default: the end-of-document id).
        quantization: str or QuantizationMode. As for :func:`litert_lm_tflite`.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: not a causal LM, a vocabulary of another size, a tokenizer that is not
            WordPiece or lacks ``unk_id`` / an end-of-document id, a mode needing calibration.
    """
    from litert_lm_builder import LitertLmFileBuilder, TfLiteModelType

    context, size = _lm_shape(student)
    vocabulary = _check_vocabulary(vocabulary, size)
    if not isinstance(tokenizer, dict):
        raise ValueError(f"tokenizer must be a dict. Received: tokenizer={tokenizer!r}.")
    special = _special_tokens(tokenizer, size)
    if "eos" not in special:
        raise ValueError("tokenizer needs 'eos_id' or 'sep_id' (the end-of-document id). "
                         f"Received: {sorted(tokenizer)}.")
    stops = [special["eos"]] if stop_ids is None else [int(i) for i in stop_ids]
    bad = [i for i in stops if not 0 <= i < size]
    if bad:
        raise ValueError(f"stop_ids must be ids in [0, {size}). Received: {bad}.")
    tokenizer_json = hf_tokenizer_json(vocabulary, tokenizer)
    data = litert_lm_tflite(student, quantization)
    with tempfile.TemporaryDirectory(prefix="kdkeras-litertlm-") as tmp:
        files = {"model.tflite": data, "tokenizer.json": tokenizer_json.encode("utf-8"),
                 "llm_metadata.pb": _metadata(special.get("bos", special["eos"]), stops, context)}
        for name, content in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(content)
        builder = LitertLmFileBuilder()
        with contextlib.redirect_stdout(io.StringIO()):  # the builder prints the option
            builder.add_tflite_model(os.path.join(tmp, "model.tflite"),
                                     TfLiteModelType.PREFILL_DECODE, prefer_activation_type="fp32")
        builder.add_hf_tokenizer(os.path.join(tmp, "tokenizer.json"))
        builder.add_llm_metadata(os.path.join(tmp, "llm_metadata.pb"))
        with atomic_path(path) as out, open(out, "wb") as f:
            builder.build(f)
    return os.fspath(path)


class LiteRTLMResult(NamedTuple):
    """What :func:`run_litert_lm` returns.

    Attributes:
        text: str. The generated text (detokenized by the runtime).
        ids: list of int. ``text`` tokenized again by the file's tokenizer, after the prompt
            (:func:`generated_ids`).
        prompt_ids: list of int. The prompt as the runtime tokenized it (without the start id).
        seconds: float. Wall-clock time of prefill + decode.
    """

    text: str
    ids: List[int]
    prompt_ids: List[int]
    seconds: float


def run_litert_lm(path: Union[str, "os.PathLike[str]"], prompt: Union[str, Sequence[int]],
                  max_new_tokens: int, *, num_threads: Optional[int] = 1,
                  cache_dir: Optional[str] = ":nocache") -> LiteRTLMResult:
    """Greedy generation with the LiteRT-LM runtime on CPU (``pip install litert-lm-api``).

    Args:
        path: str. A ``.litertlm`` file (:func:`export_litert_lm`).
        prompt: str, or ids (turned into text with the file's tokenizer; refused when that
            text does not tokenize back to the same ids).
        max_new_tokens: int >= 1. Tokens to generate at most (fewer at a stop token).
        num_threads: int or None. CPU threads (None: the runtime's default).
        cache_dir: str or None. Where the runtime keeps its XNNPACK weight cache; ``":nocache"``
            (default) keeps none (otherwise it writes ``<path>_<mtime>_<size>.xnnpack_cache``
            beside the model when ``cache_dir`` is None).

    Returns:
        LiteRTLMResult.

    Raises:
        ImportError: ``litert_lm`` is not installed.
        ValueError: a bad ``max_new_tokens``, ids that do not survive the text round trip.
    """
    import litert_lm

    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) \
            or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1. Received: "
                         f"max_new_tokens={max_new_tokens!r}.")
    backend = litert_lm.Backend.CPU(thread_count=num_threads) if num_threads else \
        litert_lm.Backend.CPU()
    engine = litert_lm.Engine(os.fspath(path), backend=backend, cache_dir=cache_dir,
                              activation_data_type=litert_lm.ActivationDataType.FLOAT32)
    try:
        if not isinstance(prompt, str):
            ids = [int(i) for i in np.asarray(prompt).reshape(-1)]
            prompt = engine.detokenize(ids)
            if engine.tokenize(prompt) != ids:
                raise ValueError(f"The prompt ids {ids} read as {prompt!r}, which tokenizes to "
                                 f"{engine.tokenize(prompt)}. Pass text or ids of whole words.")
        session = engine.create_session(
            apply_prompt_template=False, max_output_tokens=int(max_new_tokens),
            sampler_config=litert_lm.SamplerConfig(top_k=1))
        start = time.perf_counter()
        session.run_prefill([prompt])
        text = "".join(session.run_decode().texts[:1])
        seconds = time.perf_counter() - start
        session.close()
        prompt_ids = engine.tokenize(prompt)
        return LiteRTLMResult(text, generated_ids(engine.tokenize, prompt, text, prompt_ids),
                              prompt_ids, seconds)
    finally:
        engine.close()


def generated_ids(tokenize, prompt: str, text: str,
                  prompt_ids: Optional[List[int]] = None) -> List[int]:
    """The ids of ``text``, generated after ``prompt``, as the file's tokenizer reads them
    (``prompt_ids``: ``tokenize(prompt)`` when the caller has it already).

    The runtime detokenizes the generated ids on their own, so a first id that continues the
    prompt's last word comes back as ``"##ing the ..."``; tokenized alone that reads as
    ``#``, ``#``, ``ing``. So the prompt and the text are tokenized together (the ``##`` joins
    the word, anything else follows a space) and the prompt's ids are dropped; if the prompt
    does not tokenize to the same ids inside the whole, the text is tokenized alone.

    >>> pieces = {"rever": 1, "##ing": 2, "the": 3, "#": 4, "ing": 5}
    >>> def tokenize(t):  # a toy WordPiece: whole words, or rever + ##ing
    ...     out = []
    ...     for w in t.split():
    ...         out += [1, 2] if w == "revering" else [4, 4, 5] if w == "##ing" else [pieces[w]]
    ...     return out
    >>> generated_ids(tokenize, "the rever", "##ing the")
    [2, 3]
    """
    if not text:
        return []
    head = tokenize(prompt) if prompt_ids is None else list(prompt_ids)
    joined = prompt + text[2:] if text.startswith("##") else prompt + " " + text
    ids = tokenize(joined)
    return ids[len(head):] if ids[:len(head)] == head else tokenize(text)
