"""A phone's photo of a screen: what a person sends who cannot take a screenshot (a TV, a
borrowed laptop, a video on someone else's phone).

The screen's picture is first drawn as the panel shows it, each pixel three vertical red, green
and blue stripes with a dark line between rows; the camera then sees that panel at an angle
(a perspective warp), through a lens that blurs a little, with its own exposure and colour
balance, vignetting and sensor noise, and saves a JPEG. Sampling the stripes at the camera's
pixel pitch is what makes the moiré bands of real screen photos, so none is painted on.

`photograph` returns the photo and the face's box in it (the bounding box of the face's
warped corners), like `vision.screens.screenshot`.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]
# How many camera pixels wide the photo is; the screen fills a random share of it.
PHOTO_WIDTH = 1600
PHOTO_ASPECT = 3 / 4  # height / width: a phone camera's 4:3 frame
SUPERSAMPLE = 2  # the panel is drawn at this multiple of the photo's resolution, blurred, then averaged down
PANEL_LIGHT = (1 / 3) * (2.45 / 3)  # share of each channel's light the panel's stripes and row gaps pass


def _panel(screen: np.ndarray) -> np.ndarray:
    """The screen as its panel emits it: every pixel 3x3 sub-pixels, R, G and B stripes side by
    side, the bottom row of each pixel darker (the gap between pixel rows)."""
    h, w = screen.shape[:2]
    panel = np.zeros((h * 3, w * 3, 3), np.uint8)
    for c in range(3):
        panel[:, c::3, c] = np.repeat(screen[:, :, c], 3, axis=0)
    panel[2::3] = (panel[2::3] * 0.45).astype(np.uint8)
    return panel


def photograph(screen: np.ndarray, box: Box, rng: np.random.Generator, *, fill: tuple[float, float] = (0.7, 0.9),
               tilt: float = 0.06, quality: int = 85) -> tuple[np.ndarray, Box]:
    """A seeded phone photo of ``screen`` (RGB uint8) and the box ``box`` of the face on it.

    Args:
        screen: the screen's pixels, e.g. a `vision.screens.screenshot`.
        box: the face's ``(x, y, width, height)`` on the screen.
        rng: draws the framing, the angle, the light and the noise.
        fill: range of the screen's width as a share of the photo's.
        tilt: largest shift of each corner of the screen, as a share of its width (the angle).
        quality: the camera's JPEG quality.

    Raises:
        ValueError: for a screen that is not RGB uint8, or a ``fill`` outside (0, 1].
    """
    if screen.dtype != np.uint8 or screen.ndim != 3 or screen.shape[2] != 3:
        raise ValueError(f"screen must be RGB uint8 (H, W, 3), received {screen.dtype} {screen.shape}.")
    if not 0 < fill[0] <= fill[1] <= 1:
        raise ValueError(f"fill must be a range inside (0, 1], received {fill}.")
    h, w = screen.shape[:2]
    out_w, out_h = PHOTO_WIDTH, int(round(PHOTO_WIDTH * PHOTO_ASPECT))
    shown_w = out_w * rng.uniform(*fill)
    shown_h = min(out_h * 0.95, shown_w * h / w)
    shown_w = shown_h * w / h
    x0 = rng.uniform(0, out_w - shown_w)
    y0 = rng.uniform(0, out_h - shown_h)
    corners = np.array([[x0, y0], [x0 + shown_w, y0], [x0 + shown_w, y0 + shown_h], [x0, y0 + shown_h]])
    corners += rng.uniform(-tilt, tilt, size=(4, 2)) * shown_w
    # The camera's optics blur the panel before its sensor samples it: drawn at twice the photo's
    # resolution, blurred there, then averaged down (sampling the stripes without that blur would
    # alias far more than a real camera does).
    panel = _panel(screen)
    source = np.float32([[0, 0], [w * 3, 0], [w * 3, h * 3], [0, h * 3]])
    fine = np.float32(corners * SUPERSAMPLE)
    homography = cv2.getPerspectiveTransform(source, fine)
    # The room around the screen: a dark bezel on a dim wall.
    photo = np.empty((out_h * SUPERSAMPLE, out_w * SUPERSAMPLE, 3), np.uint8)
    photo[:] = rng.integers(8, 30, size=3).astype(np.uint8)
    outline = _grown(fine, 0.025).astype(np.int32)
    cv2.fillConvexPoly(photo, outline, (5, 5, 6), cv2.LINE_AA)
    cv2.warpPerspective(panel, homography, photo.shape[1::-1], dst=photo, flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_TRANSPARENT)
    photo = cv2.GaussianBlur(photo, (0, 0), SUPERSAMPLE * rng.uniform(0.6, 1.2))
    photo = cv2.resize(photo, (out_w, out_h), interpolation=cv2.INTER_AREA)
    # Exposure for the panel's light (its stripes and row gaps pass ~27 % of each channel), white
    # balance and tone, vignetting, then sensor noise and the camera's JPEG.
    image = photo.astype(np.float32) / 255.0 / PANEL_LIGHT
    image = np.clip(image * rng.uniform(0.85, 1.15, size=3), 0, 1) ** rng.uniform(0.85, 1.15)
    yy, xx = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    r2 = ((xx - out_w / 2) / out_w) ** 2 + ((yy - out_h / 2) / out_h) ** 2
    image *= (1.0 - rng.uniform(0.2, 0.45) * r2)[..., None]
    image = image * 255.0 + rng.normal(0.0, rng.uniform(1.5, 4.0), image.shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode a {out_w}x{out_h} photo.")
    photo = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    bx, by, bw, bh = box
    face = np.float32([[bx, by], [bx + bw, by], [bx + bw, by + bh], [bx, by + bh]]) * 3
    warped = cv2.perspectiveTransform(face[None], homography)[0] / SUPERSAMPLE
    left, top = np.floor(warped.min(axis=0)).astype(int)
    right, bottom = np.ceil(warped.max(axis=0)).astype(int)
    return photo, (int(left), int(top), int(right - left), int(bottom - top))


def _grown(corners: np.ndarray, share: float) -> np.ndarray:
    """The quadrilateral ``corners`` pushed out from its centre by ``share`` of its width."""
    centre = corners.mean(axis=0)
    width = np.linalg.norm(corners[1] - corners[0])
    direction = corners - centre
    return corners + direction / np.linalg.norm(direction, axis=1, keepdims=True) * share * width
