"""A toy causal LM for the generation and LM-export tests: Embedding -> causal
MultiHeadAttention (+ residual) -> Dense(V), on int32 ids ``[batch, T]``, T=16, V=50.

It is trained for a few steps on a repeated pattern of distinct tokens with 10% of the tokens
replaced by noise, so greedy decoding is deterministic and follows the pattern (not one token
repeated), while the perplexity on noisy windows stays well above 1.
"""

import numpy as np
import tf_keras as keras

SEQ, VOCAB, WIDTH = 16, 50, 32
PATTERN = np.array([5, 9, 13, 2, 7, 11, 3, 17, 23, 4, 8, 19, 29, 31, 6, 12, 21, 41, 44, 47, 10,
                    33], np.int32)


def toy_lm(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    ids = keras.Input((SEQ,), dtype="int32", name="ids")
    x = keras.layers.Embedding(VOCAB, WIDTH, name="embedding")(ids)
    a = keras.layers.MultiHeadAttention(2, WIDTH // 2, name="attention")(
        x, x, use_causal_mask=True)
    x = keras.layers.Add()([x, a])
    return keras.Model(ids, keras.layers.Dense(VOCAB, name="logits")(x), name="toy_lm")


def lm_windows(repeats: int, seed: int = 0, noise: float = 0.1):
    """(x, y, sample_weight) windows of the noisy pattern stream; the last window is padded."""
    rng = np.random.default_rng(seed)
    stream = np.tile(PATTERN, repeats)
    flip = rng.random(len(stream)) < noise
    stream[flip] = rng.integers(1, VOCAB, int(flip.sum()))
    n = -(-(len(stream) - 1) // SEQ)
    x = np.zeros((n, SEQ), np.int32)
    y = np.zeros((n, SEQ), np.int32)
    w = np.zeros((n, SEQ), np.float32)
    for i in range(n):
        xs = stream[i * SEQ:(i + 1) * SEQ]
        ys = stream[i * SEQ + 1:(i + 1) * SEQ + 1]
        x[i, :len(xs)], y[i, :len(ys)], w[i, :len(ys)] = xs, ys, 1.0
    return x, y, w


def trained_toy_lm():
    """(model, (x_train, y_train, w_train), (x_test, y_test, w_test))."""
    model = toy_lm()
    train, test = lm_windows(120, seed=0), lm_windows(12, seed=1)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train[0], train[1], sample_weight=train[2], epochs=6, batch_size=32, verbose=0)
    return model, train, test


def pattern_after(token: int, n: int) -> np.ndarray:
    """The n pattern tokens that follow ``token`` (a token of PATTERN)."""
    start = int(np.flatnonzero(PATTERN == token)[0]) + 1
    return np.tile(PATTERN, n // len(PATTERN) + 2)[start:start + n]
