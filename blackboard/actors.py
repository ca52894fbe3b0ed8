"""The blackboard's workers on Ray: the face detector actor and one pool of agent actors per agent.

An :class:`AgentPool` owns ``replicas`` Ray actors of one agent and a batcher thread. Cases post
requests (all the case's crops) on the pool's queue; the batcher waits for a free replica, then
takes every queued request up to ``max_batch_size`` crops (waiting up to ``max_wait_ms`` for more
while other replicas are busy) and sends ONE actor call for all of them. Because a replica takes
a new batch only when its previous one is done, requests pile up while the agent is busy and the
next batch is naturally larger (dynamic batching), while a lone request is sent at once.
A call that fails because its actor died is retried once on another replica, when there is one;
otherwise the requests fail with the Ray error and the case decides without that agent.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError

# How long past the latest requester's deadline a resolver waits on a call before giving its
# replica back (a hung actor must not hold a replica forever; a slow one is simply late).
HANG_GRACE_S = 5.0


class DetectorWorker:
    """Ray actor body: MTCNN detection and alignment (``blackboard.faces``), loaded once."""

    def __init__(self, *, min_face_size: int = 40, min_confidence: float = 0.9) -> None:
        from blackboard.faces import FaceDetector

        self.detector = FaceDetector(min_face_size=min_face_size, min_confidence=min_confidence)

    def ready(self) -> bool:
        return True

    def extract(self, image_rgb: np.ndarray, mode: str, all_faces: bool = True) -> list[Any]:
        """``extract_faces`` on this actor's detector; returns ``FaceCrop`` objects."""
        from blackboard.faces import extract_faces

        return extract_faces(image_rgb, self.detector, mode=mode, all_faces=all_faces)


@dataclass
class AgentRequest:
    """One case's crops waiting for one agent's votes."""

    crops: list[np.ndarray]  # RGB uint8 face crops of one case
    deadline: float  # time.monotonic() after which nobody waits for the answer
    future: Future = field(default_factory=Future)  # result: (p_fake (K,), latency_ms per face)


def _settle(future: Future, *, result: Any = None, error: BaseException | None = None) -> None:
    """Sets a future's outcome unless the requester gave up (cancelled) meanwhile."""
    if future.cancelled():
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        # Cancelled between the check and the set: the requester has already moved on.
        return


class AgentPool:
    """The replicas of one agent and the batcher feeding them.

    Args:
        name: agent name.
        actors: Ray actor handles with a ``predict_p_fake(crops)`` method.
        max_batch_size: crops per actor call before the batcher stops gathering.
        max_wait_ms: how long the batcher waits for more requests after the first.
        executor: thread pool on which calls are awaited (shared by all pools).
    """

    def __init__(self, name: str, actors: Sequence[Any], *, max_batch_size: int, max_wait_ms: float,
                 executor: ThreadPoolExecutor) -> None:
        self.name = name
        self.actors = list(actors)
        self.max_batch_size = int(max_batch_size)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self._executor = executor
        self._requests: queue.Queue[AgentRequest | None] = queue.Queue()
        self._free: queue.Queue[int] = queue.Queue()
        for index in range(len(self.actors)):
            self._free.put(index)
        self._next_retry = 0
        self._stopped = threading.Event()
        self.batches_sent = 0  # counters for benchmarks and model_info
        self.crops_sent = 0
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, crops: list[np.ndarray], deadline: float) -> Future:
        """Queues one case's crops; the future yields (p_fake array, latency_ms per face)."""
        if self._stopped.is_set():
            raise RuntimeError(f"Agent pool {self.name!r} is shut down.")
        request = AgentRequest(crops=list(crops), deadline=deadline)
        self._requests.put(request)
        return request.future

    def ready_refs(self) -> list[Any]:
        """One cheap call per replica; it completes once the replica's model is loaded."""
        return [actor.predict_p_fake.remote([]) for actor in self.actors]

    def _gather(self, first: AgentRequest) -> list[AgentRequest]:
        """Adds queued requests to ``first`` up to ``max_batch_size`` crops.

        Requests already waiting are always taken. Waiting up to ``max_wait_ms`` for more only
        pays off under load, i.e. while other replicas are busy; an idle pool sends at once, so a
        lone case never pays the wait (requests that arrive during its call form the next batch).
        """
        batch, size = [first], len(first.crops)
        busy_elsewhere = self._free.qsize() < len(self.actors) - 1
        until = time.monotonic() + (self.max_wait_s if busy_elsewhere else 0.0)
        while size < self.max_batch_size:
            remaining = until - time.monotonic()
            try:
                request = self._requests.get(timeout=remaining) if remaining > 0 else self._requests.get_nowait()
            except queue.Empty:
                break
            if request is None:  # shutdown sentinel: finish this batch, then stop
                self._requests.put(None)
                break
            if request.future.cancelled():
                continue
            batch.append(request)
            size += len(request.crops)
        return batch

    def _run(self) -> None:
        while not self._stopped.is_set():
            request = self._requests.get()
            if request is None:
                return
            if request.future.cancelled() or request.deadline <= time.monotonic():
                _settle(request.future, error=TimeoutError(f"{self.name}: deadline passed while queued"))
                continue
            replica = self._free.get()  # wait for a replica that is not busy
            batch = [r for r in self._gather(request) if not r.future.cancelled()]
            if not batch:
                self._free.put(replica)
                continue
            crops = [crop for r in batch for crop in r.crops]
            ref = self.actors[replica].predict_p_fake.remote(crops)
            self.batches_sent += 1
            self.crops_sent += len(crops)
            self._executor.submit(self._resolve, replica, ref, batch, crops, time.perf_counter())

    def _other_replica(self, replica: int) -> int | None:
        if len(self.actors) < 2:
            return None
        self._next_retry = (self._next_retry + 1) % len(self.actors)
        other = self._next_retry if self._next_retry != replica else (replica + 1) % len(self.actors)
        return other

    def _resolve(self, replica: int, ref: Any, batch: list[AgentRequest], crops: list[np.ndarray],
                 started: float) -> None:
        """Waits for one call (retrying once elsewhere if its actor died) and answers its requests."""
        wait_s = max(r.deadline for r in batch) - time.monotonic() + HANG_GRACE_S
        try:
            try:
                p = np.asarray(ray.get(ref, timeout=max(wait_s, 0.1)), dtype=np.float64)
            except RayActorError:
                other = self._other_replica(replica)
                if other is None:
                    raise
                retry = self.actors[other].predict_p_fake.remote(crops)
                wait_s = max(r.deadline for r in batch) - time.monotonic() + HANG_GRACE_S
                p = np.asarray(ray.get(retry, timeout=max(wait_s, 0.1)), dtype=np.float64)
        except (RayActorError, GetTimeoutError) as err:
            for request in batch:
                _settle(request.future, error=err)
            return
        except Exception as err:  # noqa: BLE001 - any failure of the call is this agent's missing vote
            for request in batch:
                _settle(request.future, error=err)
            return
        finally:
            self._free.put(replica)
        latency_ms = (time.perf_counter() - started) * 1000.0 / max(len(crops), 1)
        offset = 0
        for request in batch:
            k = len(request.crops)
            _settle(request.future, result=(p[offset:offset + k], latency_ms))
            offset += k

    def shutdown(self) -> None:
        """Stops the batcher and kills the replicas (no restart)."""
        self._stopped.set()
        self._requests.put(None)
        self._thread.join(timeout=5)
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except (RayActorError, ValueError):
                continue


def make_remote(cls: type, *, num_cpus: float, num_gpus: float, max_restarts: int,
                env_vars: dict[str, str]) -> Any:
    """Applies Ray's actor decorator to a plain class with this deployment's resources.

    ``max_task_retries=0``: a call in flight when its actor dies fails at once, so the pool can
    decide between a retry on another replica and a degraded decision, within the deadline.
    """
    return ray.remote(cls).options(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        max_restarts=max_restarts,
        max_task_retries=0,
        runtime_env={"env_vars": dict(env_vars)},
    )


def cpus_per_actor(requested: float | None, *, replicas: int, agents: int, available: float) -> float:
    """The CPU share of each actor of an ensemble (agent replicas plus the detector).

    Args:
        requested: a fixed share, or None to spread ``available`` over every actor (at most 1 each).
        replicas: actors per agent.
        agents: number of agents.
        available: CPUs of the Ray cluster.

    Raises:
        ValueError: the deployment could never be scheduled (it would hang waiting for CPUs).
    """
    actors = replicas * agents + 1
    share = requested if requested is not None else min(1.0, round(available / actors - 0.005, 2))
    if share * actors > available + 1e-9 or share < 0 or (requested is None and share <= 0):
        raise ValueError(
            f"The ensemble needs {share * actors:g} CPUs ({replicas} replica(s) x {agents} agents + detector at "
            f"{share:g} CPU each) but the Ray cluster has {available:g}; lower num_cpus_per_actor or replicas."
        )
    return float(share)
