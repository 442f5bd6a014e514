"""Tiny tf-keras students (MLP, CNN, transformer), data and a KD fine-tune for the tests."""

import numpy as np
import tf_keras as keras

L = keras.layers
NUM_CLASSES = 3


def tiny_mlp():
    inputs = keras.Input((8,), name="x")
    x = L.Dense(32, activation="relu", name="hidden")(inputs)
    outputs = L.Dense(NUM_CLASSES, name="output")(x)
    return keras.Model(inputs, outputs, name="tiny_mlp")


def tiny_cnn():
    inputs = keras.Input((8, 8, 1), name="x")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv0")(inputs)
    x = L.Conv2D(8, 3, padding="same", name="conv1")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    outputs = L.Dense(NUM_CLASSES, name="output")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


def tiny_transformer(vocab=32, seq=8, dim=16):
    """Embedding + MultiHeadAttention + residual adds + LayerNormalization + pooling + Dense."""
    inputs = keras.Input((seq,), dtype="int32", name="tokens")
    x = L.Embedding(vocab, dim, name="embed")(inputs)
    attn = L.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(x, x)
    x = L.Add(name="residual")([x, attn])
    x = L.LayerNormalization(name="ln")(x)
    ffn = L.Dense(dim, activation="relu", name="ffn")(x)
    x = x + ffn  # a TFOpLambda residual, the layer TF-MOT's whole-model APIs reject
    x = L.GlobalAveragePooling1D(name="gap")(x)
    outputs = L.Dense(NUM_CLASSES, name="output")(x)
    return keras.Model(inputs, outputs, name="tiny_transformer")


BUILDERS = {"mlp": tiny_mlp, "cnn": tiny_cnn, "transformer": tiny_transformer}
# Layers holding prunable kernels in each model (the classifier "output" included).
PRUNABLE = {
    "mlp": ["hidden", "output"],
    "cnn": ["conv0", "conv1", "output"],
    "transformer": ["embed", "mha", "ffn", "output"],
}


def make_data(kind, n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, NUM_CLASSES, n)
    if kind == "mlp":
        x = rng.normal(size=(n, 8)).astype("float32")
    elif kind == "cnn":
        x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    else:
        x = rng.integers(0, 32, (n, 8)).astype("int32")
    return x, y


def build(kind, seed=0):
    keras.utils.set_random_seed(seed)
    return BUILDERS[kind]()


def weights_equal(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


def teacher_for(kind, seed=1):
    """Another tiny model of the same kind, as the (untrained) teacher."""
    return build(kind, seed=seed)


def distill(student, kind, epochs=1, n=64, batch_size=8, alpha=0.5, callbacks=None):
    """Fine-tunes ``student`` with kd.Distiller on tiny random data; returns the Distiller."""
    import kdkeras as kd

    x, y = make_data(kind, n=n)
    d = kd.Distiller(student=student, teacher=teacher_for(kind))
    d.compile(optimizer=keras.optimizers.Adam(1e-2), alpha=alpha, temperature=2.0)
    d.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=callbacks)
    return d
