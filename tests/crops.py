"""Face-crop fixtures shared by test modules: variations of one real face as a camera and an encoder make them,
and pictures saved in the formats PIL writes (HEIC, AVIF, TIFF)."""

from __future__ import annotations

import cv2
import numpy as np


def face_like_crops(face_crop: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """Variations of a real face crop: shifts, scale, brightness, contrast, blur, JPEG."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        angle, scale = rng.uniform(-10, 10), rng.uniform(0.9, 1.1)
        m = cv2.getRotationMatrix2D((112 + rng.uniform(-8, 8), 112 + rng.uniform(-8, 8)), angle, scale)
        img = cv2.warpAffine(face_crop, m, (224, 224), borderMode=cv2.BORDER_REFLECT)
        img = np.clip(img.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25), 0, 255).astype(np.uint8)
        if rng.random() < 0.5:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 95))])
        out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR))
    return out


def pil_encoded(rgb: np.ndarray, fmt: str, **save) -> bytes:
    """``rgb`` saved by PIL as ``fmt`` ("HEIF" for an iPhone's HEIC, "AVIF", "TIFF", ...)."""
    import io

    from PIL import Image

    from vision.media import enable_heif

    enable_heif()
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt, **save)
    return out.getvalue()
