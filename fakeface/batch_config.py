"""`fakeface batch`'s command line and the settings of one job (`BatchConfig`), checked up front.

Every argument is validated here, before any input is listed or any model loaded: a wrong flag
is a one-line `BatchError` that says what was received and what to change.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from agents.command_line import add_bundle_arg, add_config_options, command_parser, config_values
from vision.face_args import add_detect_arg, add_fps_arg
from blackboard.stage_plan import VERBOSE_ENV

DESCRIPTION = "`fakeface batch`: classify folders, manifests or lists of images and videos as a Ray Data job."


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
    keep_parts: bool  # keep OUT.parts after assembly (to re-export in another format)
    # The defaults below are also the command line's (SIZE_OPTIONS).
    detect_actors: int = 0  # actor pool size of the face stage (0: one per CPU when detecting, at most 4)
    batch_size: int = 32  # rows per agent/decision batch
    shard_size: int = 64  # inputs per resumable shard
    min_face_size: int = 40  # smallest face (pixels) MTCNN looks for
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


# `BatchConfig` fields the command line sets as they are (each at least 1, --detect-actors 0), with their help; each
# option's name, type and default are the field's.
SIZE_OPTIONS = {
    "detect_actors": "actor pool size of face detection (0: one per CPU unless --detect off, at most 4)",
    "batch_size": "faces per agent batch",
    "shard_size": "inputs per resumable shard",
    "min_face_size": "smallest face in pixels",
}
FORMATS = ("parquet", "csv")
# Output suffixes that name a format.
SUFFIX_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def build_parser(prog: str = "fakeface batch") -> argparse.ArgumentParser:
    """The `fakeface batch` command line."""
    p = command_parser(prog, DESCRIPTION)
    p.add_argument("--input", required=True, help="folder (recursive), manifest CSV with a path column, or list file")
    p.add_argument("--output", required=True, help="output file, e.g. results.parquet or results.csv (its folder "
                   "must exist)")
    p.add_argument("--format", choices=FORMATS, default=None, dest="fmt",
                   help="output format (None: from the --output suffix, .csv or .parquet; parquet otherwise)")
    add_bundle_arg(p)
    p.add_argument("--ray-address", default=None, help="Ray cluster to join, 'local' for a new "
                   "loopback-only local Ray with token auth (None: $RAY_ADDRESS, else in this process for small jobs "
                   "(blackboard.local_stages), else a local Ray)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT.parts/")
    add_detect_arg(p)
    add_fps_arg(p)
    p.add_argument("--actors-per-agent", default=None,
                   help="one actor pool per agent: K actors each, or per-agent sizes such as 1,custom=2 (see "
                        "deploy/README.md: size each pool by the agent's cost). None: --agent-set-actors")
    p.add_argument("--agent-set-actors", type=int, default=BatchConfig.agent_set_actors,
                   help="one pool of K actors that each run every agent in turn (0: one per cluster CPU, at "
                        "most 16, unless --actors-per-agent is given)")
    p.add_argument("--threads-per-actor", type=int, default=BatchConfig.threads,
                   help="TensorFlow/OpenMP threads per actor (0: the whole CPUs Ray reserves for it, at least 1)")
    p.add_argument("--verbose", action="store_true", help="Ray Data's per-operator progress and stats")
    add_config_options(p, BatchConfig, SIZE_OPTIONS)
    p.add_argument("--keep-parts", action="store_true",
                   help="keep the OUT.parts shards after writing OUT (re-export with --resume --format ...)")
    return p


def parse_pool_sizes(spec: str) -> tuple[int, tuple[tuple[str, int], ...]]:
    """``"2"`` -> (2, ()); ``"1,custom=2"`` -> (1, (("custom", 2),)): a default pool size per agent
    and per-agent overrides.

    Raises:
        BatchError: a size that is not a positive integer, or an agent named twice.
    """
    default, named = 1, {}
    for part in (p.strip() for p in str(spec).split(",") if p.strip()):
        name, _, value = part.rpartition("=")
        if not value.isdigit() or int(value) < 1 or (name and name in named):
            raise BatchError(f"--actors-per-agent {spec!r}: expected K or K,AGENT=K,... with K >= 1 "
                             f"(e.g. 1,custom=2); {part!r} is not.")
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
    for name in SIZE_OPTIONS:
        least = 0 if name == "detect_actors" else 1  # 0: sized by plan_stages
        if getattr(args, name) < least:
            raise BatchError(f"--{name.replace('_', '-')} must be at least {least}, received {getattr(args, name)}.")
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
        keep_parts=args.keep_parts, agent_actors=agent_actors, **config_values(args, SIZE_OPTIONS),
        threads=args.threads_per_actor, agent_set_actors=args.agent_set_actors,
        verbose=args.verbose or os.environ.get(VERBOSE_ENV) == "1",
    )

