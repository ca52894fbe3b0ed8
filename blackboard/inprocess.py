"""The blackboard with its workers in this process: one image answered without starting Ray.

`fakeface classify FILE` (no ``--server``) asks one question and exits, so starting a Ray cluster
and a Serve application per agent costs more than the answer. `InProcessBoard` runs the same
workers the service runs (`blackboard.deployments`: each agent's `AgentWorker` without
Serve's micro-batcher, and `DetectorDeployment`) and the same case logic (`blackboard.board.Board`), so the answer is the
service's answer. The agents load in parallel threads and vote in parallel threads (TensorFlow
and scikit-learn release the GIL while they compute); MTCNN loads only when a case needs detection.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from agents.bundle import Bundle
from blackboard.board import Board, EnsembleConfig
from blackboard.controller import Controller
from blackboard.deployments import AgentWorker, DetectorDeployment


class InProcessBoard(Board):
    """`Board` whose detector and agents run in this process.

    Args:
        bundle: bundle directory, loaded `Bundle`, or None for the shipped default.
        config: only ``agents``, ``deadline_s`` and ``max_batch_size`` apply here.
        controller: overrides the bundle's controller (else the bundle's, else mean voting).
    """

    def __init__(self, bundle: Bundle | str | os.PathLike[str] | None = None,
                 config: EnsembleConfig = EnsembleConfig(), *, controller: Controller | None = None) -> None:
        super().__init__(bundle, config, controller=controller)
        self._pool = ThreadPoolExecutor(max_workers=len(self.agent_names) + 1, thread_name_prefix="board")
        jobs = {name: self._pool.submit(AgentWorker, self.bundle, name, batch_size=config.max_batch_size)
                for name in self.agent_names}
        self._agents = {name: job.result() for name, job in jobs.items()}
        self._detector: DetectorDeployment | None = None
        self._detector_lock = threading.Lock()

    def ready(self, timeout_s: float = 120) -> bool:
        """Always True: the agents are loaded when the constructor returns."""
        return True

    def component_status(self, timeout_s: float = 2.0) -> dict[str, bool]:
        return {"detector": True, **{f"agent/{name}": True for name in self.agent_names}}

    def _detect(self, image: np.ndarray, mode: str, deadline: float, deadline_s: float) -> list[Any]:
        with self._detector_lock:  # MTCNN loads once, on the first case that needs it
            if self._detector is None:
                self._detector = DetectorDeployment()
            return self._detector(image, mode)

    def _vote(self, crops: list[np.ndarray], deadline: float) -> dict[str, tuple[np.ndarray, float]]:
        # One "micro-batch" of this case's crops per agent, in parallel threads.
        jobs = {name: self._pool.submit(lambda agent: agent.assess([crops])[0], self._agents[name])
                for name in self.agent_names}
        results = {}
        for name, job in jobs.items():
            try:
                results[name] = job.result(timeout=max(deadline - time.monotonic(), 0.0))
            except FutureTimeout:
                continue  # late: this agent's vote is missing (it finishes in the background)
        return results

    def _replica_stats(self) -> dict[str, dict[str, int]]:
        return {name: agent.stats() for name, agent in self._agents.items()}

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
