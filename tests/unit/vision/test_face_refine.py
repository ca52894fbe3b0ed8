"""The refined landmarks of a face depend on the face's neighbourhood, not on the picture around it."""

from __future__ import annotations

import numpy as np
import pytest

import vision.face_refine as face_refine
from vision.alignment import align_face
from vision.face_refine import LandmarkRefiner, ladder_side, state_of, window_patch


def _blob_network(patches: np.ndarray) -> list[np.ndarray]:
    """A stand-in for ONet that 'sees' the bright square in each patch: box offsets that frame it
    (brightness-weighted centre and spread, slightly enlarged as a net might), landmarks at fixed
    places in it, score 1."""
    offsets, points = [], []
    grid = (np.arange(48) + 0.5) / 48
    for patch in patches:
        weight = np.clip(patch.mean(axis=2), 0.0, None)
        total = weight.sum()
        mx, my = (weight.sum(axis=0) @ grid) / total, (weight.sum(axis=1) @ grid) / total
        spread = np.sqrt((weight.sum(axis=0) @ (grid - mx) ** 2) / total)
        half = 0.55 * np.sqrt(12.0) * spread
        offsets.append(np.array([mx - half, my - half, mx + half - 1, my + half - 1]))
        fx, fy = np.array([0.3, 0.7, 0.5, 0.35, 0.65]), np.array([0.35, 0.35, 0.55, 0.75, 0.75])
        points.append(np.concatenate([mx - half + 2 * half * fx, my - half + 2 * half * fy]))
    count = len(patches)
    return [np.array(offsets), np.array(points), np.tile([0.0, 1.0], (count, 1))]


def _square_picture(height: int, width: int, squares: list[tuple[int, int, int]]) -> np.ndarray:
    image = np.full((height, width, 3), 20, np.uint8)
    rng = np.random.default_rng(0)
    for x, y, side in squares:
        image[y:y + side, x:x + side] = rng.integers(180, 255, (side, side, 3))
    return image


def test_ladder_snaps_nearby_sizes_together_and_states_use_whole_pixels():
    assert ladder_side(190.0) == ladder_side(196.0) == 192
    assert ladder_side(100.0) < ladder_side(200.0)
    assert ladder_side(1.0) == 12
    assert state_of((10.2, 20.6, 100.0, 120.0)) == (60, 81, ladder_side(120.0))


def test_window_patch_pads_outside_the_image_with_mid_grey():
    image = np.full((100, 100, 3), 200, np.uint8)
    patch = window_patch(image, np.array([-48, 0, 96]))
    assert patch.shape == (48, 48, 3)
    assert np.all(patch[:, :23] == 128) and np.all(patch[:, 25:] == 200)


def test_refined_face_is_the_same_from_any_start_and_in_any_picture():
    refiner = LandmarkRefiner(_blob_network)
    alone = _square_picture(300, 300, [(90, 80, 110)])
    # The same square (same pixels) at another place in a larger picture, beside another square.
    group = _square_picture(400, 700, [(390, 150, 110)])
    group[150:260, 390:500] = alone[80:190, 90:200]
    group[40:130, 60:150] = 230
    starts = [(85.0, 75.0, 120.0, 120.0), (97.0, 88.0, 100.0, 104.0), (80.0, 90.0, 125.0, 112.0), (70.0, 60.0, 140.0, 140.0)]
    results = refiner.refine(alone, starts)
    shifted = refiner.refine(group, [(x + 300, y + 70, w, h) for x, y, w, h in starts])
    for (box, points), (other_box, other_points) in zip(results, shifted):
        # The first paths stop on two cycles a ladder step apart (the square's box size lies near
        # a rung's edge); the second path from across that edge makes every start pick the same.
        np.testing.assert_allclose(points, results[0][1], atol=1e-9)
        np.testing.assert_allclose(other_points - [300, 70], points, atol=1e-9)
        np.testing.assert_allclose(np.array(other_box) - [300, 70, 0, 0], box, atol=1e-9)
    box = results[0][0]
    assert abs(box[0] + box[2] / 2 - 145) < 3 and abs(box[1] + box[3] / 2 - 135) < 3  # framed on the square


def test_a_face_refined_beside_others_gets_what_it_gets_alone_though_the_network_depends_on_its_batch():
    # ONet's answer for a row moves with the batch's size (other kernels, other summation order):
    # here by 1e-4 of the window per extra row. Each state is scored in a call of its own, so two
    # faces refined together get exactly what each gets refined alone.
    def batch_sensitive(patches: np.ndarray) -> list[np.ndarray]:
        offsets, points, scores = _blob_network(patches)
        return [offsets + 1e-4 * (len(patches) - 5), points, scores]

    refiner = LandmarkRefiner(batch_sensitive)
    picture = _square_picture(300, 600, [(90, 80, 110), (380, 100, 90)])
    boxes = [(85.0, 75.0, 120.0, 120.0), (375.0, 95.0, 100.0, 100.0)]
    together = refiner.refine(picture, boxes)
    for box, (joint_box, joint_points) in zip(boxes, together):
        [(alone_box, alone_points)] = refiner.refine(picture, [box])
        np.testing.assert_array_equal(joint_points, alone_points)
        assert joint_box == alone_box


def _widening_network(patches: np.ndarray) -> list[np.ndarray]:
    """A stand-in for ONet on something that is no face: every box it returns is 1.5x its window."""
    count = len(patches)
    points = np.tile([0.3, 0.7, 0.5, 0.35, 0.65, 0.35, 0.35, 0.55, 0.75, 0.75], (count, 1))
    return [np.tile([-0.25, -0.25, 0.25, 0.25], (count, 1)), points, np.tile([0.0, 1.0], (count, 1))]


class _Recording(LandmarkRefiner):
    """Records the side of every window state the refiner looks at."""

    def _evaluate(self, image, states, seen):
        self.sides = getattr(self, "sides", []) + [side for _, _, side in states]
        super()._evaluate(image, states, seen)


def test_a_window_that_keeps_widening_stops_near_twice_its_start(monkeypatch):
    # On what is no face, ONet's box can widen at every step: a dfdc-test crop upscaled to 448 px
    # walked to a window ~34 000 px wide, and its padded patch region asked for 13.8 GB.
    image = _square_picture(100, 100, [(30, 30, 40)])
    bounded = _Recording(_widening_network)
    [(box, points)] = bounded.refine(image, [(30.0, 30.0, 40.0, 40.0)])
    start = ladder_side(40.0)
    assert max(bounded.sides) <= 3 * start and np.all(np.isfinite(points))  # twice, and the second walk's start
    # Unbounded it walks on and on (4 steps a walk here, or the test itself would need gigabytes).
    monkeypatch.setattr(face_refine, "MAX_GROWTH", float("inf"))
    monkeypatch.setattr(face_refine, "MAX_STEPS", 4)
    unbounded = _Recording(_widening_network)
    unbounded.refine(image, [(30.0, 30.0, 40.0, 40.0)])
    assert max(unbounded.sides) > 10 * start


def test_refiner_with_no_boxes_returns_nothing():
    assert LandmarkRefiner(_blob_network).refine(np.zeros((60, 60, 3), np.uint8), []) == []


def _central(faces, image):
    centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
    return min(faces, key=lambda f: np.linalg.norm(np.array([f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2]) - centre))


def test_a_face_gets_the_same_landmarks_and_crop_alone_and_in_a_group(detector, face_rgb):
    # The astronaut's head (300 px) on a noisy background beside a mirrored copy and a smaller copy:
    # the pyramid of the group differs from that of the face alone, its neighbourhood does not.
    import cv2

    head = np.ascontiguousarray(face_rgb[0:300, 100:400])
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (60, 130, 3), dtype=np.uint8)
    group = cv2.resize(noise, (1040, 480), interpolation=cv2.INTER_CUBIC)
    group[37:337, 41:341] = head
    group[90:390, 400:700] = head[:, ::-1]
    group[150:350, 780:980] = cv2.resize(head, (200, 200), interpolation=cv2.INTER_AREA)
    in_group = [f for f in detector.detect(group) if 41 <= f.box[0] + f.box[2] / 2 < 341]
    assert len(in_group) == 1 and len(detector.detect(group)) == 3
    face = in_group[0]
    x, y, w, h = face.box
    # Cut 1.6x the box around the face, as a user would; and the head picture as it is.
    x0, y0 = int(round(x + w / 2 - 0.8 * w)), int(round(y + h / 2 - 0.8 * h))
    cut = np.ascontiguousarray(group[y0:y0 + int(1.6 * h), x0:x0 + int(1.6 * w)])
    for image, offset in ((cut, (x0, y0)), (head, (41, 37))):
        own = _central(detector.detect(image), image)
        np.testing.assert_allclose(own.landmarks + offset, face.landmarks, atol=1e-3)
        crop_alone = align_face(image, own.landmarks)
        crop_group = align_face(group, face.landmarks)
        assert float(np.abs(crop_alone.astype(float) - crop_group.astype(float)).mean()) < 1.0


@pytest.fixture(scope="module")
def unrefined_detector():
    from vision.face_detector import FaceDetector

    return FaceDetector(refine=False)


def test_refinement_keeps_the_faces_found(detector, unrefined_detector, face_rgb):
    refined, plain = detector.detect(face_rgb), unrefined_detector.detect(face_rgb)
    assert len(refined) == len(plain) == 1
    # Refined landmarks stay on the same face: within a few pixels of MTCNN's own.
    assert np.abs(refined[0].landmarks - plain[0].landmarks).max() < 8
    assert refined[0].confidence == plain[0].confidence


def test_the_pictures_tables_give_the_same_landmarks_as_each_regions_own(monkeypatch, loops):
    # Large regions take their sums and luma from tables of the whole picture (made once); small
    # ones from their own pixels. Either way, every state sees the same patches, to the last bit.
    from vision.lighting import enhance_for_detection

    picture = _square_picture(420, 760, [(60, 90, 230), (470, 100, 220)])
    picture[picture == 20] = np.random.default_rng(3).integers(60, 200, int(np.sum(picture == 20)))
    picture[:, 420:] //= 6  # the second square in the dark: its states are lit, each on its own
    seen, lit = [], []

    def network(patches):
        seen.append(patches.copy())
        return _blob_network(patches)

    def light(pixels, luma=None):
        out, changed = enhance_for_detection(pixels, luma=luma)
        lit.append(changed)
        return out, changed

    refiner = LandmarkRefiner(network, light=light)
    starts = [(50.0, 80.0, 250.0, 250.0), (460.0, 90.0, 240.0, 240.0)]
    results = {}
    for share in (10.0 ** 6, 0.0):  # never the picture's tables; always
        monkeypatch.setattr(face_refine, "TABLE_SHARE", share)
        monkeypatch.setattr(face_refine, "TABLE_SIDE", 0)
        seen.clear()
        results[share] = (refiner.refine(picture, starts), [p.copy() for p in seen])
    (own, own_patches), (tables, table_patches) = results[10.0 ** 6], results[0.0]
    assert len(own_patches) == len(table_patches) > 4 and True in lit and False in lit
    for a, b in zip(own_patches, table_patches):
        np.testing.assert_array_equal(a, b)
    for (box, points), (other_box, other_points) in zip(own, tables):
        assert box == other_box and np.array_equal(points, other_points)


def test_a_600_px_photos_face_reads_the_pictures_tables_only_with_the_compiled_loops(monkeypatch, loops):
    # Taking a region's sums back from the picture's table costs ~0.25 ms a state in NumPy, a few
    # microseconds compiled: a 600 px photo's ~485 px regions use the tables only when compiled.
    made = []

    class Recorded(face_refine._Picture):
        def __init__(self, pixels):
            super().__init__(pixels)
            made.append(self)

    monkeypatch.setattr(face_refine, "_Picture", Recorded)
    picture = np.full((600, 600, 3), 20, np.uint8)
    picture[150:450, 150:450] = 220
    LandmarkRefiner(_blob_network).refine(picture, [(150.0, 150.0, 300.0, 300.0)])
    assert len(made) == 1 and made[0].tables == (loops == "compiled")
