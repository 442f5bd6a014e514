"""A toy text student for the export tests: Embedding + MultiHeadAttention + LayerNormalization
+ Dense (post-LN), masked mean pooling, on int32 ids ``[batch, T]`` with 0 as padding.

The real builder (kdkeras.models.transformer) is tested elsewhere; this one has the same
contract (one int32 input, padding mask inside, Dense ``output``) and trains in seconds.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

SEQ, VOCAB, WIDTH, HEADS, CLASSES = 16, 400, 32, 4, 3
CLS, SEP = 1, 2


@keras.utils.register_keras_serializable(package="kdkeras_tests")
class ToyPaddingMask(keras.layers.Layer):
    def call(self, ids):
        return tf.cast(tf.not_equal(ids, 0), tf.float32)


@keras.utils.register_keras_serializable(package="kdkeras_tests")
class ToyPositions(keras.layers.Layer):
    def call(self, ids):
        return tf.zeros_like(ids) + tf.range(tf.shape(ids)[1])[None, :]


@keras.utils.register_keras_serializable(package="kdkeras_tests")
class ToyMeanPool(keras.layers.Layer):
    def call(self, inputs):
        x, mask = inputs
        return tf.reduce_sum(x * mask[..., None], 1) / tf.maximum(
            tf.reduce_sum(mask, 1, keepdims=True), 1.0)


def toy_text_student(seed: int = 0, seq: int = SEQ, vocab: int = VOCAB) -> keras.Model:
    """One post-LN transformer block, ~36k parameters."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((seq,), dtype="int32", name="ids")
    mask = ToyPaddingMask(name="padding_mask")(ids)
    x = keras.layers.Embedding(vocab, WIDTH, name="token_embedding")(ids)
    pos = keras.layers.Embedding(seq, WIDTH, name="position_embedding")(ToyPositions()(ids))
    x = keras.layers.LayerNormalization(name="embeddings")(keras.layers.Add()([x, pos]))
    attention_mask = keras.layers.Reshape((1, seq), name="attention_mask")(mask)
    a = keras.layers.MultiHeadAttention(HEADS, WIDTH // HEADS, name="attention")(
        x, x, attention_mask=attention_mask)
    x = keras.layers.LayerNormalization(name="ln_attention")(keras.layers.Add()([x, a]))
    f = keras.layers.Dense(2 * WIDTH, activation="gelu", name="ffn_in")(x)
    f = keras.layers.Dense(WIDTH, name="ffn_out")(f)
    x = keras.layers.LayerNormalization(name="hidden_0")(keras.layers.Add()([x, f]))
    pooled = ToyMeanPool(name="pool")([x, mask])
    return keras.Model(ids, keras.layers.Dense(CLASSES, name="output")(pooled))


def toy_text_data(n: int, seed: int = 0, seq: int = SEQ, vocab: int = VOCAB):
    """``[CLS] tokens [SEP] 0...``; the class is the band (of three) of the most tokens."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, seq), np.int32)
    y = rng.integers(0, CLASSES, n)
    band = (vocab - 3) // CLASSES
    for i in range(n):
        length = int(rng.integers(4, seq + 1))
        body = rng.integers(3, vocab, length - 2)
        k = (length - 2 + 1) // 2
        body[:k] = rng.integers(3 + y[i] * band, 3 + (y[i] + 1) * band, k)
        ids[i, :length] = np.concatenate([[CLS], rng.permutation(body), [SEP]])
    return ids, y


def trained_toy(epochs: int = 8, n: int = 512, seed: int = 0):
    """The toy trained on ``n`` examples: (model, x_test, y_test) with 128 test examples."""
    x, y = toy_text_data(n + 128, seed)
    model = toy_text_student(seed)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:n], y[:n], epochs=epochs, batch_size=32, verbose=0)
    return model, x[:n], x[n:], y[n:]
