"""A case's way through the workers in one call: image -> faces -> votes (issue 23).

The driver used to fetch a case's face crops from the detector and send them out again to the
agents: two round trips per image, every crop crossing the process boundary twice. The Serve
ingress runs both steps where the workers are and answers once, with the faces' boxes, context
and votes; the crops come back only when the caller asks for them (heat maps). The decision
(controller, calibration, "can't tell" gates) stays with `blackboard.board.Board`, the one place
where a case is decided.

`CasePipeline` is a plain class over two awaitables, so it runs wherever they are:

* layout "sets": in the agent-set replica, over its own detector thread and micro-batcher
  (`blackboard.deployments.AgentSetDeployment`): no extra process, one call per case;
* layout "agents": in the detector's replica, over Serve handles to each agent's application
  (`blackboard.deployments.IngressDeployment`, Serve's model composition);
* in process (`blackboard.inprocess.InProcessBoard`), over the same deployment bodies.

Times given to the pipeline are wall-clock (``time.time()``): it runs in another process than
the caller's monotonic clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence

import numpy as np

from blackboard.fragile import FragileConfig, split_copies, with_copies
from blackboard.ood import crop_features
from vision.context import face_context

log = logging.getLogger("fakeface.ingress")

Votes = dict[str, tuple[np.ndarray, float]]  # agent -> (p_fake per crop, ms per crop)
Detect = Callable[[np.ndarray, str], Awaitable[list[Any]]]  # (image, mode) -> vision.faces.FaceCrop list
Vote = Callable[[list[np.ndarray], float | None], Awaitable[Votes]]  # (crops, wall deadline) -> votes


@dataclass(frozen=True)
class FindOptions:
    """What a case asks of the pipeline besides its image (sent along with each call)."""

    fragile: FragileConfig = FragileConfig()  # score degraded copies too (`blackboard.fragile`)
    ood_features: bool = False  # the crops' statistics for the uncertainty gate (`blackboard.ood`)
    keep_crops: bool = False  # send the crops back (heat maps, the CLI's report)


@dataclass
class FoundFace:
    """One face as the pipeline answers it: where it is, its context, no pixels unless asked."""

    box: tuple[float, float, float, float]
    landmarks: list[tuple[float, float]]
    confidence: float
    aligned: bool
    context: dict[str, float]  # vision.context.face_context, with the source image at hand
    crop: np.ndarray | None = None  # only with FindOptions.keep_crops


@dataclass
class Found:
    """A case's faces and votes, or why there are none."""

    faces: list[FoundFace] | None  # None: detection did not finish by the deadline
    votes: Votes = field(default_factory=dict)  # agents that answered in time, on the faces
    copy_votes: dict[str, np.ndarray] = field(default_factory=dict)  # agent -> (copies, faces)
    ood_features: np.ndarray | None = None  # (faces, D) `blackboard.ood.crop_features`, when asked
    timings_ms: dict[str, float] = field(default_factory=dict)  # "detect", "agents"


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.time(), 0.0)


def _describe(image: np.ndarray, faces: Sequence[Any], options: FindOptions
              ) -> tuple[list[FoundFace], np.ndarray | None, list[np.ndarray]]:
    """The faces' records, their crops' statistics and the crops the agents get (copies included)."""
    found = [FoundFace(box=tuple(float(v) for v in face.box),
                       landmarks=[] if face.landmarks is None else [tuple(map(float, p)) for p in
                                                                   np.asarray(face.landmarks)],
                       confidence=float(face.confidence), aligned=bool(face.aligned),
                       context=face_context(face.crop, box=face.box, source=image, detected=face.aligned),
                       crop=face.crop if options.keep_crops else None) for face in faces]
    crops = [face.crop for face in faces]
    features = crop_features(crops) if options.ood_features and crops else None
    return found, features, with_copies(crops, options.fragile) if crops else []


class CasePipeline:
    """Detection, then every agent's vote on the case's crops, in the process that holds the workers.

    Args:
        detect: finds the faces of an image (``vision.faces.extract_faces`` on a detector).
        vote: every agent's answer on at most ``max_batch_size`` crops by a wall-clock deadline;
            agents that failed or were late are absent.
        max_batch_size: crops per vote call (Serve's micro-batcher refuses a bigger call).
    """

    def __init__(self, *, detect: Detect, vote: Vote, max_batch_size: int) -> None:
        if int(max_batch_size) < 1:
            raise ValueError(f"max_batch_size must be >= 1, received {max_batch_size!r}.")
        self._detect = detect
        self._vote = vote
        self.max_batch_size = int(max_batch_size)

    async def find(self, image: np.ndarray, mode: str, deadline: float | None,
                   options: FindOptions = FindOptions()) -> Found:
        """The faces of ``image`` (``mode`` as `vision.faces.extract_faces`) and the agents' votes.

        Args:
            image: (H, W, 3) uint8 RGB, already checked by the board.
            mode: "auto", "on" or "off" (the whole image is the crop; no detector is asked).
            deadline: wall-clock time the answer is needed by; None = no limit.
            options: copies, OOD statistics and crops wanted back.
        """
        started = time.perf_counter()
        if mode == "off":
            from vision.faces import extract_faces

            faces = await asyncio.to_thread(extract_faces, image, None, mode="off")
        else:
            try:
                faces = await asyncio.wait_for(self._detect(image, mode), timeout=_remaining(deadline))
            except asyncio.TimeoutError:
                return Found(faces=None, timings_ms={"detect": (time.perf_counter() - started) * 1000.0})
        # NumPy and OpenCV work on a worker thread: the event loop keeps batching other cases.
        found, features, crops = await asyncio.to_thread(_describe, image, faces, options)
        timings = {"detect": (time.perf_counter() - started) * 1000.0}
        if not found:
            return Found(faces=[], timings_ms=timings)
        t_agents = time.perf_counter()
        votes, copy_votes = split_copies(await self.vote(crops, deadline), len(found), options.fragile)
        timings["agents"] = (time.perf_counter() - t_agents) * 1000.0
        return Found(faces=found, votes=votes, copy_votes=copy_votes, ood_features=features, timings_ms=timings)

    async def vote(self, crops: Sequence[np.ndarray], deadline: float | None) -> Votes:
        """Every agent's answer on all ``crops``, in calls of at most ``max_batch_size`` at once.

        An agent that missed any part is left out of the whole answer, so a vote always covers
        every crop.
        """
        size = self.max_batch_size
        chunks = [list(crops[i:i + size]) for i in range(0, len(crops), size)] or [[]]
        parts = await asyncio.gather(*(self._vote(chunk, deadline) for chunk in chunks))
        if len(parts) == 1:
            return dict(parts[0])
        answered = set(parts[0]).intersection(*parts[1:])
        weights = [len(chunk) for chunk in chunks]  # the parts' ms per crop, averaged per crop
        return {name: (np.concatenate([part[name][0] for part in parts]),
                       float(np.average([part[name][1] for part in parts], weights=weights)))
                for name in answered}


async def vote_each(handles: Mapping[str, Any], crops: list[np.ndarray], deadline: float | None) -> Votes:
    """One call per agent's Serve application, all in flight at once (layout "agents").

    An agent whose call fails (its replica died) or is not done by ``deadline`` is left out of
    this answer: its faces come back degraded, naming it, and Serve replaces the replica.

    Args:
        handles: agent name -> a Serve handle (``.remote(crops)`` gives an awaitable response).
        crops: at most one micro-batch of crops.
        deadline: wall-clock time the votes are needed by; None = no limit.
    """
    responses = {name: handle.remote(crops) for name, handle in handles.items()}

    async def one(name: str, response: Any) -> tuple[str, Any]:
        try:
            return name, await asyncio.wait_for(_awaited(response), timeout=_remaining(deadline))
        except asyncio.TimeoutError:
            response.cancel()  # late: its vote is missing from this case
        except Exception:  # noqa: BLE001 - whatever broke the call (a dead replica), this agent's vote is missing
            log.debug("agent %s did not answer", name, exc_info=True)
        return name, None

    answers = await asyncio.gather(*(one(name, response) for name, response in responses.items()))
    return {name: answer for name, answer in answers if answer is not None}


async def _awaited(response: Any) -> Any:
    """A Serve response as a coroutine (``asyncio.wait_for`` wants one, not just an awaitable)."""
    return await response
