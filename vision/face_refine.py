"""Landmarks that depend on the face alone: MTCNN's last stage re-run on a canonical window.

MTCNN's ONet reads a face's box and five landmarks off a 48 px patch of the square box that the
stages before it proposed, and that box depends on the pyramid levels of the whole picture (its
size, the faces and clutter around). The same face in a group and cut out alone therefore got
landmarks 1-9 px apart, and the agents' scores of the aligned crops moved by up to 0.15 for 2 px
(benchmarks/bench_group.py, 2026-12-03).

:class:`LandmarkRefiner` makes the landmarks a function of the face's own neighbourhood. Starting
from the detector's box, it looks at a *window state*: a square with its centre on whole pixels
and its side on a fixed ladder (steps of :data:`SIDE_STEP`). ONet scores the window and four
copies shifted by :data:`WINDOW_SHIFT` of its side, each resampled to 48 px by area averaging
(no aliasing, unlike bilinear sampling of a large face), and the mean of their boxes gives the
next state. Two pictures holding the same pixels around a face (shifted by whole pixels) give a
state the same patches, so they walk the same path once their paths meet, and both stop on the
same cycle of states. A path from that cycle one ladder step across the nearer edge of its side's
rung is walked too, and of the two cycles reached the smaller (comparing their sorted states) is
kept: a picture whose first path stopped on the other cycle usually reaches the first one with
its second path, and picks the same. The face's landmarks and box are the mean over that cycle.

Exactly equal matters: the agents' scores move by up to 0.015 for landmarks 0.05 px apart (the
aligned crop is resampled at another phase), so a face whose landmarks are near, not equal, may
still score differently. Windows that reach past the picture's edge see grey there, so a cut
tighter than the window (about 1.3x the face box) can still differ.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import cv2
import numpy as np

from vision.area import cell_means, integral_image
from vision.jit import compiled_loops_in_use

# ONet's input side in pixels, and MTCNN's normalisation of pixel values to about [-1, 1].
ONET_SIDE = 48
PIXEL_CENTRE, PIXEL_SCALE = 127.5, 128.0
# Window sides are 12 * SIDE_STEP**k px: a face's box size wobbles by a few % between views,
# far less than a step, so both views usually snap to the same side.
SIDE_STEP = 2.0 ** 0.125
# The four extra windows of a state are shifted by this share of the side (left, right, up, down):
# their mean smooths ONet's response to where the face sits in the window. Measured with six extra
# starts (a ladder step up and down, 2 px left, right, up and down): without the extra windows
# 85 % of 78 faces cut 1.5x and 2x out of group pictures (benchmarks/bench_group.py's) got the
# very same landmarks as in the group; 1/16 gave 92 % (the windows then reach past a tight cut's
# edge more often), 1/32 96 %.
WINDOW_SHIFT = 1.0 / 32.0
# The one extra start is the first cycle one ladder step across the nearer edge of its rung (a box
# size near a rung's edge is where two views part). Of the same 78 faces, 88 % got the same
# landmarks from the first cycle alone; with this start, 92 % keeping the union of both cycles and
# 94 % keeping the smaller cycle (1.6x the ONet work); 94 % / 96 % with a step up and down (2.2x) /
# with the six starts above (both keeping the union).
# At most this many states per path; paths end on a cycle after 2-5 in practice.
MAX_STEPS = 12
# A path whose window would grow past this many times its start's side stops where it is. On what
# is no face, ONet's box can widen at every step: a dfdc-test crop upscaled to 448 px walked to a
# window ~34 000 px wide, whose padded patch region asked for 13.8 GB and took the process down
# (2026-12-04). A face's box moves by a few % between states, far inside this.
MAX_GROWTH = 2.0

# A state's region takes its luma and its sums from tables of the whole picture, made once
# (`_Picture`), rather than converting and integrating its own pixels, when its area is at least
# TABLE_SHARE of the picture's (plus TABLE_SIDE squared where the loops are NumPy's, `vision.jit`),
# in a picture of at most TABLE_MAX_PIXELS. Its own tables cost in proportion to its area; the
# picture's in proportion to the picture's, once for a face's ~7 states, plus taking a region's sums
# back from them: ~0.25 ms a state in NumPy, a few microseconds compiled. Measured on one core,
# 2026-12-06: 1024 px portraits (regions ~816 px) detect in 84.9 ms against 86.8 ms on their own
# tables; 600 px photos (regions ~485 px) lost ~0.5 ms in NumPy with a 400 px threshold, and gain
# 1.1-1.6 ms with the compiled loops (47.3-47.6 ms against 48.6-49.2). A small face in a large
# picture (a 1080p screenshot's) stays on its own. Past TABLE_MAX_PIXELS (2048 x 2048) the
# picture's table would take over 50 MB. Either way the numbers are the same, to the last bit.
TABLE_SIDE = 500
TABLE_SHARE = 1.0 / 8.0
TABLE_MAX_PIXELS = 1 << 22

State = tuple[int, int, int]  # window centre x, y (whole pixels) and side (px, on the ladder)
Network = Callable[[np.ndarray], Sequence[np.ndarray]]  # float patches -> offsets, points, scores
Light = Callable[..., tuple[np.ndarray, bool]]  # (pixels, luma=their luma or None) -> (corrected, changed)


def window_patch(image: np.ndarray, window: np.ndarray, size: int = ONET_SIDE) -> np.ndarray:
    """The square ``window`` (x, y, side) of ``image`` resized to ``size`` x ``size``.

    Outside the image the patch is mid-grey, which MTCNN's normalisation maps to 0 (as its own
    patch extraction pads).
    """
    x, y, side = (int(round(v)) for v in window)
    side = max(side, 1)
    height, width = image.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, width), min(y + side, height)
    if x1 <= x0 or y1 <= y0:
        return np.full((size, size, 3), 128, np.uint8)
    patch = image[y0:y1, x0:x1]
    if (x0, y0, x1, y1) != (x, y, x + side, y + side):
        patch = cv2.copyMakeBorder(patch, y0 - y, y + side - y1, x0 - x, x + side - x1, cv2.BORDER_CONSTANT,
                                   value=(128, 128, 128))
    if side == size:
        return np.ascontiguousarray(patch)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def window_patches(region: np.ndarray, windows: np.ndarray, size: int = ONET_SIDE, *,
                   table: tuple[np.ndarray, tuple[int, int]] | None = None) -> np.ndarray:
    """``size`` x ``size`` patches of the square ``windows`` (rows x, y, side), as
    :func:`window_patch` cuts each, but windows inside ``region`` and larger than the patch are
    averaged through one integral image of the region.

    OpenCV's area filter costs about 1 ms for each 500 px window shrunk to 48 px at a scale that is
    not a whole number, and a large face's refinement cuts dozens of them (over a third of a 1024 px
    portrait's detection, 2026-12-04); `vision.area` gives the same means from one integral image.
    The integral is of the region alone, so a patch depends on the region's pixels only: the same
    face in another picture gets the same patch, to the last bit.

    Args:
        region: RGB uint8 pixels the windows are in.
        windows: (n, 3) rows x, y, side in the region's pixels.
        size: the patches' side.
        table: (integral image of a picture, (top, left) of ``region`` in it), when ``region`` is a
            part of that picture: the region's own sums are taken from it (`vision.area.cell_means`'
            ``origin``), the same numbers without integrating the region again.
    """
    # Whole pixels, rounded as window_patch rounds them.
    windows = np.round(np.asarray(windows, dtype=np.float64).reshape(-1, 3))
    out = np.empty((len(windows), size, size, region.shape[2]), np.uint8)
    x, y, side = windows.T
    large = (side > size) & (x >= 0) & (y >= 0) & (x + side <= region.shape[1]) & (y + side <= region.shape[0])
    for i in np.flatnonzero(~large):
        out[i] = window_patch(region, windows[i], size)
    if large.any():
        x, y, side = (windows[large, k:k + 1] for k in range(3))
        cells = np.arange(size + 1, dtype=np.float64) * (side / size)  # (n, size + 1) cell edges
        if table is None:
            out[large] = cell_means(integral_image(region), y + cells, x + cells)
        else:
            out[large] = cell_means(table[0], y + cells, x + cells, origin=table[1], shape=region.shape[:2])
    return out


def ladder_side(side: float) -> int:
    """The window side on the ladder nearest ``side`` (in log scale), at least 12 px (PNet's window)."""
    step = int(round(np.log(max(float(side), 12.0) / 12.0) / np.log(SIDE_STEP)))
    return int(round(12.0 * SIDE_STEP ** step))


def state_of(box: Sequence[float]) -> State:
    """The window state of a box (x, y, width, height): its centre rounded, its longer side snapped."""
    x, y, w, h = (float(v) for v in box)
    return int(round(x + w / 2.0)), int(round(y + h / 2.0)), ladder_side(max(w, h))


def _across_the_edge(cycle: list[State], seen: dict[State, tuple[np.ndarray, np.ndarray]]) -> State:
    """The state of a cycle's mean box, but one ladder step towards the nearer edge of its rung:
    where a view whose box size fell on the other side of that edge would be."""
    x1, y1, x2, y2 = np.mean([seen[s][0] for s in sorted(cycle)], axis=0)
    cx, cy, _ = state_of((x1, y1, x2 - x1, y2 - y1))
    rung = np.log(max(x2 - x1, y2 - y1, 12.0) / 12.0) / np.log(SIDE_STEP)
    other = int(round(rung)) + (1 if rung >= round(rung) else -1)
    return cx, cy, int(round(12.0 * SIDE_STEP ** other))


def _windows(state: State) -> np.ndarray:
    """A state's five windows (x, y, side): centred, then shifted left, right, up and down."""
    cx, cy, side = state
    shift = int(round(side * WINDOW_SHIFT))
    x, y = cx - side // 2, cy - side // 2
    return np.array([(x + dx, y + dy, side) for dx, dy in ((0, 0), (-shift, 0), (shift, 0), (0, -shift), (0, shift))],
                    dtype=np.float64)


class _Picture:
    """The picture being refined, with its luma and integral image made when first needed."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.tables = False  # whether the whole picture's tables are in use (TABLE_SHARE and the rest)

    @functools.cached_property
    def luma(self) -> np.ndarray:
        return cv2.cvtColor(self.pixels, cv2.COLOR_RGB2GRAY)

    @functools.cached_property
    def integral(self) -> np.ndarray:
        return integral_image(self.pixels)


class LandmarkRefiner:
    """Re-reads each face's box and landmarks from ONet on canonical windows (module docstring).

    Args:
        network: ONet: float32 patches (n, 48, 48, 3) in MTCNN's normalisation -> box offsets
            (n, 4), landmarks (n, 10: five x then five y, as shares of the window) and scores.
        light: light correction applied to the pixels around each state before its patches are
            cut (a function of those pixels alone, so both views correct a face alike), called as
            ``light(pixels, luma=their luma or None)`` and returning (the corrected pixels, whether
            they changed), as `vision.lighting.enhance_for_detection` does; None = none.
    """

    def __init__(self, network: Network, *, light: Light | None = None) -> None:
        self._network = network
        self._light = light

    def refine(self, image_rgb: np.ndarray,
               boxes: Sequence[Sequence[float]]) -> list[tuple[tuple[float, float, float, float], np.ndarray]]:
        """The refined (box, landmarks) of each face whose detected box is given, in image pixels.

        Args:
            image_rgb: the RGB uint8 image the boxes are in (full resolution).
            boxes: the detector's (x, y, width, height) of each face.

        Returns:
            Per face: the box (x, y, width, height), clipped to the image, and a (5, 2) float64
            landmark array, as the mean over the cycle of window states kept (module docstring).
        """
        if not len(boxes):
            return []
        seen: dict[State, tuple[np.ndarray, np.ndarray]] = {}
        starts = [state_of(box) for box in boxes]
        largest = [MAX_GROWTH * start[2] for start in starts]  # both walks of a face stay under it
        picture = _Picture(image_rgb)
        cycles = self._walk(picture, starts, seen, largest)
        # Two views may stop on neighbouring cycles (a box size near a rung's edge). A second path
        # from across that edge usually reaches the other view's cycle, and the smaller of the two
        # cycles (comparing their sorted states) is then the same pick in both views.
        reached = self._walk(picture, [_across_the_edge(cycle, seen) for cycle in cycles], seen, largest)
        out = []
        height, width = image_rgb.shape[:2]
        for i, cycle in enumerate(cycles):
            members = min(sorted(cycle), sorted(reached[i]))  # the same pick whichever path came first
            x1, y1, x2, y2 = np.mean([seen[s][0] for s in members], axis=0)
            x1, y1 = min(max(x1, 0.0), width - 1.0), min(max(y1, 0.0), height - 1.0)
            x2, y2 = min(max(x2, x1 + 1.0), float(width)), min(max(y2, y1 + 1.0), float(height))
            points = np.mean([seen[s][1] for s in members], axis=0)
            out.append(((float(x1), float(y1), float(x2 - x1), float(y2 - y1)), points))
        return out

    def _walk(self, picture: _Picture, starts: list[State], seen: dict[State, tuple[np.ndarray, np.ndarray]],
              largest: list[float]) -> list[list[State]]:
        """From each start, state to next state until one repeats: the cycle each path ends on
        (its last state when none repeats within MAX_STEPS, or when the next state's side would be
        over the path's ``largest``). Paths advance together, step by step; states already in
        ``seen`` are not looked at again."""
        # A second walk's start may lie a ladder step over ``largest``: it is looked at, then its path stops.
        paths: list[list[State]] = [[start] for start in starts]
        ends: list[int | None] = [None] * len(starts)  # index in its path where a cycle starts
        for _ in range(MAX_STEPS):
            todo = [i for i, end in enumerate(ends) if end is None]
            if not todo:
                break
            self._evaluate(picture, {paths[i][-1] for i in todo} - set(seen), seen)
            for i in todo:
                box, _ = seen[paths[i][-1]]
                nxt = state_of((box[0], box[1], box[2] - box[0], box[3] - box[1]))
                if nxt in paths[i]:
                    ends[i] = paths[i].index(nxt)
                elif nxt[2] > largest[i]:
                    ends[i] = len(paths[i]) - 1  # running away: no face holds the box; stop here
                else:
                    paths[i].append(nxt)
        self._evaluate(picture, {path[-1] for path in paths} - set(seen), seen)  # paths cut short
        return [path[end:] if end is not None else path[-1:] for path, end in zip(paths, ends)]

    def _evaluate(self, picture: _Picture, states: set[State],
                  seen: dict[State, tuple[np.ndarray, np.ndarray]]) -> None:
        """ONet on the five windows of each state, one call per state; stores each state's mean
        box (x1, y1, x2, y2) and landmarks in ``seen``.

        One call per state, not one batch for all: ONet's answer for a row depends on the batch's
        size and the row's place in it (TensorFlow picks other kernels and summation orders;
        measured 2026-12-03: 41 numerically different variants for batches of up to 40 rows), so
        a face batched beside its group's other faces got landmarks ~1e-6 px from the same face
        cut out alone, and 3 of 56 reached another cycle. Alone in its call, a state's answer
        depends on its pixels only: 53 of those 56 faces became equal to 1e-13 px, for no more
        time in all (fewer rows per call, more calls)."""
        if not states:
            return
        for state in sorted(states):
            offsets, points, _ = (np.asarray(a, dtype=np.float64) for a in self._network(
                (self._patches(picture, state).astype(np.float32) - PIXEL_CENTRE) / PIXEL_SCALE))
            wins = _windows(state)
            x, y, side = wins[:, 0:1], wins[:, 1:2], wins[:, 2:3]
            box = np.concatenate([x, y, x + side, y + side], axis=1) + offsets * side
            marks = np.stack([x + side * points[:, :5], y + side * points[:, 5:]], axis=2)
            seen[state] = (box.mean(axis=0), marks.mean(axis=0))

    def _patches(self, picture: _Picture, state: State) -> np.ndarray:
        """The five 48 px patches of a state, cut from the light-corrected pixels around it."""
        wins = _windows(state)
        x0, y0 = int(wins[:, 0].min()), int(wins[:, 1].min())
        span = int(max((wins[:, 0] + wins[:, 2]).max() - x0, (wins[:, 1] + wins[:, 2]).max() - y0))
        image = picture.pixels
        height, width = image.shape[:2]
        local = wins - np.array([x0, y0, 0.0])
        if not (x0 >= 0 and y0 >= 0 and x0 + span <= width and y0 + span <= height):
            region = window_patch(image, np.array([x0, y0, span]), size=span)
            return window_patches(region if self._light is None else self._light(region)[0], local)
        region = image[y0:y0 + span, x0:x0 + span]  # a view: the same pixels, no copy to make
        least = TABLE_SHARE * height * width + (0 if compiled_loops_in_use() else TABLE_SIDE ** 2)
        picture.tables = picture.tables or (span * span >= least and height * width <= TABLE_MAX_PIXELS)
        if self._light is not None:
            luma = picture.luma[y0:y0 + span, x0:x0 + span] if picture.tables else None
            lit, changed = self._light(region, luma=luma)
            if changed:
                return window_patches(lit, local)
        return window_patches(region, local, table=(picture.integral, (y0, x0)) if picture.tables else None)
