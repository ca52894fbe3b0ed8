"""`fakeface batch`: classify folders, manifests or lists of images and videos as a Ray Data job.

Pipeline (the stages of `blackboard.stages`, shared with `fakeface evaluate`): input paths
-> `FaceStage` actors (decode images / sample video frames with OpenCV; crops used whole, other
images MTCNN-detected and aligned) -> the agents, either as a pool of actors that each run every
agent (`AgentSetStage`, the default: one per CPU) or as one pool per agent (`AgentStage`,
``--actors-per-agent``) -> `DecisionStage` (the bundle's controller, or the mean of the votes)
-> driver. deploy/README.md says how to size the pools.

Resumable and exact: the inputs are cut into shards of ``--shard-size`` files, fixed once in
``OUT.parts/plan.json``. The driver collects each shard's rows (de-duplicated by input, frame and
face, so a retried Ray task cannot add a row twice) and writes ``OUT.parts/shard-NNNNN.parquet``
by temp file + rename as soon as every input of the shard is complete. ``--resume`` skips the
shards already on disk; the final ``OUT`` (and ``OUT.rejects.csv``) is assembled from the parts
and renamed into place, so a killed run never leaves a partial output and never loses a row.

Runs unchanged as a Ray Job (``ray job submit --working-dir . -- fakeface batch ...``): Ray is
joined at ``--ray-address``, else ``$RAY_ADDRESS`` (set inside a job), else a new local instance.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.atomic import atomic_write
from blackboard.ray_runtime import init_ray
from blackboard.local_stages import local_cpus, runs_locally
from blackboard.stages import VERBOSE_ENV, node_cpus as _node_cpus

PLAN_FORMAT = 1
PLAN_FILE = "plan.json"
# Inputs handed to one face-stage task when any input is a video: small enough that shards
# complete one after another (what makes --resume worthwhile) and that video work spreads over
# the face actors. Image-only jobs use a batch of inputs per task (one image is ~1 ms of work,
# so per-task overhead would otherwise show).
MAX_INPUTS_PER_BLOCK = 8


class BatchError(ValueError):
    """A batch job cannot start or resume; the message says what to change."""


@dataclass(frozen=True)
class BatchConfig:
    """Everything that defines one batch job."""

    input: str  # folder, manifest CSV or list file
    output: Path  # final output file
    fmt: str  # "parquet" or "csv"
    bundle: str | None  # bundle directory; None = shipped default
    ray_address: str | None  # Ray cluster to join; None = $RAY_ADDRESS or a local instance
    resume: bool  # continue an interrupted run from OUT.parts
    detect: str  # face detection: "auto", "on" or "off"
    fps: float  # frames per second sampled from videos
    actors_per_agent: int | None  # one pool per agent of this size (None: not asked for; see agent_actors)
    detect_actors: int  # actor pool size of the face stage
    batch_size: int  # rows per agent/decision batch
    shard_size: int  # inputs per resumable shard
    min_face_size: int  # smallest face (pixels) MTCNN looks for

    keep_parts: bool  # keep OUT.parts after assembly (to re-export in another format)
    agent_actors: tuple[tuple[str, int], ...] = ()  # per-agent pool sizes overriding actors_per_agent
    agent_set_actors: int = 0  # >0: one pool of actors each running every agent (0 with no pool sizes: auto)
    threads: int = 0  # TensorFlow/OpenMP threads per actor (0 = whole CPUs reserved per actor, at least 1)
    verbose: bool = False  # Ray Data's per-operator progress and stats instead of one bar
    in_process: bool | None = None  # True/False forces the in-process or the Ray path; None: by job size

    def pool_sizes(self, agents: Sequence[str]) -> tuple[int, ...] | None:
        """Actor pool size of each agent, in ``agents`` order (None: no per-agent pools asked for)."""
        sizes = dict(self.agent_actors)
        unknown = sorted(set(sizes) - set(agents))
        if unknown:
            raise BatchError(f"--actors-per-agent names {unknown}, not agents of the bundle {list(agents)}.")
        if self.actors_per_agent is None and not sizes:
            return None
        return tuple(sizes.get(a, self.actors_per_agent or 1) for a in agents)

    @property
    def parts_dir(self) -> Path:
        # Named without the extension, so `--resume --format csv --output OUT.csv` can
        # re-export the kept parts of an OUT.parquet run without recomputing them.
        return self.output.with_name(self.output.stem + ".parts")

    @property
    def rejects_path(self) -> Path:
        return self.output.with_name(self.output.name + ".rejects.csv")


def output_columns(agents: Sequence[str]):
    """The pyarrow schema of the output rows (the parts' schema too)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("source", pa.string()),  # absolute path of the input file
            ("kind", pa.string()),  # "image", "frame" (one video frame) or "video" (verdict)
            ("frame", pa.int32()),  # frame number in the video; -1 for images and verdicts
            ("time_s", pa.float32()),  # frame time in seconds; NaN for images and verdicts
            ("face_index", pa.int32()),  # face number in the image/frame; -1 = no face / verdict
            ("box_x", pa.float32()), ("box_y", pa.float32()), ("box_w", pa.float32()), ("box_h", pa.float32()),
            ("face_confidence", pa.float32()),  # detector confidence (1.0 when used as a crop)
            ("aligned", pa.bool_()),  # crop rotated upright from the eye landmarks
        ]
        + [(f"{a}_p_fake", pa.float32()) for a in agents]
        + [
            ("p_fake", pa.float32()),  # ensemble probability of fake
            ("label", pa.string()),  # "real" / "fake" / "uncertain" (see reason); "" when there is no face
            ("threshold", pa.float32()),  # threshold on p_fake used for the label
            ("degraded", pa.bool_()),  # an agent's vote is missing
            ("status", pa.string()),  # "ok", "no_face" (or "rejected", rejects file only)
            ("combiner", pa.string()),  # "controller:<version>" or "mean" (bundle has no controller)
            ("bundle_version", pa.string()),  # content id of the model bundle
            ("node_id", pa.string()),  # Ray node that detected the face (cluster diagnostics)
            ("reason", pa.string()),  # why: label "uncertain" (e.g. "too small"), no_face, rejected
        ]
    )


FORMATS = ("parquet", "csv")
# Output suffixes that name a format.
SUFFIX_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def build_parser(prog: str = "fakeface batch") -> argparse.ArgumentParser:
    """The `fakeface batch` command line."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", required=True, help="folder (recursive), manifest CSV with a path column, or list file")
    p.add_argument("--output", required=True, help="output file, e.g. results.parquet or results.csv (its folder "
                   "must exist)")
    p.add_argument("--format", choices=FORMATS, default=None, dest="fmt",
                   help="output format (None: from the --output suffix, .csv or .parquet; parquet otherwise)")
    p.add_argument("--bundle", default=None, help="model bundle directory (None: the shipped bundle)")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join, 'local' for a new "
                   "loopback-only local Ray with token auth (None: $RAY_ADDRESS, else in this process for small jobs "
                   "(blackboard.local_stages), else a local Ray)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT.parts/")
    p.add_argument("--detect", choices=("auto", "on", "off"), default="auto",
                   help="face detection: on, off (inputs are crops) or auto (detect, else use whole image)")
    p.add_argument("--fps", type=float, default=1.0, help="frames per second sampled from videos")
    p.add_argument("--actors-per-agent", default=None,
                   help="one actor pool per agent: K actors each, or per-agent sizes such as 1,vgg16=2 (see "
                        "deploy/README.md: size each pool by the agent's cost). None: --agent-set-actors")
    p.add_argument("--agent-set-actors", type=int, default=0,
                   help="one pool of K actors that each run every agent in turn (0: one per cluster CPU, at "
                        "most 16, unless --actors-per-agent is given)")
    p.add_argument("--threads-per-actor", type=int, default=0,
                   help="TensorFlow/OpenMP threads per actor (0: the whole CPUs Ray reserves for it, at least 1)")
    p.add_argument("--verbose", action="store_true", help="Ray Data's per-operator progress and stats")
    p.add_argument("--detect-actors", type=int, default=1, help="actor pool size of face detection")
    p.add_argument("--batch-size", type=int, default=32, help="faces per agent batch")
    p.add_argument("--shard-size", type=int, default=64, help="inputs per resumable shard")
    p.add_argument("--min-face-size", type=int, default=40, help="smallest face in pixels")
    p.add_argument("--keep-parts", action="store_true",
                   help="keep the OUT.parts shards after writing OUT (re-export with --resume --format ...)")
    return p


def parse_pool_sizes(spec: str) -> tuple[int, tuple[tuple[str, int], ...]]:
    """``"2"`` -> (2, ()); ``"1,vgg16=2"`` -> (1, (("vgg16", 2),)): a default pool size per agent
    and per-agent overrides.

    Raises:
        BatchError: a size that is not a positive integer, or an agent named twice.
    """
    default, named = 1, {}
    for part in (p.strip() for p in str(spec).split(",") if p.strip()):
        name, _, value = part.rpartition("=")
        if not value.isdigit() or int(value) < 1 or (name and name in named):
            raise BatchError(f"--actors-per-agent {spec!r}: expected K or K,AGENT=K,... with K >= 1 "
                             f"(e.g. 1,vgg16=2); {part!r} is not.")
        if name:
            named[name] = int(value)
        else:
            default = int(value)
    return default, tuple(named.items())


def output_format(output: Path, fmt: str | None) -> str:
    """The output format: ``fmt`` if given, else from the suffix; a known suffix that
    contradicts ``fmt`` is refused (a file named .csv must hold CSV)."""
    implied = SUFFIX_FORMATS.get(output.suffix.lower())
    if fmt is None:
        return implied or "parquet"
    if implied is not None and implied != fmt:
        raise BatchError(f"--output {output.name} says {implied} but --format is {fmt}; rename the output "
                         f"(e.g. {output.with_suffix('.' + fmt).name}) or drop --format.")
    return fmt


def config_from_args(args: argparse.Namespace) -> BatchConfig:
    """Validates the parsed arguments into a `BatchConfig`."""
    default_actors, agent_actors = (None, ()) if args.actors_per_agent is None else parse_pool_sizes(
        args.actors_per_agent)
    if args.actors_per_agent is not None and args.agent_set_actors:
        raise BatchError("--actors-per-agent (a pool per agent) and --agent-set-actors (a pool of actors running "
                         "every agent) are two layouts; pass one of them.")
    if args.threads_per_actor < 0 or args.agent_set_actors < 0:
        raise BatchError("--threads-per-actor and --agent-set-actors must be >= 0.")
    for name in ("detect_actors", "batch_size", "shard_size", "min_face_size"):
        if getattr(args, name) < 1:
            raise BatchError(f"--{name.replace('_', '-')} must be at least 1, received {getattr(args, name)}.")
    if not (args.fps > 0 and math.isfinite(args.fps)):
        raise BatchError(f"--fps must be a positive number, received {args.fps}.")
    output = Path(args.output).expanduser().absolute()
    if output.is_dir():
        raise BatchError(f"--output {args.output} is a directory; pass a file name such as {output / 'results.parquet'}.")
    if not output.parent.is_dir():
        raise BatchError(f"--output {args.output}: the folder {output.parent} does not exist; create it first.")
    fmt = output_format(output, args.fmt)
    bundle = None if args.bundle is None else str(Path(args.bundle).expanduser().absolute())
    return BatchConfig(
        input=args.input, output=output, fmt=fmt, bundle=bundle, ray_address=args.ray_address,
        resume=args.resume, detect=args.detect, fps=float(args.fps), actors_per_agent=default_actors,
        detect_actors=args.detect_actors, batch_size=args.batch_size, shard_size=args.shard_size,
        min_face_size=args.min_face_size, keep_parts=args.keep_parts, agent_actors=agent_actors,
        threads=args.threads_per_actor, agent_set_actors=args.agent_set_actors,
        verbose=args.verbose or os.environ.get(VERBOSE_ENV) == "1",
    )


def _shard_path(parts: Path, shard: int) -> Path:
    return parts / f"shard-{shard:05d}.parquet"


def prepare_plan(cfg: BatchConfig, *, inputs: Sequence[str], settings: dict[str, Any]) -> dict[str, Any]:
    """Creates ``OUT.parts/plan.json``, or checks that a resumed run matches it.

    Raises:
        BatchError: leftover parts without --resume, or a resume with other inputs/settings.
    """
    parts, plan_path = cfg.parts_dir, cfg.parts_dir / PLAN_FILE
    plan = {"format": PLAN_FORMAT, "shard_size": cfg.shard_size, "settings": settings, "inputs": list(inputs)}
    if parts.exists() and not cfg.resume:
        raise BatchError(
            f"{parts} holds the shards of an earlier run; pass --resume to finish (or re-export) it, "
            f"or delete {parts} to start over."
        )
    if cfg.resume and plan_path.is_file():
        old = json.loads(plan_path.read_text())
        if old.get("inputs") != plan["inputs"]:
            raise BatchError(
                f"--resume: the inputs differ from those in {plan_path} ({len(old.get('inputs', []))} planned, "
                f"{len(inputs)} now); restore the input or delete {parts} to start over."
            )
        if old.get("settings") != settings or old.get("shard_size") != cfg.shard_size:
            raise BatchError(
                f"--resume: settings {settings} (shard size {cfg.shard_size}) differ from the interrupted run's "
                f"{old.get('settings')} (shard size {old.get('shard_size')}) in {plan_path}; rerun with those, "
                f"or delete {parts} to start over."
            )
        return old
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write(plan_path, lambda tmp: tmp.write_text(json.dumps(plan)))
    return plan


ACTOR_START_TIMEOUT_S = 600  # how long a multi-node job waits for its actors before failing


def stage_plan(cfg: BatchConfig, *, items: list[dict[str, Any]], agents: Sequence[str],
               node_cpus: Sequence[float]):
    """The stages' layout for ``items`` and the number of blocks they are cut into."""
    from vision.inputs import is_video
    from blackboard.stages import plan_stages

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

    from blackboard.stages import DecisionStage, add_stages, ray_data_output

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


def video_verdicts(rows, agents: Sequence[str]):
    """One `kind="video"` row per video: its frame rows tracked and judged by the one video
    rule, `vision.video.VIDEO_RULE` (the same as `fakeface classify`).

    Each agent's column is that agent's mean over the video's faces.
    """
    import pandas as pd

    from vision.video import track_video

    frames = rows[rows["kind"] == "frame"]
    out = []
    for source, g in frames.groupby("source", sort=False):
        faces = g[g["status"] == "ok"]
        base = g.iloc[0]
        row = {c: np.nan for c in rows.columns}
        row.update(source=source, kind="video", frame=-1, time_s=np.nan, face_index=-1, aligned=False,
                   threshold=base["threshold"], combiner=base["combiner"], bundle_version=base["bundle_version"],
                   node_id="", reason="", input_index=base["input_index"])
        per_frame = [[{"box": (f.box_x, f.box_y, f.box_w, f.box_h), "p_fake": float(f.p_fake),
                       "threshold": float(f.threshold), "verdict": f.label, "reason": getattr(f, "reason", ""),
                       "degraded": bool(f.degraded), "votes": {}} for f in fr.itertuples() if f.status == "ok"]
                     for _, fr in g.groupby("frame", sort=True)]
        _, video = track_video(per_frame)
        if video["p_fake"] is not None or video["verdict"] == "uncertain":
            row.update(p_fake=np.nan if video["p_fake"] is None else video["p_fake"], label=video["verdict"],
                       reason=video["reason"], degraded=bool(faces["degraded"].any()), status="ok",
                       threshold=base["threshold"] if video["threshold"] is None else video["threshold"],
                       **{f"{a}_p_fake": float(faces[f"{a}_p_fake"].mean()) for a in agents})
        else:
            row.update(p_fake=np.nan, label="", degraded=False, status="no_face")
        out.append(row)
    return pd.DataFrame(out, columns=rows.columns)


def write_shard(path: Path, frames: list, agents: Sequence[str]) -> int:
    """Sorts a complete shard's rows, adds video verdicts and writes the part atomically."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pd.concat(frames, ignore_index=True)
    rows = pd.concat([rows, video_verdicts(rows, agents)], ignore_index=True)
    # Verdict rows follow their video's frames; everything else in input order.
    rows["_verdict"] = rows["kind"] == "video"
    rows = rows.sort_values(["input_index", "_verdict", "frame", "face_index"], kind="stable")
    schema = output_columns(agents)
    table = pa.Table.from_pandas(rows[schema.names], schema=schema, preserve_index=False)
    table = table.replace_schema_metadata(None)  # pandas metadata would describe the dropped index
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return len(rows)


class _ShardState:
    """Rows collected for one shard, keyed so that a duplicate row is dropped."""

    def __init__(self, inputs: Sequence[int]):
        self.expected: dict[int, int | None] = {i: None for i in inputs}
        self.seen: dict[int, set] = {i: set() for i in inputs}
        self.frames: list = []

    def add(self, rows) -> None:
        keep = []
        for pos, (idx, frame, face, n) in enumerate(
            zip(rows["input_index"], rows["frame"], rows["face_index"], rows["rows_for_input"])
        ):
            key = (int(frame), int(face))
            if key not in self.seen[int(idx)]:
                self.seen[int(idx)].add(key)
                self.expected[int(idx)] = int(n)
                keep.append(pos)
        if keep:
            self.frames.append(rows.iloc[keep])

    @property
    def complete(self) -> bool:
        return all(n is not None and len(self.seen[i]) == n for i, n in self.expected.items())


def run_shards(cfg: BatchConfig, *, plan: dict[str, Any], agents: Sequence[str],
               node_cpus: Sequence[float], local: bool = False) -> int:
    """Runs the pipeline over the shards not yet on disk; returns how many were written.

    ``local``: the stages run in this process (`blackboard.local_stages`) instead of on Ray Data.
    """
    from tqdm import tqdm

    inputs, size = plan["inputs"], plan["shard_size"]
    n_shards = math.ceil(len(inputs) / size)
    todo = [s for s in range(n_shards) if not _shard_path(cfg.parts_dir, s).is_file()]
    bar = tqdm(total=n_shards, initial=n_shards - len(todo), desc="shards", unit="shard", file=sys.stderr)
    if not todo:
        bar.close()
        return 0
    items, states = [], {}
    for s in todo:
        idxs = range(s * size, min((s + 1) * size, len(inputs)))
        states[s] = _ShardState(idxs)
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
                write_shard(_shard_path(cfg.parts_dir, int(shard)), state.frames, agents)
                del states[int(shard)]
                written += 1
                bar.update(1)
    bar.close()
    if cfg.verbose and ds is not None:
        print(ds.stats(), file=sys.stderr)
    if states:
        raise RuntimeError(f"Ray Data finished with shards {sorted(states)} incomplete; rerun with --resume.")
    return written


def assemble(cfg: BatchConfig, *, n_shards: int, agents: Sequence[str]) -> tuple[int, int]:
    """Concatenates the parts into OUT and OUT.rejects.csv (each renamed into place).

    Returns:
        (output rows, rejected inputs).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema = output_columns(agents)
    tables = [pq.read_table(_shard_path(cfg.parts_dir, s)) for s in range(n_shards)]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    rejected = pc.equal(table["status"], "rejected")
    rejects = table.filter(rejected).select(["source", "reason"]).rename_columns(["path", "reason"])
    rows = table.filter(pc.invert(rejected)).select(schema.names)
    if cfg.fmt == "parquet":
        atomic_write(cfg.output, lambda tmp: pq.write_table(rows, tmp))
    else:
        atomic_write(cfg.output, lambda tmp: pacsv.write_csv(rows, tmp))
    atomic_write(cfg.rejects_path, lambda tmp: pacsv.write_csv(rejects, tmp))
    return rows.num_rows, rejects.num_rows


def run(cfg: BatchConfig) -> dict[str, Any]:
    """Runs (or resumes) a batch job end to end; returns a summary."""
    import ray

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
    todo = [s for s in range(n_shards) if not _shard_path(cfg.parts_dir, s).is_file()]
    size = plan["shard_size"]
    left = [p for s in todo for p in plan["inputs"][s * size:(s + 1) * size]]
    if todo and (cfg.in_process if cfg.in_process is not None else runs_locally(left, cfg.ray_address)):
        # A small job: the same stages in this process, no Ray to start (blackboard.local_stages).
        written, ran_on = run_shards(cfg, plan=plan, agents=agents, node_cpus=local_cpus(), local=True), "in-process"
    elif todo:
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
