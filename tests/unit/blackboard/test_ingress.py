"""The case pipeline of the serving ingress, without Ray: image -> faces -> votes in one call,
crops kept unless asked for, calls cut to the micro-batch size, late and lost agents left out."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from blackboard.fragile import FragileConfig
from blackboard.ingress import CasePipeline, FindOptions, vote_each
from blackboard.ood import FEATURES, crop_features
from vision.context import face_context
from vision.faces import FaceCrop


def _faces(image: np.ndarray, count: int) -> list[FaceCrop]:
    """``count`` detected faces of ``image``: 224 px crops of its top-left corners, moved along."""
    faces = []
    for i in range(count):
        crop = np.ascontiguousarray(np.roll(image[:224, :224], 17 * i, axis=1))
        faces.append(FaceCrop(crop=crop, box=(10.0 * i, 5.0, 80.0, 90.0),
                              landmarks=np.arange(10, dtype=float).reshape(5, 2) + i, confidence=0.99, aligned=True))
    return faces


class Workers:
    """A detector that finds ``count`` faces, and agents whose p_fake is a crop's mean pixel / 255."""

    def __init__(self, count: int = 2, detect_s: float = 0.0, missing: dict[int, str] | None = None) -> None:
        self.count, self.detect_s = count, detect_s
        self.missing = missing or {}  # call number -> an agent absent from that call's answer
        self.detected, self.vote_calls = 0, []

    async def detect(self, image: np.ndarray, mode: str) -> list[FaceCrop]:
        self.detected += 1
        await asyncio.sleep(self.detect_s)
        return _faces(image, self.count)

    async def vote(self, crops: list[np.ndarray], deadline: float | None) -> dict:
        self.vote_calls.append(len(crops))
        p = np.array([float(np.mean(c)) / 255.0 for c in crops])
        answer = {"a": (p, 2.0), "b": (1.0 - p, 4.0)}
        answer.pop(self.missing.get(len(self.vote_calls) - 1, ""), None)
        return answer


@pytest.fixture()
def image(face_rgb) -> np.ndarray:
    return face_rgb


def test_one_call_brings_faces_context_and_votes_but_no_crops(image):
    workers = Workers(count=2)
    pipeline = CasePipeline(detect=workers.detect, vote=workers.vote, max_batch_size=16)
    found = asyncio.run(pipeline.find(image, "auto", time.time() + 30))
    faces = _faces(image, 2)
    assert workers.detected == 1 and workers.vote_calls == [2]  # one detection, one vote call
    assert [f.crop for f in found.faces] == [None, None]  # the pixels stayed where the workers are
    assert [f.box for f in found.faces] == [(0.0, 5.0, 80.0, 90.0), (10.0, 5.0, 80.0, 90.0)]
    assert found.faces[1].landmarks[0] == (1.0, 2.0) and found.faces[0].aligned
    assert found.faces[0].context == face_context(faces[0].crop, box=faces[0].box, source=image, detected=True)
    np.testing.assert_allclose(found.votes["a"][0], [np.mean(f.crop) / 255.0 for f in faces])
    assert found.ood_features is None and found.copy_votes == {} and set(found.timings_ms) == {"detect", "agents"}
    kept = asyncio.run(pipeline.find(image, "auto", None, FindOptions(keep_crops=True, ood_features=True)))
    assert all(np.array_equal(f.crop, g.crop) for f, g in zip(kept.faces, faces))
    np.testing.assert_allclose(kept.ood_features, crop_features([f.crop for f in faces]))
    assert kept.ood_features.shape == (2, len(FEATURES))


def test_copies_ride_with_the_faces_and_come_back_split(image):
    workers = Workers(count=3)
    pipeline = CasePipeline(detect=workers.detect, vote=workers.vote, max_batch_size=4)
    found = asyncio.run(pipeline.find(image, "on", None, FindOptions(fragile=FragileConfig(enabled=True))))
    # 3 faces + 2 copies of each = 9 crops, in calls of at most 4.
    assert sorted(workers.vote_calls) == [1, 4, 4]
    assert found.votes["a"][0].shape == (3,) and found.copy_votes["a"].shape == (2, 3)
    assert found.votes["a"][1] == pytest.approx(2.0)


def test_whole_image_mode_asks_no_detector_and_no_face_asks_no_agent(image):
    workers = Workers(count=0)
    pipeline = CasePipeline(detect=workers.detect, vote=workers.vote, max_batch_size=16)
    whole = asyncio.run(pipeline.find(image, "off", None))
    assert workers.detected == 0 and len(whole.faces) == 1 and workers.vote_calls == [1]
    none = asyncio.run(pipeline.find(image, "on", None))
    assert none.faces == [] and none.votes == {} and workers.vote_calls == [1]


def test_detection_past_the_deadline_answers_without_faces(image):
    workers = Workers(detect_s=5.0)
    pipeline = CasePipeline(detect=workers.detect, vote=workers.vote, max_batch_size=16)
    start = time.monotonic()
    found = asyncio.run(pipeline.find(image, "auto", time.time() + 0.2))
    assert found.faces is None and workers.vote_calls == [] and time.monotonic() - start < 2.0


def test_an_agent_missing_from_one_part_of_a_crowd_is_left_out_of_all(image):
    workers = Workers(missing={1: "b"})
    pipeline = CasePipeline(detect=workers.detect, vote=workers.vote, max_batch_size=2)
    crops = [f.crop for f in _faces(image, 5)]
    votes = asyncio.run(pipeline.vote(crops, None))
    assert workers.vote_calls == [2, 2, 1] and set(votes) == {"a"} and votes["a"][0].shape == (5,)
    with pytest.raises(ValueError, match="received 0"):
        CasePipeline(detect=workers.detect, vote=workers.vote, max_batch_size=0)


class Response:
    """A Serve response: answers after ``delay_s``, or fails; remembers a cancel."""

    def __init__(self, answer: object, delay_s: float = 0.0) -> None:
        self.answer, self.delay_s, self.cancelled = answer, delay_s, False

    def __await__(self):
        return self._run().__await__()

    async def _run(self) -> object:
        await asyncio.sleep(self.delay_s)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    def cancel(self) -> None:
        self.cancelled = True


class Handle:
    def __init__(self, response: Response) -> None:
        self.response, self.crops = response, None

    def remote(self, crops):
        self.crops = crops
        return self.response


def test_each_agent_is_asked_at_once_and_late_or_lost_ones_are_left_out():
    ok, late, lost = Response((np.array([0.2]), 1.0)), Response((np.array([0.9]), 1.0), 5.0), Response(
        RuntimeError("replica died"))
    handles = {"ok": Handle(ok), "late": Handle(late), "lost": Handle(lost)}
    start = time.monotonic()
    votes = asyncio.run(vote_each(handles, [np.zeros((4, 4, 3), np.uint8)], time.time() + 0.3))
    assert set(votes) == {"ok"} and votes["ok"][0][0] == pytest.approx(0.2)
    assert late.cancelled and not ok.cancelled and time.monotonic() - start < 2.0
    assert all(h.crops is not None for h in handles.values())
