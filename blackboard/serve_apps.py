"""The blackboard's deployments as Ray Serve applications: the plan, deploying, names and state.

`deploy` turns a `DeploymentPlan` into one Serve application per component (the deployment
bodies are `blackboard.deployments`); the rest answers the ensemble's questions about them
(replicas RUNNING, live replica actors, failures) and deletes them.

Components are what the blackboard reports on: "detector", then "agents" (layout "sets") or one
per agent (layout "agents"). In layout "sets" the detector runs in the agent set's replicas, so
the component "detector" names the agent set's application (`app_name`): it is up, restarted or
killed with them; it is also the ingress (`blackboard.ingress`) in both layouts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from ray import serve

from agents.bundle import Bundle
from blackboard.deployments import AgentDeployment, AgentSetDeployment, IngressDeployment

# Serve's own lines ("Application ... is ready", "Replica ... has died") go to Ray's log files,
# not to the product's output; the blackboard reports replica health itself (component_status).
SERVE_LOG_LEVEL = "WARNING"
DRIVER_LOG_LEVEL = "ERROR"


@dataclass(frozen=True)
class DeploymentPlan:
    """How each application of one ensemble is deployed (built by the ensemble from its config)."""

    prefix: str  # application names are f"{prefix}-{component}" (see `components`)
    layout: str  # "sets": one application runs every agent and the detector; "agents": one per agent
    num_cpus: float  # CPU share of each replica
    num_gpus: float  # GPU share of each agent replica
    replicas: int  # replicas per agent (the minimum when autoscaling)
    max_replicas: int | None  # autoscaling upper bound per agent; None = a fixed number
    max_batch_size: int  # crops per micro-batch
    max_wait_ms: float  # how long a micro-batch waits to fill
    env_vars: tuple[tuple[str, str], ...]  # environment of every replica
    warm_heatmaps: bool = False  # agent replicas trace their heat maps before they are RUNNING


# The component name of the agent-set application (layout "sets").
AGENT_SET = "agents"
LAYOUTS = ("sets", "agents")


def app_name(plan: DeploymentPlan, component: str) -> str:
    """The Serve application of one component ("detector", "agents" or an agent name)."""
    if plan.layout == "sets" and component == "detector":
        component = AGENT_SET  # the agent set's replicas run the detector
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
           ingress_class: type = IngressDeployment) -> tuple[dict[str, Any], Any]:
    """Starts the detector and the agents' applications; returns ({component: handle}, ingress handle).

    The agent handles are keyed ``"agents"`` (layout "sets") or by agent name (layout "agents").
    The ingress (``find``: a case in one call, ``vote``: crops given; `blackboard.ingress`) is the
    agent set in layout "sets" (it runs the detector too; ``ingress_class`` is not used), and
    the detector's own application in layout "agents", holding handles to the agents'.
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
    batching = {"max_batch_size": plan.max_batch_size, "max_wait_ms": plan.max_wait_ms,
                "warm_heatmaps": plan.warm_heatmaps}
    if plan.layout == "sets":
        members = [(AGENT_SET, set_class, (bundle, tuple(agents)), {"detector": True})]
    else:
        members = [(agent, agent_class, (bundle, agent), {}) for agent in agents]
    targets, names = [], []
    for component, cls, args, extra in members:
        deployment = serve.deployment(cls, name="agent", max_ongoing_requests=64,
                                      **_replica_options(plan, gpus=plan.num_gpus), **scaling)
        targets.append(serve.RunTarget(deployment.bind(*args, **batching, **extra), name=app_name(plan, component),
                                       route_prefix=None, logging_config={"log_level": SERVE_LOG_LEVEL}))
        names.append(component)
    if plan.layout == "agents":
        # Every case waits here on its agents' votes: as many in flight as an agent takes.
        ingress = serve.deployment(ingress_class, name="detector", num_replicas=1, max_ongoing_requests=64,
                                   **_replica_options(plan, gpus=0.0))
        apps = {agent: app_name(plan, agent) for agent in agents}
        targets.append(serve.RunTarget(ingress.bind(apps, max_batch_size=plan.max_batch_size),
                                       name=app_name(plan, "detector"), route_prefix=None,
                                       logging_config={"log_level": SERVE_LOG_LEVEL}))
    handles = serve.run_many(targets, wait_for_ingress_deployment_creation=True,
                             wait_for_applications_running=False)
    agent_handles = dict(zip(names, handles))
    return agent_handles, agent_handles[AGENT_SET] if plan.layout == "sets" else handles[-1]


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
    for name in dict.fromkeys(app_name(plan, component) for component in components):  # each once
        serve.delete(name, _blocking=False)


def cpus_per_replica(requested: float | None, *, replicas: int, agents: int, available: float,
                     detector_apart: bool = True) -> float:
    """The CPU share of each replica of an ensemble (agent replicas plus the detector's own).

    Args:
        requested: a fixed share, or None to spread ``available`` over every replica (at most 1 each).
        replicas: replicas per agent application.
        agents: number of agent applications (1 for an agent set).
        available: CPUs of the Ray cluster.
        detector_apart: the detector has a replica of its own (layout "agents"; in layout
            "sets" it runs in the agent set's replicas).

    Raises:
        ValueError: the deployment could never be scheduled (it would hang waiting for CPUs).
    """
    actors = replicas * agents + int(detector_apart)
    share = requested if requested is not None else min(1.0, round(available / actors - 0.005, 2))
    if share * actors > available + 1e-9 or share < 0 or (requested is None and share <= 0):
        raise ValueError(
            f"The ensemble needs {share * actors:g} CPUs ({replicas} replica(s) x {agents} agent application(s)"
            f"{' + detector' if detector_apart else ''} at {share:g} CPU each) but the Ray cluster has {available:g}; lower num_cpus_per_actor "
            f"or replicas."
        )
    return float(share)
