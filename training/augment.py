"""Train-time augmentation of RGB uint8 face crops (never applied to val, test or serving).

JPEG re-compression at a random quality is here on purpose: face-swap traces live in the high
frequencies that compression destroys, and real uploads are re-compressed, so the models must not
lean on compression level as a cue.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation."""

    flip: float = 0.5  # probability of a horizontal flip
    max_shift: float = 0.06  # largest translation, as a fraction of the side
    max_rotate: float = 8.0  # largest rotation, degrees
    max_scale: float = 0.08  # largest zoom in/out, as a fraction
    brightness: float = 0.15  # largest brightness change, fraction of 255
    contrast: float = 0.2  # largest contrast change, fraction
    blur: float = 0.15  # probability of a Gaussian blur
    jpeg: float = 0.5  # probability of JPEG re-compression
    jpeg_quality: tuple[int, int] = (35, 95)  # quality range of that re-compression
    # Probability of a screenshot-like resampling: a player or screen scales the face by some
    # factor with its own interpolation, and the face detector scales it back to the crop size.
    rescale: float = 0.0
    rescale_range: tuple[float, float] = (0.4, 2.0)  # scale factor range (log-uniform)

    def __post_init__(self) -> None:
        for name in ("flip", "blur", "jpeg", "rescale"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], received {value}.")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"jpeg_quality must satisfy 1 <= lo <= hi <= 100, received {self.jpeg_quality}.")
        lo, hi = self.rescale_range
        if not 0 < lo <= hi:
            raise ValueError(f"rescale_range must satisfy 0 < lo <= hi, received {self.rescale_range}.")


# Interpolations video players and screen scalers use (nearest for pixel-exact zoom, bilinear
# and bicubic for most players, area for downscaling compositors, Lanczos for mpv-like ones).
_PLAYER_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA,
                          cv2.INTER_LANCZOS4)


def rescale_like_screenshot(image: np.ndarray, rng: np.random.Generator,
                            factor_range: tuple[float, float] = (0.4, 2.0)) -> np.ndarray:
    """Scales an RGB uint8 image by a random factor and back, as a screenshot's face crop is.

    The first resize uses a random player interpolation; the second is what the face cropper
    does (`blackboard.faces`: area when shrinking, bicubic when enlarging).
    """
    h, w = image.shape[:2]
    factor = float(np.exp(rng.uniform(np.log(factor_range[0]), np.log(factor_range[1]))))
    size = (max(8, int(round(w * factor))), max(8, int(round(h * factor))))
    if size == (w, h):
        return image
    shown = cv2.resize(image, size, interpolation=int(rng.choice(_PLAYER_INTERPOLATIONS)))
    back = cv2.INTER_AREA if factor > 1 else cv2.INTER_CUBIC
    return cv2.resize(shown, (w, h), interpolation=back)


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
    out = cv2.convertScaleAbs(np.ascontiguousarray(out), alpha=alpha, beta=beta)
    if rng.random() < config.blur:
        sigma = rng.uniform(0.4, 1.5)
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if config.rescale and rng.random() < config.rescale:
        out = rescale_like_screenshot(out, rng, config.rescale_range)
    if rng.random() < config.jpeg:
        quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(out)
