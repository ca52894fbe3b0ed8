"""The blackboard with its workers in this process: one image answered without starting Ray.

`fakeface classify FILE` (no ``--server``) asks one question and exits, so starting a Ray cluster
and Serve applications costs more than the answer. `InProcessBoard` runs the same workers the
service's replicas run (`blackboard.workers`: `AgentSet` without Serve's micro-batcher, and
`DetectorWorker`), without importing Ray, on the same way from image to votes
(`blackboard.ingress.CasePipeline`) and the same case logic (`blackboard.board.Board`), so the
answer is the service's answer. The agents load and vote on their own threads (ONNX Runtime and
scikit-learn release the GIL while they compute); MTCNN loads only when a case needs detection,
or, when the caller knows one will (``preload_detector``), on a thread of its own beside the agents.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import numpy as np

from agents.bundle import Bundle
from blackboard.board import Board
from blackboard.config import EnsembleConfig
from blackboard.controllers.base import Controller
from blackboard.ingress import CasePipeline, FindOptions, Found, Votes
from blackboard.workers import AgentSet, DetectorWorker


class InProcessBoard(Board):
    """`Board` whose detector and agents run in this process.

    Args:
        bundle: bundle directory, loaded `Bundle`, or None for the shipped default.
        config: only ``agents``, ``deadline_s`` and ``max_batch_size`` apply here.
        controller: overrides the bundle's controller (else the bundle's, else mean voting).
        preload_detector: start loading MTCNN now, while the agents load, instead of on the first
            case that needs it (for a caller that knows one will: a photo, a screenshot, a video).
    """

    def __init__(self, bundle: Bundle | str | os.PathLike[str] | None = None,
                 config: EnsembleConfig = EnsembleConfig(), *, controller: Controller | None = None,
                 preload_detector: bool = False) -> None:
        super().__init__(bundle, config, controller=controller)
        self._detector_job = None
        if preload_detector:
            from concurrent.futures import ThreadPoolExecutor

            from agents.predictor import import_libraries

            # Libraries imported on this thread first (see `import_libraries`); then the detector's
            # loading overlaps the agents' (ONNX Runtime releases the GIL while it builds sessions).
            import_libraries(self.bundle, self.agent_names)
            loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector-load")
            self._detector_job = loader.submit(DetectorWorker)
            loader.shutdown(wait=False)
        # The service's agent set without Serve: the agents load and vote on their own threads,
        # and one late or failing agent is left out exactly as in the service.
        self._agents = AgentSet(self.bundle, self.agent_names, batch_size=config.max_batch_size, warm_up=False)
        self._detector: DetectorWorker | None = None
        self._detector_lock = threading.Lock()
        self._pipeline = CasePipeline(detect=self._detect_async, vote=self._vote_async,
                                      max_batch_size=config.max_batch_size)

    def ready(self, timeout_s: float = 120) -> bool:
        """Always True: the agents are loaded when the constructor returns."""
        return True

    def component_status(self, timeout_s: float = 2.0) -> dict[str, bool]:
        return {"detector": True, **{f"agent/{name}": True for name in self.agent_names}}

    def _detect(self, image: np.ndarray, mode: str) -> list[Any]:
        with self._detector_lock:  # MTCNN loads once, on the first case that needs it
            if self._detector is None:
                self._detector = self._detector_job.result() if self._detector_job else DetectorWorker()
            return self._detector(image, mode)

    async def _detect_async(self, image: np.ndarray, mode: str) -> list[Any]:
        return await asyncio.to_thread(self._detect, image, mode)

    async def _vote_async(self, crops: list[np.ndarray], deadline: float | None) -> Votes:
        # One micro-batch of crops, on the agents' own threads.
        return (await asyncio.to_thread(self._agents.assess, [crops], deadline))[0]

    def _find(self, image: np.ndarray, mode: str, deadline: float, deadline_s: float, options: FindOptions) -> Found:
        # The pipeline's deadline is wall-clock time, as where it runs in a replica.
        return asyncio.run(self._pipeline.find(image, mode, time.time() + deadline - time.monotonic(), options))

    def _vote(self, crops: list[np.ndarray], deadline: float) -> dict[str, tuple[np.ndarray, float]]:
        return asyncio.run(self._pipeline.vote(crops, time.time() + deadline - time.monotonic()))

    def _replica_stats(self) -> dict[str, dict[str, int]]:
        return self._agents.stats()

    def shutdown(self) -> None:
        self._agents.close()
