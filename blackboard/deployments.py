"""The blackboard's workers as Ray Serve deployments: the agents, and the face detector.

Two layouts of the agents (``EnsembleConfig.layout``):

* "sets" (default): one application whose replicas each hold every agent and the face detector
  (`AgentSetDeployment`), and are the ingress (`blackboard.ingress`): one call per case, and one
  process holding every model for the whole service (the CNNs and MTCNN on ONNX Runtime; issue 26);
  the fast, small layout on a few cores.
* "agents": one application per agent (`AgentDeployment`) and one for the detector, whose
  replica is the ingress holding handles to the agents' (`IngressDeployment`): an agent's
  replica can die alone (its faces come back degraded naming it), and agents scale and take
  GPUs separately.

Agent replicas also render the heat maps, with the models they vote with (`blackboard.heatmaps`).

In both, replicas load their models once and ``@serve.batch`` gathers concurrent cases into one
forward pass (the batch size counts face crops, not requests, so a case with many faces does
not overflow it). Serve owns replicas, autoscaling, health checks and restarts; the blackboard
(`blackboard.ensemble.Ensemble`) calls the ingress and decides on its answers.

The deployment bodies are plain classes: `serve.deployment` is applied in
`blackboard.serve_apps.deploy` (which also names, counts and deletes the applications), so a unit
test calls their work methods (``assess``, ``DetectorDeployment.__call__``) directly, without
Ray; ``@serve.batch`` itself needs a running replica. The work itself (one agent's model, every
agent of a set, the detector) is `blackboard.workers`', which the in-process board runs without
importing Ray.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Mapping, Sequence

import numpy as np

# Serve reads these when `ray.serve` is first imported (here, in the driver; replicas inherit
# them through `SERVE_ENV`). Measured on 2 cores (BENCHMARKS.md): Serve's throughput mode runs
# user code on the replica's own event loop (one thread hop less per request); the driver's
# router keeps its own loop because gRPC threads call the handles synchronously; no replica
# opens an HTTP/gRPC ingress port of its own (grpcio is the only front door).
# Throughput mode also sends handle calls over gRPC, which Serve caps at 4 MiB a message: a
# 1920x1080 screenshot is 6.2 MB decoded and a crowd's crops 150 KB a face, so the cap is
# lifted to gRPC's largest. What may come in is bounded before that, by admission
# (`fakeface.serve.admission`: decoded pixels per image and in flight).
SERVE_ENV = (("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1"), ("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP", "1"),
             ("RAY_SERVE_ENABLE_DIRECT_INGRESS", "0"),
             ("RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH", str(2**31 - 1)))
for _key, _value in SERVE_ENV:
    os.environ.setdefault(_key, _value)

from ray import serve  # noqa: E402 - after the settings above

from agents.bundle import Bundle
from blackboard.heatmaps import ReplicaHeatmaps
from blackboard.ingress import CasePipeline, FindOptions, Found, Votes, vote_each
from blackboard.ray_runtime import bind_serve_replica_to_loopback
from blackboard.workers import AgentSet, AgentWorker, DetectorWorker, return_freed_heap
from vision.heatmap_quality import AgentMap


def _crop_count(requests: Sequence[tuple[Sequence[np.ndarray], float | None]]) -> int:
    """A micro-batch's size for ``@serve.batch``: the crops of every request in it."""
    return sum(len(crops) for crops, _ in requests)


class _MicroBatched:
    """Serve micro-batching of one replica: each call brings one case's crops, ``assess`` gets a
    micro-batch of calls (``@serve.batch``, sized in crops)."""

    def _setup_heatmaps(self, bundle: Bundle, workers: dict[str, AgentWorker], warm_up: bool) -> None:
        self.explainer = ReplicaHeatmaps(bundle, {name: w.predictor.model for name, w in workers.items()})
        if warm_up:  # before the replica is RUNNING, i.e. before the service says SERVING
            self.explainer.warm_up()

    async def heatmaps(self, crops: Sequence[np.ndarray]) -> list[dict[str, AgentMap]]:
        """Heat-map tiles of this replica's agents (or why withheld), one dict per crop (`blackboard.heatmaps`)."""
        return await self.explainer.render_async(crops)

    def _setup_batching(self, max_batch_size: int, max_wait_ms: float) -> None:
        self._batching = (max(int(max_batch_size), 1), max(float(max_wait_ms), 0.0) / 1000.0)
        self._batching_set = False
        self._in_flight = 0  # calls of this replica awaiting their answer (one event loop: no lock needed)

    def assess(self, requests: Sequence[Sequence[np.ndarray]],
               deadline: float | None | Sequence[float | None] = None) -> list[Any]:
        """Answers for a micro-batch of requests (``deadline``: one per request, ``time.time()`` or None)."""
        raise NotImplementedError

    async def __call__(self, crops: Sequence[np.ndarray], deadline: float | None = None) -> Any:
        """This case's answer from the micro-batch it rode in (see ``assess``).

        Args:
            crops: the case's face crops.
            deadline: when the caller stops waiting (``time.time()``); None = no limit here.
        """
        if len(crops) == 0:
            return self.assess([[]])[0]
        if not self._batching_set:
            # On the first call, not in __init__: Serve's batch queue needs the replica context.
            self.predict.set_max_batch_size(self._batching[0])
            self._batching_set = True
        # A lone request goes at once; only while other requests are in flight (load) is it
        # worth waiting for the batch to fill. Serve's batcher would otherwise hold every lone
        # request for the whole wait.
        self._in_flight += 1
        try:
            self.predict.set_batch_wait_timeout_s(self._batching[1] if self._in_flight > 1 else 0.0)
            return await self.predict((list(crops), deadline))
        finally:
            self._in_flight -= 1

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005, batch_size_fn=_crop_count)
    async def predict(self, requests: list[tuple[list[np.ndarray], float | None]]) -> list[Any]:
        # In a worker thread: the replica's event loop keeps answering health checks meanwhile.
        # Each case keeps its own deadline (`AgentSet.assess`).
        return await asyncio.to_thread(self.assess, [crops for crops, _ in requests], [d for _, d in requests])


class AgentDeployment(_MicroBatched):
    """One agent's replica (layout "agents"): ``(p_fake per crop, ms per crop)`` for each case.

    Args:
        bundle: the loaded bundle (each replica verifies and loads only its own model file).
        agent: the agent's name in the bundle.
        max_batch_size: crops per forward pass before the batch is sent.
        max_wait_ms: how long a batch waits to fill.
        warm_heatmaps: trace the heat maps too while loading.
    """

    worker_class: type = AgentWorker

    def __init__(self, bundle: Bundle, agent: str, *, max_batch_size: int = 16, max_wait_ms: float = 60.0,
                 warm_heatmaps: bool = False) -> None:
        bind_serve_replica_to_loopback()
        self.worker = self.worker_class(bundle, agent, batch_size=max_batch_size, warm_up=True)
        self._setup_heatmaps(bundle, {agent: self.worker}, warm_heatmaps)
        self._setup_batching(max_batch_size, max_wait_ms)
        return_freed_heap()

    def assess(self, requests: Sequence[Sequence[np.ndarray]],
               deadline: float | None | Sequence[float | None] = None) -> list[tuple[np.ndarray, float]]:
        # The deadline is the caller's to keep here: it stops waiting for this agent's call.
        return self.worker.assess(requests)

    def stats(self) -> dict[str, int]:
        """This replica's counters: ``{"batches": ..., "crops": ...}``."""
        return self.worker.stats()


class _CaseEntry:
    """The two calls a case enters by (layout "sets": the agent set; layout "agents": the
    ingress), both answered by the deployment's `CasePipeline` in ``self.pipeline``."""

    pipeline: CasePipeline

    async def find(self, image_rgb: np.ndarray, mode: str, deadline: float | None,
                   options: FindOptions = FindOptions()) -> Found:
        """One case in one call: faces, then every agent's votes (`CasePipeline.find`)."""
        return await self.pipeline.find(image_rgb, mode, deadline, options)

    async def vote(self, crops: Sequence[np.ndarray], deadline: float | None = None) -> Votes:
        """Every agent's votes on crops of any number (`CasePipeline.vote`)."""
        return await self.pipeline.vote(crops, deadline)


class AgentSetDeployment(_CaseEntry, AgentSet, _MicroBatched):
    """Every agent in one replica (layout "sets"): ``{agent: (p_fake per crop, ms per crop)}`` per case.

    One call per case instead of one per agent: on a few cores the per-call cost of Serve, paid
    four times per case, is what limits throughput (BENCHMARKS.md). The agents' work is
    `blackboard.workers.AgentSet`'s; this adds Serve's micro-batching, the heat maps and the
    replica's ingress (``find``/``vote``).

    Args:
        bundle: the loaded bundle (each replica verifies and loads only the named agents' files).
        agents: the agents this replica runs.
        max_batch_size: crops per forward pass before the batch is sent.
        max_wait_ms: how long a batch waits to fill.
        warm_up: trace each agent's graph on blank crops while loading.
        detector: run the face detector here too (``detect``), on a thread of its own: the
            service's detector then shares this process (and its ONNX Runtime) instead of another.
        warm_heatmaps: trace the heat maps too while loading.
    """

    def __init__(self, bundle: Bundle, agents: Sequence[str], *, max_batch_size: int = 16,
                 max_wait_ms: float = 60.0, warm_up: bool = True, detector: bool = False,
                 warm_heatmaps: bool = False) -> None:
        bind_serve_replica_to_loopback()
        super().__init__(bundle, agents, batch_size=max_batch_size, warm_up=warm_up, detector=detector)
        self._setup_heatmaps(bundle, self.workers, warm_heatmaps)
        self._setup_batching(max_batch_size, max_wait_ms)
        # The ingress of layout "sets": a case's crops go from this replica's detector to its
        # own micro-batcher (``__call__``) and never leave the process (`blackboard.ingress`).
        self.pipeline = CasePipeline(detect=self.detect, vote=self.__call__, max_batch_size=max_batch_size)
        return_freed_heap()


class DetectorDeployment(DetectorWorker):
    """The face detector's replica (`blackboard.workers.DetectorWorker`), bound to loopback where Ray is."""

    def __init__(self, *, min_face_size: int = 40, min_confidence: float = 0.9) -> None:
        bind_serve_replica_to_loopback()
        super().__init__(min_face_size=min_face_size, min_confidence=min_confidence, compiled_loops=True)


class IngressDeployment(_CaseEntry, DetectorDeployment):
    """Layout "agents": the detector's replica is the ingress, with handles to each agent's application.

    Serve's model composition: a case comes in as an image and goes out as faces and votes
    (`CasePipeline`); the crops go from here to the agents' replicas, never back to the driver.
    Detection runs on a thread of its own (one at a time, as the detector's replica did), so the
    event loop keeps waiting on other cases' votes meanwhile.

    Args:
        agent_apps: agent name -> the Serve application of that agent (its deployment "agent").
        max_batch_size: crops per call to an agent (its micro-batch size).
        min_face_size, min_confidence: the detector's (`DetectorDeployment`).
    """

    def __init__(self, agent_apps: Mapping[str, str], *, max_batch_size: int = 16, min_face_size: int = 40,
                 min_confidence: float = 0.9) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if not agent_apps:
            raise ValueError("the ingress needs at least one agent application, received none.")
        super().__init__(min_face_size=min_face_size, min_confidence=min_confidence)
        self._detector_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector")
        self.agents = {name: serve.get_deployment_handle("agent", app_name=app) for name, app in agent_apps.items()}
        self.pipeline = CasePipeline(detect=self._detect, vote=lambda crops, deadline: vote_each(
            self.agents, crops, deadline), max_batch_size=max_batch_size)

    async def _detect(self, image_rgb: np.ndarray, mode: str) -> list[Any]:
        return await asyncio.get_running_loop().run_in_executor(self._detector_thread, self, image_rgb, mode)
