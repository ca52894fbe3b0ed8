"""A LeNet-like CNN: two 5x5 conv + max-pool stages and a dense layer on the flattened map.

The original report fed it 96x96 grayscale faces; the registry says what it sees today."""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from agents.cnn import NUM_CLASSES, check_dropout, classifier, image_shape


def build_lenet(
    *,
    input_shape: Sequence[int] = (96, 96, 1),
    filters: Sequence[int] = (20, 50),
    dense_units: int = 128,
    dropout: float = 0.5,
    batch_norm: bool = False,
    num_classes: int = NUM_CLASSES,
    name: str = "lenet",
) -> keras.Model:
    """Builds the LeNet-like model: two 5x5 conv + max-pool stages, a dense layer, softmax.

    Unlike the custom CNN's global average pooling, the dense layer reads the flattened map, so
    it knows where on the face a pattern is. With ``batch_norm`` each convolution (and the dense
    layer) is followed by batch normalisation before its ReLU, which lets Adam at 1e-3 train it
    from scratch on a CPU budget.

    Args:
        input_shape: (height, width, channels) of the input, channels last.
        filters: output channels of the two conv stages.
        dense_units: width of the hidden dense layer.
        dropout: dropout rate after the dense layer, in [0, 1).
        batch_norm: batch-normalise the convolutions and the dense layer (no bias before a BN).
        num_classes: number of output classes.
        name: model name.

    Returns:
        An uncompiled `keras.Model` that outputs class probabilities.
    """
    input_shape = image_shape(input_shape)
    if input_shape[0] < 16 or input_shape[1] < 16:
        raise ValueError(f"input_shape must be at least 16x16 for the two pooling stages, received {input_shape}.")
    if len(filters) != 2 or any(int(f) < 1 for f in filters):
        raise ValueError(f"filters must be two positive ints, received {filters}.")
    if dense_units < 1:
        raise ValueError(f"dense_units must be positive, received {dense_units}.")
    check_dropout(dropout)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for s, f in enumerate(filters, start=1):
        if batch_norm:
            x = layers.Conv2D(int(f), 5, padding="same", use_bias=False, name=f"conv{s}")(x)
            x = layers.BatchNormalization(name=f"bn{s}")(x)
            x = layers.Activation("relu", name=f"relu{s}")(x)
        else:
            x = layers.Conv2D(int(f), 5, padding="same", activation="relu", name=f"conv{s}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"pool{s}")(x)
    x = layers.Flatten(name="flatten")(x)
    if batch_norm:
        x = layers.Dense(int(dense_units), use_bias=False, name="fc1")(x)
        x = layers.BatchNormalization(name="fc1_bn")(x)
        x = layers.Activation("relu", name="fc1_relu")(x)
    else:
        x = layers.Dense(int(dense_units), activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="fc1_dropout")(x)
    return classifier(inputs, x, num_classes=num_classes, name=name)
