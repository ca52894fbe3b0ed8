"""`fakeface evaluate`: score every agent, every baseline combiner and the RL ensemble on one set.

The evaluated images, their degraded copies (``--degrade``, `training.degrade_eval`) and (when
available) the val images used to fit stacking and a missing controller go through the same
Ray Data stages as `fakeface batch`, behind a vote cache (`training.evaluate_pipeline`).
Nothing is ever fitted on the evaluated split: stacking and a missing controller are fitted on
the manifest's val split (or ``--fit-manifest``), and an overlap of fitting and evaluated images
is refused. Besides each system's metrics, the report holds the agents' diversity
(`training.diversity`), selective risk (`training.selective`) and, with ``--degrade``, every
system per transform (`training.degrade_report`). Outputs (all written atomically) go to
``--out``: metrics.json, predictions.csv, no_face.csv, report.md and its PNGs (and with
``--degrade``, degraded_predictions.csv: every scored copy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from agents.bundle import load_bundle
from agents.command_line import add_bundle_arg, add_config_options, config_values
from agents.errors import raised_as
from agents.labels import CLASSES, label_to_index
from vision.face_args import add_detect_arg
from vision.faces import DetectMode
from vision.media import IMAGE_EXTENSIONS
from agents.config_errors import one_line
from blackboard.local_stages import local_max_work
from blackboard.stage_plan import VERBOSE_ENV
from blackboard.stage_rows import NO_FACE, OK, REJECTED, context_column
from training.cli_args import add_vote_cache_args
from training.degrade_eval import CLEAN, load_registry, resolve_transforms, seeds
from training.evaluate_analyses import analyse
from training.evaluate_gate import uncertain
from training.evaluate_pipeline import CONTEXTS, EVAL, FIT, PROG, score_rows
from training.metrics import BootstrapConfig, score_systems
from training.systems import ablation, build_systems
from training.votes import split_rows
from training.report import atomic_write_text, write_report


class EvaluationError(ValueError):
    """A user-facing problem with the inputs of an evaluation (printed as one line)."""


# The command prints a refused setting in one line (agents.config_errors).
@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class EvalConfig:
    """Everything one evaluation run needs (built from the command line)."""

    data: Path  # manifest CSV or folder with real/ and fake/
    out: Path  # output directory (created)
    bundle: Path | None = None  # model bundle; None = agents.bundle.DEFAULT_BUNDLE
    split: str = "test"  # manifest split to evaluate
    fit_manifest: Path | None = None  # manifest whose val split fits stacking/controller (folder input)
    fit_split: str = "val"  # split of the (fit) manifest used for fitting
    detect: DetectMode = "auto"  # face detection: auto (crops used whole), on (always align), off (never)
    ray_address: str | None = None  # Ray cluster address; None = start a local Ray (or none, see in_process)
    # True/False forces the stages in this process or on Ray; None: a small job with no cluster
    # named runs in this process (blackboard.local_stages.runs_locally), any other on Ray.
    in_process: bool | None = None
    batch_size: int = Field(32, ge=1)  # images per Ray Data batch
    # Actors per stage: face stage and each agent's pool (0 = agent sets, blackboard.stage_plan).
    workers: int = Field(0, ge=0)
    cpus_per_actor: float = Field(0.0, ge=0, le=16)  # Ray CPUs per actor (0 = the largest share that packs every pool)
    bootstrap: BootstrapConfig = BootstrapConfig()  # intervals and the paired test
    progress: bool = True  # one tqdm bar over the images
    verbose: bool = False  # Ray Data's own per-operator bars and stats instead
    cache_dir: Path | None = None  # vote cache folder; None = training.vote_cache.default_cache_dir()
    use_cache: bool = True  # read and write the vote cache
    degrade: tuple[str, ...] = ()  # transforms of training.degrade_eval to score the images under too
    degrade_registry: Any = None  # where the transforms come from; None = vision.degrade (tests pass a fake)


# ----------------------------------------------------------------------------- inputs
def _label_index(value: Any, where: str) -> int:
    with raised_as(EvaluationError, where):
        return label_to_index(value)


def images_from_folder(folder: Path) -> pd.DataFrame:
    """Lists ``folder/real/**`` and ``folder/fake/**`` images as (path, label, group) rows, sorted;
    the group from the folder's ``metadata.csv`` where it has one, else the image itself.

    Raises:
        EvaluationError: when neither sub-folder exists or they hold no image.
    """
    from training.dataset_sources import metadata_groups

    groups = metadata_groups(folder.resolve())
    rows = []
    for cls in CLASSES:
        sub = folder / cls
        if not sub.is_dir():
            continue
        for path in sorted(sub.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
                resolved = str(path.resolve())
                rows.append({"path": resolved, "label": label_to_index(cls), "group": groups.get(resolved, resolved)})
    if not rows:
        raise EvaluationError(
            f"{folder} holds no images in real/ or fake/ sub-folders; pass a folder laid out as "
            "DIR/real/*.png and DIR/fake/*.png, or a manifest CSV."
        )
    return pd.DataFrame(rows, columns=["path", "label", "group"])


def _read_manifest(path: Path) -> pd.DataFrame:
    from training.dataset import read_manifest  # validates columns and labels, makes paths absolute

    try:
        return read_manifest(path)
    except (OSError, ValueError, KeyError) as err:
        raise EvaluationError(str(err)) from None


def images_from_manifest(path: Path, split: str) -> pd.DataFrame:
    """The (path, label, group) rows of one split of a manifest.

    Raises:
        EvaluationError: unknown split (naming the ones present) or bad labels.
    """
    try:
        rows = split_rows(_read_manifest(path), split, where=str(path))
    except ValueError as err:
        raise EvaluationError(f"{err} Choose one with --split.") from None
    labels = [_label_index(v, f"{path}") for v in rows["label"]]
    return pd.DataFrame({"path": rows["path"].astype(str).to_list(), "label": labels,
                         "group": rows["group"].astype(str).to_list()})


def is_manifest(path: Path) -> bool:
    """A data argument is a manifest when it is a CSV file, a folder input otherwise."""
    return path.is_file() and path.suffix.lower() == ".csv"


def resolve_inputs(config: EvalConfig) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """The evaluated rows, the fitting rows (or None) and a sentence saying where fitting data came from.

    Raises:
        EvaluationError: missing paths, a fit split equal to the evaluated split, or shared images.
    """
    if not config.data.exists():
        raise EvaluationError(f"--data {config.data} does not exist; pass a manifest CSV or a folder with real/ and fake/.")
    fit_source = None
    if is_manifest(config.data):
        evaluated = images_from_manifest(config.data, config.split)
        fit_source = config.fit_manifest or config.data
    elif config.data.is_dir():
        evaluated = images_from_folder(config.data)
        fit_source = config.fit_manifest
    else:
        raise EvaluationError(f"--data {config.data} is neither a .csv manifest nor a folder.")
    if fit_source is None:
        return evaluated, None, "none: folder input without --fit-manifest"
    if not Path(fit_source).is_file():
        raise EvaluationError(f"--fit-manifest {fit_source} is not a file; pass the manifest the bundle was trained on.")
    if Path(fit_source).resolve() == config.data.resolve() and config.fit_split == config.split:
        raise EvaluationError(
            f"Refusing to fit on the evaluated split {config.split!r}; choose another --fit-split (default val)."
        )
    fit = images_from_manifest(Path(fit_source), config.fit_split)
    shared = {os.path.realpath(p) for p in fit["path"]} & {os.path.realpath(p) for p in evaluated["path"]}
    if shared:
        raise EvaluationError(
            f"{len(shared)} image(s) are both in the fitting split {config.fit_split!r} of {fit_source} and in the "
            f"evaluated set (e.g. {sorted(shared)[0]}); fitting on evaluated images would inflate every score."
        )
    return evaluated, fit, f"split {config.fit_split!r} of {fit_source}"


def input_rows(evaluated: pd.DataFrame, fit: pd.DataFrame | None, transforms: Sequence[str],
               root: Path) -> pd.DataFrame:
    """Every row the pipeline scores: the evaluated images, one copy of them per transform, the fitting images.

    Columns: path, label, role, transform ("" = clean), seed (`training.degrade_eval.seed_for`)
    and source_index (the evaluated image a row is, or is a copy of; -1 for fitting rows).
    """
    # Groups stay with the evaluated rows (the bootstrap's unit), not in the pipeline's columns.
    evaluated = evaluated.drop(columns="group", errors="ignore")
    fit = None if fit is None else fit.drop(columns="group", errors="ignore")
    base = evaluated.assign(role=EVAL, source_index=np.arange(len(evaluated)))
    parts = [base.assign(transform=CLEAN, seed=0)]
    for name in transforms:
        parts.append(base.assign(transform=name, seed=seeds(base["path"].tolist(), name, root)))
    if fit is not None:
        parts.append(fit.assign(role=FIT, source_index=-1, transform=CLEAN, seed=0))
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------- outputs
def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Runs one evaluation and writes every output; returns the metrics.json content."""
    bundle = load_bundle(config.bundle)
    registry = load_registry(config.degrade_registry) if config.degrade else None
    transforms = resolve_transforms(",".join(config.degrade), registry) if config.degrade else ()
    evaluated, fit, fit_description = resolve_inputs(config)
    # Paths relative to the evaluated folder (or manifest's folder): portable outputs and seeds.
    root = config.data.resolve() if config.data.is_dir() else config.data.resolve().parent
    rows = input_rows(evaluated, fit, transforms, root)
    scored, timing = score_rows(rows, bundle=bundle, config=config, fit_description=fit_description)
    agents = bundle.agent_names
    vote_cols = [f"{a}_p_fake" for a in agents]
    ev = scored[(scored["role"] == EVAL) & (scored["transform"] == CLEAN)].reset_index(drop=True)
    ok = ev[ev["status"] == OK].reset_index(drop=True)
    config.out.mkdir(parents=True, exist_ok=True)
    missing = ev[ev["status"] != OK][["path", "label", "status", "reason"]].rename(
        columns={"reason": "detail"}).rename(columns={"status": "reason"})
    atomic_write_text(config.out / "no_face.csv", missing.to_csv(index=False))
    if ok.empty:
        raise EvaluationError(f"No face was found in any of the {len(ev)} evaluated images; see {config.out / 'no_face.csv'}.")
    fit_ok = scored[(scored["role"] == FIT) & (scored["status"] == OK)]
    y = ok["label"].to_numpy(dtype=int)
    eval_votes = ok[vote_cols].to_numpy(dtype=np.float64)
    eval_context = {n: ok[context_column(n)].to_numpy(dtype=np.float64) for n in CONTEXTS}
    fitting = {"fit_votes": fit_ok[vote_cols].to_numpy(dtype=np.float64) if fit is not None else None,
               "fit_labels": fit_ok["label"].to_numpy(dtype=int) if fit is not None else None,
               "fit_description": fit_description}
    systems, unavailable, controller = build_systems(bundle=bundle, votes=eval_votes, context=eval_context, **fitting)
    # The clean intervals resample whole groups (a DFDC source video's real and fake crops together).
    groups = evaluated["group"].to_numpy(str)[ok["source_index"].to_numpy(int)]
    n_groups = len(np.unique(groups))
    unit = "image" if n_groups == len(ok) else f"group ({n_groups} groups of {len(ok)} faces, drawn whole)"
    result = {
        "data": {
            # As given, never this machine's absolute path: results are committed and shared.
            "path": str(config.data),
            "split": config.split if is_manifest(config.data) else None,
            "n": int(len(ok)),
            "n_real": int((y == 0).sum()),
            "n_fake": int((y == 1).sum()),
            "n_no_face": int((ev["status"] == NO_FACE).sum()),
            "n_unreadable": int((ev["status"] == REJECTED).sum()),  # status "rejected"
            "n_images": int(len(ev)),
            "detect": config.detect,
        },
        "fit": {"source": fit_description, "n": int(len(fit_ok)),
                "n_no_face": int(((scored["role"] == FIT) & (scored["status"] != OK)).sum())},
        "bundle": {"path": str(config.bundle) if config.bundle else "default", "version": bundle.version,
                   "agents": agents},
        **score_systems(y, systems, config.bootstrap, groups=groups),
        "unavailable": unavailable,
        "ablation": ablation(y, eval_votes, agents, controller, eval_context),
        "bootstrap": {"n_resamples": config.bootstrap.n_resamples, "confidence": config.bootstrap.confidence,
                      "seed": config.bootstrap.seed, "unit": unit},
        "timing": timing,
    }
    extra, sections, figures = analyse(
        scored=scored, y=y, sources=ok["source_index"].to_numpy(int), eval_votes=eval_votes,
        gate=uncertain(ok["status"], ok["reason"]), controller=controller, systems=systems,
        bundle=bundle, fit=fitting, n_sources=len(evaluated), transforms=transforms, registry=registry,
        bootstrap=config.bootstrap, out_dir=config.out, root=root)
    result.update(extra)
    predictions = pd.DataFrame({"path": [os.path.relpath(p, root) for p in ok["path"]], "label": y})
    for s in systems:
        predictions[s.name] = s.p_fake
    atomic_write_text(config.out / "predictions.csv", predictions.to_csv(index=False))
    write_report(out_dir=config.out, result=result, predictions=predictions, systems=systems,
                 bundle=bundle, controller=controller, sections=sections, extra_figures=figures)
    atomic_write_text(config.out / "metrics.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result


# ----------------------------------------------------------------------------- CLI
# `EvalConfig` fields the command line sets as they are, with their help (each option's name, type
# and default are the field's): what is evaluated and fitted on...
SPLIT_OPTIONS = {
    "split": f"manifest split to evaluate (default: {EvalConfig.split})",
    "fit_manifest": "manifest whose --fit-split fits stacking / a missing controller (folder input)",
    "fit_split": f"split used for fitting (default: {EvalConfig.fit_split})",
}
# ...and how the Ray Data stages run.
RAY_OPTIONS = {
    "ray_address": "Ray cluster address (default: a local Ray, or none for a small job: see --in-process)",
    "batch_size": "images per Ray Data batch",
    "workers": "N actors for the face stage and for each agent's own pool (0: one face actor and one actor per "
               "CPU that runs every agent, as `fakeface batch`)",
    "cpus_per_actor": "Ray CPUs reserved per actor (0 = the largest share that fits every actor)",
}


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The `fakeface evaluate` argument parser; its defaults are `EvalConfig`'s and `BootstrapConfig`'s."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Score each agent, the baseline combiners and the RL ensemble on one labelled set.",
    )
    add_bundle_arg(parser, type=Path, help="model bundle (default: the shipped bundle)")
    parser.add_argument("--data", type=Path, required=True,
                        help="manifest CSV (its --split is evaluated) or a folder with real/ and fake/")
    parser.add_argument("--out", type=Path, required=True, help="output directory for metrics, predictions, report")
    add_config_options(parser, EvalConfig, SPLIT_OPTIONS)
    add_detect_arg(parser)
    add_config_options(parser, EvalConfig, RAY_OPTIONS)
    parser.add_argument("--in-process", action="store_true", default=None,
                        help="run the stages in this process without Ray, whatever the job's size (default: "
                             f"jobs of at most {local_max_work()} images on this machine's cores do, when no --ray-address "
                             "is given)")
    parser.add_argument("--bootstrap", type=int, default=BootstrapConfig.n_resamples,
                        help=f"bootstrap resamples (default {BootstrapConfig.n_resamples})")
    parser.add_argument("--seed", type=int, default=BootstrapConfig.seed, help="bootstrap seed")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray Data's per-operator progress bars and stats instead of one bar")
    add_vote_cache_args(parser)
    parser.add_argument("--degrade", default="", metavar="NAME[,NAME...]|all",
                        help="also score every image through these transforms of vision/degrade.py (JPEG, "
                             "scaling, blur, screenshots...; 'all' for every one): a table and plot per "
                             "transform in the report")
    return parser


def main(argv: list[str]) -> int:
    """CLI entry point; returns 0 on success, 2 on a user error (one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        config = EvalConfig(
            data=args.data, out=args.out, bundle=args.bundle, detect=args.detect,
            **config_values(args, [*SPLIT_OPTIONS, *RAY_OPTIONS]),
            bootstrap=BootstrapConfig(n_resamples=args.bootstrap, seed=args.seed),
            in_process=args.in_process, progress=not args.no_progress,
            verbose=args.verbose or os.environ.get(VERBOSE_ENV) == "1",
            cache_dir=args.cache_dir, use_cache=not args.no_cache,
            degrade=tuple(n.strip() for n in args.degrade.split(",") if n.strip()),
        )
        result = evaluate(config)
    except (ValueError, OSError) as err:  # EvaluationError, BundleError, config validation, unwritable --out
        print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
        return 2
    data = result["data"]
    print(f"Scored {data['n']} images ({data['n_real']} real, {data['n_fake']} fake; "
          f"{data['n_no_face']} without a face, {data['n_unreadable']} unreadable).")
    for name, m in result["systems"].items():
        auc = "n/a" if m["auc"] is None else f"{m['auc']:.4f}"
        print(f"  {name:<10} AUC {auc}  accuracy {m['accuracy']:.4f}  F1 {m['f1']:.4f}")
    cmp_ = result["ensemble_vs_best_single"]
    if cmp_.get("p_value") is not None:
        print(f"ensemble vs {result['best_single']}: delta AUC {cmp_['delta_auc']:+.4f}, p = {cmp_['p_value']:.4f}")
    for name, reason in result["unavailable"].items():
        print(f"  {name}: unavailable ({reason})")
    for transform, entry in result.get("degrade", {}).get("per_transform", {}).items():
        aucs = ", ".join(f"{n} {'n/a' if m['auc'] is None else format(m['auc'], '.3f')}"
                         for n, m in entry["systems"].items())
        print(f"  {transform:<12} AUC {aucs or 'n/a (no face found)'}")
    print(f"Report: {config.out / 'report.md'}")
    return 0
