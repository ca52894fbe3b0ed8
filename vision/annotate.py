"""Annotated images: boxes, verdicts and probabilities drawn with OpenCV, heatmaps underneath."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from agents.atomic import atomic_write_bytes


# BGR colours: red for fake, green for real, grey when undecided.
COLOURS = {"fake": (40, 40, 230), "real": (60, 180, 60)}
GREY = (160, 160, 160)
THUMB = 160  # heatmap thumbnail side in pixels


def _label_box(img: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    """Text on a filled background, above (x, y) when there is room, else below."""
    thickness = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = y - th - base - 4 if y - th - base - 4 >= 0 else y
    cv2.rectangle(img, (x, top), (x + tw + 4, top + th + base + 4), colour, cv2.FILLED)
    cv2.putText(img, text, (x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)


def draw_faces(rgb: np.ndarray, faces: Sequence[dict[str, Any]]) -> np.ndarray:
    """Returns a BGR copy of ``rgb`` with each face's box and "FAKE 0.87"-style label.

    Args:
        rgb: the classified image, RGB uint8.
        faces: dicts with ``box`` (x, y, w, h), ``verdict``, ``p_fake`` and ``index``.
    """
    img = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    scale = max(0.4, min(img.shape[:2]) / 900.0)
    for face in faces:
        x, y, w, h = (int(round(v)) for v in face["box"])
        colour = COLOURS.get(face["verdict"], GREY)
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, max(2, int(scale * 3)))
        p = None if face["verdict"] == "uncertain" else face.get("p_fake")  # "can't tell" is no verdict percentage
        word = "CAN'T TELL" if face["verdict"] == "uncertain" else face["verdict"].upper()
        text = f"#{face['index']} {word}" + ("" if p is None else f" p={p:.2f}")
        _label_box(img, text, x, y, colour, scale)
    return img


def heatmap_strip(faces: Sequence[dict[str, Any]], width: int) -> np.ndarray | None:
    """Rows of Grad-CAM thumbnails (one row per face, one tile per agent), BGR, or None."""
    rows = []
    for face in faces:
        tiles = []
        for agent, png in sorted((face.get("heatmaps") or {}).items()):
            tile = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
            if tile is None:
                continue
            tile = cv2.resize(tile, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
            _label_box(tile, f"#{face['index']} {agent}", 0, 0, (50, 50, 50), 0.45)
            tiles.append(tile)
        if tiles:
            rows.append(np.hstack(tiles))
    if not rows:
        return None
    out_w = max(width, max(r.shape[1] for r in rows))
    padded = [cv2.copyMakeBorder(r, 2, 2, 0, out_w - r.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255))
              for r in rows]
    return np.vstack(padded)


def annotate(rgb: np.ndarray, faces: Sequence[dict[str, Any]]) -> np.ndarray:
    """The annotated image (BGR): boxes and labels, with heatmap rows below when present."""
    img = draw_faces(rgb, faces)
    strip = heatmap_strip(faces, img.shape[1])
    if strip is None:
        return img
    if strip.shape[1] > img.shape[1]:
        img = cv2.copyMakeBorder(img, 0, 0, 0, strip.shape[1] - img.shape[1], cv2.BORDER_CONSTANT,
                                 value=(255, 255, 255))
    return np.vstack([img, strip])


def write_image(path: str | os.PathLike[str], bgr: np.ndarray) -> Path:
    """Writes an image atomically (temp file in the same folder, then rename).

    Raises:
        ValueError: OpenCV cannot encode to the path's extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix or ".png"
    ok, buf = cv2.imencode(ext, bgr)
    if not ok:
        raise ValueError(f"cannot write {path}: OpenCV has no encoder for {ext!r}; use .png or .jpg")
    return atomic_write_bytes(path, buf.tobytes())


def contribution_panel(crop: np.ndarray, contributions: dict[str, float], *, size: int = 224) -> np.ndarray:
    """The forensic agent's explanation drawn over its crop, in place of a Grad-CAM overlay.

    One bar per feature group, from a centre line: red to the right for a group that pushed
    towards fake (positive log-odds contribution), green to the left for one that pushed towards
    real, scaled to the largest magnitude; the value is printed beside the group's name.

    Args:
        crop: the RGB uint8 face crop.
        contributions: group -> contribution to the log-odds of fake (``ForensicModel.explain``).
        size: side of the returned square image.

    Returns:
        RGB uint8 ``(size, size, 3)``.
    """
    img = cv2.resize(np.ascontiguousarray(crop, dtype=np.uint8), (size, size), interpolation=cv2.INTER_AREA)
    img = (img.astype(np.float32) * 0.45).astype(np.uint8)  # darkened so the bars read
    if not contributions:
        return img
    rows = len(contributions)
    row_h = max(12, min(32, (size - 8) // rows))
    scale = row_h / 64.0
    text_w = size // 2  # names and values on the left half, bars on the right half
    centre = text_w + (size - text_w) // 2
    half = (size - text_w) // 2 - 3
    peak = max(max(abs(float(v)) for v in contributions.values()), 1e-6)
    top = (size - rows * row_h) // 2
    for i, (group, value) in enumerate(contributions.items()):
        y = top + i * row_h
        length = int(round(abs(float(value)) / peak * half))
        colour = COLOURS["fake"][::-1] if value > 0 else COLOURS["real"][::-1]  # BGR table -> RGB
        x0, x1 = (centre, centre + length) if value > 0 else (centre - length, centre)
        cv2.rectangle(img, (x0, y + 3), (x1, y + row_h - 3), colour, cv2.FILLED)
        cv2.putText(img, f"{group} {float(value):+.2f}", (3, y + (row_h + int(22 * scale)) // 2),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.line(img, (centre, top), (centre, top + rows * row_h), (255, 255, 255), 1)
    return img
