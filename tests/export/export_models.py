"""Tiny models shared by the export tests."""

import tf_keras as keras

INPUT_SHAPE = (8, 8, 1)
NUM_CLASSES = 4


def tiny_cnn(seed: int = 0) -> keras.Model:
    """Conv -> pool -> dense: 4 classes on 8x8x1, ~300 parameters, logits out."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, name="output")(x)
    return keras.Model(inputs, outputs)
