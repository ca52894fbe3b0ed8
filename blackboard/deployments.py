"""The blackboard's workers as Ray Serve deployments: the agents, and the face detector.

Two layouts of the agents (``EnsembleConfig.layout``):

* "sets" (default): one application whose replicas each hold every agent
  (`AgentSetDeployment`): one call per case, fewest processes; the fast layout on a few cores.
* "agents": one application per agent (`AgentDeployment`): an agent's replica can die alone
  (its faces come back degraded naming it), and agents scale and take GPUs separately.

In both, replicas load their models once and ``@serve.batch`` gathers concurrent cases into one
forward pass (the batch size counts face crops, not requests, so a case with many faces does
not overflow it). Serve owns replicas, autoscaling, health checks and restarts; the blackboard
(`blackboard.ensemble.Ensemble`) holds the deployment handles and composes their answers.

The deployment bodies are plain classes: `serve.deployment` is applied in `deploy`, so a unit
test calls their work methods (``assess``, ``DetectorDeployment.__call__``) directly, without
Ray; ``@serve.batch`` itself needs a running replica. `AgentWorker` is one agent's model, run
by both layouts and by the in-process board.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Sequence

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
from agents.predictor import AgentPredictor
from blackboard.ray_runtime import bind_serve_replica_to_loopback

# Serve's own lines ("Application ... is ready", "Replica ... has died") go to Ray's log files,
# not to the product's output; the blackboard reports replica health itself (component_status).
SERVE_LOG_LEVEL = "WARNING"
DRIVER_LOG_LEVEL = "ERROR"


def _crop_count(requests: Sequence[tuple[Sequence[np.ndarray], float | None]]) -> int:
    """A micro-batch's size for ``@serve.batch``: the crops of every request in it."""
    return sum(len(crops) for crops, _ in requests)


class AgentWorker:
    """One agent's model in this process: calibrated p(fake) for the crops of several requests.

    A plain class: the Serve deployments below and the in-process board (`blackboard.inprocess`)
    run it, so every path computes a vote the same way.

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


class _MicroBatched:
    """Serve micro-batching of one replica: each call brings one case's crops, ``assess`` gets a
    micro-batch of calls (``@serve.batch``, sized in crops)."""

    def _setup_batching(self, max_batch_size: int, max_wait_ms: float) -> None:
        self._batching = (max(int(max_batch_size), 1), max(float(max_wait_ms), 0.0) / 1000.0)
        self._batching_set = False
        self._in_flight = 0  # calls of this replica awaiting their answer (one event loop: no lock needed)

    def assess(self, requests: Sequence[Sequence[np.ndarray]], deadline: float | None = None) -> list[Any]:
        """Answers for a micro-batch of requests (``deadline``: the earliest of theirs, ``time.time()``)."""
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
        deadlines = [d for _, d in requests if d is not None]
        # In a worker thread: the replica's event loop keeps answering health checks meanwhile.
        return await asyncio.to_thread(self.assess, [crops for crops, _ in requests],
                                       min(deadlines) if deadlines else None)

    def ready(self) -> bool:
        return True


class AgentDeployment(_MicroBatched):
    """One agent's replica (layout "agents"): ``(p_fake per crop, ms per crop)`` for each case.

    Args:
        bundle: the loaded bundle (each replica verifies and loads only its own model file).
        agent: the agent's name in the bundle.
        max_batch_size: crops per forward pass before the batch is sent.
        max_wait_ms: how long a batch waits to fill.
    """

    worker_class: type = AgentWorker

    def __init__(self, bundle: Bundle, agent: str, *, max_batch_size: int = 16, max_wait_ms: float = 60.0) -> None:
        bind_serve_replica_to_loopback()
        self.worker = self.worker_class(bundle, agent, batch_size=max_batch_size, warm_up=True)
        self._setup_batching(max_batch_size, max_wait_ms)

    def assess(self, requests: Sequence[Sequence[np.ndarray]],
               deadline: float | None = None) -> list[tuple[np.ndarray, float]]:
        # The deadline is the caller's to keep here: it stops waiting for this agent's call.
        return self.worker.assess(requests)

    def stats(self) -> dict[str, int]:
        """This replica's counters: ``{"batches": ..., "crops": ...}``."""
        return self.worker.stats()


class AgentSetDeployment(_MicroBatched):
    """Every agent in one replica (layout "sets"): ``{agent: (p_fake per crop, ms per crop)}`` per case.

    One call per case instead of one per agent: on a few cores the per-call cost of Serve, paid
    four times per case, is what limits throughput (BENCHMARKS.md). An agent that fails on a
    micro-batch is left out of those cases' answers (their faces are marked degraded with its
    name); the other agents still vote.

    Args:
        bundle: the loaded bundle (each replica verifies and loads only the named agents' files).
        agents: the agents this replica runs.
        max_batch_size: crops per forward pass before the batch is sent.
        max_wait_ms: how long a batch waits to fill.
        warm_up: trace each agent's graph on blank crops while loading (a service: yes; one
            image from the CLI: no, its one case traces what it needs).
    """

    worker_class: type = AgentWorker

    def __init__(self, bundle: Bundle, agents: Sequence[str], *, max_batch_size: int = 16,
                 max_wait_ms: float = 60.0, warm_up: bool = True) -> None:
        from concurrent.futures import ThreadPoolExecutor

        bind_serve_replica_to_loopback()
        if not agents:
            raise ValueError("an agent set needs at least one agent, received none.")
        # One thread per agent: agents load and vote in parallel (TensorFlow and scikit-learn
        # release the GIL while they compute), and an agent that hangs holds only its own thread.
        self._threads = {name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"agent-{name}")
                         for name in agents}
        jobs = {name: self._threads[name].submit(self.worker_class, bundle, name, batch_size=max_batch_size,
                                                 warm_up=warm_up) for name in agents}
        self.workers = {name: job.result() for name, job in jobs.items()}
        self._setup_batching(max_batch_size, max_wait_ms)

    def assess(self, requests: Sequence[Sequence[np.ndarray]],
               deadline: float | None = None) -> list[dict[str, tuple[np.ndarray, float]]]:
        """Every agent on the micro-batch, in parallel threads; an agent that fails, or is not
        done by ``deadline`` (``time.time()``), is left out of the answers (it finishes in the
        background; its thread then takes this agent's next batch)."""
        jobs = {name: self._threads[name].submit(worker.assess, requests) for name, worker in self.workers.items()}
        per_agent = {}
        for name, job in jobs.items():
            try:
                per_agent[name] = job.result(timeout=None if deadline is None else max(deadline - time.time(), 0.0))
            except FutureTimeout:
                continue  # late: the case is answered without this agent's vote
            except Exception:  # noqa: BLE001 - one agent failing leaves the others' votes standing
                logging.getLogger("fakeface.deployments").exception("agent %s failed on a micro-batch", name)
        return [{name: answers[i] for name, answers in per_agent.items()} for i in range(len(requests))]

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per agent: ``{agent: {"batches": ..., "crops": ...}}``."""
        return {name: worker.stats() for name, worker in self.workers.items()}

    def close(self) -> None:
        """Stops the agents' threads (a late call still running is left to finish)."""
        for thread in self._threads.values():
            thread.shutdown(wait=False, cancel_futures=True)


class DetectorDeployment:
    """The face detector's replica: MTCNN detection, gate and alignment (`vision.faces`)."""

    def __init__(self, *, min_face_size: int = 40, min_confidence: float = 0.9) -> None:
        from vision.face_detector import FaceDetector

        bind_serve_replica_to_loopback()
        self.detector = FaceDetector(min_face_size=min_face_size, min_confidence=min_confidence)

    def __call__(self, image_rgb: np.ndarray, mode: str) -> list[Any]:
        """``extract_faces`` on this replica's detector; returns ``FaceCrop`` objects."""
        from vision.faces import extract_faces

        return extract_faces(image_rgb, self.detector, mode=mode, all_faces=True)

    def ready(self) -> bool:
        return True


@dataclass(frozen=True)
class DeploymentPlan:
    """How each application of one ensemble is deployed (built by the ensemble from its config)."""

    prefix: str  # application names are f"{prefix}-{component}" (see `components`)
    layout: str  # "sets": one application runs every agent; "agents": one application per agent
    num_cpus: float  # CPU share of each replica
    num_gpus: float  # GPU share of each agent replica
    replicas: int  # replicas per agent (the minimum when autoscaling)
    max_replicas: int | None  # autoscaling upper bound per agent; None = a fixed number
    max_batch_size: int  # crops per micro-batch
    max_wait_ms: float  # how long a micro-batch waits to fill
    env_vars: tuple[tuple[str, str], ...]  # environment of every replica


# The component name of the agent-set application (layout "sets").
AGENT_SET = "agents"
LAYOUTS = ("sets", "agents")


def app_name(plan: DeploymentPlan, component: str) -> str:
    """The Serve application of one component ("detector", "agents" or an agent name)."""
    return f"{plan.prefix}-{component}"


def components(layout: str, agents: Sequence[str]) -> list[str]:
    """The Serve components of an ensemble: the detector, then the agent set or each agent."""
    return ["detector", AGENT_SET] if layout == "sets" else ["detector", *agents]


def _replica_options(plan: DeploymentPlan, *, gpus: float) -> dict[str, Any]:
    return {
        "ray_actor_options": {"num_cpus": plan.num_cpus, "num_gpus": gpus,
                              "runtime_env": {"env_vars": dict(plan.env_vars)}},
        # Health checks find a dead or hung replica within seconds; Serve replaces it (no cap).
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": 2.0,
        # Models that do not load fail every retry: DEPLOY_FAILED at once (only before a first start).
        "max_constructor_retry_count": 1,
    }


def deploy(plan: DeploymentPlan, bundle: Bundle, agents: Sequence[str], *,
           agent_class: type = AgentDeployment, set_class: type = AgentSetDeployment,
           detector_class: type = DetectorDeployment) -> tuple[dict[str, Any], Any]:
    """Starts the detector and the agents' applications; returns ({component: handle}, detector handle).

    The agent handles are keyed ``"agents"`` (layout "sets") or by agent name (layout "agents").
    Returns at once: replicas load their models in the background (see `running_replicas`).
    """
    if plan.layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, received {plan.layout!r}.")
    logging.getLogger("ray.serve").setLevel(DRIVER_LOG_LEVEL)
    serve.start(proxy_location="Disabled", logging_config={"log_level": SERVE_LOG_LEVEL})
    scaling: dict[str, Any] = {"num_replicas": plan.replicas}
    if plan.max_replicas is not None and plan.max_replicas > plan.replicas:
        scaling = {"autoscaling_config": {"min_replicas": plan.replicas, "max_replicas": plan.max_replicas,
                                          "target_ongoing_requests": 2}}
    batching = {"max_batch_size": plan.max_batch_size, "max_wait_ms": plan.max_wait_ms}
    if plan.layout == "sets":
        members = [(AGENT_SET, set_class, (bundle, tuple(agents)))]
    else:
        members = [(agent, agent_class, (bundle, agent)) for agent in agents]
    targets, names = [], []
    for component, cls, args in members:
        deployment = serve.deployment(cls, name="agent", max_ongoing_requests=64,
                                      **_replica_options(plan, gpus=plan.num_gpus), **scaling)
        targets.append(serve.RunTarget(deployment.bind(*args, **batching), name=app_name(plan, component),
                                       route_prefix=None, logging_config={"log_level": SERVE_LOG_LEVEL}))
        names.append(component)
    detector = serve.deployment(detector_class, name="detector", num_replicas=1, max_ongoing_requests=2,
                                **_replica_options(plan, gpus=0.0))
    targets.append(serve.RunTarget(detector.bind(), name=app_name(plan, "detector"), route_prefix=None,
                                   logging_config={"log_level": SERVE_LOG_LEVEL}))
    handles = serve.run_many(targets, wait_for_ingress_deployment_creation=True,
                             wait_for_applications_running=False)
    return dict(zip(names, handles[:-1])), handles[-1]


def running_replicas(plan: DeploymentPlan, components: Sequence[str]) -> dict[str, int]:
    """Serve's view: RUNNING replicas of each component's application (0 while loading or dead)."""
    apps = serve.status().applications
    out = {}
    for component in components:
        app = apps.get(app_name(plan, component))
        deployments = app.deployments.values() if app is not None else []
        out[component] = sum(int(d.replica_states.get("RUNNING", 0)) for d in deployments)
    return out


def _named_replicas(plan: DeploymentPlan, component: str) -> list[dict[str, str]]:
    import ray

    prefix = f"SERVE_REPLICA::{app_name(plan, component)}#"
    return [entry for entry in ray.util.list_named_actors(all_namespaces=True) if entry["name"].startswith(prefix)]


def replica_names(plan: DeploymentPlan, component: str) -> list[str]:
    """Names of one component's live replica actors (a replaced replica gets a new name)."""
    return [entry["name"] for entry in _named_replicas(plan, component)]


def replica_actors(plan: DeploymentPlan, component: str) -> list[Any]:
    """Ray handles of one component's live replica actors (for operations and fault tests)."""
    import ray

    return [ray.get_actor(entry["name"], namespace=entry["namespace"]) for entry in _named_replicas(plan, component)]


def undeploy(plan: DeploymentPlan, components: Sequence[str]) -> None:
    """Deletes this ensemble's applications (other ensembles on the same Serve are untouched)."""
    for component in components:
        serve.delete(app_name(plan, component), _blocking=False)


def cpus_per_replica(requested: float | None, *, replicas: int, agents: int, available: float) -> float:
    """The CPU share of each replica of an ensemble (agent replicas plus the detector).

    Args:
        requested: a fixed share, or None to spread ``available`` over every replica (at most 1 each).
        replicas: replicas per agent application.
        agents: number of agent applications (1 for an agent set).
        available: CPUs of the Ray cluster.

    Raises:
        ValueError: the deployment could never be scheduled (it would hang waiting for CPUs).
    """
    actors = replicas * agents + 1
    share = requested if requested is not None else min(1.0, round(available / actors - 0.005, 2))
    if share * actors > available + 1e-9 or share < 0 or (requested is None and share <= 0):
        raise ValueError(
            f"The ensemble needs {share * actors:g} CPUs ({replicas} replica(s) x {agents} agent application(s) "
            f"+ detector at {share:g} CPU each) but the Ray cluster has {available:g}; lower num_cpus_per_actor "
            f"or replicas."
        )
    return float(share)
