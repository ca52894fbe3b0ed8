"""The original report's own ConvNet: Conv/BN/ReLU/MaxPool blocks (today fed faces standardised by their crop, see registry)."""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from agents.cnn import NUM_CLASSES, check_dropout, conv_bn_relu_block, image_shape, pooled_classifier


def build_custom(
    *,
    input_shape: Sequence[int] = (96, 96, 1),
    filters: Sequence[int] = (32, 64, 128, 256),
    dropout: float = 0.4,
    patch_stem: bool = False,
    num_classes: int = NUM_CLASSES,
    name: str = "custom",
) -> keras.Model:
    """Builds the custom CNN.

    Each block is two 3x3 Conv -> BatchNorm -> ReLU layers and a 2x2 max-pool; the head is
    dropout, global average pooling and a softmax. With ``patch_stem`` a 2x2, stride-2
    convolution comes first: each of its outputs sees exactly one 2x2 cell of the input, the unit
    an NPR residual is made of, and the blocks then run at half the resolution (the cost of the
    old 112 px model on a 224 px input).

    Args:
        input_shape: (height, width, channels) of the input, channels last.
        filters: output channels of each block; one block per entry.
        dropout: dropout rate before the classifier, in [0, 1).
        patch_stem: start with a 2x2 stride-2 Conv -> BatchNorm -> ReLU of ``filters[0]`` channels.
        num_classes: number of output classes.
        name: model name.

    Returns:
        An uncompiled `keras.Model` that outputs class probabilities.
    """
    input_shape = image_shape(input_shape)
    if not filters or any(int(f) < 1 for f in filters):
        raise ValueError(f"filters must be a non-empty list of positive ints, received {filters}.")
    check_dropout(dropout)
    min_side = 2 ** (len(filters) + int(bool(patch_stem)))
    if input_shape[0] < min_side or input_shape[1] < min_side:
        raise ValueError(
            f"input_shape is too small for {len(filters)} pooling blocks (needs at least "
            f"{min_side}x{min_side}), received {input_shape}."
        )

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if patch_stem:
        x = layers.Conv2D(int(filters[0]), 2, strides=2, use_bias=False, name="stem_conv")(x)
        x = layers.BatchNormalization(name="stem_bn")(x)
        x = layers.Activation("relu", name="stem_relu")(x)
    for b, f in enumerate(filters, start=1):
        x = conv_bn_relu_block(x, block=b, filters=f)
    return pooled_classifier(inputs, x, dropout=dropout, num_classes=num_classes, name=name)
