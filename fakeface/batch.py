"""`fakeface batch`: classify folders, manifests or lists of images and videos as a Ray Data job.

Pipeline (the stages of `blackboard.stage_plan`, shared with `fakeface evaluate`): input paths
-> `FaceStage` actors (decode images / sample video frames with OpenCV; crops used whole, other
images MTCNN-detected and aligned) -> the agents, either as a pool of actors that each run every
agent (`AgentSetStage`, the default: one per CPU) or as one pool per agent (`AgentStage`,
``--actors-per-agent``) -> `DecisionStage` (the bundle's controller, or the mean of the votes)
-> driver. deploy/README.md says how to size the pools. A small job runs the same stages in this
process instead (`blackboard.local_stages`).

Resumable and exact: the driver writes each shard of inputs as soon as it is complete and
assembles the output from the parts (`fakeface.batch_shards`); ``--resume`` skips the shards
already on disk. The command line and its checks are `fakeface.batch_config`.

Runs unchanged as a Ray Job (``ray job submit --working-dir . -- fakeface batch ...``): Ray is
joined at ``--ray-address``, else ``$RAY_ADDRESS`` (set inside a job), else a new local instance.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from typing import Any, Sequence

from blackboard.local_stages import local_cpus, runs_locally
from blackboard.ray_runtime import init_ray
from blackboard.stage_plan import node_cpus as _node_cpus
from fakeface.batch_config import BatchConfig, BatchError, build_parser, config_from_args
from fakeface.batch_shards import ShardState, assemble, prepare_plan, shard_path, write_shard

# Inputs handed to one face-stage task when any input is a video: small enough that shards
# complete one after another (what makes --resume worthwhile) and that video work spreads over
# the face actors. Image-only jobs use a batch of inputs per task (one image is ~1 ms of work,
# so per-task overhead would otherwise show).
MAX_INPUTS_PER_BLOCK = 8
ACTOR_START_TIMEOUT_S = 600  # how long a multi-node job waits for its actors before failing


def stage_plan(cfg: BatchConfig, *, items: list[dict[str, Any]], agents: Sequence[str],
               node_cpus: Sequence[float]):
    """The stages' layout for ``items`` and the number of blocks they are cut into."""
    from blackboard.stage_plan import plan_stages
    from vision.inputs import is_video

    videos = any(is_video(i["source"]) for i in items)
    per_block = min(cfg.shard_size, MAX_INPUTS_PER_BLOCK if videos else cfg.batch_size)
    blocks = max(1, math.ceil(len(items) / per_block))
    plan = plan_stages(node_cpus, bundle=cfg.bundle, agents=tuple(agents), detect=cfg.detect, fps=cfg.fps,
                       min_face_size=cfg.min_face_size, face_actors=cfg.detect_actors,
                       agent_actors=cfg.pool_sizes(agents), agent_set_actors=cfg.agent_set_actors,
                       batch_size=cfg.batch_size, threads=cfg.threads,
                       other_actors=1, max_agent_sets=None if videos else blocks)
    return plan, blocks


def build_dataset(cfg: BatchConfig, *, items: list[dict[str, Any]], agents: Sequence[str],
                  node_cpus: Sequence[float]):
    """The Ray Data pipeline over ``items`` ({source, input_index, shard}) up to the decision."""
    import ray

    from blackboard.decision_stage import DecisionStage
    from blackboard.stage_plan import add_stages, ray_data_output

    ray_data_output(cfg.verbose)
    plan, blocks = stage_plan(cfg, items=items, agents=agents, node_cpus=node_cpus)
    if len(node_cpus) > 1:
        # On a multi-node cluster, start work only once every pool actor is up: otherwise the
        # first actor ready (on the driver's node, where the blocks are) takes every block
        # while actors on other nodes are still importing TensorFlow.
        ray.data.DataContext.get_current().wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = add_stages(ds, plan)
    return ds.map_batches(DecisionStage, fn_constructor_kwargs={"bundle": cfg.bundle, "threads": plan.threads},
                          batch_size=cfg.batch_size,
                          compute=ray.data.ActorPoolStrategy(size=1), num_cpus=plan.cpus_per_actor)


def run_shards(cfg: BatchConfig, *, plan: dict[str, Any], agents: Sequence[str],
               node_cpus: Sequence[float], local: bool = False) -> int:
    """Runs the pipeline over the shards not yet on disk; returns how many were written.

    ``local``: the stages run in this process (`blackboard.local_stages`) instead of on Ray Data.
    """
    from tqdm import tqdm

    inputs, size = plan["inputs"], plan["shard_size"]
    n_shards = math.ceil(len(inputs) / size)
    todo = [s for s in range(n_shards) if not shard_path(cfg.parts_dir, s).is_file()]
    bar = tqdm(total=n_shards, initial=n_shards - len(todo), desc="shards", unit="shard", file=sys.stderr)
    if not todo:
        bar.close()
        return 0
    items, states = [], {}
    for s in todo:
        idxs = range(s * size, min((s + 1) * size, len(inputs)))
        states[s] = ShardState(idxs)
        items.extend({"source": inputs[i], "input_index": i, "shard": s} for i in idxs)
    if local:
        from blackboard.local_stages import run_stages

        layout, blocks = stage_plan(cfg, items=items, agents=agents, node_cpus=node_cpus)
        ds, batches = None, run_stages(items, layout, blocks=blocks, decision_bundle=cfg.bundle)
    else:
        ds = build_dataset(cfg, items=items, agents=agents, node_cpus=node_cpus)
        batches = ds.iter_batches(batch_size=None, batch_format="pandas")
    written = 0
    for batch in batches:
        for shard, rows in batch.groupby("shard", sort=False):
            state = states.get(int(shard))
            if state is None:  # already written; a retried task repeated it
                continue
            state.add(rows)
            if state.complete:
                write_shard(shard_path(cfg.parts_dir, int(shard)), state.frames, agents)
                del states[int(shard)]
                written += 1
                bar.update(1)
    bar.close()
    if cfg.verbose and ds is not None:
        print(ds.stats(), file=sys.stderr)
    if states:
        raise RuntimeError(f"Ray Data finished with shards {sorted(states)} incomplete; rerun with --resume.")
    return written


def run(cfg: BatchConfig) -> dict[str, Any]:
    """Runs (or resumes) a batch job end to end; returns a summary."""
    from agents.bundle import load_bundle
    from vision.inputs import list_inputs

    started = time.perf_counter()
    found = list_inputs(cfg.input)
    bundle = load_bundle(cfg.bundle)
    agents = bundle.agent_names
    settings = {"bundle_version": bundle.version, "detect": cfg.detect, "fps": cfg.fps,
                "min_face_size": cfg.min_face_size}
    cfg.output.parent.mkdir(parents=True, exist_ok=True)
    plan = prepare_plan(cfg, inputs=found.paths, settings=settings)
    n_shards = math.ceil(len(plan["inputs"]) / plan["shard_size"])
    written, ran_on = 0, "nothing to run"
    todo = [s for s in range(n_shards) if not shard_path(cfg.parts_dir, s).is_file()]
    size = plan["shard_size"]
    left = [p for s in todo for p in plan["inputs"][s * size:(s + 1) * size]]
    if todo and (cfg.in_process if cfg.in_process is not None else runs_locally(left, cfg.ray_address)):
        # A small job: the same stages in this process, no Ray to start (blackboard.local_stages).
        written, ran_on = run_shards(cfg, plan=plan, agents=agents, node_cpus=local_cpus(), local=True), "in-process"
    elif todo:
        import ray  # here only: a small job in this process does not pay for importing Ray

        own_ray = init_ray(cfg.ray_address)  # loopback-only and token-authenticated when local
        try:
            written, ran_on = run_shards(cfg, plan=plan, agents=agents, node_cpus=_node_cpus()), "ray"
        finally:
            if own_ray:
                ray.shutdown()
    n_rows, n_rejects = assemble(cfg, n_shards=n_shards, agents=agents)
    if not cfg.keep_parts:
        shutil.rmtree(cfg.parts_dir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    return {
        "inputs": len(plan["inputs"]), "skipped_non_media": found.skipped, "duplicates": found.duplicates,
        "shards": n_shards, "shards_run": written, "rows": n_rows, "rejects": n_rejects,
        "seconds": round(elapsed, 2), "output": str(cfg.output), "rejects_file": str(cfg.rejects_path),
        "bundle_version": bundle.version, "ran_on": ran_on,
    }


def main(argv: list[str]) -> int:
    """`fakeface batch` entry point; returns the exit code."""
    from agents.bundle import BundleError
    from vision.inputs import InputError

    args = build_parser().parse_args(argv)
    try:
        summary = run(config_from_args(args))
    except (BatchError, InputError, BundleError) as err:
        print(f"fakeface batch: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
