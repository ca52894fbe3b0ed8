"""`fakeface dataset build`: labelled images/videos -> aligned face crops + a split manifest."""

from __future__ import annotations

import argparse
import sys

from agents.command_line import add_config_options, config_values
from agents.config_errors import one_line
from training.dataset import BuildConfig, BuildSummary, build_dataset
from training.dataset_sources import discover_sources

# `BuildConfig` fields the command line sets as they are, with their help (each option's name,
# type and default are the field's): how often video frames are sampled (one or the other)...
RATE_OPTIONS = {"fps": "video frames sampled per second (None: 2)",
                "frames": "or this many frames spread over each video"}
# ...and how crops are kept and split.
SPLIT_OPTIONS = {
    "hash_distance": "drop a crop within this phash distance of one kept from the same video",
    "min_face": "reject faces smaller than this, in pixels",
    "val": "validation fraction, by group",
    "test": "test fraction, by group",
    "seed": "split seed",
    "size": "crop side in pixels",
}


def build_parser(prog: str = "fakeface dataset") -> argparse.ArgumentParser:
    """The `dataset` command's parser (one sub-command: build); the defaults are `BuildConfig`'s."""
    parser = argparse.ArgumentParser(prog=prog, description="Build face-crop datasets.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="build")
    build = commands.add_parser(
        "build",
        help="detect, align and deduplicate faces, then split by group",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="INPUTs are folders laid out real/ and fake/ (images and videos, any depth; a "
        "metadata.csv with a group column in the folder gives the groups) and CSV manifests "
        "path,label[,group]. Re-running with the same --out resumes.",
    )
    build.add_argument("inputs", nargs="*", metavar="INPUT", help="folders with real/ and fake/, or CSV manifests")
    build.add_argument("--out", required=True, help="output folder (crops/, manifest.csv, rejects.csv, summary.json)")
    build.add_argument("--manifest-in", action="append", default=None, metavar="CSV",
                       help="a CSV manifest path,label[,group] (repeatable; same as giving it as an INPUT)")
    build.add_argument("--no-detect", action="store_true",
                       help="inputs are face crops already: use each image whole, resized")
    add_config_options(build, BuildConfig, {"all_faces": "keep every face, not only the most confident"})
    rate = build.add_mutually_exclusive_group()
    add_config_options(rate, BuildConfig, RATE_OPTIONS)
    build.add_argument("--keyframe-every", type=int, default=BuildConfig.keyframe_every, metavar="N",
                       help="detect faces in the whole video frame on every N-th sampled frame and follow them "
                       "near their last box in between (a lost face triggers full detection); 1 = detect on "
                       "every frame")
    add_config_options(build, BuildConfig, SPLIT_OPTIONS)
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def format_summary(summary: BuildSummary) -> str:
    """A few lines for the terminal."""
    split = summary.by_split_label
    lines = [
        f"dataset: {summary.crops} crops from {summary.sources} sources "
        f"({summary.sources_resumed} finished earlier) in {summary.seconds:.1f} s",
        f"  labels: {summary.by_label}   groups: {summary.groups}",
        "  splits: " + ", ".join(f"{s} {summary.by_split[s]} (real {split[s]['real']}, fake {split[s]['fake']})"
                                 for s in summary.by_split),
        f"  near-duplicates dropped: {summary.duplicates_dropped}   video frames sampled: "
        f"{summary.frames_sampled} ({summary.frames_without_face} without a usable face)",
        f"  rejects: {summary.rejects} {summary.rejects_by_reason or ''}",
        f"  manifest: {summary.manifest}",
    ]
    lines.extend(f"  warning: {w}" for w in summary.warnings)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Runs `fakeface dataset ...`; returns the exit code (2 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    inputs = list(args.inputs) + list(args.manifest_in or [])
    if not inputs:
        print("fakeface dataset build: give at least one INPUT folder or --manifest-in CSV", file=sys.stderr)
        return 2
    try:
        config = BuildConfig(detect=not args.no_detect, keyframe_every=args.keyframe_every,
                             **config_values(args, ["all_faces", *RATE_OPTIONS, *SPLIT_OPTIONS]))
        sources, rejects = discover_sources(inputs)
        if not sources:
            # Nothing to build: say why instead of writing an empty manifest.
            reasons = sorted({r.reason for r in rejects})
            print(f"fakeface dataset build: no labelled image or video in {', '.join(map(str, inputs))}: each "
                  "folder needs real/ and fake/ subfolders (or give a CSV manifest path,label[,group])"
                  + (f"; skipped {len(rejects)} file(s): {'; '.join(reasons[:3])}" if rejects else ""),
                  file=sys.stderr)
            return 2
        summary = build_dataset(inputs, args.out, config, show_progress=not args.quiet)
    except ValueError as exc:
        print(f"fakeface dataset build: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fakeface dataset build: {exc.filename or args.out}: {exc.strerror or exc}; "
              "check the --out folder is writable and has space", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0
