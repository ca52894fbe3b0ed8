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
THUMB = 224  # heat-map tile side in pixels: the size a Grad-CAM map can be read at


FONT = cv2.FONT_HERSHEY_SIMPLEX
Rect = tuple[int, int, int, int]  # x, y, width, height


def _overlaps(a: Rect, b: Rect) -> bool:
    """True when two rectangles share area (touching edges do not count)."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _candidates(box: Rect, size: tuple[int, int], width: int, height: int) -> list[tuple[int, int]]:
    """Where a box's label may go, best first: above, below, then inside it (left, then right
    aligned), each moved into the image where it would stick out."""
    x, y, w, h = box
    lw, lh = size
    spots = [(x, y - lh), (x, y + h), (x, y), (x + w - lw, y - lh), (x + w - lw, y + h), (x, y + h - lh),
             (x + w - lw, y), (x + w - lw, y + h - lh)]
    return [(min(max(0, sx), max(0, width - lw)), min(max(0, sy), max(0, height - lh))) for sx, sy in spots]


def place_labels(boxes: Sequence[Rect], sizes: Sequence[tuple[int, int]], width: int,
                 height: int) -> list[tuple[int, int]]:
    """Top-left corners for the boxes' labels such that no two labels overlap.

    Each label takes the first of its candidate spots (:func:`_candidates`) that overlaps no label
    placed before it and no other face's box; failing that, the first that overlaps no label;
    failing that, the free spot in the image nearest its first choice (searched on a grid of half
    a label's height). A label with no free spot in the image goes below it (y >= ``height``),
    in rows, so the caller must extend the canvas to ``max(y + label height)``.

    Args:
        boxes: each face's (x, y, width, height) in pixels, in the order labels are placed.
        sizes: each label's (width, height) in pixels.
        width: image width.
        height: image height.
    """
    if len(boxes) != len(sizes):
        raise ValueError(f"one label size per box is needed, received {len(boxes)} boxes and {len(sizes)} sizes.")
    placed: list[Rect] = []
    below_x, below_y, below_h = 0, height, 0  # the next free spot in the rows under the image
    for i, (box, (lw, lh)) in enumerate(zip(boxes, sizes)):
        spots = _candidates(box, (lw, lh), width, height)
        others = [b for j, b in enumerate(boxes) if j != i]
        free = [s for s in spots if not any(_overlaps((*s, lw, lh), r) for r in placed)]
        clear = [s for s in free if not any(_overlaps((*s, lw, lh), b) for b in others)]
        spot = (clear or free or [None])[0]
        if spot is None:
            spot = _nearest_free(spots[0], (lw, lh), placed, width, height)
        if spot is None:  # the image is full: a row below it
            if below_x > 0 and below_x + lw > width:
                below_x, below_y, below_h = 0, below_y + below_h, 0
            spot = (below_x, below_y)
            below_x, below_h = below_x + lw, max(below_h, lh)
        placed.append((*spot, lw, lh))
    return [(x, y) for x, y, _, _ in placed]


def _nearest_free(start: tuple[int, int], size: tuple[int, int], placed: Sequence[Rect], width: int,
                  height: int) -> tuple[int, int] | None:
    """The spot nearest ``start`` on a grid over the image where a label overlaps none placed."""
    lw, lh = size
    step = max(1, lh // 2)
    xs = np.unique(np.append(np.arange(0, max(1, width - lw + 1), step), max(0, width - lw)))
    ys = np.unique(np.append(np.arange(0, max(1, height - lh + 1), step), max(0, height - lh)))
    grid = np.array(np.meshgrid(xs, ys)).reshape(2, -1).T
    order = np.argsort(np.hypot(grid[:, 0] - start[0], grid[:, 1] - start[1]), kind="stable")
    for sx, sy in grid[order]:
        if not any(_overlaps((int(sx), int(sy), lw, lh), r) for r in placed):
            return int(sx), int(sy)
    return None


def _label_size(text: str, scale: float) -> tuple[int, int]:
    """Width and height in pixels of a label drawn by :func:`_draw_label`."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, _thickness(scale))
    return tw + 4, th + base + 4


def _thickness(scale: float) -> int:
    return max(1, int(round(scale * 2)))


def _draw_label(img: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    """White text on a filled background whose top-left corner is (x, y)."""
    lw, lh = _label_size(text, scale)
    (_, th), _ = cv2.getTextSize(text, FONT, scale, _thickness(scale))
    cv2.rectangle(img, (x, y), (x + lw - 1, y + lh - 1), colour, cv2.FILLED)
    cv2.putText(img, text, (x + 2, y + th + 2), FONT, scale, (255, 255, 255), _thickness(scale), cv2.LINE_AA)


def label_text(face: dict[str, Any]) -> str:
    """"#0 FAKE p=0.87"; a "can't tell" shows no probability, as it is no verdict."""
    if face["verdict"] == "uncertain":
        return f"#{face['index']} CAN'T TELL"
    p = face.get("p_fake")
    return f"#{face['index']} {face['verdict'].upper()}" + ("" if p is None else f" p={p:.2f}")


def draw_faces(rgb: np.ndarray, faces: Sequence[dict[str, Any]]) -> np.ndarray:
    """Returns a BGR copy of ``rgb`` with each face's box and "FAKE 0.87"-style label.

    Labels never overlap one another (:func:`place_labels`); when the picture has no room left
    for one, a white band is added below it for the rest.

    Args:
        rgb: the classified image, RGB uint8.
        faces: dicts with ``box`` (x, y, w, h), ``verdict``, ``p_fake`` and ``index``.
    """
    img = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    height, width = img.shape[:2]
    scale = max(0.4, min(height, width) / 900.0)
    boxes = [tuple(int(round(v)) for v in face["box"]) for face in faces]
    texts = [label_text(face) for face in faces]
    colours = [COLOURS.get(face["verdict"], GREY) for face in faces]
    for (x, y, w, h), colour in zip(boxes, colours):
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, max(2, int(scale * 3)))
    sizes = [_label_size(text, scale) for text in texts]
    spots = place_labels(boxes, sizes, width, height)
    bottom = max([y + lh for (_, y), (_, lh) in zip(spots, sizes)], default=height)
    if bottom > height:
        img = cv2.copyMakeBorder(img, 0, bottom - height, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    for text, (x, y), colour in zip(texts, spots, colours):
        _draw_label(img, text, x, y, colour, scale)
    return img


def _note_lines(text: str, width: int, scale: float) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` px (a longer word stands alone)."""
    lines: list[str] = []
    for word in text.split():
        if lines and _label_size(f"{lines[-1]} {word}", scale)[0] <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _note_block(texts: Sequence[str], width: int, scale: float = 0.45) -> np.ndarray:
    """Grey text lines on white, BGR, ``width`` px wide: why some agents' maps are not shown."""
    lines = [line for text in texts for line in _note_lines(text, width - 8, scale)]
    line_h = _label_size("Ag", scale)[1] + 2
    block = np.full((line_h * len(lines) + 4, width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(block, line, (4, 2 + line_h * (i + 1) - 6), FONT, scale, (90, 90, 90), 1, cv2.LINE_AA)
    return block


def heatmap_strip(faces: Sequence[dict[str, Any]], width: int) -> np.ndarray | None:
    """Rows of heat-map tiles (one row per face, one tile per agent), BGR, or None.

    Square Grad-CAM overlays are drawn at :data:`THUMB` px, wider tiles (the forensic chart) at
    their own size: smaller, their labels could not be read. Under a face's tiles, one line per
    agent whose map was withheld says why (the face's ``heatmap_notes``).
    """
    rows = []
    for face in faces:
        tiles = []
        for agent, png in sorted((face.get("heatmaps") or {}).items()):
            tile = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
            if tile is None:
                continue
            if tile.shape[0] == tile.shape[1]:
                tile = cv2.resize(tile, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
            _draw_label(tile, f"#{face['index']} {agent}", 0, 0, (50, 50, 50), 0.5)
            tiles.append(tile)
        if tiles:
            height = max(t.shape[0] for t in tiles)
            rows.append(np.hstack([cv2.copyMakeBorder(t, 0, height - t.shape[0], 0, 4, cv2.BORDER_CONSTANT,
                                                      value=(255, 255, 255)) for t in tiles]))
        notes = [f"#{face['index']} {text}" for _, text in sorted((face.get("heatmap_notes") or {}).items())]
        if notes:  # as wide as the picture or the face's tiles, whichever is wider
            rows.append(_note_block(notes, max(width, THUMB, rows[-1].shape[1] if tiles else 0)))
    if not rows:
        return None
    out_w = max(width, max(r.shape[1] for r in rows))
    padded = [cv2.copyMakeBorder(r, 2, 2, 0, out_w - r.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255))
              for r in rows]
    return np.vstack(padded)


def face_crop(rgb: np.ndarray, box: Sequence[float], *, side: int = THUMB) -> np.ndarray:
    """The face's box cut from the image (clipped to it), scaled so its longer side is ``side`` px.

    Raises:
        ValueError: a box that does not overlap the image, or ``side`` < 1.
    """
    if int(side) < 1:
        raise ValueError(f"side must be >= 1, received {side}.")
    height, width = rgb.shape[:2]
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x1, y1 = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the box {tuple(box)} does not overlap the {width}x{height} image.")
    cut = rgb[y0:y1, x0:x1]
    scale = int(side) / max(cut.shape[:2])
    size = (max(1, round(cut.shape[1] * scale)), max(1, round(cut.shape[0] * scale)))
    return cv2.resize(np.ascontiguousarray(cut), size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


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
    try:
        ok, buf = cv2.imencode(ext, bgr)
    except cv2.error:  # OpenCV raises, rather than returning False, for an extension it does not know
        ok = False
    if not ok:
        raise ValueError(f"cannot write {path}: OpenCV has no encoder for {ext!r}; use .png or .jpg")
    return atomic_write_bytes(path, buf.tobytes())


def annotate_path_problem(base: str) -> str | None:
    """Why ``--annotate base`` cannot be written (checked before anything is classified), or None."""
    path = Path(base)
    if path.is_dir():
        return "is a folder; name the image to write, e.g. OUT.png."
    if not path.resolve().parent.is_dir():
        return f"the folder {path.parent} does not exist; create it or choose another path."
    if not cv2.haveImageWriter(f"x{path.suffix or '.png'}"):
        return f"OpenCV cannot write {path.suffix!r} images; use .png or .jpg."
    return None


def annotation_path(base: str, index: int, source: Path, count: int) -> Path:
    """``base`` for one input; ``base-<n>-<stem>.png`` style names for several."""
    base_path = Path(base)
    if count == 1:
        return base_path
    return base_path.with_name(f"{base_path.stem}-{index}-{source.stem}{base_path.suffix or '.png'}")
