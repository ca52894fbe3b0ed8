"""The blackboard's workers as plain classes: an agent's model, every agent of a bundle, the face detector.

Ray Serve runs them as deployments (`blackboard.deployments` adds Serve's micro-batching, the
heat maps and the loopback binding of a replica); the in-process board (`blackboard.inprocess`)
runs them as they are. Nothing here imports Ray: a cold `fakeface classify` or a small `batch`
does not pay for importing Ray Serve (about 0.8-1.4 s on 2 cores, measured 2026-12-03).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Sequence

import numpy as np

from agents.bundle import Bundle
from agents.predictor import AgentPredictor


def return_freed_heap() -> None:
    """Hands the heap that loading and warm-up freed back to the OS.

    glibc keeps freed memory in its arenas for reuse; after a replica's start-up (models read,
    graphs traced on blank batches) that is 50-130 MiB resident for nothing (measured; issue 26).
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: its allocator returns memory its own way


class AgentWorker:
    """One agent's model in this process: calibrated p(fake) for the crops of several requests.

    The Serve deployments and the in-process board both run it, so every path computes a vote
    the same way.

    Args:
        bundle: the loaded bundle (the worker verifies and loads only its own model file).
        agent: the agent's name in the bundle.
        batch_size: crops per forward pass.
        warm_up: run blank batches first, so a service's first cases pay no graph trace.
    """

    # The predictor class a worker runs (a test subclass may add fault knobs).
    predictor_class: type = AgentPredictor

    def __init__(self, bundle: Bundle, agent: str, *, batch_size: int = 16, warm_up: bool = False) -> None:
        self.predictor = self.predictor_class(bundle, agent, batch_size=max(int(batch_size), 1))
        if warm_up:
            self.predictor.warm_up()
        self.batches = 0  # forward passes so far (micro-batches), for model_info and benchmarks
        self.crops = 0  # crops assessed so far

    def assess(self, requests: Sequence[Sequence[np.ndarray]]) -> list[tuple[np.ndarray, float]]:
        """One forward pass for every request's crops; each request gets its own slice back,
        with the compute milliseconds per crop of that pass."""
        crops = [crop for request in requests for crop in request]
        if not crops:
            return [(np.zeros(0, dtype=np.float64), 0.0) for _ in requests]
        started = time.perf_counter()
        p = np.asarray(self.predictor.predict_p_fake(crops), dtype=np.float64)
        per_crop_ms = (time.perf_counter() - started) * 1000.0 / len(crops)
        self.batches += 1
        self.crops += len(crops)
        out, offset = [], 0
        for request in requests:
            out.append((p[offset:offset + len(request)], per_crop_ms))
            offset += len(request)
        return out

    def stats(self) -> dict[str, int]:
        """This worker's counters: ``{"batches": ..., "crops": ...}``."""
        return {"batches": self.batches, "crops": self.crops}


class DetectorWorker:
    """The face detector: MTCNN detection, gate and alignment (`vision.faces`).

    ``compiled_loops``: a service's detector, which will see many pictures, runs detection's
    compiled loops (`vision.jit`, loaded here, ~0.55 s); a one-shot command's keeps NumPy.
    """

    def __init__(self, *, min_face_size: int = 40, min_confidence: float = 0.9, compiled_loops: bool = False) -> None:
        from vision.face_detector import FaceDetector

        if compiled_loops:
            from vision.face_pyramid import load_loops

            load_loops()
        self.detector = FaceDetector(min_face_size=min_face_size, min_confidence=min_confidence)

    def __call__(self, image_rgb: np.ndarray, mode: str) -> list[Any]:
        """``extract_faces`` on this worker's detector; returns ``FaceCrop`` objects."""
        from vision.faces import extract_faces

        return extract_faces(image_rgb, self.detector, mode=mode, all_faces=True)


def _timed(assess: Any, requests: Any) -> tuple[Any, float]:
    """An agent's answers and when it finished them (``time.time()``), read in its own thread."""
    answers = assess(requests)
    return answers, time.time()


class AgentSet:
    """Every agent of a bundle in this process, each on a thread of its own, and optionally the detector.

    An agent that fails on a micro-batch is left out of those cases' answers; the other agents
    still vote.

    Args:
        bundle: the loaded bundle (only the named agents' files are verified and loaded).
        agents: the agents this set runs.
        batch_size: crops per forward pass.
        warm_up: trace each agent's graph on blank crops while loading, and give the detector the
            compiled loops (a service: yes; one image from the CLI: no, its one case traces what
            it needs).
        detector: load the face detector too (``detect``), on a thread of its own, while the
            agents load: a service's detector then shares this process.
    """

    worker_class: type = AgentWorker
    detector_class: type = DetectorWorker

    def __init__(self, bundle: Bundle, agents: Sequence[str], *, batch_size: int = 16, warm_up: bool = True,
                 detector: bool = False) -> None:
        if not agents:
            raise ValueError("an agent set needs at least one agent, received none.")
        self._detector: Any = None
        self._detector_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector")
        # The models' libraries are imported once here, before the loading threads: TensorFlow
        # imported from two threads at once fails half-way, or crashes the process.
        from agents.predictor import import_libraries

        import_libraries(bundle, agents)

        if detector:
            # Loads while the agents do; a service's (warm_up) with the compiled loops.
            detector_job = self._detector_thread.submit(self.detector_class, compiled_loops=warm_up)
        # One thread per agent: agents load and vote in parallel (ONNX Runtime and scikit-learn
        # release the GIL while they compute), and an agent that hangs holds only its own thread.
        self._threads = {name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"agent-{name}")
                         for name in agents}
        jobs = {name: self._threads[name].submit(self.worker_class, bundle, name, batch_size=batch_size,
                                                 warm_up=warm_up) for name in agents}
        # A model that does not load fails the set as soon as it fails, not once every other
        # model has loaded: Serve gives up on the first failed start, so `serve` exits sooner.
        loading = [*jobs.values(), *([detector_job] if detector else [])]
        futures.wait(loading, return_when=futures.FIRST_EXCEPTION)
        for job in loading:
            if job.done() and job.exception() is not None:
                raise job.exception()
        self.workers = {name: job.result() for name, job in jobs.items()}
        if detector:
            self._detector = detector_job.result()

    async def detect(self, image_rgb: np.ndarray, mode: str) -> list[Any]:
        """The detector on this set's detector thread: cases queue there, one at a time, while
        the event loop keeps batching the agents' calls (and, in a replica, answering health checks)."""
        if self._detector is None:
            raise RuntimeError("this agent set was made without the face detector (detector=False).")
        return await asyncio.get_running_loop().run_in_executor(self._detector_thread, self._detector,
                                                                image_rgb, mode)

    def assess(self, requests: Sequence[Sequence[np.ndarray]],
               deadline: float | None | Sequence[float | None] = None) -> list[dict[str, tuple[np.ndarray, float]]]:
        """Every agent on the micro-batch, in parallel threads; an agent that fails is left out of
        the answers, and so is one not done by a request's deadline (``time.time()``), for that
        request only: one client's short deadline never costs the other cases of its micro-batch
        an agent. The batch waits until its latest deadline; a late agent finishes in the
        background (its thread then takes this agent's next batch).

        Args:
            requests: each case's crops.
            deadline: one for the whole batch, or one per request (None: no deadline).
        """
        deadlines = list(deadline) if isinstance(deadline, (list, tuple)) else [deadline] * len(requests)
        if len(deadlines) != len(requests):
            raise ValueError(f"{len(deadlines)} deadlines for {len(requests)} requests.")
        latest = None if None in deadlines or not deadlines else max(deadlines)
        jobs = {name: self._threads[name].submit(_timed, worker.assess, requests) for name, worker in self.workers.items()}
        per_agent, finished = {}, {}
        for name, job in jobs.items():
            try:
                per_agent[name], finished[name] = job.result(
                    timeout=None if latest is None else max(latest - time.time(), 0.0))
            except FutureTimeout:
                continue  # late for every request: those cases are answered without this agent's vote
            except Exception:  # noqa: BLE001 - one agent failing leaves the others' votes standing
                logging.getLogger("fakeface.deployments").exception("agent %s failed on a micro-batch", name)
        return [{name: answers[i] for name, answers in per_agent.items()
                 if deadlines[i] is None or finished[name] <= deadlines[i]} for i in range(len(requests))]

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per agent: ``{agent: {"batches": ..., "crops": ...}}``."""
        return {name: worker.stats() for name, worker in self.workers.items()}

    def close(self) -> None:
        """Stops the agents' threads (a late call still running is left to finish)."""
        for thread in (*self._threads.values(), self._detector_thread):
            thread.shutdown(wait=False, cancel_futures=True)
