"""Ready-made teachers and students for images, built from layers TF-MOT can compress.

Every builder returns an uncompiled tf-keras functional model that outputs **logits** (no
softmax) from a final ``Dense`` layer named ``"output"``, so ``kd.prune(..., skip=("output",))``
and the distillation losses work on them unchanged.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import tf_keras as keras

from kdkeras.registry import Registry
from kdkeras.validation import check_number

BUILDERS = Registry("model builder")


def _check(input_shape, num_classes) -> Tuple[Tuple[int, ...], int]:
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"input_shape must be positive sizes. Received: input_shape={input_shape}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2. Received: num_classes={num_classes}")
    return shape, int(num_classes)


def _image_input(shape):
    if len(shape) == 2:  # (H, W): add the channel axis
        inputs = keras.Input(shape)
        return inputs, keras.layers.Reshape(shape + (1,))(inputs)
    if len(shape) != 3:
        raise ValueError(f"image models need (H, W) or (H, W, C) inputs. Received: {shape}")
    inputs = keras.Input(shape)
    return inputs, inputs


@BUILDERS.register("cnn_teacher")
def build_cnn_teacher(
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    filters: Sequence[int] = (32, 64),
    dense: int = 256,
    dropout: float = 0.3,
    convs_per_stage: int = 1,
    name: str = "cnn_teacher",
) -> keras.Model:
    """A VGG-style CNN teacher: per stage 3×3 convs (batch-normed) and a 2×2 max-pool.

    With the defaults on 28×28×1 inputs it has about 825k parameters (the README benchmark
    gives its Fashion-MNIST accuracy).

    Example:

    >>> m = build_cnn_teacher((28, 28, 1), 10)
    >>> m.output_shape
    (None, 10)
    """
    shape, num_classes = _check(input_shape, num_classes)
    inputs, x = _image_input(shape)
    for i, f in enumerate(filters):
        for j in range(convs_per_stage):
            x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}_{j}")(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}_{j}")(x)
            x = keras.layers.ReLU(name=f"relu{i}_{j}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="dropout_in")(x)
    x = keras.layers.Dense(dense, activation="relu", name="features")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def _augment(x, translate: float, flip: bool):
    """Training-only augmentation layers (identity at inference): a random shift by up to
    ``translate`` of the height and width (zero fill), and a random left-right flip."""
    if check_number(translate, "translate", low=0, high=1, high_open=True):
        x = keras.layers.RandomTranslation(translate, translate, fill_mode="constant",
                                           name="random_shift")(x)
    if flip:
        x = keras.layers.RandomFlip("horizontal", name="random_flip")(x)
    return x


def _conv_bn(x, filters: int, strides: int, name: str, relu: bool = True):
    x = keras.layers.Conv2D(filters, 3, strides, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


@BUILDERS.register("resnet_teacher")
def build_resnet_teacher(
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    filters: Sequence[int] = (24, 48, 96),
    blocks_per_stage: int = 1,
    stem_pool: int = 2,
    dropout: float = 0.0,
    translate: float = 0.0,
    flip: bool = False,
    name: str = "resnet_teacher",
) -> keras.Model:
    """A small residual CNN teacher (He et al. 2016): a 3×3 stem and a 2×2 max-pool, then per
    entry of ``filters`` a stage of basic blocks (two batch-normed 3×3 convs and an identity or
    1×1 projection shortcut), each stage after the first halving the resolution, then global
    average pooling and the logits.

    With the defaults on 28×28×1 inputs it has about 175k parameters and, trained 3 epochs
    with Adam and :func:`kdkeras.models.schedules.cosine_decay` (peak 3e-3, batch 128), reaches
    about 92.1% on Fashion-MNIST for less CPU time than ``cnn_teacher``'s 90.5% in 4 epochs
    (``benchmarks/teacher_fashion_mnist.py``). The augmentation layers (``translate``,
    ``flip``) are off by default: they cost accuracy in so few epochs.

    Args:
        input_shape: Sequence[int]. ``(H, W)`` or ``(H, W, C)``.
        num_classes: int. Number of classes (>= 2).
        filters: Sequence[int]. Width of each stage.
        blocks_per_stage: int. Basic blocks per stage (>= 1).
        stem_pool: int. Max-pool size after the stem (1: none; 2 quarters the cost of
            every stage).
        dropout: float. Dropout before the logits.
        translate: float. Training-only random shift, a share of the height and width.
        flip: bool. Training-only random left-right flip.
        name: str. Model name.

    Returns:
        An uncompiled tf-keras model with logits from a ``Dense`` named ``"output"``.

    Raises:
        ValueError: a bad ``input_shape``, ``num_classes < 2``, ``blocks_per_stage < 1`` or
            ``translate`` outside [0, 1).

    References:
        He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.

    Example:

    >>> build_resnet_teacher((28, 28, 1), 10).count_params()
    174850
    """
    shape, num_classes = _check(input_shape, num_classes)
    if int(blocks_per_stage) < 1:
        raise ValueError(
            f"blocks_per_stage must be >= 1. Received: blocks_per_stage={blocks_per_stage}")
    inputs, x = _image_input(shape)
    x = _augment(x, float(translate), bool(flip))
    x = _conv_bn(x, int(filters[0]), 1, "stem")
    if int(stem_pool) > 1:
        x = keras.layers.MaxPooling2D(int(stem_pool), name="stem_pool")(x)
    for i, f in enumerate(int(f) for f in filters):
        for j in range(int(blocks_per_stage)):
            block = f"block{i}_{j}"
            strides = 2 if i > 0 and j == 0 else 1
            shortcut = x
            if strides != 1 or x.shape[-1] != f:
                shortcut = keras.layers.Conv2D(f, 1, strides, use_bias=False,
                                               name=f"{block}_proj")(x)
                shortcut = keras.layers.BatchNormalization(momentum=0.9,
                                                           name=f"{block}_proj_bn")(shortcut)
            x = _conv_bn(x, f, strides, f"{block}_a")
            x = _conv_bn(x, f, 1, f"{block}_b", relu=False)
            x = keras.layers.Add(name=f"{block}_add")([x, shortcut])
            x = keras.layers.ReLU(name=f"{block}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(float(dropout), name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


@BUILDERS.register("cnn")
def build_cnn_student(
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    filters: Sequence[int] = (8, 16),
    dense: int = 32,
    name: str = "cnn_student",
) -> keras.Model:
    """A small CNN student: one 3×3 conv + 2×2 max-pool per entry of ``filters``, then Dense.

    With the defaults on 28×28×1 inputs it has about 26k parameters.

    Example:

    >>> build_cnn_student((28, 28, 1), 10).count_params()
    26698
    """
    shape, num_classes = _check(input_shape, num_classes)
    inputs, x = _image_input(shape)
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if dense:
        x = keras.layers.Dense(dense, activation="relu", name="features")(x)
    outputs = keras.layers.Dense(num_classes, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


@BUILDERS.register("mlp")
def build_mlp_student(
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    hidden: Sequence[int] = (128,),
    name: str = "mlp_student",
) -> keras.Model:
    """A multilayer perceptron student: Flatten, ReLU ``Dense`` layers, logits.

    Example:

    >>> build_mlp_student((28, 28, 1), 10, hidden=(32,)).count_params()
    25450
    """
    shape, num_classes = _check(input_shape, num_classes)
    inputs = keras.Input(shape)
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(int(units), activation="relu", name=f"dense{i}")(x)
    outputs = keras.layers.Dense(num_classes, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def _text_input(input_shape, num_classes, vocab_size) -> Tuple[Tuple[int, ...], int, int]:
    shape, num_classes = _check(input_shape, num_classes)
    if len(shape) != 1:
        raise ValueError(
            "text models take token-id sequences of shape (sequence_length,). "
            f"Received: input_shape={input_shape}"
        )
    if int(vocab_size) < 3:
        raise ValueError(
            "vocab_size must be >= 3 (padding, [UNK] and at least one word). "
            f"Received: vocab_size={vocab_size}"
        )
    return shape, num_classes, int(vocab_size)


@BUILDERS.register("text_teacher")
def build_text_teacher(
    input_shape: Sequence[int] = (64,),
    num_classes: int = 2,
    vocab_size: int = 20000,
    embed_dim: int = 64,
    hidden: int = 128,
    name: str = "text_teacher",
) -> keras.Model:
    """A 1-D CNN text teacher: Embedding, ``Conv1D(hidden, 5)``, global max-pool, Dense.

    Inputs are ``int32`` token ids ``(N, sequence_length)`` as :func:`kdkeras.data.tokenize`
    returns them (0 is padding, 1 is ``[UNK]``).

    Args:
        input_shape: Sequence[int]. ``(sequence_length,)``.
        num_classes: int. Number of classes (>= 2).
        vocab_size: int. Size of the vocabulary, padding and ``[UNK]`` included.
        embed_dim: int. Embedding width.
        hidden: int. Conv1D filters and hidden Dense units.
        name: str. Model name.

    Returns:
        An uncompiled tf-keras model with logits from a ``Dense`` named ``"output"``.

    Raises:
        ValueError: a non-1-D ``input_shape``, ``num_classes < 2`` or ``vocab_size < 3``.

    Example:

    >>> m = build_text_teacher((64,), 2, vocab_size=1000)
    >>> m.output_shape, m.input.dtype.name
    ((None, 2), 'int32')
    """
    shape, num_classes, vocab_size = _text_input(input_shape, num_classes, vocab_size)
    inputs = keras.Input(shape, dtype="int32")
    x = keras.layers.Embedding(vocab_size, int(embed_dim), name="embedding")(inputs)
    x = keras.layers.Conv1D(int(hidden), 5, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalMaxPooling1D(name="pool")(x)
    x = keras.layers.Dense(int(hidden), activation="relu", name="features")(x)
    outputs = keras.layers.Dense(num_classes, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


@BUILDERS.register("text")
def build_text_student(
    input_shape: Sequence[int] = (64,),
    num_classes: int = 2,
    vocab_size: int = 20000,
    embed_dim: int = 16,
    name: str = "text_student",
) -> keras.Model:
    """A bag-of-embeddings text student: Embedding, global average-pool, Dense logits.

    Inputs are ``int32`` token ids ``(N, sequence_length)``; padding (id 0) is averaged in
    like any token, which keeps the model to layers TF-MOT and TFLite handle.

    Args:
        input_shape: Sequence[int]. ``(sequence_length,)``.
        num_classes: int. Number of classes (>= 2).
        vocab_size: int. Size of the vocabulary, padding and ``[UNK]`` included.
        embed_dim: int. Embedding width.
        name: str. Model name.

    Returns:
        An uncompiled tf-keras model with logits from a ``Dense`` named ``"output"``.

    Raises:
        ValueError: a non-1-D ``input_shape``, ``num_classes < 2`` or ``vocab_size < 3``.

    Example:

    >>> build_text_student((64,), 2, vocab_size=1000).count_params()
    16034
    """
    shape, num_classes, vocab_size = _text_input(input_shape, num_classes, vocab_size)
    inputs = keras.Input(shape, dtype="int32")
    x = keras.layers.Embedding(vocab_size, int(embed_dim), name="embedding")(inputs)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


@BUILDERS.register("bigru")
def build_bigru_student(
    input_shape: Sequence[int] = (64,),
    num_classes: int = 2,
    vocab_size: int = 30522,
    embed_dim: int = 64,
    hidden: int = 64,
    dropout: float = 0.1,
    name: str = "bigru_student",
) -> keras.Model:
    """A bidirectional-GRU text student: Embedding (padding id 0 masked), BiGRU, Dense logits.

    Inputs are ``int32`` token ids ``(N, sequence_length)`` (the teacher's WordPiece ids). The
    GRUs are unrolled over the fixed length, which lets TFLite convert them (a GRU loop needs
    TensorList ops the converter cannot lower). TF-MOT prunes the embedding and the logits,
    not the ``Bidirectional`` wrapper's kernels.

    Args:
        input_shape: Sequence[int]. ``(sequence_length,)``.
        num_classes: int. Number of classes (>= 2).
        vocab_size: int. Size of the vocabulary, padding included.
        embed_dim: int. Embedding width.
        hidden: int. GRU units per direction.
        dropout: float. Dropout before the logits.
        name: str. Model name.

    Returns:
        An uncompiled tf-keras model with logits from a ``Dense`` named ``"output"``.

    Raises:
        ValueError: a non-1-D ``input_shape``, ``num_classes < 2`` or ``vocab_size < 3``.

    Example:

    >>> build_bigru_student((16,), 3, vocab_size=1000, embed_dim=8, hidden=8).count_params()
    8915
    """
    shape, num_classes, vocab_size = _text_input(input_shape, num_classes, vocab_size)
    inputs = keras.Input(shape, dtype="int32")
    x = keras.layers.Embedding(vocab_size, int(embed_dim), mask_zero=True, name="embedding")(inputs)
    x = keras.layers.Bidirectional(keras.layers.GRU(int(hidden), unroll=True), name="bigru")(x)
    x = keras.layers.Dropout(float(dropout), name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="output")(x)
    return keras.Model(inputs, outputs, name=name)
