"""How the stages of `fakeface batch` and `fakeface evaluate` are laid out on Ray Data.

Each stage is a plain class whose ``__init__`` loads its model once and whose ``__call__`` maps a
batch dict to a batch dict, so Ray Data runs it as an actor pool
(``map_batches(Stage, fn_constructor_kwargs=..., concurrency=k, num_cpus=...)``): the face stage
(`blackboard.face_stage`), then the agents (`blackboard.agent_stages`); batch appends the
decision (`blackboard.decision_stage`), evaluate scores the votes itself. `plan_stages` sizes
the pools on the cluster's CPUs and `add_stages` lays them out.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

from pydantic import ConfigDict, PositiveInt, model_validator
from pydantic.dataclasses import dataclass

from blackboard.agent_stages import AgentSetStage, AgentStage
from blackboard.face_stage import FaceStage
from vision.faces import DetectMode

# Set to "1" by `fakeface --verbose` (fakeface/cli.py strips the flag before the command sees it).
VERBOSE_ENV = "FAKEFACE_VERBOSE"


def cpu_per_actor(node_cpus: Sequence[float], n_actors: int) -> float:
    """Fractional CPUs per actor such that every actor of every pool fits on the nodes at once.

    Whole CPUs per actor deadlock a 2-CPU host (the pools wait for CPUs that never free up), and
    a share computed on the cluster total can still fail to pack onto small nodes, so the share
    shrinks until the per-node packing holds. 10 % of each node stays free for Ray Data's tasks.
    """
    if n_actors < 1 or not node_cpus:
        raise ValueError(f"Need at least one actor and one node, received {n_actors} actors, nodes {list(node_cpus)}.")
    share = min(1.0, math.floor(0.9 * sum(node_cpus) / n_actors * 20) / 20)
    while share > 0.05 and sum(math.floor(0.9 * c / share + 1e-9) for c in node_cpus) < n_actors:
        share = round(share - 0.05, 2)
    return max(0.05, share)


def node_cpus() -> list[float]:
    """CPUs of each alive node of the connected Ray cluster that are free now.

    Actors already holding CPUs (a `fakeface serve` ensemble on the same cluster, another job)
    are left their share: pools sized on the nodes' totals would wait for those CPUs forever.
    Ray reports free CPUs for the whole cluster only, so each node's total is scaled by it.
    """
    import ray

    totals = [float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]
    total = sum(totals)
    if not total:
        return [1.0]
    free = min(float(ray.available_resources().get("CPU", total)), total)
    return [max(cpus * free / total, 0.1) for cpus in totals]


# Agent-set actors started when no layout is asked for: one per cluster CPU, at most this many
# (each holds every model in memory; on larger clusters the CPUs are shared out as threads).
AUTO_MAX_AGENT_SETS = 16
# Face-stage actors when none are asked for: one per cluster CPU where faces are detected, at most
# this many; one where each image is used whole (`--detect off`: decoding only). MTCNN is most of a
# photo's cost: on 2 cores, 240 portraits of 1024² went 6.3 -> 10.5 img/s steady in `evaluate`
# with a second face actor, and `batch` of them 59 -> 42 s, the same rows.
AUTO_MAX_FACE_ACTORS = 4


def auto_face_actors(node_cpus: Sequence[float], detect: str) -> int:
    """The face stage's pool size when the caller leaves it open (see ``AUTO_MAX_FACE_ACTORS``)."""
    return 1 if detect == "off" else max(1, min(AUTO_MAX_FACE_ACTORS, int(sum(node_cpus))))


def plan_stages(node_cpus: Sequence[float], *, bundle: str | None, agents: tuple[str, ...], detect: str,
                agent_actors: tuple[int, ...] | None = None, agent_set_actors: int = 0, threads: int = 0,
                cpus_per_actor: float = 0.0, other_actors: int = 0, max_agent_sets: int | None = None,
                **fields: Any) -> StagePlan:
    """The actor layout of the stages on a cluster of ``node_cpus``.

    Per-agent pools (``agent_actors``) or a pool of agent sets (``agent_set_actors``); when
    neither is given, agent sets, one per cluster CPU (at most ``AUTO_MAX_AGENT_SETS``): on a
    small node that keeps every core busy with no per-agent balancing, and on N nodes it puts
    a full set of agents on each. Every actor gets the same fractional CPU share
    (`cpu_per_actor`, counting ``other_actors`` started beside the stages) and, unless
    ``threads`` says otherwise, as many TensorFlow threads as whole CPUs in that share (>= 1),
    so the actors on a node never ask for more threads than it has cores.

    Args:
        max_agent_sets: at most this many automatic agent sets (and automatic face actors), e.g.
            the number of batches a small image-only job has: an actor with no batch to run would
            only load every model (~5 s of CPU on the cores the others need).
        **fields: more `StagePlan` fields (fps, all_faces, context, batch sizes...); ``face_actors``
            0 or absent: `auto_face_actors`.
    """
    total = sum(node_cpus)
    if agent_actors is None and not agent_set_actors:
        agent_set_actors = max(1, min(AUTO_MAX_AGENT_SETS, int(total), max_agent_sets or AUTO_MAX_AGENT_SETS))
    sizes = tuple(agent_actors) if agent_actors is not None else (1,) * len(agents)
    # Like the agent sets, no more face actors than an image-only job has batches (an idle one warns).
    fields["face_actors"] = fields.get("face_actors") or min(auto_face_actors(node_cpus, detect),
                                                             max_agent_sets or AUTO_MAX_FACE_ACTORS)
    n_actors = fields["face_actors"] + (agent_set_actors or sum(sizes)) + other_actors
    cpus = cpus_per_actor or cpu_per_actor(node_cpus, n_actors)
    if not threads and agent_set_actors:
        threads = max(1, int(total // max(agent_set_actors, 1)) if total > agent_set_actors else 1)
    return StagePlan(bundle=bundle, agents=agents, detect=detect, agent_actors=sizes,
                     agent_set_actors=agent_set_actors, cpus_per_actor=cpus, threads=threads or max(1, int(cpus)),
                     spread=len(node_cpus) > 1, **fields)


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class StagePlan:
    """How the shared stages are laid out on Ray Data (used by `fakeface batch` and `evaluate`)."""

    bundle: str | None  # bundle directory; None = shipped default
    agents: tuple[str, ...]  # the bundle's agents, one actor pool each, in bundle order
    detect: DetectMode  # vision.faces.extract_faces
    fps: float = 1.0  # frames per second sampled from videos
    min_face_size: int = 40  # smallest face (pixels) MTCNN looks for
    all_faces: bool = True  # every face of an input (batch), or only the most confident (evaluate)
    context: tuple[str, ...] = ()  # context features computed on each crop (ctx_<name> columns)
    face_actors: PositiveInt = 1  # actor pool size of the face stage
    agent_actors: tuple[PositiveInt, ...] = ()  # actor pool size per agent (same order as agents)
    agent_set_actors: int = 0  # >0: instead, one pool of this many actors each running every agent
    batch_size: PositiveInt = 32  # faces per agent forward pass (each stage call takes one whole block)
    cpus_per_actor: float = 0.5  # Ray CPUs reserved per actor (fractional packs the pools on small nodes)
    threads: PositiveInt = 1  # TensorFlow / OpenMP / OpenCV threads per actor
    spread: bool = True  # spread each pool's actors over the nodes (SPREAD scheduling)
    # Columns the last agent actor returns (None: all). Projecting there, not in a Ray Data task
    # after the pools, keeps the face crops off the driver without a task that must first get a
    # worker of its own (measured: first results of evaluate 12.0 -> 10.4 s).
    keep: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _pool_per_agent(self) -> "StagePlan":
        if len(self.agent_actors) != len(self.agents):
            raise ValueError(f"agent_actors {self.agent_actors} needs one pool size per agent {self.agents}.")
        return self


# The DataContext switches of Ray Data's own output: bars, per-operator bars, the banner when a
# dataset starts executing and the stats logged when it ends. All on or all off together.
RAY_DATA_OUTPUT_SWITCHES = ("enable_progress_bars", "enable_operator_progress_bars", "print_on_execution_start",
                            "enable_auto_log_stats")
# Without its bars Ray Data logs a warning telling how to turn them back on (progress), and an
# INFO line per finished dataset (executor); our own bar replaces both. Its other warnings stay.
# Logger -> level when not verbose.
RAY_DATA_QUIET_LOGGERS = {"ray.data._internal.progress": logging.ERROR,
                          "ray.data._internal.execution.streaming_executor": logging.WARNING}


def ray_data_output(verbose: bool) -> None:
    """Ray Data's own progress output: per-operator bars, execution banners and stats logs when
    ``verbose``, none otherwise (the command then shows one tqdm bar of its own)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    for switch in RAY_DATA_OUTPUT_SWITCHES:
        setattr(context, switch, verbose)
    for logger, quiet in RAY_DATA_QUIET_LOGGERS.items():
        logging.getLogger(logger).setLevel(logging.NOTSET if verbose else quiet)


def add_actor_stage(ds: Any, stage: type, kwargs: dict[str, Any], *, actors: int, cpus: float,
                    **options: Any) -> Any:
    """Appends ``stage`` to a Ray Data dataset as a pool of ``actors`` actors, each reserving
    ``cpus`` Ray CPUs, each call taking one whole block, at most two in flight per actor (why:
    :func:`add_stages`).

    Args:
        ds: the dataset.
        stage: a callable class, constructed once per actor with ``kwargs``.
        kwargs: its constructor's keyword arguments.
        actors: the pool's size.
        cpus: Ray CPUs reserved per actor.
        **options: more ``map_batches`` options (e.g. ``scheduling_strategy``).
    """
    import ray.data

    return ds.map_batches(stage, fn_constructor_kwargs=kwargs, batch_size=None, num_cpus=cpus,
                          compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=2),
                          **options)


def add_stages(ds: Any, plan: StagePlan) -> Any:
    """Appends the face stage and one actor pool per agent to a Ray Data dataset of inputs.

    ``ds`` rows are ``{source, input_index, shard}``; the result has one row per face (or per
    input / frame without one) with the face stage's columns and ``{agent}_p_fake`` per agent.
    At most two batches are in flight per actor, so a fast-starting actor cannot queue a whole
    cluster's job while the others are still loading their models.

    Each stage call takes one whole Ray Data block (``batch_size=None``): the caller's blocks are
    the units of work, and the agents split them into forward passes of ``plan.batch_size``.
    With a row count as batch size instead, Ray Data bundles blocks until it has that many rows,
    and blocks split evenly run a little short, so it merged them in pairs: half the work units,
    and on a small job one agent set got everything while the other only loaded its models.
    """
    where = {"scheduling_strategy": "SPREAD"} if plan.spread else {}
    ds = add_actor_stage(
        ds, FaceStage, {"detect": plan.detect, "fps": plan.fps, "min_face_size": plan.min_face_size,
                        "threads": plan.threads, "all_faces": plan.all_faces, "context": plan.context,
                        "compiled_loops": True},  # a Ray job's actors see many pictures
        actors=plan.face_actors, cpus=plan.cpus_per_actor, **where)
    if plan.agent_set_actors:
        return add_actor_stage(
            ds, AgentSetStage, {"bundle": plan.bundle, "agents": plan.agents, "batch_size": plan.batch_size,
                                "threads": plan.threads, "keep": plan.keep},
            actors=plan.agent_set_actors, cpus=plan.cpus_per_actor, **where)
    for i, (agent, size) in enumerate(zip(plan.agents, plan.agent_actors)):
        last = i == len(plan.agents) - 1
        ds = add_actor_stage(
            ds, AgentStage, {"bundle": plan.bundle, "agent": agent, "batch_size": plan.batch_size,
                             "threads": plan.threads, "keep": plan.keep if last else None},
            actors=size, cpus=plan.cpus_per_actor, **where)
    return ds
