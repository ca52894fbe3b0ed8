"""Preprocessing contracts: the one code path from an RGB face crop to a model input.

Training, serving, batch jobs and evaluation all call :func:`prepare_batch` with the contract
stored beside the model, so no caller re-implements resizing, colour conversion or scaling.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import cv2
import numpy as np
from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

from agents.records import JsonRecord

Scale = Literal["unit", "raw"]
# "npr": the input minus its 2x nearest-neighbour down-and-up-sampled copy (Tan et al., CVPR 2024,
# "Neighboring Pixel Relationships"): what is left is how each pixel differs from the anchor of
# its 2x2 cell, which is where up-sampling layers of generators leave their trace.
Residual = Literal["none", "npr"]
# "image": each channel of each input minus its own mean, over its own standard deviation (plus a
# floor of 4 grey levels, so a flat crop is not blown up). What is left is how the face differs
# from the rest of its own crop (a pasted face's colour and contrast against its surroundings),
# not the scene's lighting or the person's skin, which differ far more between videos.
Normalize = Literal["none", "image"]
NORMALIZE_FLOOR = 4.0  # grey levels (of 255) added to each channel's standard deviation
Color = Literal["gray", "rgb", "ycrcb"]
# Channels of each colour space an agent can ask for (`Color`): channels follow from the colour space.
COLORS: dict[str, int] = {"gray": 1, "rgb": 3, "ycrcb": 3}


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Preprocessing(JsonRecord):
    """How an agent wants its input.

    Attributes:
        height: input height in pixels.
        width: input width in pixels.
        channels: 1 for grayscale, 3 for a colour space.
        scale: "unit" gives float32 in [0, 1]; "raw" gives float32 in [0, 255] (the model
            normalises inside, e.g. VGG's mean subtraction).
        color: "gray", "rgb" or "ycrcb"; None derives it from `channels` (1 -> gray,
            3 -> rgb), which is how bundles written before colour spaces existed read.
        residual: "none" feeds the image itself; "npr" feeds its neighbouring-pixel residual
            (see `Residual`), taken after colour conversion and scaling.
        normalize: "none", or "image" to standardise each channel by the input's own
            statistics (see `Normalize`), after colour conversion, scaling and residual.
    """

    height: int = Field(96, ge=8)  # input rows (8: the smallest input every agent's layers accept)
    width: int = Field(96, ge=8)  # input columns
    channels: Literal[1, 3] = 1  # 1 = grayscale (luma of the RGB crop), 3 = a colour space
    scale: Scale = "unit"  # "unit" -> x/255, "raw" -> x as float
    color: Optional[Color] = None  # YCrCb separates the blending seams' chroma
    residual: Residual = "none"  # bundles written before residuals read as "none"
    normalize: Normalize = "none"  # bundles written before per-image standardisation read as "none"

    @model_validator(mode="after")
    def _color_matches_channels(self) -> "Preprocessing":
        if self.color is None:  # bundles written before colour spaces existed
            object.__setattr__(self, "color", "gray" if self.channels == 1 else "rgb")
        if COLORS[self.color] != self.channels:
            raise ValueError(f"color {self.color!r} has {COLORS[self.color]} channel(s), received "
                             f"channels={self.channels}.")
        return self

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one model input, channels last."""
        return (self.height, self.width, self.channels)


def as_rgb_uint8(image: np.ndarray, *, min_side: int = 1, clip: bool = True) -> np.ndarray:
    """The one rule every image input follows: a gray image gets three channels, RGBA loses its
    alpha, and other pixel types are clipped to uint8 [0, 255] (refused with ``clip=False``).

    Raises:
        ValueError: not shaped (H, W), (H, W, 3) or (H, W, 4); a side under ``min_side`` pixels;
            or, with ``clip=False``, pixels that are not uint8.
    """
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"Expected an RGB image (H, W, 3), received shape {image.shape}.")
    if min(image.shape[:2]) < min_side:
        raise ValueError(f"Image is too small to hold a face: {image.shape[1]}x{image.shape[0]} pixels "
                         f"(at least {min_side}x{min_side}).")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.dtype != np.uint8:
        if not clip:
            raise ValueError(f"Expected uint8 pixels, received dtype {image.dtype}.")
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


def resize_rgb(image: np.ndarray, contract: Preprocessing) -> np.ndarray:
    """The geometric half of the contract: an RGB uint8 image at the contract's size.

    Training caches this output (and augments it), so it must stay the exact first step of
    :func:`prepare_image`.
    """
    image = as_rgb_uint8(image)
    if image.shape[:2] != (contract.height, contract.width):
        # INTER_AREA when shrinking avoids aliasing; crops are usually larger than inputs.
        shrinking = image.shape[0] >= contract.height and image.shape[1] >= contract.width
        interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        image = cv2.resize(image, (contract.width, contract.height), interpolation=interp)
    return image


def to_model_input(image: np.ndarray, contract: Preprocessing) -> np.ndarray:
    """The photometric half of the contract: colour space and scale of a resized RGB image."""
    if contract.color == "gray":
        out = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    elif contract.color == "ycrcb":
        out = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    else:
        out = image
    out = out.astype(np.float32)
    if contract.scale == "unit":
        out /= 255.0
    if contract.residual == "npr":
        out = npr_residual(out)
    if contract.normalize == "image":
        floor = NORMALIZE_FLOOR / 255.0 if contract.scale == "unit" else NORMALIZE_FLOOR
        out = (out - out.mean(axis=(0, 1))) / (out.std(axis=(0, 1)) + floor)
    return out.astype(np.float32, copy=False)


def npr_residual(image: np.ndarray) -> np.ndarray:
    """The image minus its 2x nearest-neighbour down-and-up-sampled copy (same shape, float32).

    Down-sampling keeps the top-left pixel of every 2x2 cell and up-sampling repeats it over the
    cell, so the anchor pixels become 0 and the others their difference to the anchor. Odd
    sides: the last row/column forms a cell of its own.
    """
    h, w = image.shape[:2]
    anchors = image[::2, ::2]
    upsampled = np.repeat(np.repeat(anchors, 2, axis=0), 2, axis=1)[:h, :w]
    return (image - upsampled).astype(np.float32, copy=False)


def prepare_image(image: np.ndarray, contract: Preprocessing) -> np.ndarray:
    """Converts one RGB uint8 image (H, W, 3) or grayscale (H, W) to the contract's input.

    Returns:
        float32 array of shape ``contract.input_shape``.
    """
    return to_model_input(resize_rgb(image, contract), contract)


def prepare_batch(images: Sequence[np.ndarray] | np.ndarray, contract: Preprocessing) -> np.ndarray:
    """Prepares a batch of RGB uint8 images (a list or an (N, H, W, 3) array).

    Returns:
        float32 array of shape ``(N, *contract.input_shape)``.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    n = len(images)
    out = np.empty((n, *contract.input_shape), dtype=np.float32)
    for i, image in enumerate(images):
        out[i] = prepare_image(np.asarray(image), contract)
    return out
