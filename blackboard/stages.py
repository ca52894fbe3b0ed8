"""The Ray Data stages of `fakeface batch` and `fakeface evaluate`: faces, agents, decision.

One copy of how an input is read, cropped and voted on: both commands lay these stages out with
`plan_stages` / `add_stages` (batch adds `DecisionStage`; evaluate scores the votes itself).

Each stage is a plain class whose ``__init__`` loads its model once and whose ``__call__`` maps a
batch dict (column -> numpy array) to a batch dict, so Ray Data runs it as an actor pool
(``map_batches(Stage, fn_constructor_kwargs=..., concurrency=k, num_cpus=...)``).

Row contract between the stages (one row per face, or one placeholder row per input or video
frame without a face, so that every input leaves a trace and the driver can tell when an input
is complete): ``rows_for_input`` is how many rows the face stage emitted for that input.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from agents.predictor import AgentPredictor
from vision.inputs import UnreadableInput, is_video, video_frames
from vision.context import CONTEXT_NAMES, context_matrix, face_context

CROP_SIZE = 224
# Set to "1" by `fakeface --verbose` (fakeface/cli.py strips the flag before the command sees it).
VERBOSE_ENV = "FAKEFACE_VERBOSE"
# Row status values (batch output, evaluate's no_face.csv): a face was cut out, none was found,
# or the input could not be decoded.
OK, NO_FACE, REJECTED = "ok", "no_face", "rejected"
STATUSES = (OK, NO_FACE, REJECTED)


def context_column(name: str) -> str:
    """The column holding context feature ``name`` (``vision.context.CONTEXT_NAMES``)."""
    return f"ctx_{name}"


def _row_contexts(batch: dict[str, Any], rows: np.ndarray) -> list[dict[str, float]] | None:
    """The face stage's context of the selected rows, as dicts; None when the columns are absent."""
    names = [n for n in CONTEXT_NAMES if context_column(n) in batch]
    if len(names) < len(CONTEXT_NAMES):
        return None
    values = np.stack([np.asarray(batch[context_column(n)], dtype=np.float64)[rows] for n in names], axis=1)
    return [dict(zip(names, row)) for row in values]


def limit_threads(threads: int) -> None:
    """Caps TensorFlow/OpenMP threads in this worker before TensorFlow starts.

    Several actors share the machine's cores; each one spinning up a thread per core would
    oversubscribe them and make 2 actors slower than 1.
    """
    value = str(max(1, int(threads)))
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = value
    import cv2

    cv2.setNumThreads(int(value))


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


class FaceStage:
    """Decodes each input (image, or video frames at ``fps``) and cuts out its faces.

    Args:
        detect: "auto", "on" or "off" (see `vision.faces.extract_faces`).
        fps: frames per second sampled from videos.
        min_face_size: smallest face (pixels) the detector looks for.
        threads: CPU threads this actor may use.
    """

    def __init__(self, *, detect: str, fps: float, min_face_size: int = 40, threads: int = 1,
                 all_faces: bool = True, context: tuple[str, ...] = ()) -> None:
        limit_threads(threads)
        self.detect = detect
        self.fps = float(fps)
        self.all_faces = bool(all_faces)
        self.context = tuple(context)
        self.min_face_size = int(min_face_size)
        # MTCNN loads once per actor on first need, never per batch: "off", and "auto" on inputs
        # that are all face crops (used whole, see vision.faces), never pay for it.
        self._detector = None
        self.node_id = _node_id()

    @property
    def detector(self):
        """The actor's MTCNN detector, loaded on first use."""
        if self._detector is None:  # only asked for when a row's mode needs it
            from vision.faces import FaceDetector

            self._detector = FaceDetector(min_face_size=self.min_face_size)
        return self._detector

    def _faces(self, rgb: np.ndarray, mode: str) -> list:
        from vision.faces import CROP_TRUST_SIDE, extract_faces, looks_like_crop

        # Only touch (and so load) the detector when extract_faces will run it.
        needs_detector = mode == "on" or (mode == "auto" and not looks_like_crop(rgb, max_side=CROP_TRUST_SIDE))
        return extract_faces(rgb, self.detector if needs_detector else None, mode=mode,
                             all_faces=self.all_faces, size=CROP_SIZE)

    def _input_rows(self, path: str, rgb: np.ndarray | None = None, mode: str = "") -> list[dict[str, Any]]:
        """All rows of one input; a decoding failure becomes one REJECTED row.

        ``rgb`` is the image already decoded (and changed) by a stage before this one, and
        ``mode`` its own detection mode; otherwise ``path`` is read and the stage's mode used.
        """
        import cv2

        from vision.media import ImageError, read_image

        rows: list[dict[str, Any]] = []
        try:
            if is_video(path):
                frames = ((idx, t, rgb, "frame") for idx, t, rgb in video_frames(path, fps=self.fps))
            else:
                frames = iter([(-1, float("nan"), read_image(path) if rgb is None else rgb, "image")])
            for frame, time_s, pixels, kind in frames:
                faces = self._faces(pixels, mode or self.detect)
                if not faces:
                    rows.append(_row(kind=kind, frame=frame, time_s=time_s, status=NO_FACE,
                                     reason="no face found"))
                for i, face in enumerate(faces):
                    x, y, w, h = (float(v) for v in face.box)
                    rows.append(_row(kind=kind, frame=frame, time_s=time_s, face_index=i, box=(x, y, w, h),
                                     confidence=float(face.confidence), aligned=bool(face.aligned),
                                     crop=np.asarray(face.crop, dtype=np.uint8), status=OK,
                                     context=face_context(face.crop, box=face.box, source=pixels,
                                                          detected=bool(face.aligned))))
        except (UnreadableInput, ImageError, cv2.error, OSError) as err:
            # Frames already read from a video that then fails are dropped with it: a video is
            # either classified whole or rejected whole.
            rows = [_row(kind="video" if is_video(path) else "image", frame=-1, time_s=float("nan"),
                         status=REJECTED, reason=f"{type(err).__name__}: {err}")]
        return rows

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: list[dict[str, Any]] = []
        # Pixels and a mode per input from an earlier stage (evaluate's degrade stage,
        # training.degrade_eval); an empty image there means "read the file as usual".
        images, modes = batch.get("image"), batch.get("detect")
        for k, (path, input_index, shard) in enumerate(zip(batch["source"], batch["input_index"], batch["shard"])):
            rgb = None if images is None or np.size(images[k]) == 0 else np.asarray(images[k], dtype=np.uint8)
            rows = self._input_rows(str(path), rgb, "" if modes is None else str(modes[k]))
            for row in rows:
                row.update(source=str(path), input_index=int(input_index), shard=int(shard),
                           rows_for_input=len(rows), node_id=self.node_id)
            out.extend(rows)
        # The picture's condition (vision.context) a controller may read: every feature, plus any
        # old name asked for in ``context``; NaN on rows without a face.
        contexts = [row.pop("context") for row in out]
        cols = _columns(out)
        names = tuple(dict.fromkeys(CONTEXT_NAMES + self.context))
        values = context_matrix(contexts, names).astype(np.float32)
        for j, name in enumerate(names):
            cols[context_column(name)] = values[:, j]
        return cols


def _row(*, kind: str, frame: int, time_s: float, status: str, face_index: int = -1,
         box: tuple[float, float, float, float] = (np.nan, np.nan, np.nan, np.nan),
         confidence: float = np.nan, aligned: bool = False, crop: np.ndarray | None = None,
         reason: str = "", context: dict[str, float] | None = None) -> dict[str, Any]:
    if crop is None:
        # A fixed-shape placeholder keeps the face column one tensor type; agents skip it.
        crop = np.zeros((CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    elif crop.shape != (CROP_SIZE, CROP_SIZE, 3):
        import cv2

        crop = cv2.resize(crop, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
    return {
        "kind": kind, "frame": int(frame), "time_s": float(time_s), "face_index": int(face_index),
        "box_x": box[0], "box_y": box[1], "box_w": box[2], "box_h": box[3],
        "face_confidence": float(confidence), "aligned": bool(aligned), "face": crop,
        "has_face": status == OK, "status": status, "reason": reason, "context": dict(context or {}),
    }


_DTYPES = {
    "frame": np.int32, "face_index": np.int32, "rows_for_input": np.int32, "input_index": np.int64,
    "shard": np.int64, "time_s": np.float32, "box_x": np.float32, "box_y": np.float32,
    "box_w": np.float32, "box_h": np.float32, "face_confidence": np.float32, "aligned": bool,
    "has_face": bool,
}


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Row dicts -> column arrays with stable dtypes (strings as object arrays)."""
    cols: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if key == "face":
            cols[key] = np.stack(values).astype(np.uint8)
        elif key in _DTYPES:
            cols[key] = np.asarray(values, dtype=_DTYPES[key])
        else:
            cols[key] = np.asarray(values, dtype=object)
    return cols


class AgentStage(AgentPredictor):
    """One agent's actor: adds ``{agent}_p_fake`` (NaN on placeholder rows without a face).

    Args:
        bundle: bundle directory (None = shipped default) or a loaded `agents.bundle.Bundle`.
        agent: agent name in the bundle.
        batch_size: images per forward pass.
        threads: CPU threads this actor may use.
        keep: the columns it returns (None: every column in, plus its vote).
        warm_up: trace the first batch shapes now (a pool actor); False when the first batch
            follows at once in this process, which would trace them anyway.
    """

    def __init__(self, *, bundle: Any, agent: str, batch_size: int = 32, threads: int = 1,
                 keep: tuple[str, ...] | None = None, warm_up: bool = True) -> None:
        limit_threads(threads)
        super().__init__(bundle, agent, batch_size=batch_size)
        self.keep = keep
        # Graph traces for the first two batch shapes now, on blank crops, instead of on the
        # first batches of data (measured: ~2 s per actor before the first results).
        if warm_up:
            self.warm_up()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        mask = np.asarray(batch["has_face"], dtype=bool)
        p = np.full(len(mask), np.nan, dtype=np.float32)
        if mask.any():
            p[mask] = self.predict_p_fake(np.asarray(batch["face"])[mask])
        out = dict(batch)
        out[f"{self.name}_p_fake"] = p
        return _only(out, self.keep)


def _only(batch: dict[str, Any], keep: tuple[str, ...] | None) -> dict[str, Any]:
    """The ``keep`` columns of a batch (all when None)."""
    return batch if keep is None else {k: batch[k] for k in keep}


class AgentSetStage:
    """Every agent in one actor, one after the other (``AgentStage`` each): on small nodes a pool
    of these, one per core, keeps every core busy without balancing one pool per agent.

    Args:
        bundle: bundle directory (None = shipped default).
        agents: agent names in the bundle.
        batch_size: images per forward pass.
        threads: CPU threads this actor may use.
        keep: the columns it returns (None: every column in, plus the votes).
        warm_up: see `AgentStage`.
    """

    def __init__(self, *, bundle: str | None, agents: tuple[str, ...], batch_size: int = 32, threads: int = 1,
                 keep: tuple[str, ...] | None = None, warm_up: bool = True) -> None:
        limit_threads(threads)
        from agents.bundle import load_bundle

        loaded = load_bundle(bundle)  # read and checked once for all its agents
        self.stages = [AgentStage(bundle=loaded, agent=a, batch_size=batch_size, threads=threads, warm_up=warm_up)
                       for a in agents]
        self.keep = keep

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        for stage in self.stages:
            batch = stage(batch)
        return _only(batch, self.keep)


class DecisionStage:
    """Combines the agents' votes with the bundle's controller (mean of votes if it has none).

    Drops the face crops so only small columns travel back to the driver.

    Args:
        bundle: bundle directory (None = shipped default).
        threads: CPU threads this actor may use (the uncertainty gate's models).
    """

    def __init__(self, *, bundle: str | None, threads: int = 1) -> None:
        limit_threads(threads)
        from agents.bundle import load_bundle
        from blackboard.controllers.store import load_controller

        loaded = load_bundle(bundle)
        self.bundle_version = loaded.version
        self.controller = load_controller(loaded)
        self.agents = list(loaded.agent_names)
        self.combiner_name = "mean" if self.controller is None else f"controller:{self.controller.version}"
        self.threshold = 0.5 if self.controller is None else float(self.controller.threshold)
        from blackboard.ood import UncertaintyGate

        self.gate = UncertaintyGate.from_bundle(loaded)  # the same "uncertain" rule as the service
        from blackboard.borderline import borderline_for
        from blackboard.controllers.store import load_replay

        self.band = borderline_for(self.controller, load_replay(loaded))  # the service's borderline band

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from blackboard.decision import context_for, decide

        has_face = np.asarray(batch["has_face"], dtype=bool)
        n = len(has_face)
        votes = np.stack([np.asarray(batch[f"{a}_p_fake"], dtype=np.float64) for a in self.agents], axis=1)
        present = np.isfinite(votes)
        p = np.full(n, np.nan, dtype=np.float32)
        if has_face.any():
            faces = list(np.asarray(batch["face"])[has_face]) if "face" in batch else [None]
            decided = decide({a: votes[has_face, j] for j, a in enumerate(self.agents)}, self.controller,
                             context=context_for(self.controller, faces, _row_contexts(batch, has_face)),
                             explain=False, band=self.band)
            p[has_face] = decided.p_fake
        label = np.full(n, "", dtype=object)
        reason = np.asarray(batch["reason"], dtype=object).copy()
        faces = np.flatnonzero(has_face)
        if len(faces):  # the decision's own labels: "uncertain" inside the borderline band
            label[faces] = decided.labels
            for i, text in zip(faces, decided.reasons):
                if text:
                    reason[i] = text
        if len(faces):
            sizes = zip(np.asarray(batch["box_w"])[faces], np.asarray(batch["box_h"])[faces])
            why, _ = self.gate.assess(list(np.asarray(batch["face"])[faces]), list(sizes))
            for i, text in zip(faces, why):
                if text:
                    label[i], reason[i] = "uncertain", text
        out = {k: v for k, v in batch.items() if k != "face" and not k.endswith("_latency_ms")}
        out.update(
            reason=reason,
            p_fake=p,
            label=label.astype(object),
            threshold=np.full(n, self.threshold, dtype=np.float32),
            degraded=has_face & ~present.all(axis=1),
            combiner=np.full(n, self.combiner_name, dtype=object),
            bundle_version=np.full(n, self.bundle_version, dtype=object),
        )
        return out


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
        max_agent_sets: at most this many automatic agent sets, e.g. the number of batches a
            small image-only job has: an actor with no batch to run would only load every model
            (~5 s of CPU on the cores the others need).
        **fields: more `StagePlan` fields (fps, all_faces, context, face_actors, batch sizes...).
    """
    total = sum(node_cpus)
    if agent_actors is None and not agent_set_actors:
        agent_set_actors = max(1, min(AUTO_MAX_AGENT_SETS, int(total), max_agent_sets or AUTO_MAX_AGENT_SETS))
    sizes = tuple(agent_actors) if agent_actors is not None else (1,) * len(agents)
    n_actors = fields.get("face_actors", 1) + (agent_set_actors or sum(sizes)) + other_actors
    cpus = cpus_per_actor or cpu_per_actor(node_cpus, n_actors)
    if not threads and agent_set_actors:
        threads = max(1, int(total // max(agent_set_actors, 1)) if total > agent_set_actors else 1)
    return StagePlan(bundle=bundle, agents=agents, detect=detect, agent_actors=sizes,
                     agent_set_actors=agent_set_actors, cpus_per_actor=cpus, threads=threads or max(1, int(cpus)),
                     spread=len(node_cpus) > 1, **fields)


@dataclass(frozen=True)
class StagePlan:
    """How the shared stages are laid out on Ray Data (used by `fakeface batch` and `evaluate`)."""

    bundle: str | None  # bundle directory; None = shipped default
    agents: tuple[str, ...]  # the bundle's agents, one actor pool each, in bundle order
    detect: str  # "auto", "on" or "off" (vision.faces.extract_faces)
    fps: float = 1.0  # frames per second sampled from videos
    min_face_size: int = 40  # smallest face (pixels) MTCNN looks for
    all_faces: bool = True  # every face of an input (batch), or only the most confident (evaluate)
    context: tuple[str, ...] = ()  # context features computed on each crop (ctx_<name> columns)
    face_actors: int = 1  # actor pool size of the face stage
    agent_actors: tuple[int, ...] = ()  # actor pool size per agent (same order as agents)
    agent_set_actors: int = 0  # >0: instead, one pool of this many actors each running every agent
    batch_size: int = 32  # faces per agent forward pass (each stage call takes one whole block)
    cpus_per_actor: float = 0.5  # Ray CPUs reserved per actor (fractional packs the pools on small nodes)
    threads: int = 1  # TensorFlow / OpenMP / OpenCV threads per actor
    spread: bool = True  # spread each pool's actors over the nodes (SPREAD scheduling)
    # Columns the last agent actor returns (None: all). Projecting there, not in a Ray Data task
    # after the pools, keeps the face crops off the driver without a task that must first get a
    # worker of its own (measured: first results of evaluate 12.0 -> 10.4 s).
    keep: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.agent_actors) != len(self.agents):
            raise ValueError(f"agent_actors {self.agent_actors} needs one pool size per agent {self.agents}.")
        if min((self.face_actors, self.batch_size, self.threads, *self.agent_actors)) < 1:
            raise ValueError(f"pool sizes, batch sizes and threads must be at least 1: {self}.")


def ray_data_output(verbose: bool) -> None:
    """Ray Data's own progress output: per-operator bars, execution banners and stats logs when
    ``verbose``, none otherwise (the command then shows one tqdm bar of its own)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = verbose
    context.enable_operator_progress_bars = verbose
    context.print_on_execution_start = verbose
    context.enable_auto_log_stats = verbose
    # Without its bars Ray Data logs a warning telling how to turn them back on, and an INFO line
    # per finished dataset; our own bar replaces both (shown with --verbose). Its other warnings stay.
    import logging

    logging.getLogger("ray.data._internal.progress").setLevel(logging.NOTSET if verbose else logging.ERROR)
    logging.getLogger("ray.data._internal.execution.streaming_executor").setLevel(
        logging.NOTSET if verbose else logging.WARNING)


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
    import ray.data

    def pool(size: int) -> ray.data.ActorPoolStrategy:
        return ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=2)

    where = {"scheduling_strategy": "SPREAD"} if plan.spread else {}
    ds = ds.map_batches(
        FaceStage,
        fn_constructor_kwargs={"detect": plan.detect, "fps": plan.fps, "min_face_size": plan.min_face_size,
                               "threads": plan.threads, "all_faces": plan.all_faces, "context": plan.context},
        batch_size=None, num_cpus=plan.cpus_per_actor, compute=pool(plan.face_actors), **where,
    )
    if plan.agent_set_actors:
        return ds.map_batches(
            AgentSetStage,
            fn_constructor_kwargs={"bundle": plan.bundle, "agents": plan.agents, "batch_size": plan.batch_size,
                                   "threads": plan.threads, "keep": plan.keep},
            batch_size=None, num_cpus=plan.cpus_per_actor, compute=pool(plan.agent_set_actors), **where,
        )
    for i, (agent, size) in enumerate(zip(plan.agents, plan.agent_actors)):
        last = i == len(plan.agents) - 1
        ds = ds.map_batches(
            AgentStage,
            fn_constructor_kwargs={"bundle": plan.bundle, "agent": agent, "batch_size": plan.batch_size,
                                   "threads": plan.threads, "keep": plan.keep if last else None},
            batch_size=None, num_cpus=plan.cpus_per_actor, compute=pool(size), **where,
        )
    return ds
