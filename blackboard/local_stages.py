"""The stages of `fakeface batch` and `fakeface evaluate` in this process, for jobs a cluster would not speed up.

Starting a local Ray, its Ray Data executor and one actor per stage costs about 14 s on two cores
before the first image is read: more than a folder of a few dozen images takes to score. Under
:func:`local_max_work` inputs (videos weigh :data:`VIDEO_WEIGHT`), and when no cluster is named
(``--ray-address``, ``local`` included, or ``$RAY_ADDRESS``) and this process has not joined
one already, both commands run the very same stage classes (`blackboard.face_stage.FaceStage`,
`blackboard.agent_stages.AgentSetStage`, `blackboard.decision_stage.DecisionStage`) here, on
blocks cut as the Ray path cuts them, so the rows are the same. Only ``node_id`` differs: it
names the Ray node that found the face and is empty without Ray.

Blocks run side by side on a pool of threads (:func:`local_workers`), each block's stages one
after the other, and come back in input order. The models run on ONNX Runtime and OpenCV, which
release the GIL while they compute, so two blocks at once, each model on one thread, beat one
block at a time whose models use both cores (the networks are too small to keep two threads
busy): 240 portraits of 1024 px on 2 cores, 6.0 -> 9.6 images/s (2026-12-04). A job of at
least :data:`LOCAL_PROCESS_MIN` inputs runs its blocks on forked worker processes instead, each
with its own stages, so their Python shares (box arithmetic, NMS, patch means) do not wait on one
GIL: +7-14 % images/s, rows identical (:func:`uses_processes`). There the job's last blocks are
cut finer (:data:`TAIL_PIECES`), so both workers end together.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np

StageFn = Callable[[dict], dict]  # a stage: one block's columns in, its columns out

# Below this much work a job runs in process (see the module docstring). Measured on 2 cores
# (2026-12-04, `fakeface evaluate --detect auto`, 240 images, two blocks at once in process): in
# process the first results come after 5.7 s, then 14.7 images/s on 600 px photos and 11.3 on
# 1024 px portraits; on a new local Ray after 17.4 s, then 17.7 and 10.2, so Ray paid from about
# 1 000 photos. Since blocks run on worker processes (2026-12-05, 960 photos of 600 px): in process
# 23.1 images/s (24.3 steady), a new local Ray 17.8 (21.6 steady, first results after 11 s): Ray's
# steady rate is the lower one, so on 2 cores it never pays, and the limit only bounds how long a
# job runs without Ray's fault tolerance. On more cores Ray's processes outnumber the local
# workers (:data:`LOCAL_MAX_WORKERS`), so the limit shrinks in proportion to the cores (an
# estimate: not measured there), and never under 128, the limit measured before blocks ran side
# by side.
LOCAL_WORK_ON_2_CORES = 4000
LOCAL_MIN_WORK = 128
VIDEO_WEIGHT = 20  # a video is sampled into many frames: it counts as this many images


def local_max_work(cpus: float | None = None) -> int:
    """The most work (images; a video counts :data:`VIDEO_WEIGHT`) run in process on ``cpus``
    cores (None: this machine's)."""
    cpus = max(1.0, float(local_cpus()[0] if cpus is None else cpus))
    return max(LOCAL_MIN_WORK, int(LOCAL_WORK_ON_2_CORES * 2 / cpus))


def runs_locally(sources: Sequence[str], ray_address: str | None) -> bool:
    """True when a job of ``sources`` should skip Ray: no cluster named and little work."""
    if ray_address or os.environ.get("RAY_ADDRESS"):
        return False
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # a Ray this process already joined costs nothing more
        return False
    from vision.inputs import is_video

    work = sum(VIDEO_WEIGHT if is_video(str(s)) else 1 for s in sources)
    return work <= local_max_work()


def local_cpus() -> list[float]:
    """This machine as a one-node "cluster", for `blackboard.stage_plan.plan_stages`."""
    return [float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)]


# At most this many blocks at once in process. Each worker thread holds the GIL for its Python
# share of a block (box arithmetic, NMS, cutting patches); measured on 2 cores only, so past a
# few cores a larger job is Ray's (several processes), not more threads'.
LOCAL_MAX_WORKERS = 4


# Blocks at once in process, whatever the cores (e.g. 1 to leave a core free, or to measure).
WORKERS_ENV = "FAKEFACE_LOCAL_WORKERS"


def local_workers(cpus: int, blocks: int) -> tuple[int, int]:
    """(blocks run at once, threads each block's models may use) for ``blocks`` blocks on ``cpus``.

    One block uses every core through its models' own thread pools; several blocks split them.
    ``$FAKEFACE_LOCAL_WORKERS`` sets the blocks at once (still no more than ``blocks``).
    """
    if cpus < 1 or blocks < 1:
        raise ValueError(f"cpus and blocks must be >= 1, received cpus={cpus}, blocks={blocks}.")
    asked = os.environ.get(WORKERS_ENV, "").strip()
    if asked and not (asked.isdigit() and int(asked) >= 1):
        raise ValueError(f"${WORKERS_ENV} must be a whole number >= 1, received {asked!r}.")
    workers = min(int(asked) if asked else min(cpus, LOCAL_MAX_WORKERS), blocks)
    return workers, max(1, cpus // workers)


def _ordered(run: Callable[[Any], Any], parts: Sequence[Any], workers: int) -> Iterator[Any]:
    """``run`` of each part on ``workers`` threads, yielded in the parts' order; at most twice
    ``workers`` parts are started ahead of the one the caller waits for, so results of a long job
    do not pile up."""
    if workers <= 1:
        yield from map(run, parts)
        return
    yield from _in_order(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="local-block"), run, parts,
                         workers)


def _in_order(pool: Executor, run: Callable[[Any], Any], parts: Sequence[Any], workers: int,
              stop: Callable[[Executor], None] | None = None) -> Iterator[Any]:
    """:func:`_ordered` on ``pool`` (threads or processes), which it shuts down; ``stop`` instead
    ends it when the reader stops early."""
    pending: deque[Future] = deque()
    finished = False
    try:
        for part in parts:
            pending.append(pool.submit(run, part))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        finished = True
    finally:
        if finished or stop is None:
            # A reader that stops early (a failed block, Ctrl-C, a closed generator) waits only for
            # the blocks already running, not for the ones queued behind them.
            pool.shutdown(wait=True, cancel_futures=True)
        else:
            stop(pool)


# Jobs of at least this many inputs run their blocks in worker processes rather than threads
# (`uses_processes`). Measured on 2 cores (2026-12-05, `fakeface evaluate --detect auto`, 240
# pictures, two runs each): 600 px photos 18.9-19.6 -> 21.6-22.3 images/s, 1024 px portraits
# 12.7-13.0 -> 13.8-13.9, the same predictions. Two threads held the GIL 53 % of the time (box
# arithmetic, NMS, patch means: py-spy --gil), and one at a time runs Python. Under this many inputs
# threads stay: a small job gains too little to pay for the workers' own models (and tests swap
# stages in this process).
LOCAL_PROCESS_MIN = 96
# "0" keeps every job on threads (to measure, or where forking this process is unwelcome).
PROCESSES_ENV = "FAKEFACE_LOCAL_PROCESSES"


def uses_processes(n_items: int, bundle: str | None, agents: Sequence[str]) -> bool:
    """Whether a job of ``n_items`` inputs runs its blocks on worker processes: at least
    :data:`LOCAL_PROCESS_MIN` inputs, ``$FAKEFACE_LOCAL_PROCESSES`` not "0", a system that forks
    (Linux), no Ray joined by this process, and every agent on ONNX Runtime or scikit-learn (a
    Keras model stays on threads: its TensorFlow runtime is not fork-safe once started)."""
    if n_items < LOCAL_PROCESS_MIN or os.environ.get(PROCESSES_ENV, "").strip() == "0":
        return False
    import multiprocessing

    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return False
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # a Ray driver's threads and sockets are not forked
        return False
    from agents.bundle import load_bundle

    loaded = load_bundle(bundle)
    return all(loaded.agent(a).kind != "keras" or bool(loaded.agent(a).onnx_file) for a in agents)


_WORKER: list[Callable[[list[dict[str, Any]]], Any]] = []  # this worker process's block runner


def _start_worker(setup: dict[str, Any]) -> None:
    # Ctrl-C reaches the whole process group: the job's own process decides (`_end_workers`).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER[:] = [_block_runner(**setup)]


def _end_workers(pool: Executor) -> None:
    """Ends a process pool whose results are no longer wanted (an error, Ctrl-C) at once, rather
    than after the blocks already handed to its workers (measured: 5.8 s after Ctrl-C, 2.3 on threads)."""
    # ProcessPoolExecutor has no public way to stop its workers before Python 3.14.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _run_in_worker(block: list[dict[str, Any]]) -> Any:
    return _WORKER[0](block)


def _ordered_in_processes(setup: dict[str, Any], parts: Sequence[Any], workers: int) -> Iterator[Any]:
    """:func:`_ordered` on ``workers`` worker processes, each building its own stages (``setup``).

    Forked, not spawned: a fork starts in milliseconds with this process's modules already
    imported, where a spawned worker re-imports them (~1 s on 2 cores, which a 240-picture job did
    not win back). The stages are built after the fork, so no model, ONNX Runtime pool or thread of
    theirs is copied.
    """
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_worker, initargs=(setup,))
    try:
        yield from _in_order(pool, _run_in_worker, parts, workers, stop=_end_workers)
    except BrokenProcessPool as err:
        raise RuntimeError(f"A worker process of this job ended without a result ({err}); it may have run out of "
                           f"memory. Run again with {PROCESSES_ENV}=0 to keep the job in one process.") from err


def _blocks(items: Sequence[dict[str, Any]], blocks: int) -> list[list[dict[str, Any]]]:
    """``items`` cut into ``blocks`` contiguous blocks of near-equal size, as
    ``ray.data.from_items(items, override_num_blocks=blocks)`` cuts them."""
    return [list(part) for part in np.array_split(np.asarray(items, dtype=object), blocks) if len(part)]


# The last blocks of a job on worker processes are each cut into this many pieces. Workers take
# blocks as they free up, but one runs ahead of the other (its images were easier, or its core
# was less busy), and whole blocks left the faster one idle for up to a block at the end: 240
# portraits of 1024 px on 2 cores, blocks of 30 took 3.8-4.4 s each and one worker waited ~1 s.
# Cut this fine, the two end within ~0.3 s of each other (2026-12-05: pipeline 16.8 -> 16.5 s,
# 11.1 -> 11.0 s for 600 px photos, four runs each). The rows do not depend on how inputs are
# grouped: every stage works image by image and ONNX Runtime scores each row of a batch alike
# (the same 240 predictions from blocks of 16 and of 32); a Keras-only bundle stays on threads.
TAIL_PIECES = 8


def _finer_tail(cut: list[list[dict[str, Any]]], workers: int) -> list[list[dict[str, Any]]]:
    """``cut`` with each of its last ``workers`` blocks cut into :data:`TAIL_PIECES` near-equal
    pieces, in order."""
    head, tail = cut[:-workers], cut[-workers:]
    return head + [piece for block in tail for piece in _blocks(block, TAIL_PIECES)]


def run_stages(items: Sequence[dict[str, Any]], plan: Any, *, blocks: int = 0, block_size: int = 0,
               decision_bundle: str | None | bool = False, before: Callable[[], StageFn] | None = None,
               after: Callable[[], StageFn] | None = None) -> Iterator[Any]:
    """Runs the face and agent stages (and the decision, for batch) over ``items`` here.

    Args:
        items: ``{source, input_index, shard}`` dicts, as the Ray path's dataset rows.
        plan: the `blackboard.stage_plan.StagePlan` the Ray path would lay out (pools are not used).
        blocks: how many near-equal blocks to cut ``items`` into (the Ray path's block count).
        block_size: instead, consecutive blocks of this many items (the last one shorter): the
            agents' forward passes then hold the same faces as a loop over chunks of that size.
        decision_bundle: False for no decision stage (evaluate); else the bundle (None: shipped
            default) whose controller `DecisionStage` applies (batch).
        before: makes the stage callable run on each block before the face stage (evaluate's
            `training.degrade_eval.DegradeStage`), as the Ray path puts it first. A factory, not
            the stage: each worker process makes its own (e.g. ``functools.partial`` of the class).
        after: makes the stage callable run on each block after the agents (evaluate's gate stage).

    Yields:
        One pandas DataFrame per block, with the columns the Ray path's batches carry.
    """
    if (blocks > 0) == (block_size > 0):
        raise ValueError(f"Pass one of blocks and block_size (> 0), received blocks={blocks}, block_size={block_size}.")
    from vision.faces import will_detect

    cut = (_blocks(items, blocks) if blocks
           else [list(items[i:i + block_size]) for i in range(0, len(items), block_size)])
    workers, threads = local_workers(max(1, int(local_cpus()[0])), max(1, len(cut)))
    setup = {"plan": plan, "threads": threads, "decision_bundle": decision_bundle, "before": before, "after": after,
             "detector": will_detect([i["source"] for i in items], plan.detect)}
    if workers > 1 and uses_processes(len(items), plan.bundle, plan.agents):
        # Each worker process sees many pictures: it runs detection's compiled loops (`vision.jit`).
        yield from _ordered_in_processes({**setup, "compiled_loops": True}, _finer_tail(cut, workers), workers)
    else:
        yield from _ordered(_block_runner(**setup), cut, workers)


def _block_runner(*, plan: Any, threads: int, decision_bundle: str | None | bool, before: Callable[[], StageFn] | None,
                  after: Callable[[], StageFn] | None, detector: bool,
                  compiled_loops: bool = False) -> Callable[[list[dict[str, Any]]], Any]:
    """One worker's stages, built once (their models loaded side by side), as a function of a block;
    ``compiled_loops``: its detector runs the compiled loops (`blackboard.face_stage.FaceStage`)."""
    import pandas as pd

    from blackboard.agent_stages import AgentSetStage
    from blackboard.decision_stage import DecisionStage
    from blackboard.face_stage import FaceStage

    face = FaceStage(detect=plan.detect, fps=plan.fps, min_face_size=plan.min_face_size, threads=threads,
                     all_faces=plan.all_faces, context=plan.context, compiled_loops=compiled_loops)
    # The models load side by side; MTCNN only when an input will need it, as the face stage would
    # load it on first need. ONNX Runtime, which both load with, is imported here first; Keras (a
    # bundle without exports) is only ever imported by the agent-set stage's one loading thread.
    import onnxruntime  # noqa: F401
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="stage-load") as loader:
        if detector:
            loader.submit(lambda: face.detector)  # loaded before any block starts, so never twice
        agents_job = loader.submit(AgentSetStage, bundle=plan.bundle, agents=plan.agents, batch_size=plan.batch_size,
                                   threads=threads, keep=plan.keep, warm_up=False)
        decision_job = None if decision_bundle is False else loader.submit(DecisionStage, bundle=decision_bundle,
                                                                           threads=threads)
        agents, decision = agents_job.result(), decision_job and decision_job.result()
    first, last = (None if make is None else make() for make in (before, after))
    # A Keras model (a bundle without ONNX exports) is never called from two threads at once.
    keras_lock = None if agents.thread_safe else threading.Lock()

    def run_block(block: list[dict[str, Any]]) -> pd.DataFrame:
        # Every key of the items is a column, as `ray.data.from_items` makes it: text as object
        # arrays, integers as int64.
        batch = {key: np.asarray([i[key] for i in block], dtype=object if isinstance(block[0][key], str) else None)
                 for key in block[0]}
        if first is not None:
            batch = first(batch)
        faces = face(batch)
        if keras_lock is None:
            out = agents(faces)
        else:
            with keras_lock:
                out = agents(faces)
        for stage in (decision, last):
            if stage is not None:
                out = stage(out)
        # The face crops stay behind, as on the Ray path (DecisionStage or keep drop them).
        return pd.DataFrame({k: v for k, v in out.items() if k != "face"})

    return run_block
