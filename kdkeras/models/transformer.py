"""A BERT-style transformer student in tf-keras, built so TF-MOT and TFLite can take it.

The encoder (post-LayerNorm blocks, as BERT and MiniLM) uses only tf-keras ``Embedding``,
``MultiHeadAttention``, ``LayerNormalization``, ``Dense`` and ``Dropout`` plus a few small
weight-free layers, so :func:`kdkeras.compress.prune` wraps every ``Dense``, ``Embedding`` and
attention kernel and ``tf.lite.TFLiteConverter`` converts it. The input is the shared text
layout: one int32 array of WordPiece ids ``[batch, T]`` with 0 as padding; the attention mask
is ``ids != 0``, computed in the graph. Logits come from a ``Dense`` named ``"output"`` on the
masked mean of the last hidden states (MiniLM was trained with mean pooling).

Named layers for intermediate-layer distillation (:class:`kdkeras.distill.hints.HintLoss`):
``embeddings`` ``[B, T, d]``, ``hidden_{i}`` ``[B, T, d]``, ``attention_{i}`` ``[B, H, T, T]``
(softmax probabilities) and ``values_{i}`` ``[B, T, d]`` (the attention's value projection,
heads concatenated).

The teacher's 30,522-token vocabulary dominates a small student; two levers shrink it:
``embedding_dim`` (ALBERT's factorized embeddings) and ``token_map`` (a vocabulary cut from
:func:`vocabulary_cut`, remapped in the graph so the app keeps the teacher's ``vocab.txt``).

References:
    Devlin et al., BERT, 2019. Lan et al., ALBERT, 2020 (factorized embeddings). Wang et al.,
    MiniLM, 2020. Jiao et al., TinyBERT, 2020.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from kdkeras.models.anchor import anchor
from kdkeras.models.students import BUILDERS, _text_input
from kdkeras.validation import check_int

#: BERT's special token ids in the uncased WordPiece vocabulary ([PAD], [UNK], [CLS], [SEP]).
BERT_SPECIALS = (0, 100, 101, 102)

_serializable = keras.saving.register_keras_serializable(package="kdkeras")


def value_projection(attention: keras.layers.MultiHeadAttention, value) -> tf.Tensor:
    """The value projection of a tf-keras ``MultiHeadAttention``, heads concatenated.

    The one place kdkeras touches tf-keras's private ``_value_dense`` sublayer
    (``tests/models/test_transformer.py`` fails, naming it, if an upgrade moves it).

    Args:
        attention: a built tf-keras ``MultiHeadAttention``.
        value: Tensor ``[B, T, d_in]``, the ``value`` input of the attention.

    Returns:
        Tensor ``[B, T, heads * value_dim]``.
    """
    projected = attention._value_dense(value)  # [B, T, H, dh]  pylint: disable=protected-access
    steps = projected.shape[1] if projected.shape[1] is not None else tf.shape(projected)[1]
    return tf.reshape(projected, [-1, steps, projected.shape[2] * projected.shape[3]])


@_serializable
class AttentionWithValues(keras.layers.MultiHeadAttention,
                          tfmot.sparsity.keras.PrunableLayer):
    """``MultiHeadAttention`` that can also return its value projection.

    ``call(..., return_values=True)`` (with ``return_attention_scores=True``) returns
    ``(output, scores, values)``. Computing the values inside the layer keeps them on the
    layer's own (pruned) weights through cloning and saving. TF-MOT prunes the query, key,
    value and output kernels (``get_prunable_weights``), as for a plain ``MultiHeadAttention``.
    """

    def call(self, query, value, key=None, attention_mask=None, return_attention_scores=False,
             training=None, use_causal_mask=False, return_values=False):
        result = super().call(query, value, key, attention_mask=attention_mask,
                              return_attention_scores=return_attention_scores,
                              training=training, use_causal_mask=use_causal_mask)
        if not return_values:
            return result
        if not return_attention_scores:
            raise ValueError("return_values=True needs return_attention_scores=True.")
        return (*result, value_projection(self, value))

    def get_prunable_weights(self):
        return [self._query_dense.kernel, self._key_dense.kernel,  # pylint: disable=protected-access
                self._value_dense.kernel, self._output_dense.kernel]  # pylint: disable=protected-access


@_serializable
class TokenMap(keras.layers.Layer):
    """Remaps teacher-vocabulary ids to a cut vocabulary with a constant lookup table.

    Id ``token_map[j]`` becomes ``j``; ids missing from the map (or >= ``vocab_size``) become
    the new id of ``unk_id``. The map lives in the config, so it survives cloning and saving.

    >>> TokenMap([0, 7, 100], vocab_size=200)(tf.constant([[7, 5, 0]])).numpy().tolist()
    [[1, 2, 0]]
    """

    def __init__(self, token_map: Sequence[int], vocab_size: int, unk_id: int = 100, **kwargs):
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        self.token_map = [int(i) for i in token_map]
        self.vocab_size, self.unk_id = int(vocab_size), int(unk_id)
        check_token_map(self.token_map, self.vocab_size, self.unk_id)
        table = np.full(self.vocab_size, self.token_map.index(self.unk_id), np.int32)
        table[self.token_map] = np.arange(len(self.token_map), dtype=np.int32)
        self._table = table

    def call(self, ids):
        ids = tf.cast(ids, tf.int32)
        inside = tf.logical_and(ids >= 0, ids < self.vocab_size)
        mapped = tf.gather(tf.constant(self._table), tf.where(inside, ids, 0))
        return tf.where(inside, mapped, self._table[self.unk_id])

    def get_config(self):
        return {**super().get_config(), "token_map": self.token_map,
                "vocab_size": self.vocab_size, "unk_id": self.unk_id}


@_serializable
class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embeddings ``[max_length, width]``, broadcast to the input."""

    def __init__(self, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.max_length = int(max_length)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            "embeddings", shape=(self.max_length, int(input_shape[-1])),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        super().build(input_shape)

    def call(self, x):
        t = tf.shape(x)[1]
        return tf.broadcast_to(self.embeddings[:t], tf.shape(x))

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}


@_serializable
class PaddingMask(keras.layers.Layer):
    """``ids != 0`` as float ``[B, T]`` (1 for tokens, 0 for padding)."""

    def call(self, ids):
        return tf.cast(tf.not_equal(ids, 0), self.compute_dtype)


@_serializable
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of ``x [B, T, d]`` over the positions where ``mask [B, T]`` is 1."""

    def call(self, inputs):
        x, mask = inputs
        mask = tf.cast(mask, x.dtype)[..., None]
        return tf.reduce_sum(x * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)


def check_token_map(token_map: Sequence[int], vocab_size: int, unk_id: int) -> None:
    """Raises ValueError unless ``token_map`` is a strictly increasing list of ids in
    ``[0, vocab_size)`` holding 0 (padding) and ``unk_id``."""
    arr = np.asarray(token_map)
    if arr.ndim != 1 or arr.size < 2 or np.any(np.diff(arr) <= 0):
        raise ValueError("token_map must be a strictly increasing 1-D list of token ids (use "
                         f"vocabulary_cut). Received: token_map={_short(token_map)}")
    if arr[0] != 0 or arr[-1] >= vocab_size or unk_id not in set(arr.tolist()):
        raise ValueError(
            f"token_map must hold the padding id 0 and unk_id={unk_id}, all below "
            f"vocab_size={vocab_size}. Received: token_map={_short(token_map)}")


def _short(values) -> str:
    values = list(values) if not isinstance(values, np.ndarray) else values.tolist()
    return str(values) if len(values) <= 8 else f"[{values[0]}, ..., {values[-1]}] (n={len(values)})"


def vocabulary_cut(ids_arrays: Iterable[np.ndarray], vocab_size: int = 30522,
                   specials: Sequence[int] = BERT_SPECIALS) -> np.ndarray:
    """The sorted teacher-vocabulary ids that ``ids_arrays`` use, plus ``specials``.

    Pass the result as ``token_map`` to :func:`build_transformer_student`: the student then
    embeds only these tokens and maps any other id to ``[UNK]``.

    Args:
        ids_arrays: iterable of int arrays of token ids (e.g. ``[x_train]``); a single array is
            accepted too.
        vocab_size: int. The teacher's vocabulary size; ids must lie in ``[0, vocab_size)``.
        specials: ids always kept ([PAD]=0, [UNK], [CLS], [SEP] of BERT by default).

    Returns:
        int32 array, strictly increasing.

    Raises:
        ValueError: an id outside ``[0, vocab_size)``.

    Example:

    >>> vocabulary_cut([np.array([[101, 2023, 102, 0]])]).tolist()
    [0, 100, 101, 102, 2023]
    """
    if isinstance(ids_arrays, np.ndarray):
        ids_arrays = [ids_arrays]
    used = set(int(s) for s in specials)
    for arr in ids_arrays:
        arr = np.asarray(arr)
        if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
            raise ValueError(
                f"Token ids must lie in [0, {vocab_size}) (vocab_size). Received ids from "
                f"{arr.min()} to {arr.max()}: tokenize with the teacher's vocabulary.")
        used.update(np.unique(arr).tolist())
    bad = [s for s in used if not 0 <= s < vocab_size]
    if bad:
        raise ValueError(f"specials must lie in [0, {vocab_size}). Received: specials={specials}")
    return np.array(sorted(used), np.int32)


@BUILDERS.register("transformer")
def build_transformer_student(
    input_shape: Sequence[int] = (64,),
    num_classes: int = 2,
    vocab_size: int = 30522,
    width: int = 128,
    depth: int = 4,
    heads: int = 4,
    intermediate: Optional[int] = None,
    embedding_dim: Optional[int] = None,
    token_map: Optional[Sequence[int]] = None,
    dropout: float = 0.1,
    max_length: Optional[int] = None,
    unk_id: int = 100,
    name: str = "transformer_student",
) -> keras.Model:
    """A BERT-style (post-LayerNorm) transformer encoder student with a mean-pooled head.

    Args:
        input_shape: Sequence[int]. ``(T,)``: the fixed sequence length.
        num_classes: int. Number of classes (>= 2).
        vocab_size: int. Size of the tokenizer's vocabulary (the teacher's, 30522 for
            MiniLM/BERT uncased): input ids lie in ``[0, vocab_size)``.
        width: int. Hidden size ``d``; a multiple of ``heads``.
        depth: int. Number of transformer blocks.
        heads: int. Attention heads per block.
        intermediate: int or None. Feed-forward size (default ``4 * width``).
        embedding_dim: int or None. ALBERT factorized embeddings: token embeddings of this
            size projected to ``width`` by a ``Dense`` named ``"embedding_projection"``.
        token_map: sorted ids or None. A vocabulary cut (:func:`vocabulary_cut`): only these
            ids get an embedding row; other ids map to ``unk_id``.
        dropout: float. Dropout on embeddings, attention probabilities, block outputs and
            before the logits.
        max_length: int or None. Rows of the position embeddings (default ``T``).
        unk_id: int. The ``[UNK]`` id in the tokenizer's vocabulary (used with ``token_map``).
        name: str. Model name.

    Returns:
        An uncompiled tf-keras model ``int32 [B, T] -> logits [B, num_classes]`` with the named
        layers ``embeddings``, ``hidden_{i}``, ``attention_{i}``, ``values_{i}`` and
        ``output``.

    Raises:
        ValueError: a bad shape, size or token map, naming the value.

    Example:

    >>> m = build_transformer_student((16,), 3, vocab_size=1000, width=32, depth=2, heads=2)
    >>> m.output_shape, m.get_layer("attention_1").output_shape
    ((None, 3), (None, 2, 16, 16))
    """
    shape, num_classes, vocab_size = _text_input(input_shape, num_classes, vocab_size)
    seq = shape[0]
    width, depth, heads = (check_int(v, n, 1) for v, n in
                           ((width, "width"), (depth, "depth"), (heads, "heads")))
    if width % heads:
        raise ValueError(f"width must be a multiple of heads. Received: width={width}, "
                         f"heads={heads}")
    intermediate = check_int(intermediate if intermediate is not None else 4 * width,
                             "intermediate", 1)
    max_length = check_int(max_length if max_length is not None else seq, "max_length", 1)
    if max_length < seq:
        raise ValueError(f"max_length must be >= the sequence length {seq}. "
                         f"Received: max_length={max_length}")
    if embedding_dim is not None:
        embedding_dim = check_int(embedding_dim, "embedding_dim", 1)
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")

    ids = keras.Input(shape, dtype="int32", name="ids")
    mask = PaddingMask(name="padding_mask")(ids)
    attention_mask = keras.layers.Reshape((1, seq), name="attention_mask")(mask)
    rows, tokens = vocab_size, ids
    if token_map is not None:
        tokens = TokenMap(token_map, vocab_size, unk_id, name="token_map")(ids)
        rows = len(token_map)
    x = keras.layers.Embedding(rows, embedding_dim or width, name="token_embedding",
                               embeddings_initializer=keras.initializers.TruncatedNormal(
                                   stddev=0.02))(tokens)
    if embedding_dim is not None:
        x = keras.layers.Dense(width, name="embedding_projection")(x)
    positions = PositionEmbedding(max_length, name="position_embedding")(x)
    x = keras.layers.Add(name="embeddings_add")([x, positions])
    x = keras.layers.LayerNormalization(epsilon=1e-12, name="embeddings_layer_norm")(x)
    x = keras.layers.Dropout(dropout, name="embeddings_dropout")(x)
    x = anchor(x, name="embeddings")  # named probes: weight-free, so they stay float under QAT
    for i in range(depth):
        attended, scores, values = AttentionWithValues(
            heads, width // heads, dropout=dropout, name=f"self_attention_{i}")(
                x, value=x, attention_mask=attention_mask, return_attention_scores=True,
                return_values=True)
        attended = keras.layers.Dropout(dropout, name=f"attention_dropout_{i}")(attended)
        x = keras.layers.Add(name=f"attention_add_{i}")([x, attended])
        x = keras.layers.LayerNormalization(epsilon=1e-12, name=f"attention_layer_norm_{i}")(x)
        h = keras.layers.Dense(intermediate, activation="gelu", name=f"intermediate_{i}")(x)
        h = keras.layers.Dense(width, name=f"ffn_output_{i}")(h)
        h = keras.layers.Dropout(dropout, name=f"ffn_dropout_{i}")(h)
        x = keras.layers.Add(name=f"ffn_add_{i}")([x, h])
        x = keras.layers.LayerNormalization(epsilon=1e-12, name=f"ffn_layer_norm_{i}")(x)
        scores = anchor(scores, name=f"attention_{i}")
        values = anchor(values, name=f"values_{i}")
        x = anchor(x, scores, values, name=f"hidden_{i}")
    x = MaskedMeanPooling(name="pool")([x, mask])
    x = keras.layers.Dropout(dropout, name="pool_dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="output")(x)
    return keras.Model(ids, outputs, name=name)
