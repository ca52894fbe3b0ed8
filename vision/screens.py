"""Synthetic screenshots around a face: a desktop video player and a portrait phone app.

A victim rarely sends the file a fake was made in: they send a screenshot of the player or of
the phone app it played in. These functions draw such screens with OpenCV primitives (window
chrome, seek bar, buttons, status bar, text) and paste the face into the video area at a
seeded scale and position, so a detector can be tested on finding and judging a face inside
a whole screen. Screens are returned as arrays (lossless, like a PNG screenshot).

`screenshot` returns the canvas and the face's box ``(x, y, width, height)`` in it, so tests
and benchmarks can check where the face went.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from agents.errors import lookup

Box = tuple[int, int, int, int]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _paste(canvas: np.ndarray, face: np.ndarray, area: Box, rng: np.random.Generator,
           scale_range: tuple[float, float]) -> Box:
    """Resizes ``face`` to a random share of the video ``area``'s height and pastes it inside."""
    ax, ay, aw, ah = area
    h, w = face.shape[:2]
    # The face's height as a share of the video area: small faces are the common case.
    target_h = max(24, int(round(ah * rng.uniform(*scale_range))))
    target_w = max(24, int(round(w * target_h / h)))
    if target_w > aw:  # a very wide crop in a narrow area: fit its width instead
        target_w, target_h = aw, max(24, int(round(h * aw / w)))
    # Players scale frames bilinearly; shrinking by a lot, they average (area).
    interp = cv2.INTER_AREA if target_h < h else cv2.INTER_LINEAR
    small = cv2.resize(face, (target_w, target_h), interpolation=interp)
    x = ax + int(rng.integers(0, aw - target_w + 1))
    y = ay + int(rng.integers(0, ah - target_h + 1))
    canvas[y:y + target_h, x:x + target_w] = small
    return x, y, target_w, target_h


def _scene(canvas: np.ndarray, area: Box, rng: np.random.Generator) -> None:
    """Fills a video area with a dim, smooth random backdrop (a room out of focus)."""
    x, y, w, h = area
    coarse = rng.integers(10, 90, size=(3, 4, 3)).astype(np.uint8)
    canvas[y:y + h, x:x + w] = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _player(face: np.ndarray, rng: np.random.Generator, width: int, height: int,
            face_scale: tuple[float, float]) -> tuple[np.ndarray, Box]:
    """A desktop video player window (title bar, video, seek bar, controls) showing ``face``;
    ``rng`` draws the title, the face's scale and position, the progress and the colours."""
    canvas = np.full((height, width, 3), 24, np.uint8)
    unit = height / 720.0  # chrome scales with the screen
    title_h, bar_h = int(32 * unit), int(64 * unit)
    cv2.rectangle(canvas, (0, 0), (width, title_h), (52, 52, 56), -1)
    cv2.putText(canvas, "clip_%04d.mp4 - Media Player" % rng.integers(10000), (int(12 * unit), int(22 * unit)),
                _FONT, 0.55 * unit, (220, 220, 220), max(1, int(unit)), cv2.LINE_AA)
    for i, colour in enumerate(((200, 60, 60), (200, 170, 60), (80, 170, 80))):  # window buttons
        cv2.circle(canvas, (width - int((20 + 24 * i) * unit), title_h // 2), int(7 * unit), colour, -1, cv2.LINE_AA)
    video: Box = (0, title_h, width, height - title_h - bar_h)
    _scene(canvas, video, rng)
    box = _paste(canvas, face, video, rng, face_scale)
    # Seek bar with progress and knob, then play button, volume and the time.
    y_seek = height - bar_h + int(14 * unit)
    x0, x1 = int(16 * unit), width - int(16 * unit)
    accent = tuple(int(v) for v in rng.choice([(230, 50, 50), (60, 140, 240), (240, 240, 240)]))
    done = x0 + int((x1 - x0) * rng.uniform(0.05, 0.95))
    cv2.line(canvas, (x0, y_seek), (x1, y_seek), (90, 90, 90), max(2, int(4 * unit)))
    cv2.line(canvas, (x0, y_seek), (done, y_seek), accent, max(2, int(4 * unit)))
    cv2.circle(canvas, (done, y_seek), int(7 * unit), accent, -1, cv2.LINE_AA)
    cy = height - int(22 * unit)
    tri = np.array([[x0, cy - int(10 * unit)], [x0, cy + int(10 * unit)], [x0 + int(16 * unit), cy]], np.int32)
    cv2.fillPoly(canvas, [tri], (235, 235, 235), cv2.LINE_AA)
    cv2.rectangle(canvas, (x0 + int(40 * unit), cy - int(5 * unit)), (x0 + int(48 * unit), cy + int(5 * unit)),
                  (235, 235, 235), -1)
    cv2.line(canvas, (x0 + int(56 * unit), cy), (x0 + int(110 * unit), cy), (160, 160, 160), max(1, int(3 * unit)))
    minutes, seconds = int(rng.integers(0, 10)), int(rng.integers(0, 60))
    cv2.putText(canvas, f"0{minutes}:{seconds:02d} / 09:59", (x0 + int(130 * unit), cy + int(6 * unit)), _FONT,
                0.5 * unit, (230, 230, 230), max(1, int(unit)), cv2.LINE_AA)
    cv2.rectangle(canvas, (x1 - int(20 * unit), cy - int(9 * unit)), (x1, cy + int(9 * unit)), (235, 235, 235),
                  max(1, int(2 * unit)))  # full-screen icon
    return canvas, box


def _phone(face: np.ndarray, rng: np.random.Generator, width: int, height: int,
           face_scale: tuple[float, float]) -> tuple[np.ndarray, Box]:
    """A portrait phone screenshot (status bar, app header, a 16:9 video, title, buttons,
    comments) showing ``face``; ``rng`` draws light or dark theme, the face's scale and position."""
    dark = bool(rng.integers(2))
    bg, fg, muted = ((18, 18, 18), (240, 240, 240), (70, 70, 70)) if dark else \
        ((250, 250, 250), (20, 20, 20), (215, 215, 215))
    canvas = np.full((height, width, 3), bg, np.uint8)
    unit = width / 1080.0
    thick = max(1, int(2 * unit))
    # Status bar: clock, signal bars, battery.
    status_h = int(80 * unit)
    cv2.putText(canvas, f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}", (int(40 * unit), int(55 * unit)),
                _FONT, 1.2 * unit, fg, thick, cv2.LINE_AA)
    for i in range(4):
        x = width - int((260 - 22 * i) * unit)
        cv2.rectangle(canvas, (x, int((58 - 8 * i) * unit)), (x + int(12 * unit), int(60 * unit)), fg, -1)
    cv2.rectangle(canvas, (width - int(130 * unit), int(30 * unit)), (width - int(50 * unit), int(62 * unit)), fg, thick)
    level = int(rng.uniform(0.1, 1.0) * 76 * unit)
    cv2.rectangle(canvas, (width - int(128 * unit), int(32 * unit)), (width - int(128 * unit) + level, int(60 * unit)),
                  fg, -1)
    # App header with a back arrow and a title.
    header_h = int(120 * unit)
    cv2.arrowedLine(canvas, (int(90 * unit), status_h + header_h // 2), (int(40 * unit), status_h + header_h // 2),
                    fg, max(2, int(5 * unit)), cv2.LINE_AA, tipLength=0.5)
    cv2.putText(canvas, "Videos", (int(130 * unit), status_h + int(75 * unit)), _FONT, 1.4 * unit, fg, thick,
                cv2.LINE_AA)
    video_y = status_h + header_h
    video: Box = (0, video_y, width, int(width * 9 / 16))
    _scene(canvas, video, rng)
    box = _paste(canvas, face, video, rng, face_scale)
    below = video_y + video[3]
    cv2.line(canvas, (0, below), (int(width * rng.uniform(0.05, 0.95)), below), (230, 40, 40), max(2, int(6 * unit)))
    # Title lines, round action buttons, then grey comment placeholders down the screen.
    y = below + int(90 * unit)
    cv2.putText(canvas, "You won't believe this interview", (int(40 * unit), y), _FONT, 1.1 * unit, fg, thick,
                cv2.LINE_AA)
    y += int(110 * unit)
    for i in range(4):
        cv2.circle(canvas, (int((110 + 240 * i) * unit), y), int(45 * unit), muted, -1, cv2.LINE_AA)
    y += int(110 * unit)
    while y + int(120 * unit) < height - int(60 * unit):
        cv2.circle(canvas, (int(80 * unit), y + int(40 * unit)), int(40 * unit), muted, -1, cv2.LINE_AA)
        line_w = int(width * rng.uniform(0.4, 0.8))
        cv2.rectangle(canvas, (int(150 * unit), y + int(10 * unit)), (int(150 * unit) + line_w, y + int(35 * unit)),
                      muted, -1)
        cv2.rectangle(canvas, (int(150 * unit), y + int(50 * unit)), (int(150 * unit) + line_w // 2, y + int(70 * unit)),
                      muted, -1)
        y += int(140 * unit)
    cv2.line(canvas, (width // 2 - int(140 * unit), height - int(30 * unit)),
             (width // 2 + int(140 * unit), height - int(30 * unit)), fg, max(3, int(10 * unit)))  # home indicator
    return canvas, box


@dataclass(frozen=True)
class Screen:
    """One kind of screenshot: how it is drawn and the defaults `screenshot` draws it with."""

    draw: Callable[[np.ndarray, np.random.Generator, int, int, tuple[float, float]], tuple[np.ndarray, Box]]
    sizes: tuple[tuple[int, int], ...]  # candidate (width, height) screens
    face_scale: tuple[float, float]  # range of the face's height as a share of the video area's height


SCREENS: dict[str, Screen] = {
    "player": Screen(_player, sizes=((1280, 720), (1920, 1080)), face_scale=(0.25, 0.7)),
    "phone": Screen(_phone, sizes=((1080, 2340), (750, 1334)), face_scale=(0.3, 0.85)),
}


def screenshot(name: str, face: np.ndarray, rng: np.random.Generator, *,
               sizes: tuple[tuple[int, int], ...] | None = None,
               face_scale: tuple[float, float] | None = None) -> tuple[np.ndarray, Box]:
    """A screenshot of kind ``name`` (a key of SCREENS) showing ``face``, and the face's box in it.

    Args:
        name: "player" (a desktop video player window) or "phone" (a portrait phone app).
        face: RGB uint8 face image.
        rng: draws the screen size, then the screen's look and the face's scale and position.
        sizes: candidate (width, height) screens (None: the kind's).
        face_scale: range of the face's height as a share of the video area's height (None: the kind's).

    Raises:
        ValueError: naming the known kinds, for an unknown ``name``.
    """
    screen = lookup(SCREENS, name, what="screenshot kind")
    sizes = screen.sizes if sizes is None else sizes
    width, height = sizes[int(rng.integers(len(sizes)))]
    return screen.draw(face, rng, width, height, screen.face_scale if face_scale is None else face_scale)
