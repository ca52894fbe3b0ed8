"""Train-time augmentation of RGB uint8 face crops (never applied to val, test or serving).

JPEG re-compression at a random quality is here on purpose: face-swap traces live in the high
frequencies that compression destroys, and real uploads are re-compressed, so the models must not
lean on compression level as a cue.
"""

from __future__ import annotations

from typing import Annotated

import cv2
import numpy as np
from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

from agents.preprocessing import Preprocessing, resize_rgb
from vision.degrade import random_chain

Probability = Annotated[float, Field(ge=0, le=1)]
JpegQuality = Annotated[int, Field(ge=1, le=100)]  # OpenCV's IMWRITE_JPEG_QUALITY range


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class AugmentConfig:
    """Probabilities and ranges of each augmentation."""

    flip: Probability = 0.5  # probability of a horizontal flip
    max_shift: float = 0.06  # largest translation, as a fraction of the side
    max_rotate: float = 8.0  # largest rotation, degrees
    max_scale: float = 0.08  # largest zoom in/out, as a fraction
    brightness: float = 0.15  # largest brightness change, fraction of 255
    contrast: float = 0.2  # largest contrast change, fraction
    blur: Probability = 0.15  # probability of a Gaussian blur
    jpeg: Probability = 0.5  # probability of JPEG re-compression
    jpeg_quality: tuple[JpegQuality, JpegQuality] = (35, 95)  # quality range (low, high) of that re-compression
    # Probability of a screenshot-like degradation chain (`vision.degrade.random_chain`: one to
    # three of rescaling with a player's interpolation, JPEG, blur, display gamma, H.264), after
    # which the face is brought back to the crop size as the face cropper would.
    screenshot: Probability = 0.0

    @model_validator(mode="after")
    def _quality_range(self) -> "AugmentConfig":
        if self.jpeg_quality[0] > self.jpeg_quality[1]:
            raise ValueError(f"jpeg_quality must be (low, high) with low <= high, received {self.jpeg_quality}.")
        return self


def augment(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Returns an augmented copy of an RGB uint8 image (same shape)."""
    h, w = image.shape[:2]
    out = image
    if rng.random() < config.flip:
        out = out[:, ::-1]
    angle = rng.uniform(-config.max_rotate, config.max_rotate)
    scale = 1.0 + rng.uniform(-config.max_scale, config.max_scale)
    tx, ty = rng.uniform(-config.max_shift, config.max_shift, size=2) * (w, h)
    if angle or scale != 1.0 or tx or ty:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        m[:, 2] += (tx, ty)
        out = cv2.warpAffine(np.ascontiguousarray(out), m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
    alpha = 1.0 + rng.uniform(-config.contrast, config.contrast)
    beta = 255.0 * rng.uniform(-config.brightness, config.brightness)
    # Saturated, not folded: convertScaleAbs would take |alpha * x + beta| and brighten the
    # darkest pixels of a darkened face (0 -> 38), an artefact no screen shows.
    out = np.ascontiguousarray(out)
    out = cv2.addWeighted(out, alpha, out, 0.0, beta)
    if rng.random() < config.blur:
        sigma = rng.uniform(0.4, 1.5)
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if config.screenshot and rng.random() < config.screenshot:
        out = screenshot_like(out, rng)
    if rng.random() < config.jpeg:
        quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        # OpenCV's codec reads BGR: the image is turned so that luma and the subsampled chroma
        # are computed as a real JPEG of this RGB picture would compute them.
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(out)


def screenshot_like(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 face after a random screenshot-like degradation chain, at its original size.

    Rescaling steps leave the face at another size; it is resized back with the serving
    contract's own resize (`agents.preprocessing.resize_rgb`), as a served crop would be.
    """
    h, w = image.shape[:2]
    out = random_chain(rng)(np.ascontiguousarray(image))
    return resize_rgb(out, Preprocessing(height=h, width=w, channels=3))
