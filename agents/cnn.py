"""What the Keras CNN agents' builders share: argument checks, the Conv/BN/ReLU block and the head.

`agents.custom`, `agents.lenet` and `agents.vgg16` build their models from these pieces; this
module imports none of them. Layer names are part of a saved bundle (Grad-CAM and trainable-block
selection find layers by name), so the pieces name their layers exactly as the builders did.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import layers

from agents.labels import CLASSES

NUM_CLASSES = len(CLASSES)


def image_shape(input_shape: Sequence[int], *, channels: int | None = None) -> tuple[int, int, int]:
    """``input_shape`` as a tuple of ints, checked to be a (height, width, channels) image shape.

    Args:
        input_shape: the builder's ``input_shape`` argument.
        channels: the only channel count the model accepts (None: any).

    Raises:
        ValueError: saying what was received, when it is not three positive sizes (with
            ``channels``, not that many channels).
    """
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1 or channels not in (None, shape[2]):
        expected = "channels" if channels is None else str(channels)
        raise ValueError(f"input_shape must be (height, width, {expected}), received {shape}.")
    return shape


def check_dropout(dropout: float) -> None:
    """Raises ValueError, saying what was received, unless ``dropout`` is a rate in [0, 1)."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), received {dropout}.")


def conv_bn_relu_block(x: Any, *, block: int, filters: int, convs: int = 2,
                       kernel_initializer: str = "glorot_uniform") -> Any:
    """``convs`` times a 3x3 Conv -> BatchNorm -> ReLU of ``filters`` channels, then a 2x2 max-pool.

    The convolutions have no bias (the BatchNorm after each one has its own); layers are named
    ``block{block}_conv{c}``, ``_bn{c}``, ``_relu{c}`` and ``block{block}_pool``, as in Keras' VGG16.
    """
    for c in range(1, convs + 1):
        x = layers.Conv2D(int(filters), 3, padding="same", use_bias=False, kernel_initializer=kernel_initializer,
                          name=f"block{block}_conv{c}")(x)
        x = layers.BatchNormalization(name=f"block{block}_bn{c}")(x)
        x = layers.Activation("relu", name=f"block{block}_relu{c}")(x)
    return layers.MaxPooling2D(2, name=f"block{block}_pool")(x)


def classifier(inputs: Any, features: Any, *, num_classes: int, name: str) -> keras.Model:
    """The model from ``inputs`` whose softmax over ``num_classes`` reads ``features`` (a flat vector)."""
    # float32 softmax keeps probabilities exact under mixed-precision training.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(features)
    return keras.Model(inputs, outputs, name=name)


def pooled_classifier(inputs: Any, x: Any, *, dropout: float, num_classes: int, name: str) -> keras.Model:
    """`classifier` on a feature map ``x``: dropout, then global average pooling, then the softmax."""
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="head_gap")(x)
    return classifier(inputs, x, num_classes=num_classes, name=name)
