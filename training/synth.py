"""Synthetic fakes from real faces: the self-blended-images idea (Shiohara & Yamasaki, CVPR 2022).

A real face is blended with a colour- and scale-jittered copy of itself through a soft,
face-shaped mask. The result carries the generic traces of a face swap (a blending boundary,
colour and resolution mismatch between the inner face and its surround) without any
particular generator's fingerprint, which is why it helps detectors generalise to unseen fakes.

Crops here are face-centred (detector crops with a margin), so the mask is an ellipse around
the crop centre, randomly sized, shifted and deformed, then blurred to a soft edge.
"""

from __future__ import annotations

import cv2
import numpy as np


def _jitter_source(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of the face with changed colour, sharpness and scale."""
    h, w = image.shape[:2]
    src = image.astype(np.float32)
    # Colour: per-channel gain and offset, then brightness/contrast.
    src = src * rng.uniform(0.9, 1.1, size=3) + rng.uniform(-12, 12, size=3)
    src = (src - src.mean()) * rng.uniform(0.85, 1.15) + src.mean() + rng.uniform(-10, 10)
    src = np.clip(src, 0, 255).astype(np.uint8)
    # Resolution mismatch: down- and up-sample, or sharpen.
    if rng.random() < 0.5:
        f = rng.uniform(0.4, 0.8)
        small = cv2.resize(src, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
        src = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        blur = cv2.GaussianBlur(src, (0, 0), 1.0)
        src = cv2.addWeighted(src, 1.5, blur, -0.5, 0)
    # Scale and small translation, as a misregistered swap would have.
    scale = rng.uniform(0.94, 1.06)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, scale)
    m[:, 2] += rng.uniform(-0.02, 0.02, size=2) * (w, h)
    return cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _face_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A soft, deformed elliptical mask in [0, 1] of shape (h, w, 1)."""
    mask = np.zeros((h, w), np.float32)
    centre = (int(w * rng.uniform(0.45, 0.55)), int(h * rng.uniform(0.48, 0.58)))
    axes = (int(w * rng.uniform(0.22, 0.34)), int(h * rng.uniform(0.28, 0.42)))
    cv2.ellipse(mask, centre, axes, rng.uniform(-10, 10), 0, 360, 1.0, thickness=-1)
    # Deform the boundary with a smooth random displacement field.
    grid = rng.normal(0, 1, size=(4, 4, 2)).astype(np.float32) * (0.04 * min(h, w))
    flow = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mask = cv2.remap(mask, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR)
    # Soft edge of random width; erode first sometimes so the blend stays inside the face.
    if rng.random() < 0.5:
        k = int(rng.integers(3, 12))
        mask = cv2.erode(mask, np.ones((k, k), np.uint8))
    sigma = rng.uniform(0.02, 0.06) * min(h, w)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    mask *= rng.choice([0.5, 0.75, 1.0, 1.0, 1.0])  # blend ratio
    return np.clip(mask, 0, 1)[..., None]


def self_blend_with_mask(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Makes one synthetic fake from a real RGB uint8 face crop, with the mask it was blended through.

    Returns:
        The fake (same shape and dtype as ``image``) and the float32 (H, W) blend weight of the
        jittered copy at each pixel, in [0, 1]: where the face was "swapped", and how much.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"self_blend needs an RGB image (H, W, 3), received shape {image.shape}.")
    h, w = image.shape[:2]
    source = _jitter_source(image, rng)
    mask = _face_mask(h, w, rng)
    out = mask * source.astype(np.float32) + (1.0 - mask) * image.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), mask[..., 0]


def self_blend(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Makes one synthetic fake from a real RGB uint8 face crop (same shape)."""
    return self_blend_with_mask(image, rng)[0]
