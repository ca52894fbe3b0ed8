"""VGG-16 transfer model: VGG-16 conv base + BatchNorm + Dropout + GAP + Dense softmax."""

from __future__ import annotations

import os
from typing import Sequence

import keras
from keras import layers, ops

from agents.cnn import NUM_CLASSES, check_dropout, conv_bn_relu_block, image_shape, pooled_classifier

# ImageNet per-channel means in BGR order, as used by the original VGG ("caffe" mode).
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
VGG_BLOCKS = ("block1", "block2", "block3", "block4", "block5")
# VGG-16's 13 convolutions: (block, convolutions, filters), as in Simonyan & Zisserman's
# configuration D.
_VGG16_LAYOUT = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


@keras.saving.register_keras_serializable(package="fakeface")
class VGGPreprocess(layers.Layer):
    """Turns raw RGB pixels in [0, 255] into VGG's BGR mean-subtracted input.

    Kept inside the model (not a Lambda, so `safe_mode=True` loading works) so that the
    preprocessing contract of this agent is simply "raw RGB pixels".
    """

    def call(self, inputs):
        bgr = ops.flip(inputs, axis=-1)
        mean = ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=self.compute_dtype)
        return ops.cast(bgr, self.compute_dtype) - mean

    def compute_output_shape(self, input_shape):
        return input_shape


def _vgg_base(input_shape: tuple[int, int, int], backbone_weights: str | None) -> keras.Model:
    """Builds the VGG-16 conv base, loading ImageNet or local weights when asked."""
    if backbone_weights in (None, "none"):
        return keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
    if backbone_weights == "imagenet":
        try:
            return keras.applications.VGG16(include_top=False, weights="imagenet", input_shape=input_shape)
        except Exception as err:  # the download raises several types (URLError, OSError, ...)
            raise RuntimeError(
                "Could not fetch the ImageNet VGG-16 weights (no internet?). Fix: download "
                "'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5' on a connected machine and "
                "pass its path with --backbone-weights PATH, or put it in ~/.keras/models/. "
                f"Original error: {err}"
            ) from err
    path = os.fspath(backbone_weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"backbone_weights must be 'imagenet', 'none' or a weights file; received {path!r}, "
            "which is not a file."
        )
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
    try:
        base.load_weights(path)
    except Exception as err:  # h5py/keras raise various errors for mismatched files
        raise ValueError(
            f"Could not load VGG-16 conv-base weights from {path!r}: {err}. The file must hold "
            "weights for `keras.applications.VGG16(include_top=False)` (e.g. a VGG-Face conversion)."
        ) from err
    return base


def _vgg16_bn_base(input_shape: tuple[int, int, int], width: float = 1.0) -> keras.Model:
    """VGG-16's 13-conv base with BatchNorm after every convolution and He-normal init.

    Random-init plain VGG-16 barely trains from scratch (the shipped 64 px one scored val AUC
    0.66, dfdc-test 0.52); BatchNorm with He init is the known fix (as in torchvision's vgg16_bn).
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for block, convs, filters in _VGG16_LAYOUT:
        x = conv_bn_relu_block(x, block=block, filters=max(8, round(filters * width)), convs=convs,
                               kernel_initializer="he_normal")
    return keras.Model(inputs, x)


def build_vgg16(
    *,
    input_shape: Sequence[int] = (224, 224, 3),
    backbone_weights: str | None = "none",
    trainable_blocks: int | None = None,
    dropout: float = 0.5,
    batch_norm: bool = False,
    width: float = 1.0,
    num_classes: int = NUM_CLASSES,
    name: str = "vgg16",
) -> keras.Model:
    """Builds the VGG-16 transfer model.

    Args:
        input_shape: (height, width, 3) of the raw RGB input, channels last; at least 32x32.
        backbone_weights: "imagenet" (needs the internet), "none" (random init) or the path
            of a local weights file for the conv base.
        trainable_blocks: None trains the whole base; 0 freezes it; k trains only the last k
            of its five blocks (fine-tuning the top blocks).
        dropout: dropout rate before pooling, in [0, 1).
        batch_norm: VGG-16-BN: BatchNorm after each of the 13 convolutions, He-normal init, for
            training from scratch (``backbone_weights`` must then be "none": there are no
            ImageNet weights for it here). Its input is the face standardised by its own crop
            (the registry's contract for this recipe), so no ImageNet mean is subtracted.
        width: VGG-16-BN only: a factor on every convolution's filters (1.0: VGG-16's 64 to 512;
            0.5: 32 to 256, a quarter of the parameters, for a bundle that must stay small).
        num_classes: number of output classes.
        name: model name.

    Returns:
        An uncompiled `keras.Model` that takes raw RGB pixels in [0, 255] (with ``batch_norm``,
        the standardised face) and outputs class probabilities.
    """
    input_shape = image_shape(input_shape, channels=3)
    if input_shape[0] < 32 or input_shape[1] < 32:
        raise ValueError(f"VGG-16 needs inputs of at least 32x32, received {input_shape}.")
    if trainable_blocks is not None and not 0 <= trainable_blocks <= len(VGG_BLOCKS):
        raise ValueError(f"trainable_blocks must be None or 0..5, received {trainable_blocks}.")
    check_dropout(dropout)
    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], received {width}.")
    if width != 1.0 and not batch_norm:
        raise ValueError(f"width {width} applies to VGG-16-BN only (batch_norm=True): ImageNet's VGG-16 has "
                         "its own widths.")
    if batch_norm and backbone_weights not in (None, "none"):
        raise ValueError(f"batch_norm=True trains VGG-16-BN from scratch; backbone_weights must be 'none', "
                         f"received {backbone_weights!r}.")

    base = _vgg16_bn_base(input_shape, width) if batch_norm else _vgg_base(input_shape, backbone_weights)
    base.name = "vgg16_base"
    if trainable_blocks is not None:
        keep = set(VGG_BLOCKS[len(VGG_BLOCKS) - trainable_blocks:])
        for layer in base.layers:
            layer.trainable = layer.name.split("_")[0] in keep

    inputs = keras.Input(shape=input_shape, name="image")
    # ImageNet's mean only for the ImageNet-shaped base; VGG-16-BN's input is already standardised.
    x = base(inputs if batch_norm else VGGPreprocess(name="vgg_preprocess")(inputs))
    x = layers.BatchNormalization(name="head_bn")(x)
    return pooled_classifier(inputs, x, dropout=dropout, num_classes=num_classes, name=name)
