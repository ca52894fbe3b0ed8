"""How `fakeface evaluate` gets its votes: the shared Ray Data stages, behind a vote cache.

The evaluated images, their degraded copies (``--degrade``) and the fitting images all go
through the stages of `fakeface batch` (`blackboard.stage_plan`) in one Ray Data job, or, for
a small job with no cluster named (`blackboard.local_stages.runs_locally`), the same stage
classes on the same blocks in this process, without starting Ray::

    paths -> [DegradeStage]       --degrade only: read, transform (training.degrade_eval)
          -> FaceStage            read; crops used whole, other images detected (MTCNN) and aligned
          -> AgentStage x A       one actor pool per agent (or agent sets), {agent}_p_fake column each
          -> GateStage            the service's "uncertain" reason per face (training.evaluate_gate)
          -> pandas                votes (N, A) per group

Rows come in groups: (role, transform), role "eval" (scored) or "fit" (fits stacking / a
missing controller), transform "" for the clean images. Each group's results are cached on
their own in the one vote cache (`training.vote_cache`: ``~/.cache/fakeface/votes/eval-*.npz``,
or ``$FAKEFACE_CACHE`` or ``--cache-dir``), so evaluating the same data again runs no agent.
"""

from __future__ import annotations

import hashlib
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from agents.bundle import Bundle
from blackboard.stage_rows import CROP_SIZE, OK, context_column
from training.degrade_eval import CLEAN, add_degrade_stage, load_registry, registry_fingerprint
from training.evaluate_gate import GATE_INPUTS, GATE_SALT, add_gate_stage, gate_salt
from training.vote_cache import cache_file, cache_key, default_cache_dir, load_scored, save_scored
from vision.context import CONTEXT_NAMES

# ``config`` below is a `training.evaluate.EvalConfig` (not imported: that module imports this one).

PROG = "fakeface evaluate"
# Role of a row in the pipeline: scored, or only used to fit stacking / the controller.
EVAL, FIT = "eval", "fit"
# The picture's condition per face (vision.context) kept for controllers that read it; "blur" is
# sharpness under the name the first context controllers were fitted with.
CONTEXTS = ("blur", *CONTEXT_NAMES)
# Rough rates behind the printed duration estimate (measured on 2 cores with the default bundle,
# benchmarks/bench_evaluate.py: 90-94 crops/s once the actors are up, first results at ~11 s).
CROP_IMAGES_PER_CPU_S = 45.0  # face crops: the agents only
DETECT_IMAGES_PER_CPU_S = 4.0  # other images: MTCNN detection and alignment first
STARTUP_S = 12.0  # actors loading their models until the first results
LOCAL_STARTUP_S = 6.0  # the same models loaded in this process, no Ray (a small job)


def cache_salt(config: Any) -> str:
    """What an evaluation's votes depend on besides the bundle and the files: how faces are cut out."""
    from vision.faces import CROP_TRUST_SIDE

    return (f"evaluate-stages-v1\0detect={config.detect}\0trust={CROP_TRUST_SIDE}\0crop={CROP_SIZE}\0{','.join(CONTEXTS)}"
            f"\0{GATE_SALT}")


def group_salt(config: Any, transform: str, seeds: Sequence[int]) -> str:
    """:func:`cache_salt`, plus for a degraded group its transform, the registry's code and the seeds."""
    if transform == CLEAN:
        return cache_salt(config)
    seed_hash = hashlib.sha256(np.asarray(seeds, dtype=np.int64).tobytes()).hexdigest()[:16]
    fingerprint = registry_fingerprint(load_registry(config.degrade_registry))
    return f"{cache_salt(config)}\0{transform}\0{fingerprint}\0{seed_hash}"


def estimate_seconds(paths: Sequence[str], detect: str, cpus: float) -> float:
    """A rough duration for scoring ``paths`` on ``cpus`` CPUs (printed before the run starts).

    Face crops cost the agents only (``CROP_IMAGES_PER_CPU_S``); other images, or every image
    with ``--detect on``, add MTCNN (``DETECT_IMAGES_PER_CPU_S``). Which is which is read from
    the headers of up to 200 evenly spaced files (PIL reads the size without decoding).
    """
    from vision.faces import CROP_TRUST_SIDE, looks_like_crop
    from vision.media import image_file_size

    if not paths:
        return 0.0
    sample = [paths[i] for i in np.linspace(0, len(paths) - 1, min(200, len(paths))).astype(int)]
    crops = 0
    for path in sample:
        size = image_file_size(path)
        if size is None:
            continue
        width, height = size
        # The face stage's own rule, on an empty array of the image's shape (no pixels decoded).
        shape_only = np.empty((max(height, 1), max(width, 1), 0), dtype=np.uint8)
        crops += detect == "off" or (detect == "auto" and looks_like_crop(shape_only, max_side=CROP_TRUST_SIDE))
    share = crops / len(sample)
    per_cpu = share / CROP_IMAGES_PER_CPU_S + (1 - share) / DETECT_IMAGES_PER_CPU_S
    return STARTUP_S + len(paths) * per_cpu / max(cpus, 1.0)


def _estimate_groups(todo: list[tuple[str, str, Path, pd.DataFrame]], config: Any, cpus: float) -> float:
    """:func:`estimate_seconds` over every group to run: compositions pay MTCNN on every copy."""
    registry = None
    total = 0.0
    for _, transform, _, group in todo:
        detect = config.detect
        if transform != CLEAN:
            registry = registry or load_registry(config.degrade_registry)
            detect = "on" if registry.is_composition(transform) else detect
        total += estimate_seconds(group["path"].tolist(), detect, cpus) - STARTUP_S
    return STARTUP_S + total


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def describe(rows: pd.DataFrame, fit_description: str) -> str:
    """What will be scored: counts per role and class, and the degraded copies (printed before the run)."""
    parts = []
    clean = rows["transform"] == CLEAN
    for role, what in ((EVAL, "images to evaluate"), (FIT, f"for fitting, {fit_description}")):
        sel = rows[(rows["role"] == role) & clean]
        if len(sel):
            n_fake = int((sel["label"] == 1).sum())
            parts.append(f"{len(sel)} {what} ({len(sel) - n_fake} real, {n_fake} fake)")
    copies = rows[~clean]
    if len(copies):
        parts.append(f"{len(copies)} degraded copies ({copies['transform'].nunique()} transforms)")
    return "; ".join(parts)


def _layout(rows: pd.DataFrame, *, bundle: Bundle, config: Any,
            nodes: Sequence[float]) -> tuple[Any, list[dict[str, Any]], tuple[str, ...], int, bool]:
    """The stage plan, the dataset rows, the columns kept, the block count of a run over ``rows``
    and whether it has degraded copies (a degrade stage first)."""
    from blackboard.stage_plan import plan_stages

    agents = tuple(bundle.agent_names)
    degrading = bool((rows["transform"] != CLEAN).any())
    # One block per batch of inputs: the stages' unit of work (`add_stages`).
    blocks = max(1, -(-len(rows) // config.batch_size))
    keep = ("input_index", "status", "reason", *map(context_column, CONTEXTS), *(f"{a}_p_fake" for a in agents))
    plan = plan_stages(nodes, bundle=str(bundle.path), agents=agents, detect=config.detect, all_faces=False,
                       context=CONTEXTS, face_actors=config.workers,  # 0: one per CPU when detecting
                       agent_actors=(config.workers,) * len(agents) if config.workers else None,
                       cpus_per_actor=config.cpus_per_actor, other_actors=1 + int(degrading),
                       batch_size=config.batch_size, max_agent_sets=blocks,
                       keep=keep + tuple(c for c in GATE_INPUTS if c not in keep))
    items = [{"source": str(p), "input_index": i, "shard": 0, "transform": str(t), "seed": int(s)}
             for i, (p, t, s) in enumerate(zip(rows["path"], rows["transform"], rows["seed"]))]
    return plan, items, keep, blocks, degrading


def _collect(batches: Any, n_items: int, config: Any) -> tuple[pd.DataFrame, list[tuple[float, int]]]:
    """The result batches as one frame in input order (one tqdm bar), and when each batch arrived."""
    from tqdm import tqdm

    parts, arrivals = [], []
    with tqdm(total=n_items, desc="evaluate", unit="img", disable=not config.progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for batch in batches:
            parts.append(batch)
            arrivals.append((time.perf_counter(), len(batch)))
            bar.update(len(batch))
    result = pd.concat(parts, ignore_index=True).drop_duplicates("input_index").set_index("input_index")
    if len(result) != n_items:
        raise RuntimeError(f"{n_items - len(result)} rows came back from the stages without a result.")
    return result.sort_index().reset_index(drop=True), arrivals


def run_pipeline(rows: pd.DataFrame, *, bundle: Bundle,
                 config: Any) -> tuple[pd.DataFrame, list[tuple[float, int]]]:
    """Runs the shared stages (`blackboard.stage_plan`) over ``rows`` (path, transform, seed) with Ray Data.

    Returns:
        (one row per input, in input order: status, reason, ``ctx_blur`` and ``{agent}_p_fake``;
        the arrival time and size of each batch of results, for the timing).
    """
    import ray.data

    from blackboard.stage_plan import add_stages, node_cpus, ray_data_output

    ray_data_output(config.verbose)  # one readable bar (ours) unless --verbose
    plan, items, keep, blocks, degrading = _layout(rows, bundle=bundle, config=config, nodes=node_cpus())
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    if degrading:
        ds = add_degrade_stage(ds, detect=config.detect, registry=config.degrade_registry,
                               cpus=plan.cpus_per_actor, threads=plan.threads)
    ds = add_stages(ds, plan)
    # The service's "uncertain" rule on each face; it also drops the crops before the driver.
    ds = add_gate_stage(ds, bundle=str(bundle.path), keep=keep, cpus=plan.cpus_per_actor, threads=plan.threads)
    result = _collect(ds.iter_batches(batch_size=None, batch_format="pandas"), len(items), config)
    if config.verbose:
        print(ds.stats(), file=sys.stderr)
    return result


def run_in_process(rows: pd.DataFrame, *, bundle: Bundle,
                   config: Any) -> tuple[pd.DataFrame, list[tuple[float, int]]]:
    """:func:`run_pipeline`'s stages and blocks in this process, no Ray (`blackboard.local_stages`)."""
    from blackboard.local_stages import local_cpus, local_workers, run_stages
    from training.degrade_eval import DegradeStage
    from training.evaluate_gate import GateStage

    plan, items, keep, blocks, degrading = _layout(rows, bundle=bundle, config=config, nodes=local_cpus())
    _, threads = local_workers(max(1, int(local_cpus()[0])), blocks)  # as run_stages splits the cores
    # Factories: each worker (a thread's stages, or a worker process) makes its own.
    degrade = (partial(DegradeStage, detect=config.detect, registry=config.degrade_registry, threads=threads)
               if degrading else None)
    gate = partial(GateStage, bundle=str(bundle.path), keep=keep, threads=threads)
    return _collect(run_stages(items, plan, blocks=blocks, before=degrade, after=gate), len(items), config)


def _run_timed(run: Callable[..., Any], pending: pd.DataFrame, todo: list, *, bundle: Bundle, config: Any, cpus: float,
               where: str, startup_s: float) -> tuple[pd.DataFrame, list[tuple[float, int]], float, float]:
    """Says what runs where and for about how long, then runs it: (results, arrivals, start, seconds)."""
    estimate = _estimate_groups(todo, config, cpus) - STARTUP_S + startup_s
    print(f"{PROG}: {len(pending)} images to run through the agents {where}; estimated {_duration(estimate)}.",
          file=sys.stderr)
    t0 = time.perf_counter()
    fresh, arrivals = run(pending, bundle=bundle, config=config)
    return fresh, arrivals, t0, time.perf_counter() - t0


def score_rows(rows: pd.DataFrame, *, bundle: Bundle, config: Any,
               fit_description: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each row's status, reason, context and votes: from the vote cache, else from the pipeline.

    Args:
        rows: path, label, role, transform ("" = clean) and seed of every row.

    Returns:
        (rows with the pipeline's columns, in the order of ``rows``; timing and cache facts for
        metrics.json).
    """
    from blackboard.local_stages import local_cpus, runs_locally

    agents = bundle.agent_names
    vote_cols = [f"{a}_p_fake" for a in agents]
    ctx_cols = [context_column(n) for n in CONTEXTS]
    folder = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    rows = rows.reset_index(drop=True)
    scored: dict[tuple[str, str], pd.DataFrame] = {}
    todo: list[tuple[str, str, Path, pd.DataFrame]] = []
    for (role, transform), group in rows.groupby(["role", "transform"], sort=False):
        paths = group["path"].tolist()
        key = cache_key(bundle, agents, [Path(p) for p in paths],
                        salt=group_salt(config, transform, group["seed"].tolist()) + gate_salt(bundle))
        file = cache_file(folder, key)
        cached = load_scored(file, agents=agents, n=len(paths)) if config.use_cache else None
        if cached is None:
            todo.append((role, transform, file, group))
            continue
        scored[(role, transform)] = pd.DataFrame(
            {"status": cached["status"].astype(object), "reason": cached["reason"].astype(object),
             **dict(zip(ctx_cols, cached["context"].T)), **dict(zip(vote_cols, cached["votes"].T))}, index=group.index)
    n_todo = sum(len(g) for *_, g in todo)
    print(f"{PROG}: scoring {describe(rows, fit_description)}; {len(rows) - n_todo} from the vote cache in "
          f"{folder}.", file=sys.stderr)
    pipeline_s, arrivals, t0, ran_on = 0.0, [], 0.0, "nothing to run"
    if todo:
        pending = pd.concat([g for *_, g in todo])
        local = config.in_process if config.in_process is not None else runs_locally(pending["path"].tolist(),
                                                                                      config.ray_address)
        if local:  # a small job: the same stages in this process, no Ray to start
            ran_on = "in-process"
            fresh, arrivals, t0, pipeline_s = _run_timed(run_in_process, pending, todo, bundle=bundle, config=config,
                                                         cpus=local_cpus()[0], where="in this process",
                                                         startup_s=LOCAL_STARTUP_S)
        else:
            from blackboard.ray_runtime import init_ray

            started = init_ray(config.ray_address)  # loopback-only and token-authenticated when local
            try:
                import ray

                cpus, ran_on = float(ray.cluster_resources().get("CPU", 1)), "ray"
                fresh, arrivals, t0, pipeline_s = _run_timed(run_pipeline, pending, todo, bundle=bundle, config=config,
                                                             cpus=cpus, where=f"on {cpus:g} CPUs", startup_s=STARTUP_S)
            finally:
                if started:
                    ray.shutdown()
        offset = 0
        for role, transform, file, group in todo:
            part = fresh.iloc[offset:offset + len(group)].set_axis(group.index)
            offset += len(group)
            scored[(role, transform)] = part
            if config.use_cache:
                save_scored(file, agents=agents, votes=part[vote_cols].to_numpy(np.float64),
                            status=part["status"].tolist(), reason=part["reason"].tolist(),
                            context=part[ctx_cols].to_numpy(np.float64), paths=group["path"].tolist())
    out = rows.join(pd.concat(scored.values()).sort_index()[["status", "reason", *ctx_cols, *vote_cols]])
    for col in vote_cols:
        out[col] = np.where(out["status"] == OK, out[col].astype(np.float64), np.nan)
    timing = {"ran_on": ran_on, "pipeline_s": round(pipeline_s, 2), "images_scored": n_todo,
              "images_from_cache": len(rows) - n_todo,
              "images_per_s": round(n_todo / pipeline_s, 2) if pipeline_s > 0 else None}
    if todo and len(arrivals) > 2:
        # Start-up (Ray Data planning, actors loading models) until the first results, then the
        # steady rate from the first results to the last.
        (first, n_first), last = arrivals[0], arrivals[-1][0]
        timing.update(first_results_s=round(first - t0, 2),
                      steady_images_per_s=round((n_todo - n_first) / max(last - first, 1e-9), 2))
    return out, timing
