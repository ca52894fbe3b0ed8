"""The blackboard on Ray Serve: detector and agent deployments around a case, decided by the controller.

Case flow (:meth:`Board.classify`), one call from this process to the ingress deployment
(`blackboard.ingress`; the agent set in layout "sets", the detector's replica in layout "agents")::

    image -> ingress: extract_faces -> every agent assesses ALL the case's crops (layout "sets":
             the set's own micro-batcher; layout "agents": one call per agent's deployment, all
             in flight at once; micro-batched with concurrent cases by ``@serve.batch``)
          <- faces (box, landmarks, context), votes (p_fake, latency); crops only when asked
          -> controller decides per face here (label, calibrated p_fake, threshold, weights)

Agents that have not voted by the deadline, or whose replica died, drop out of the decision and
the face is marked degraded with their names; an ingress whose replica died is asked again, on
another replica or Serve's replacement, until the deadline. With no vote at all, or no
detection in time, :class:`DeadlineExceeded` is raised. ``classify`` is thread-safe (gRPC calls it from many threads).
Replicas, restarts and health checks are Ray Serve's (`blackboard.deployments`).
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from typing import Any, Callable

import grpc
import numpy as np
import ray.exceptions
import tenacity

from agents.bundle import Bundle
from blackboard import deployments, serve_apps
from blackboard.board import Board, DeadlineExceeded
from blackboard.config import EnsembleConfig
from blackboard.controllers.base import Controller
from blackboard.deployments import AgentDeployment, AgentSetDeployment, IngressDeployment
from blackboard.heatmaps import RemoteHeatmaps
from blackboard.ingress import FindOptions, Found
from blackboard.ray_runtime import SERVE_LOOPBACK_ENV, init_ray, ray_is_loopback_only
from blackboard.serve_apps import AGENT_SET, DeploymentPlan

log = logging.getLogger("fakeface.ensemble")
# Back-off between retries of a call whose replica died (doubling up to the cap) while Serve replaces it.
RETRY_BACKOFF_S = 0.1
RETRY_BACKOFF_MAX_S = 2.0
# How long before the case's deadline the ingress answers with the votes it has (the way back).
SET_MARGIN_S = 0.2


def replica_lost(err: BaseException) -> bool:
    """Whether a failed Serve call failed because its replica died or became unreachable."""
    if isinstance(err, ray.exceptions.RayActorError):  # ActorDiedError, ActorUnavailableError
        return True
    # Serve's throughput mode calls replicas over gRPC: a replica gone mid-call is UNAVAILABLE.
    code = getattr(err, "code", None)
    return callable(code) and code() == grpc.StatusCode.UNAVAILABLE


def call_until_deadline(call: Callable[[], Any], deadline: float, *,
                        on_lost: Callable[[BaseException], None] | None = None,
                        clock: Callable[[], float] = time.monotonic,
                        sleep: Callable[[float], None] = time.sleep) -> tuple[bool, Any, BaseException | None]:
    """Calls ``call()`` (it returns a Serve response) until one answers or ``deadline`` passes.

    A call in flight when its replica dies fails at once; Serve starts a new replica (no
    lifetime cap) and routes new calls to a live one, so the call is retried (`replica_lost`)
    after a back-off of ``RETRY_BACKOFF_S`` doubling up to ``RETRY_BACKOFF_MAX_S``, never past
    the deadline. Any other failure is raised at once: it would fail again on every replica,
    and retrying it until the deadline hid it (and marked a healthy component down). A call
    still running at the deadline is cancelled and not retried.

    Args:
        call: starts one call and returns its response (``.result(timeout_s=...)``, ``.cancel()``).
        deadline: ``clock()`` time by which an answer is needed.
        on_lost: told of each failure that is retried (the ensemble marks the component down).
        clock: the monotonic clock ``deadline`` is measured on.
        sleep: how the back-off waits.

    Returns:
        (answered, the answer or None, the last failure retried or None).
    """
    lost: list[BaseException] = []

    def attempt() -> tuple[bool, Any]:
        remaining = deadline - clock()
        if remaining <= 0:  # the back-off ran into the deadline: no call that cannot finish
            return False, None
        response = call()
        try:
            return True, response.result(timeout_s=remaining)
        except TimeoutError:
            response.cancel()  # slow, not lost: there is no time left to ask again
            return False, None

    def note(state: tenacity.RetryCallState) -> None:
        lost.append(state.outcome.exception())
        if on_lost is not None:
            on_lost(lost[-1])

    backoff = tenacity.wait_exponential(multiplier=RETRY_BACKOFF_S, max=RETRY_BACKOFF_MAX_S)
    answered, answer = tenacity.Retrying(
        retry=tenacity.retry_if_exception(replica_lost),
        after=note,
        # Never sleep past the deadline; a failure at or after it ends the retries at once.
        wait=lambda state: max(min(backoff(state), deadline - clock()), 0.0),
        stop=lambda state: clock() >= deadline,
        retry_error_callback=lambda state: (False, None),
        sleep=sleep,
    )(attempt)
    return answered, answer, lost[-1] if lost else None


def _last_error_line(message: str, limit: int = 400) -> str:
    """The final exception line of a Serve status message (which carries the whole traceback)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b.*:", line)]
    text = (errors or lines or ["no reason given"])[-1]
    return text if len(text) <= limit else text[:limit] + "…"


def deploy_failures(plan: DeploymentPlan, components: list[str]) -> dict[str, str]:
    """Components whose Serve application is DEPLOY_FAILED, with the error that stopped them."""
    from ray import serve

    apps = serve.status().applications
    # Each application once, named by its last component (layout "sets": "agents", not "detector").
    named = {serve_apps.app_name(plan, component): component for component in components}
    out = {}
    for name, component in named.items():
        app = apps.get(name)
        if app is not None and str(app.status).endswith("DEPLOY_FAILED"):
            reasons = [d.message for d in app.deployments.values() if d.message] or [app.message]
            out[component] = _last_error_line(reasons[-1])
    return out


class Ensemble(Board):
    """The detector service's core: Serve deployments for detection and agents, plus the controller.

    Args:
        bundle: bundle directory, loaded `Bundle`, or None for the shipped default.
        config: deployment settings.
        ray_address: Ray cluster to join; default ``$RAY_ADDRESS`` or an embedded local Ray.
            An already initialised Ray is used unchanged.
        controller: overrides the bundle's controller (else the bundle's, else mean voting).
    """

    # The deployment bodies (a subclass may swap them, e.g. to inject faults in tests).
    agent_class: type = AgentDeployment
    set_class: type = AgentSetDeployment
    ingress_class: type = IngressDeployment

    def __init__(self, bundle: Bundle | str | os.PathLike[str] | None = None,
                 config: EnsembleConfig = EnsembleConfig(), *, ray_address: str | None = None,
                 controller: Controller | None = None) -> None:
        super().__init__(bundle, config, controller=controller)
        names = self.agent_names
        # Loopback-only, token-authenticated, reaped with this process (blackboard.ray_runtime).
        self._owns_ray = init_ray(ray_address)
        import ray

        # The Serve components: the detector, then the agent set or one application per agent.
        self._components = serve_apps.components(config.layout, names)
        self.num_cpus_per_actor = serve_apps.cpus_per_replica(
            config.num_cpus_per_actor, replicas=config.replicas, agents=len(self._components) - 1,
            available=float(ray.cluster_resources().get("CPU", 0.0)), detector_apart=config.layout == "agents")
        env = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
               **{key: os.environ[key] for key, _ in deployments.SERVE_ENV}}
        if ray_is_loopback_only():
            env[SERVE_LOOPBACK_ENV] = "1"  # replicas' own gRPC ports on 127.0.0.1 too (blackboard.ray_runtime)
        # Application names are unique per ensemble: tests and benchmarks run several on one Serve.
        self._plan = DeploymentPlan(
            prefix=f"fakeface-{uuid.uuid4().hex[:8]}", layout=config.layout, num_cpus=self.num_cpus_per_actor,
            num_gpus=config.num_gpus_per_actor, replicas=config.replicas, max_replicas=config.max_replicas,
            max_batch_size=config.max_batch_size, max_wait_ms=config.max_wait_ms, env_vars=tuple(sorted(env.items())),
            warm_heatmaps=config.warm_heatmaps)
        # The bundle travels loaded: each replica verifies and loads only its own model file.
        self._agents, self._ingress = serve_apps.deploy(self._plan, self.bundle, names,
                                                         agent_class=self.agent_class,
                                                         set_class=self.set_class,
                                                         ingress_class=self.ingress_class)
        self._replicas_seen: dict[str, set[str]] = {}  # component -> replica actor names seen so far


    # ------------------------------------------------------------------ setup
    def ready(self, timeout_s: float = 120) -> bool:
        """True when the detector and every agent have their replicas running (models loaded).

        Raises:
            RuntimeError: Serve gave up on a component (its replicas failed to start, e.g. a model
                file that does not load), with the replica's error, instead of waiting out the timeout.
        """
        until = time.monotonic() + float(timeout_s)
        while True:
            failed = deploy_failures(self._plan, self._components)
            if failed:
                raise RuntimeError("; ".join(f"{c} failed to start: {why}" for c, why in failed.items()))
            running = serve_apps.running_replicas(self._plan, self._components)
            if running["detector"] >= 1 and all(running[c] >= self.config.replicas for c in self._components[1:]):
                self.component_status()  # notes the first replicas, so replacements are counted
                return True
            if time.monotonic() + 0.25 >= until:
                return False
            time.sleep(0.25)

    def actors(self, component: str) -> list[Any]:
        """Ray handles of the live replica actors of a component (for operations and fault tests).

        Components: "detector", and "agents" (layout "sets") or each agent's name (layout "agents").
        """
        if component not in self._components:
            raise KeyError(f"Unknown component {component!r}; known: {', '.join(self._components)}.")
        return serve_apps.replica_actors(self._plan, component)

    def handle(self, component: str) -> Any:
        """The Serve deployment handle of a component (see `actors`); "detector" is the ingress."""
        return self._ingress if component == "detector" else self._agents[component]

    def heatmap_renderer(self) -> RemoteHeatmaps:
        """Heat maps rendered by the agent replicas with the models they vote with (this process
        loads no TensorFlow for them): what the server hands the servicer (``render_png``)."""
        return RemoteHeatmaps(self._agents, timeout_s=max(self.config.deadline_s, 30.0))

    def _ask_ingress(self, method: str, deadline: float, *args: Any,
                     **kwargs: Any) -> tuple[bool, Any, BaseException | None]:
        """One call to the ingress (`blackboard.ingress`), asked again while Serve replaces a dead
        replica (`call_until_deadline`); each lost replica marks what it runs down."""
        handle = getattr(self._ingress, method)
        # The agent set runs the detector and every agent; the detector's replica runs the detector.
        keys = self._status_keys("detector") + (self._status_keys(AGENT_SET) if AGENT_SET in self._agents else [])

        def call() -> Any:
            remaining = deadline - time.monotonic()
            # Wall clock: the ingress runs in another process. It answers shortly before the
            # deadline with the votes it has, so a late agent degrades the answer instead of failing it.
            return handle.remote(*args, time.time() + remaining - min(SET_MARGIN_S, remaining / 4), **kwargs)

        def mark_down(_: BaseException) -> None:
            self._up.update(dict.fromkeys(keys, False))

        return call_until_deadline(call, deadline, on_lost=mark_down)

    def _find(self, image: np.ndarray, mode: str, deadline: float, deadline_s: float, options: FindOptions) -> Found:
        """The case through the ingress in one call: faces and votes, crops only when asked."""
        answered, found, last = self._ask_ingress("find", deadline, image, mode, options=options)
        if answered:
            return found
        if last is not None:
            raise DeadlineExceeded(f"the ingress (face detector and agents) was restarting and did not come back "
                                   f"within the {deadline_s:g} s deadline") from last
        raise DeadlineExceeded(f"the case did not finish within the {deadline_s:g} s deadline")

    def _vote(self, crops: list[np.ndarray], deadline: float) -> dict[str, tuple[np.ndarray, float]]:
        """Every agent's answer on ``crops`` through the ingress by the deadline; late or failed
        agents are left out (the ingress cuts a crowd into micro-batch sized calls)."""
        answered, results, _ = self._ask_ingress("vote", deadline, crops)
        return results if answered else {}

    def _replica_stats(self, timeout_s: float = 2.0) -> dict[str, dict[str, int]]:
        """Micro-batch counters per agent (one replica's; exact with one replica), {} where unknown."""
        out: dict[str, dict[str, int]] = {}
        for component, handle in self._agents.items():
            try:
                stats = handle.stats.remote().result(timeout_s=timeout_s)
            except Exception:  # noqa: BLE001 - counters of a busy or restarting replica are simply unknown now
                continue
            out.update(stats if component == AGENT_SET else {component: stats})
        return out

    def _status_keys(self, component: str) -> list[str]:
        """The health keys a Serve component answers for ("detector", "agent/<name>"...)."""
        if component == "detector":
            return ["detector"]
        return [f"agent/{name}" for name in (self.agent_names if component == AGENT_SET else [component])]

    def component_status(self, timeout_s: float = 2.0) -> dict[str, bool]:
        """Serve's view of the detector and every agent: ``{"detector": up, "agent/<name>": up}``.

        A component is up while at least one of its replicas is RUNNING (Serve's health checks
        mark a dead or hung replica and replace it); in layout "sets" every agent shares the
        set's state. A component that comes back is counted in ``describe().restarts``.
        ``timeout_s`` is kept for callers; Serve answers from its state.
        """
        running = serve_apps.running_replicas(self._plan, self._components)
        status = {}
        for component in self._components:
            keys = self._status_keys(component)
            # Serve replaces a dead replica with a new actor: a replica name not seen before,
            # beyond the component's own replicas, is a recovery.
            seen = self._replicas_seen.setdefault(component, set())
            seen.update(serve_apps.replica_names(self._plan, component))
            # The detector's own application has one replica; in layout "sets" it is the set's.
            expected = 1 if component == "detector" and self.config.layout == "agents" else self.config.replicas
            for key in keys:
                status[key] = running[component] > 0
                self._recoveries[key] = max(self._recoveries.get(key, 0), len(seen) - expected)
        self._up.update(status)
        return status

    def shutdown(self) -> None:
        """Deletes this ensemble's Serve applications, and stops Ray if this ensemble started it."""
        import ray

        try:
            serve_apps.undeploy(self._plan, self._components)
        except Exception as err:  # noqa: BLE001 - Serve already gone (Ray stopped first): nothing to release
            log.debug("Serve applications of %s not deleted: %s", self._plan.prefix, err)
        if self._owns_ray and ray.is_initialized():
            # Serve's controller and replicas go with Ray; stopping Serve first only makes its
            # driver-side long-poll print failures on the way out.
            ray.shutdown()

