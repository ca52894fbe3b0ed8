"""The stages of `fakeface batch` and `fakeface evaluate` in this process, for small jobs.

Starting a local Ray, its Ray Data executor and one actor per stage costs about 14 s on two cores
before the first image is read: more than a folder of a few dozen images takes to score. Under
:data:`LOCAL_MAX_WORK` inputs (videos weigh :data:`VIDEO_WEIGHT`), and when no cluster is named
(``--ray-address``, ``local`` included, or ``$RAY_ADDRESS``) and this process has not joined
one already, both commands run the very same stage classes (`blackboard.face_stage.FaceStage`,
`blackboard.agent_stages.AgentSetStage`, `blackboard.decision_stage.DecisionStage`) one block
after the other here, on blocks cut as the Ray path cuts them, so the rows are the same. Only
``node_id`` differs: it names the Ray node that found the face and is empty without Ray.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator, Sequence

import numpy as np

# Below this much work a job runs in process (see the module docstring). With inference on ONNX
# Runtime (2026-12-04, benchmarks/bench_small_jobs.py) a 1080p screenshot costs the same 0.14 s in
# process as on Ray's two face actors, and Ray's start-up is 11 s more (3.1 vs 14.1 s); a 1024 px
# portrait costs 0.17 s in process vs ~0.09 s on Ray (evaluate, 240 portraits), which puts the
# crossover near 140 portraits. (When the in-process path still loaded TensorFlow it was 64.)
LOCAL_MAX_WORK = 128
VIDEO_WEIGHT = 20  # a video is sampled into many frames: it counts as this many images


def runs_locally(sources: Sequence[str], ray_address: str | None) -> bool:
    """True when a job of ``sources`` should skip Ray: no cluster named and little work."""
    if ray_address or os.environ.get("RAY_ADDRESS"):
        return False
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # a Ray this process already joined costs nothing more
        return False
    from vision.inputs import is_video

    work = sum(VIDEO_WEIGHT if is_video(str(s)) else 1 for s in sources)
    return work <= LOCAL_MAX_WORK


def local_cpus() -> list[float]:
    """This machine as a one-node "cluster", for `blackboard.stage_plan.plan_stages`."""
    return [float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)]


def _blocks(items: Sequence[dict[str, Any]], blocks: int) -> list[list[dict[str, Any]]]:
    """``items`` cut into ``blocks`` contiguous blocks of near-equal size, as
    ``ray.data.from_items(items, override_num_blocks=blocks)`` cuts them."""
    return [list(part) for part in np.array_split(np.asarray(items, dtype=object), blocks) if len(part)]


def run_stages(items: Sequence[dict[str, Any]], plan: Any, *, blocks: int = 0, block_size: int = 0,
               decision_bundle: str | None | bool = False, before: Callable[[dict], dict] | None = None,
               after: Callable[[dict], dict] | None = None) -> Iterator[Any]:
    """Runs the face and agent stages (and the decision, for batch) over ``items`` here.

    Args:
        items: ``{source, input_index, shard}`` dicts, as the Ray path's dataset rows.
        plan: the `blackboard.stage_plan.StagePlan` the Ray path would lay out (pools are not used).
        blocks: how many near-equal blocks to cut ``items`` into (the Ray path's block count).
        block_size: instead, consecutive blocks of this many items (the last one shorter): the
            agents' forward passes then hold the same faces as a loop over chunks of that size.
        decision_bundle: False for no decision stage (evaluate); else the bundle (None: shipped
            default) whose controller `DecisionStage` applies (batch).
        before: a stage callable run on each block before the face stage (evaluate's
            `training.degrade_eval.DegradeStage`), as the Ray path puts it first.
        after: a stage callable run on each block after the agents (evaluate's gate stage).

    Yields:
        One pandas DataFrame per block, with the columns the Ray path's batches carry.
    """
    if (blocks > 0) == (block_size > 0):
        raise ValueError(f"Pass one of blocks and block_size (> 0), received blocks={blocks}, block_size={block_size}.")
    import pandas as pd

    from blackboard.agent_stages import AgentSetStage
    from blackboard.decision_stage import DecisionStage
    from blackboard.face_stage import FaceStage

    from concurrent.futures import ThreadPoolExecutor

    from vision.faces import will_detect

    # All of this machine's cores go to the one process (the stages run one after the other).
    threads = max(1, int(local_cpus()[0]))
    face = FaceStage(detect=plan.detect, fps=plan.fps, min_face_size=plan.min_face_size, threads=threads,
                     all_faces=plan.all_faces, context=plan.context)
    # The models load side by side; MTCNN only when an input will need it, as the face stage would
    # load it on first need. ONNX Runtime, which both load with, is imported here first; Keras (a
    # bundle without exports) is only ever imported by the agent-set stage's one loading thread.
    import onnxruntime  # noqa: F401
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="stage-load") as loader:
        if will_detect([i["source"] for i in items], plan.detect):
            loader.submit(lambda: face.detector)
        agents_job = loader.submit(AgentSetStage, bundle=plan.bundle, agents=plan.agents, batch_size=plan.batch_size,
                                   threads=threads, keep=plan.keep, warm_up=False)
        decision_job = None if decision_bundle is False else loader.submit(DecisionStage, bundle=decision_bundle,
                                                                           threads=threads)
        agents, decision = agents_job.result(), decision_job and decision_job.result()
    cut = _blocks(items, blocks) if blocks else [list(items[i:i + block_size]) for i in range(0, len(items), block_size)]
    for block in cut:
        # Every key of the items is a column, as `ray.data.from_items` makes it: text as object
        # arrays, integers as int64.
        batch = {key: np.asarray([i[key] for i in block], dtype=object if isinstance(block[0][key], str) else None)
                 for key in block[0]}
        if before is not None:
            batch = before(batch)
        out = agents(face(batch))
        for stage in (decision, after):
            if stage is not None:
                out = stage(out)
        # The face crops stay behind, as on the Ray path (DecisionStage or keep drop them).
        yield pd.DataFrame({k: v for k, v in out.items() if k != "face"})
