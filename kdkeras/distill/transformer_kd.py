"""Intermediate-layer distillation for transformers, TinyBERT / MiniLM style.

:func:`transformer_hints` turns a teacher and a student that follow the named-layer contract
into a list of :class:`~kdkeras.distill.hints.HintLoss` for :class:`~kdkeras.Distiller`, used
together with logit KD in the same ``fit``:

* ``"embeddings"`` ``[B, T, d]`` -- embedding-layer MSE (TinyBERT), through a learned
  projection when the widths differ;
* ``"hidden_{i}"`` ``[B, T, d]`` -- hidden-state MSE of mapped blocks (TinyBERT), projected
  likewise (one projection per hint; TinyBERT shares a single one across layers);
* ``"attention_{i}"`` ``[B, H, T, T]`` -- attention-distribution KL per head (MiniLM's KL on
  probabilities; TinyBERT's MSE on scores needs pre-softmax scores the contract does not
  expose). Head counts must match;
* ``"values_{i}"`` ``[B, T, d]`` -- MiniLM's value-relation KL, with ``relation_heads`` R
  dividing both widths.

Every weight multiplies each mapped layer's loss, and the Distiller sums them (TinyBERT sums
over layers). Padding is left out: the hints get ``padding_id`` (0, ``[PAD]``) and the
Distiller passes ``ids != padding_id`` of the batch, so padded query rows, padded keys and
padded hidden-state positions count nowhere (see :mod:`kdkeras.distill.hints`).

The teacher may be Keras 3 (keras-hub) and the student tf-keras: layers are only read by name
and shape, and :class:`~kdkeras.distill.teachers.Teacher` reads Keras 3 features with a Keras 3
feature model.

A functional Keras model keeps only the layers on the path to its output. An identity layer
named ``attention_{i}`` on the scores ``MultiHeadAttention(..., return_attention_scores=True)``
returns is otherwise a dead end, dropped from the model: :func:`kdkeras.models.anchor.anchor` keeps
it on the path (``out = anchor(out, attention_probe)`` passes ``out`` through unchanged, in
whichever Keras ``out`` belongs to; converters drop the no-op). The transformer builders
(:func:`kdkeras.models.build_transformer_student`, :func:`kdkeras.models.build_bert_classifier`)
do this for every block.

References:
    Jiao et al. "TinyBERT: Distilling BERT for Natural Language Understanding", Findings of
    EMNLP 2020 (uniform layer mapping, embedding / hidden-state / attention losses).
    Wang et al. "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of
    Pre-Trained Transformers", NeurIPS 2020 (attention KL and value-relation transfer).

Example:

>>> import kdkeras as kd
>>> def toy(width, blocks):
...     ids = kd.keras.Input((8,), dtype="int32")
...     x = kd.keras.layers.Embedding(100, width)(ids)
...     x = kd.keras.layers.Activation("linear", name="embeddings")(x)
...     for i in range(blocks):
...         x = kd.keras.layers.Dense(width, name=f"hidden_{i}")(x)
...     pooled = kd.keras.layers.GlobalAveragePooling1D()(x)
...     return kd.keras.Model(ids, kd.keras.layers.Dense(3, name="output")(pooled))
>>> teacher, student = toy(16, 4), toy(8, 2)
>>> hints = transformer_hints(teacher, student, attention=0.0)
>>> [(h.student_layer, h.teacher_layer, h.projection) for h in hints]
[('embeddings', 'embeddings', True), ('hidden_0', 'hidden_1', True), ('hidden_1', 'hidden_3', True)]
>>> d = kd.Distiller(student=student, teacher=teacher, hints=hints)
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import tensorflow as tf

from kdkeras.distill.hints import HintLoss, check_heads, check_relation_heads
from kdkeras.data.wordpiece import read_vocabulary
from kdkeras.distill.teachers import Teacher
from kdkeras.models.init_from_teacher import uniform_layer_map
from kdkeras.models.transformer import TokenMap
from kdkeras.validation import check_number

__all__ = ["transformer_hints", "uniform_layer_map", "transformer_blocks"]

LayerKey = Union[int, str]


def _model(obj: Any, role: str):
    model = obj.model if isinstance(obj, Teacher) else obj
    if not hasattr(model, "get_layer") or not hasattr(model, "layers") or not getattr(model, "inputs", None):
        raise ValueError(f"Transformer hints need a functional Keras {role} with named layers "
                         f"(hidden_0.., attention_0..); received {type(model).__name__}.")
    return model


def transformer_blocks(model: Any, role: str = "model") -> int:
    """The number L of transformer blocks: the model's layers ``hidden_0`` .. ``hidden_{L-1}``.

    Raises:
        ValueError: when there is no ``hidden_{i}`` layer or the indices have gaps.
    """
    model = _model(model, role)
    found = sorted(int(m[1]) for m in (re.fullmatch(r"hidden_(\d+)", layer.name) for layer in model.layers) if m)
    if not found:
        raise ValueError(
            f"The {role} '{model.name}' has no transformer layers named hidden_0..hidden_{{L-1}} "
            "(outputs of its blocks, e.g. identity layers). Its layers: "
            f"{', '.join(layer.name for layer in model.layers)}")
    if found != list(range(len(found))):
        raise ValueError(f"The {role}'s blocks must be hidden_0..hidden_{{L-1}} without gaps. Found: "
                         f"{', '.join(f'hidden_{i}' for i in found)}")
    return len(found)


def _shape(model, name: str, role: str) -> Tuple:
    names = [layer.name for layer in model.layers]
    if name not in names:
        raise ValueError(
            f"The {role} has no layer named '{name}'. Its layers: {', '.join(names)}. (A layer whose "
            "output does not lead to the model's output is dropped from a functional model: keep "
            "an attention probe on the path with kdkeras.models.anchor.anchor.)")
    return tuple(tf.TensorShape(model.get_layer(name).output.shape).as_list())


def _block_index(key: LayerKey, blocks: int, role: str) -> int:
    index = None
    if isinstance(key, int) and not isinstance(key, bool):
        index = key
    elif isinstance(key, str):
        m = re.fullmatch(r"(?:hidden|attention|values)_(\d+)", key)
        index = int(m[1]) if m else None
    if index is None or not 0 <= index < blocks:
        existing = ", ".join(f"hidden_{i}" for i in range(blocks))
        raise ValueError(f"layer_map names the {role} layer {key!r}, which does not exist. The "
                         f"{role}'s transformer layers: {existing} (or their indices 0..{blocks - 1}).")
    return index


def _normalize_map(layer_map, student_blocks: int, teacher_blocks: int) -> Dict[int, int]:
    if layer_map is None:
        return uniform_layer_map(student_blocks, teacher_blocks)
    pairs = layer_map.items() if isinstance(layer_map, Mapping) else layer_map
    mapping: Dict[int, int] = {}
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError("layer_map must be {student_layer: teacher_layer} or (student, teacher) "
                             f"pairs. Received: {layer_map!r}")
        s, t = _block_index(pair[0], student_blocks, "student"), _block_index(pair[1], teacher_blocks, "teacher")
        if s in mapping:
            raise ValueError(f"layer_map maps the student layer hidden_{s} twice (to teacher "
                             f"hidden_{mapping[s]} and hidden_{t}). Map each student layer once.")
        mapping[s] = t
    if not mapping:
        raise ValueError(f"layer_map is empty. Received: {layer_map!r}; pass None for the uniform map.")
    return dict(sorted(mapping.items()))


def _walk(model) -> Iterable:
    for layer in model.layers:
        yield layer
        inner = getattr(layer, "layer", None)  # a TF-MOT wrapper (pruning, clustering, QAT)
        if inner is not None:
            yield inner
        if hasattr(layer, "layers"):  # a nested model (e.g. a keras-hub backbone)
            yield from _walk(layer)


def _token_vocabulary_size(model) -> Optional[int]:
    """The vocabulary the model's input ids come from: a token map's source vocabulary (a
    student with a vocabulary cut takes the teacher's ids and maps them in the graph), else the
    input size of the token embedding (the layer named ``token_embedding``, else the first
    embedding layer); None when there is none."""
    for layer in _walk(model):
        if isinstance(layer, TokenMap):
            return int(layer.vocab_size)
    embeddings = [l for l in _walk(model) if "Embedding" in type(l).__name__ and (
        isinstance(getattr(l, "input_dim", None), int) or isinstance(getattr(l, "vocabulary_size", None), int))]
    named = [l for l in embeddings if l.name == "token_embedding"]
    for layer in named + embeddings:
        size = getattr(layer, "input_dim", None)
        return int(size if isinstance(size, int) else layer.vocabulary_size)
    return None


def _vocabulary(value: Any, role: str) -> Tuple[int, Optional[List[str]]]:
    """``(size, tokens or None)`` of an int size, a list of tokens or a vocab.txt path."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    if isinstance(value, (str, os.PathLike)):
        tokens = read_vocabulary(value)
        return len(tokens), tokens
    if isinstance(value, (list, tuple)):
        return len(value), [str(t) for t in value]
    raise ValueError(f"vocabulary entries are an int size, a list of tokens or a vocab.txt path. "
                     f"Received for the {role}: {value!r}")


def _check_vocabularies(teacher, student, vocabulary) -> None:
    if vocabulary is None:
        t_size, s_size = _token_vocabulary_size(teacher), _token_vocabulary_size(student)
        if t_size is None or s_size is None or t_size == s_size:
            return
        raise ValueError(
            f"The teacher's token embedding has {t_size} ids and the student's {s_size}: their "
            "vocabularies differ, so the same token id is not the same token and attention and "
            "hidden-state KD cannot compare positions. Logit KD alone stays allowed (no hints). "
            "If the student maps the teacher's ids to a smaller table itself, say so with "
            "vocabulary=(teacher_vocab, student_vocab) (sizes, token lists or vocab.txt paths).")
    if not isinstance(vocabulary, tuple) or len(vocabulary) != 2:
        raise ValueError("vocabulary must be a (teacher_vocabulary, student_vocabulary) tuple. "
                         f"Received: {vocabulary!r}")
    (t_size, t_tokens), (s_size, s_tokens) = _vocabulary(vocabulary[0], "teacher"), _vocabulary(vocabulary[1], "student")
    if t_size != s_size:
        raise ValueError(f"The teacher's vocabulary has {t_size} tokens and the student's {s_size}: "
                         "token ids differ, so attention and hidden-state KD are refused. Logit KD "
                         "alone stays allowed (no hints); or tokenize both with the teacher's tokenizer.")
    if t_tokens is not None and s_tokens is not None and t_tokens != s_tokens:
        i = next(i for i, (a, b) in enumerate(zip(t_tokens, s_tokens)) if a != b)
        raise ValueError(f"The vocabularies differ at id {i}: teacher {t_tokens[i]!r}, student "
                         f"{s_tokens[i]!r}, so attention and hidden-state KD are refused. Logit KD "
                         "alone stays allowed (no hints).")


def _sequence_length(model, role: str) -> Optional[int]:
    shape = tf.TensorShape(model.inputs[0].shape)
    length = shape[1] if shape.rank and shape.rank >= 2 else None
    return None if length is None else int(length)


def _relation_heads(relation_heads, t_heads, s_heads, t_width, s_width) -> int:
    if relation_heads is not None:
        return check_relation_heads(relation_heads, t_width, s_width)
    for heads in (t_heads, s_heads):
        if heads and t_width % heads == 0 and s_width % heads == 0:
            return int(heads)
    raise ValueError(
        f"Neither the teacher's head count ({t_heads}) nor the student's ({s_heads}) divides both "
        f"value widths (teacher {t_width}, student {s_width}). Pass relation_heads=R dividing both, "
        f"e.g. relation_heads={math.gcd(t_width, s_width)}.")


def transformer_hints(
    teacher: Any,
    student: Any,
    layer_map: Optional[Union[Mapping[LayerKey, LayerKey], Iterable[Tuple[LayerKey, LayerKey]]]] = None,
    hidden: float = 1.0,
    attention: float = 1.0,
    values: float = 0.0,
    embeddings: float = 1.0,
    relation_heads: Optional[int] = None,
    vocabulary: Optional[Tuple[Any, Any]] = None,
    padding_id: Optional[int] = 0,
) -> List[HintLoss]:
    """TinyBERT / MiniLM intermediate-layer hints between two transformers.

    Args:
        teacher: a Keras 3 or tf-keras functional model (or a :class:`Teacher` of one) with
            layers ``embeddings``, ``hidden_{i}``, ``attention_{i}``, ``values_{i}``.
        student: a tf-keras functional model with the same named layers.
        layer_map: ``{student_layer: teacher_layer}`` (or ``(student, teacher)`` pairs) with
            block indices or layer names (``2`` or ``"hidden_2"``); None maps uniformly
            (:func:`uniform_layer_map`). The embeddings are always matched to the embeddings.
        hidden: float >= 0. Weight of each mapped block's hidden-state MSE.
        attention: float >= 0. Weight of each mapped block's attention KL (heads must match).
        values: float >= 0. Weight of each mapped block's value-relation KL.
        embeddings: float >= 0. Weight of the embedding MSE.
        relation_heads: int or None. R for the value relation; None takes the teacher's head
            count if it divides both value widths, else the student's.
        vocabulary: None or ``(teacher_vocabulary, student_vocabulary)``, each an int size, a
            list of tokens or a ``vocab.txt`` path. None compares the token embeddings' input
            sizes (the layer named ``token_embedding``, else the first embedding layer).
        padding_id: int or None. Token id of padding, left out of every loss (None: counted).

    Returns:
        A list of :class:`HintLoss` (empty when every weight is 0): embeddings first, then per
        mapped block hidden, attention, values. Projections exist where widths differ.

    Raises:
        ValueError: a model without ``hidden_{i}`` layers; a layer map naming a layer that does
            not exist or a student layer twice; a needed named layer missing; sequence lengths
            that differ; head counts that differ (attention) or an R dividing not both widths
            (values); vocabularies that differ (hints refused, logit KD stays allowed).
    """
    weights = {k: check_number(v, k, low=0) for k, v in
               (("hidden", hidden), ("attention", attention), ("values", values), ("embeddings", embeddings))}
    t_model, s_model = _model(teacher, "teacher"), _model(student, "student")
    t_blocks, s_blocks = transformer_blocks(t_model, "teacher"), transformer_blocks(s_model, "student")
    mapping = _normalize_map(layer_map, s_blocks, t_blocks)
    if not any(weights.values()):
        return []
    t_len, s_len = _sequence_length(t_model, "teacher"), _sequence_length(s_model, "student")
    if t_len is not None and s_len is not None and t_len != s_len:
        raise ValueError(f"Sequence lengths differ: the teacher takes {t_len} tokens and the student "
                         f"{s_len}. Intermediate-layer KD compares positions: use one sequence_length.")
    _check_vocabularies(t_model, s_model, vocabulary)

    def shapes(t_name, s_name):
        return _shape(t_model, t_name, "teacher"), _shape(s_model, s_name, "student")

    def features(kind, t_name, s_name, metric="mse", **kwargs):
        t_shape, s_shape = shapes(t_name, s_name)
        if t_shape[1] is not None and s_shape[1] is not None and t_shape[1] != s_shape[1]:
            raise ValueError(f"Sequence lengths differ: teacher '{t_name}' has {t_shape[1]} positions, "
                             f"student '{s_name}' {s_shape[1]}. Use one sequence_length.")
        if metric == "mse":
            kwargs["projection"] = t_shape[-1] != s_shape[-1]
        return HintLoss(t_name, s_name, metric=metric, weight=weights[kind], padding_id=padding_id,
                        name=f"hint_{s_name}_from_{t_name}", **kwargs)

    hints = []
    if weights["embeddings"]:
        hints.append(features("embeddings", "embeddings", "embeddings"))
    for s, t in mapping.items():
        if weights["hidden"]:
            hints.append(features("hidden", f"hidden_{t}", f"hidden_{s}"))
        if weights["attention"]:
            t_shape, s_shape = shapes(f"attention_{t}", f"attention_{s}")
            check_heads(t_shape, s_shape)
            hints.append(HintLoss(f"attention_{t}", f"attention_{s}", metric="attention_kl",
                                  weight=weights["attention"], padding_id=padding_id,
                                  name=f"hint_attention_{s}_from_attention_{t}"))
        if weights["values"]:
            t_shape, s_shape = shapes(f"values_{t}", f"values_{s}")
            heads = [_heads(m, f"attention_{i}") for m, i in ((t_model, t), (s_model, s))]
            r = _relation_heads(relation_heads, heads[0], heads[1], t_shape[-1], s_shape[-1])
            hints.append(features("values", f"values_{t}", f"values_{s}", metric="value_relation",
                                  relation_heads=r))
    return hints


def _heads(model, name: str) -> Optional[int]:
    """Head count of an attention layer ``[B, H, T, T]`` if the model has it."""
    if name not in [layer.name for layer in model.layers]:
        return None
    shape = tf.TensorShape(model.get_layer(name).output.shape)
    return int(shape[1]) if shape.rank == 4 and shape[1] is not None else None
