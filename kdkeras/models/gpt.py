"""GPT-style causal language models: a tf-keras student TF-MOT can prune and a keras-hub teacher.

Both take one int32 array of token ids ``[batch, T]`` (right-padded; [PAD] = 0 in a kdkeras
vocabulary) and return float32 next-token logits ``[batch, T, vocab_size]``: position ``t``
sees tokens ``0..t`` only.

The student (:func:`build_gpt_student`) is a GPT-2 decoder in tf-keras: token and learned
position embeddings, pre-LayerNorm blocks (``x + Attention(LN(x))``, ``x + FFN(LN(x))``), a
final LayerNorm and an output tied to the token embedding (GPT-2 and keras-hub do the same: the
``V x d`` table is most of a small model's weights, so it is stored once). The causal mask is
one constant ``[1, T, T]`` built once and shared by every block. There is no padding mask:
padding sits at the right end of a window, where a causal model never lets it reach a real
position (left padding would need one).

The tie goes through :class:`ReversibleEmbedding`. TF-MOT's pruning wrapper forwards
``reverse=True``, but it also counts one pruning step per *call*, so a layer called twice
(embed, then project back) would run its sparsity schedule at twice the speed of the others.
The student therefore calls the embedding once, with ``return_table=True``, and hands the
(masked) table to the weight-free :class:`TiedLogits` layer.

The teacher (:func:`build_gpt_teacher`, :func:`gpt_teacher_from_preset`) is a Keras 3 model
around a ``keras_hub.models.GPT2Backbone``, its logits from the backbone's own
``token_embedding(h, reverse=True)``, held by the serializable :class:`CausalLMLogits` layer so
``.keras`` files keep the tie. Its padding mask is all ones, for the student's reason: right
padding never reaches a real position, while ``ids != 0`` would hide a real token 0 (GPT-2's
byte-pair vocabulary has no padding id: 0 is ``"!"``).

References:
    Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019.
    Press & Wolf, "Using the Output Embedding to Improve Language Models", 2017 (tied weights).
"""

from __future__ import annotations

import importlib
import os
from typing import Optional, Union

import keras as keras3  # Keras 3: the keras-hub teacher
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from kdkeras.models.students import BUILDERS
from kdkeras.models.transformer import PositionEmbedding
from kdkeras.validation import check_int

__all__ = ["CausalLMLogits", "CausalMask", "ReversibleEmbedding", "TiedLogits",
           "build_gpt_student", "build_gpt_teacher", "gpt_teacher_from_preset"]

_serializable = keras.saving.register_keras_serializable(package="kdkeras")


@_serializable
class ReversibleEmbedding(keras.layers.Embedding, tfmot.sparsity.keras.PrunableLayer):
    """A tf-keras ``Embedding`` that can also project hidden states back onto the vocabulary.

    ``call(ids)`` gives ``[..., d]`` vectors; ``call(h, reverse=True)`` gives ``h @ table^T``,
    logits ``[..., V]``; ``call(ids, return_table=True)`` gives ``(vectors, table)`` so a model
    can tie its output through :class:`TiedLogits` with a single call of this layer (what
    :func:`build_gpt_student` does, see the module docstring). TF-MOT prunes the table.

    Example:

    >>> emb = ReversibleEmbedding(10, 4)
    >>> h = emb(tf.constant([[1, 2, 3]]))
    >>> tuple(h.shape), tuple(emb(h, reverse=True).shape)
    ((1, 3, 4), (1, 3, 10))
    """

    def call(self, inputs, reverse=False, return_table=False):
        if reverse:
            if return_table:
                raise ValueError("reverse=True and return_table=True exclude each other.")
            return project(inputs, self.embeddings)
        vectors = super().call(inputs)
        if return_table:
            return vectors, tf.convert_to_tensor(self.embeddings)
        return vectors

    def get_prunable_weights(self):
        return [self.embeddings]


def project(h: tf.Tensor, table: tf.Tensor) -> tf.Tensor:
    """``h [..., d] @ table[V, d]^T -> [..., V]`` as one 2-D ``MatMul`` (TFLite makes it a
    ``FULLY_CONNECTED`` whose weights are the table itself)."""
    flat = tf.reshape(h, [-1, h.shape[-1]])
    logits = tf.matmul(flat, tf.cast(table, flat.dtype), transpose_b=True)
    shape = [d if d is not None else tf.shape(h)[i] for i, d in enumerate(h.shape[:-1])]
    return tf.reshape(logits, [*shape, table.shape[0]])


@_serializable
class TiedLogits(keras.layers.Layer):
    """Weight-free output layer: ``call([h, table]) = h @ table^T`` (see :func:`project`)."""

    def call(self, inputs):
        h, table = inputs
        return project(h, table)


@_serializable
class CausalMask(keras.layers.Layer):
    """The constant lower-triangular mask ``[1, T, T]`` (1 where key <= query) of ``ids [B, T]``,
    built once per model and passed to every attention layer."""

    def call(self, ids):
        steps = ids.shape[1]
        if steps is None:
            raise ValueError("CausalMask needs a fixed sequence length T (Input((T,))).")
        return tf.constant(np.tril(np.ones((1, steps, steps), np.bool_)))


def _init():
    """GPT-2's initializer, a fresh instance per layer (tf-keras repeats an unseeded one)."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _check_sizes(context, vocab_size, width, depth, heads, intermediate, dropout, max_length):
    """Validates the shared arguments; returns ``(intermediate, max_length)`` filled in."""
    context = check_int(context, "context", 1)
    check_int(vocab_size, "vocab_size", 4)  # [PAD], [UNK], [CLS], [SEP] at least
    for value, name in ((width, "width"), (depth, "depth"), (heads, "heads")):
        check_int(value, name, 1)
    if width % heads:
        raise ValueError(f"width must be a multiple of heads. Received: width={width}, "
                         f"heads={heads}")
    intermediate = check_int(4 * width if intermediate is None else intermediate,
                             "intermediate", 1)
    max_length = check_int(context if max_length is None else max_length, "max_length", 1)
    if context > max_length:
        raise ValueError(f"context must be <= max_length, the rows of the position embeddings. "
                         f"Received: context={context}, max_length={max_length}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    return intermediate, max_length


@BUILDERS.register("gpt")
def build_gpt_student(
    context: int = 128,
    vocab_size: int = 6000,
    width: int = 96,
    depth: int = 2,
    heads: int = 2,
    intermediate: Optional[int] = None,
    dropout: float = 0.1,
    max_length: Optional[int] = None,
    name: str = "gpt_student",
) -> keras.Model:
    """A small GPT-2 (pre-LayerNorm, tied output) causal language model in tf-keras.

    Parameters: ``V·d + L·d + depth·(4d² + 9d + 2d·I + I) + 2d`` with ``L = max_length`` and
    ``I = intermediate`` (``12d² + 13d`` per block at the default ``I = 4d``); 801,216 at
    ``V=5886, T=128, d=96, depth=2``.

    Args:
        context: int. ``T``, the fixed number of token ids per example.
        vocab_size: int. ``V`` (>= 4): ids lie in ``[0, V)``; the logits have ``V`` classes.
        width: int. Hidden size ``d``; a multiple of ``heads``.
        depth: int. Number of decoder blocks.
        heads: int. Attention heads per block.
        intermediate: int or None. Feed-forward size (default ``4 * width``).
        dropout: float in [0, 1). Dropout on the embeddings, attention probabilities and each
            block's two residual branches (GPT-2's three places).
        max_length: int or None. Rows of the position embeddings (default ``context``).
        name: str. Model name.

    Returns:
        An uncompiled tf-keras model with input ``"ids"`` int32 ``[B, T]`` and float32 logits
        ``[B, T, V]``; layers ``token_embedding`` (a :class:`ReversibleEmbedding`),
        ``position_embedding``, ``block_{i}_attention`` (a ``MultiHeadAttention``),
        ``final_layer_norm`` and ``logits``.

    Raises:
        ValueError: a size that is not a positive integer, ``vocab_size < 4``, ``width`` not a
            multiple of ``heads``, ``context > max_length`` or ``dropout`` outside [0, 1).

    Example:

    >>> m = build_gpt_student(context=16, vocab_size=50, width=16, depth=1, heads=2)
    >>> m.output_shape, m.count_params() == 50*16 + 16*16 + 12*16*16 + 13*16 + 2*16
    ((None, 16, 50), True)
    """
    intermediate, max_length = _check_sizes(context, vocab_size, width, depth, heads,
                                            intermediate, dropout, max_length)
    dropout = float(dropout)
    ids = keras.Input((context,), dtype="int32", name="ids")
    mask = CausalMask(name="causal_mask")(ids)
    tokens, table = ReversibleEmbedding(vocab_size, width, embeddings_initializer=_init(),
                                        name="token_embedding")(ids, return_table=True)
    positions = PositionEmbedding(max_length, name="position_embedding")(tokens)
    x = keras.layers.Add(name="embeddings_add")([tokens, positions])
    x = keras.layers.Dropout(dropout, name="embeddings_dropout")(x)
    for i in range(depth):
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"block_{i}_attention_norm")(x)
        h = keras.layers.MultiHeadAttention(
            heads, width // heads, dropout=dropout, kernel_initializer=_init(),
            name=f"block_{i}_attention")(h, h, attention_mask=mask)
        h = keras.layers.Dropout(dropout, name=f"block_{i}_attention_dropout")(h)
        x = keras.layers.Add(name=f"block_{i}_attention_add")([x, h])
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"block_{i}_ffn_norm")(x)
        h = keras.layers.Dense(intermediate, activation="gelu", kernel_initializer=_init(),
                               name=f"block_{i}_intermediate")(h)
        h = keras.layers.Dense(width, kernel_initializer=_init(), name=f"block_{i}_ffn_output")(h)
        h = keras.layers.Dropout(dropout, name=f"block_{i}_ffn_dropout")(h)
        x = keras.layers.Add(name=f"block_{i}_ffn_add")([x, h])
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_layer_norm")(x)
    logits = TiedLogits(name="logits")([x, table])
    return keras.Model(ids, logits, name=name)


# ------------------------------------------------------------------------ Keras 3 teacher
@keras3.saving.register_keras_serializable(package="kdkeras")
class CausalLMLogits(keras3.layers.Layer):
    """Keras 3 layer: ``ids [B, T] -> logits [B, T, V]`` through a keras-hub ``GPT2Backbone``
    and its tied ``token_embedding(h, reverse=True)``.

    The backbone's padding mask is all ones: padding sits at the right end of a window, which
    the causal mask already keeps from every real position, and id 0 may be a real token
    (GPT-2's ``"!"``), which ``ids != 0`` would hide.

    Args:
        backbone: a ``keras_hub.models.GPT2Backbone`` (its variables are used, not copied).
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        if isinstance(backbone, dict):
            importlib.import_module("keras_hub")  # registers GPT2Backbone for deserialization
            backbone = keras3.saving.deserialize_keras_object(backbone)
        self.backbone = backbone

    def build(self, ids_shape):
        self.built = True

    def call(self, ids):
        mask = keras3.ops.ones_like(ids, dtype="int32")  # right padding: causal mask suffices
        h = self.backbone({"token_ids": ids, "padding_mask": mask})
        return self.backbone.token_embedding(h, reverse=True)

    def compute_output_shape(self, ids_shape):
        return (*ids_shape, self.backbone.vocabulary_size)

    def get_config(self):
        return {**super().get_config(),
                "backbone": keras3.saving.serialize_keras_object(self.backbone)}


def _teacher_model(backbone, context: int, name: str):
    limit = int(backbone.max_sequence_length)
    if context > limit:
        raise ValueError(f"context must be <= the backbone's max_sequence_length (its position "
                         f"embeddings). Received: context={context}, max_length={limit}")
    ids = keras3.Input((context,), dtype="int32", name="ids")
    return keras3.Model(ids, CausalLMLogits(backbone, name="logits")(ids), name=name)


def build_gpt_teacher(
    context: int = 128,
    vocab_size: int = 6000,
    width: int = 256,
    depth: int = 4,
    heads: int = 4,
    intermediate: Optional[int] = None,
    dropout: float = 0.1,
    max_length: Optional[int] = None,
    name: str = "gpt_teacher",
):
    """A GPT-2 causal language model teacher in Keras 3 (a fresh keras-hub ``GPT2Backbone``).

    keras-hub's GPT-2 has the student's layout (pre-LN, GELU, final LayerNorm, tied output),
    so the parameter formula of :func:`build_gpt_student` holds: 4,699,136 at ``V=5886,
    T=128, d=256, depth=4``.

    Args:
        context: int. ``T``, the fixed number of token ids per example.
        vocab_size: int. ``V`` (>= 4).
        width: int. Hidden size; a multiple of ``heads``.
        depth: int. Number of decoder blocks.
        heads: int. Attention heads.
        intermediate: int or None. Feed-forward size (default ``4 * width``).
        dropout: float in [0, 1). keras-hub's GPT-2 dropout.
        max_length: int or None. The backbone's ``max_sequence_length`` (default ``context``).
        name: str. Model name.

    Returns:
        An uncompiled Keras 3 model ``int32 ids [B, T] -> float32 logits [B, T, V]``; save it
        with ``model.save("teacher.keras")``, load it with ``keras.saving.load_model``.

    Raises:
        ValueError: as :func:`build_gpt_student`.

    Example:

    >>> t = build_gpt_teacher(context=8, vocab_size=50, width=16, depth=1, heads=2)
    >>> t.output_shape
    (None, 8, 50)
    """
    intermediate, max_length = _check_sizes(context, vocab_size, width, depth, heads,
                                            intermediate, dropout, max_length)
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=int(vocab_size), num_layers=int(depth), num_heads=int(heads),
        hidden_dim=int(width), intermediate_dim=intermediate, dropout=float(dropout),
        max_sequence_length=max_length)
    return _teacher_model(backbone, int(context), name)


def gpt_teacher_from_preset(preset: Union[str, os.PathLike], context: int = 128,
                            name: str = "gpt_teacher"):
    """A pretrained keras-hub GPT-2 as a teacher ``ids [B, T] -> logits [B, T, V]`` (Keras 3).

    Presets by name (``"gpt2_base_en"``) download from Kaggle / Hugging Face, so they need a
    network (Colab); a local preset folder (``backbone.save_to_preset(folder)``) works offline.
    The student must use the preset's tokenizer (``keras_hub.tokenizers.GPT2Tokenizer
    .from_preset``) and ``vocab_size``. GPT-2's byte-pair ids have no [PAD]=0: id 0 is the
    real token ``"!"``, which the teacher sees like any other (its padding mask is all ones;
    a right-padded window's padding never reaches a real position of a causal model).

    Args:
        preset: str or path. A keras-hub GPT-2 preset name or a local preset folder.
        context: int. ``T``; at most the preset's ``max_sequence_length``.
        name: str. Model name.

    Returns:
        An uncompiled Keras 3 model, as :func:`build_gpt_teacher`.

    Raises:
        TypeError: ``preset`` is not a str or path.
        ValueError: the preset cannot be loaded (the message says why and what to do), or
            ``context`` exceeds its ``max_sequence_length``.

    Example:

    >>> gpt_teacher_from_preset("/no/such/preset")
    Traceback (most recent call last):
    ...
    ValueError: Could not load the keras-hub GPT-2 preset '/no/such/preset' ...
    """
    if isinstance(preset, os.PathLike):
        preset = os.fspath(preset)
    if not isinstance(preset, str) or not preset:
        raise TypeError("preset must be a keras-hub GPT-2 preset name (e.g. 'gpt2_base_en') or "
                        f"a local preset folder. Received: preset={preset!r}")
    context = check_int(context, "context", 1)
    import keras_hub

    try:
        backbone = keras_hub.models.GPT2Backbone.from_preset(preset)
    except Exception as error:  # keras-hub raises several kinds (network, missing files)
        reason = (str(error).splitlines() or [""])[0][:200]
        raise ValueError(
            f"Could not load the keras-hub GPT-2 preset {preset!r} ({type(error).__name__}: "
            f"{reason}). Preset names download from Kaggle / Hugging Face: run where "
            "there is a network (e.g. Colab), or pass a local folder written by "
            "backbone.save_to_preset(folder), or train one with build_gpt_teacher.") from error
    return _teacher_model(backbone, context, name)
