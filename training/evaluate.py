"""`fakeface evaluate`: score every agent, every baseline combiner and the RL ensemble on one set.

The evaluated images and (when available) the val images used to fit stacking and a missing
controller go through the same Ray Data stages as `fakeface batch` (`training.batch_stages`)::

    paths -> FaceStage            read; crops used whole, other images detected (MTCNN) and aligned
          -> AgentStage x A       one actor pool per agent, {agent}_p_fake column each
          -> pandas                votes (N, A) per role ("eval" / "fit")

Each role's results are cached (``~/.cache/fakeface/votes/eval-*.npz``, or ``$FAKEFACE_CACHE``
or ``--cache-dir``), so evaluating the same data again runs no agent. Nothing is ever fitted
on the evaluated split: stacking and a missing controller are fitted on the manifest's val
split (or ``--fit-manifest``), and an overlap of fitting and evaluated images is refused.
Outputs (all written atomically) go to ``--out``: metrics.json, predictions.csv, no_face.csv,
report.md and its PNGs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from agents.bundle import Bundle, load_bundle
from agents.labels import CLASSES, label_to_index
from blackboard.media import IMAGE_EXTENSIONS
from training import votes as votes_cache
from training.batch_stages import CROP_SIZE, NO_FACE, OK, REJECTED, VERBOSE_ENV, context_column
from training.metrics import BootstrapConfig, score_systems
from training.systems import ablation, build_systems
from training.report import atomic_write_text, write_report

PROG = "fakeface evaluate"
DETECT_MODES = ("auto", "on", "off")
# Role of a row in the pipeline: scored, or only used to fit stacking / the controller.
EVAL, FIT = "eval", "fit"
CONTEXT = "blur"  # the case context (blackboard.decision) computed on each crop
# Rough rates behind the printed duration estimate (measured on 2 cores with the default bundle,
# benchmarks/bench_evaluate.py: 90-94 crops/s once the actors are up, first results at ~11 s).
CROP_IMAGES_PER_CPU_S = 45.0  # face crops: the agents only
DETECT_IMAGES_PER_CPU_S = 4.0  # other images: MTCNN detection and alignment first
STARTUP_S = 12.0  # actors loading their models until the first results


class EvaluationError(ValueError):
    """A user-facing problem with the inputs of an evaluation (printed as one line)."""


@dataclass(frozen=True)
class EvalConfig:
    """Everything one evaluation run needs (built from the command line)."""

    data: Path  # manifest CSV or folder with real/ and fake/
    out: Path  # output directory (created)
    bundle: Path | None = None  # model bundle; None = agents.bundle.DEFAULT_BUNDLE
    split: str = "test"  # manifest split to evaluate
    fit_manifest: Path | None = None  # manifest whose val split fits stacking/controller (folder input)
    fit_split: str = "val"  # split of the (fit) manifest used for fitting
    detect: str = "auto"  # face detection: auto (crops used whole), on (always align), off (never)
    ray_address: str | None = None  # Ray cluster address; None = $RAY_ADDRESS, else in process when small, else local
    in_process: bool | None = None  # True/False forces the in-process or the Ray path; None: by job size
    batch_size: int = 32  # images per Ray Data batch
    workers: int = 0  # actors per stage: face stage and each agent's pool (0 = agent sets, training.batch_stages)
    cpus_per_actor: float = 0.0  # Ray CPUs per actor (0 = the largest share that packs every pool)
    bootstrap: BootstrapConfig = BootstrapConfig()  # intervals and the paired test
    progress: bool = True  # one tqdm bar over the images
    verbose: bool = False  # Ray Data's own per-operator bars and stats instead
    cache_dir: Path | None = None  # vote cache folder; None = training.votes.default_cache_dir()
    use_cache: bool = True  # read and write the vote cache

    def __post_init__(self) -> None:
        if self.detect not in DETECT_MODES:
            raise EvaluationError(f"--detect must be one of {DETECT_MODES}, received {self.detect!r}.")
        if self.batch_size < 1:
            raise EvaluationError(f"--batch-size must be positive, received {self.batch_size}.")
        if self.workers < 0:
            raise EvaluationError(f"--workers must be >= 0, received {self.workers}.")
        if not 0 <= self.cpus_per_actor <= 16:
            raise EvaluationError(f"--cpus-per-actor must be in [0, 16], received {self.cpus_per_actor}.")


# ----------------------------------------------------------------------------- inputs
def _label_index(value: Any, where: str) -> int:
    try:
        return label_to_index(value)
    except ValueError as err:
        raise EvaluationError(f"{where}: {err}") from None


def images_from_folder(folder: Path) -> pd.DataFrame:
    """Lists ``folder/real/**`` and ``folder/fake/**`` images as (path, label) rows, sorted.

    Raises:
        EvaluationError: when neither sub-folder exists or they hold no image.
    """
    rows = []
    for cls in CLASSES:
        sub = folder / cls
        if not sub.is_dir():
            continue
        for path in sorted(sub.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
                rows.append({"path": str(path.resolve()), "label": label_to_index(cls)})
    if not rows:
        raise EvaluationError(
            f"{folder} holds no images in real/ or fake/ sub-folders; pass a folder laid out as "
            "DIR/real/*.png and DIR/fake/*.png, or a manifest CSV."
        )
    return pd.DataFrame(rows, columns=["path", "label"])


def _read_manifest(path: Path) -> pd.DataFrame:
    from training.dataset import read_manifest  # validates columns and labels, makes paths absolute

    try:
        return read_manifest(path)
    except (OSError, ValueError, KeyError) as err:
        raise EvaluationError(str(err)) from None


def images_from_manifest(path: Path, split: str) -> pd.DataFrame:
    """The (path, label) rows of one split of a manifest.

    Raises:
        EvaluationError: unknown split (naming the ones present) or bad labels.
    """
    frame = _read_manifest(path)
    rows = frame[frame["split"].astype(str) == split]
    if rows.empty:
        present = sorted(frame["split"].astype(str).unique())
        raise EvaluationError(f"{path} has no rows in split {split!r}; its splits are {present}. Choose one with --split.")
    labels = [_label_index(v, f"{path}") for v in rows["label"]]
    return pd.DataFrame({"path": rows["path"].astype(str).to_list(), "label": labels})


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


# ----------------------------------------------------------------------------- pipeline
def cache_salt(config: EvalConfig) -> str:
    """What an evaluation's votes depend on besides the bundle and the files: how faces are cut out."""
    from blackboard.faces import CROP_TRUST_SIDE

    return f"evaluate-stages-v1\0detect={config.detect}\0trust={CROP_TRUST_SIDE}\0crop={CROP_SIZE}\0{CONTEXT}"


def estimate_seconds(paths: Sequence[str], detect: str, cpus: float) -> float:
    """A rough duration for scoring ``paths`` on ``cpus`` CPUs (printed before the run starts).

    Face crops cost the agents only (``CROP_IMAGES_PER_CPU_S``); other images, or every image
    with ``--detect on``, add MTCNN (``DETECT_IMAGES_PER_CPU_S``). Which is which is read from
    the headers of up to 200 evenly spaced files (PIL reads the size without decoding).
    """
    from PIL import Image

    from blackboard.faces import CROP_TRUST_SIDE, looks_like_crop

    if not paths:
        return 0.0
    sample = [paths[i] for i in np.linspace(0, len(paths) - 1, min(200, len(paths))).astype(int)]
    crops = 0
    for path in sample:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, ValueError):
            continue
        # The face stage's own rule, on an empty array of the image's shape (no pixels decoded).
        shape_only = np.empty((max(height, 1), max(width, 1), 0), dtype=np.uint8)
        crops += detect == "off" or (detect == "auto" and looks_like_crop(shape_only, max_side=CROP_TRUST_SIDE))
    share = crops / len(sample)
    per_cpu = share / CROP_IMAGES_PER_CPU_S + (1 - share) / DETECT_IMAGES_PER_CPU_S
    return STARTUP_S + len(paths) * per_cpu / max(cpus, 1.0)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def describe(rows: pd.DataFrame, fit_description: str) -> str:
    """What will be scored: counts per role and class (printed before the run)."""
    parts = []
    for role, what in ((EVAL, "images to evaluate"), (FIT, f"for fitting, {fit_description}")):
        sel = rows[rows["role"] == role]
        if len(sel):
            n_fake = int((sel["label"] == 1).sum())
            parts.append(f"{len(sel)} {what} ({len(sel) - n_fake} real, {n_fake} fake)")
    return "; ".join(parts)


def run_pipeline(rows: pd.DataFrame, *, bundle: Bundle, config: EvalConfig,
                 local: bool = False) -> tuple[pd.DataFrame, list[tuple[float, int]]]:
    """Runs the shared stages (`training.batch_stages`) over ``rows`` (path, ...) with Ray Data,
    or in this process when ``local`` (`training.local_stages`).

    Returns:
        (one row per input, in input order: status, reason, ``ctx_blur`` and ``{agent}_p_fake``;
        the arrival time and size of each batch of results, for the timing).
    """
    from tqdm import tqdm

    from training.batch_stages import node_cpus, plan_stages
    from training.local_stages import local_cpus

    agents = tuple(bundle.agent_names)
    nodes = local_cpus() if local else node_cpus()
    # One Ray Data block per batch of inputs: the stages' unit of work (`add_stages`).
    blocks = max(1, -(-len(rows) // config.batch_size))
    plan = plan_stages(nodes, bundle=str(bundle.path), agents=agents, detect=config.detect, all_faces=False,
                       context=(CONTEXT,), face_actors=config.workers or 1,
                       agent_actors=(config.workers,) * len(agents) if config.workers else None,
                       cpus_per_actor=config.cpus_per_actor,
                       batch_size=config.batch_size, max_agent_sets=blocks,
                       keep=("input_index", "status", "reason", context_column(CONTEXT),
                             *(f"{a}_p_fake" for a in agents)))
    items = [{"source": str(p), "input_index": i, "shard": 0} for i, p in enumerate(rows["path"])]
    if local:
        from training.local_stages import run_stages

        ds, batches = None, run_stages(items, plan, blocks=blocks)
    else:
        import ray.data

        from training.batch_stages import add_stages, ray_data_output

        ray_data_output(config.verbose)  # one readable bar (ours) unless --verbose
        ds = add_stages(ray.data.from_items(items, override_num_blocks=blocks), plan)
        batches = ds.iter_batches(batch_size=None, batch_format="pandas")
    parts, arrivals = [], []
    with tqdm(total=len(items), desc="evaluate", unit="img", disable=not config.progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for batch in batches:
            parts.append(batch)
            arrivals.append((time.perf_counter(), len(batch)))
            bar.update(len(batch))
    if config.verbose and ds is not None:
        print(ds.stats(), file=sys.stderr)
    result = pd.concat(parts, ignore_index=True).drop_duplicates("input_index").set_index("input_index")
    if len(result) != len(items):
        raise RuntimeError(f"{len(items) - len(result)} rows came back from Ray Data without a result.")
    return result.sort_index().reset_index(drop=True), arrivals


def score_rows(rows: pd.DataFrame, *, bundle: Bundle, config: EvalConfig,
               fit_description: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each row's status, reason, context and votes: from the vote cache, else from the pipeline.

    Each role's image list is cached on its own (``votes.default_cache_dir()``), so a second
    evaluation of the same data (or another one fitting on the same val split) runs no agent.

    Returns:
        (rows with the pipeline's columns, timing and cache facts for metrics.json).
    """
    from blackboard.ray_runtime import init_ray

    agents = bundle.agent_names
    vote_cols = [f"{a}_p_fake" for a in agents]
    ctx_col = context_column(CONTEXT)
    folder = Path(config.cache_dir) if config.cache_dir else votes_cache.default_cache_dir()
    scored, todo = {}, []
    for role in (EVAL, FIT):
        paths = rows.loc[rows["role"] == role, "path"].tolist()
        if not paths:
            continue
        key = votes_cache.cache_key(bundle, agents, [Path(p) for p in paths], salt=cache_salt(config))
        file = folder / f"eval-{key}.npz"
        cached = votes_cache.load_scored(file, agents=agents, n=len(paths)) if config.use_cache else None
        if cached is None:
            todo.append((role, file, paths))
            continue
        scored[role] = pd.DataFrame({"status": cached["status"].astype(object),
                                     "reason": cached["reason"].astype(object), ctx_col: cached["context"][:, 0],
                                     **dict(zip(vote_cols, cached["votes"].T))})
    n_todo = sum(len(p) for _, _, p in todo)
    print(f"{PROG}: scoring {describe(rows, fit_description)}; {len(rows) - n_todo} from the vote cache in "
          f"{folder}.", file=sys.stderr)
    pipeline_s = 0.0
    if todo:
        from training.local_stages import local_cpus, runs_locally

        paths = [p for _, _, ps in todo for p in ps]
        local = config.in_process if config.in_process is not None else runs_locally(paths, config.ray_address)
        # A small job runs the same stages in this process: no Ray to start (training.local_stages).
        started = False if local else init_ray(config.ray_address)  # loopback-only, token auth when local
        try:
            if local:
                cpus = local_cpus()[0]
            else:
                import ray

                cpus = float(ray.cluster_resources().get("CPU", 1))
            print(f"{PROG}: {n_todo} images to run through the agents on {cpus:g} CPUs "
                  f"({'in this process' if local else 'Ray'}); estimated "
                  f"{_duration(estimate_seconds(paths, config.detect, cpus))}.", file=sys.stderr)
            t0 = time.perf_counter()
            fresh, arrivals = run_pipeline(pd.DataFrame({"path": paths}), bundle=bundle, config=config, local=local)
            pipeline_s = time.perf_counter() - t0
        finally:
            if started:
                import ray

                ray.shutdown()
        offset = 0
        for role, file, paths in todo:
            part = fresh.iloc[offset:offset + len(paths)].reset_index(drop=True)
            offset += len(paths)
            scored[role] = part
            if config.use_cache:
                votes_cache.save_scored(file, agents=agents, votes=part[vote_cols].to_numpy(np.float64),
                                        status=part["status"].tolist(), reason=part["reason"].tolist(),
                                        context=part[[ctx_col]].to_numpy(np.float64), paths=paths)
    out = pd.concat([rows[rows["role"] == role].reset_index(drop=True).join(scored[role])
                     for role in (EVAL, FIT) if role in scored], ignore_index=True)
    for col in vote_cols:
        out[col] = np.where(out["status"] == OK, out[col].astype(np.float64), np.nan)
    timing = {"pipeline_s": round(pipeline_s, 2), "images_scored": n_todo, "images_from_cache": len(rows) - n_todo,
              "images_per_s": round(n_todo / pipeline_s, 2) if pipeline_s > 0 else None}
    if todo and len(arrivals) > 2:
        # Start-up (Ray Data planning, actors loading models) until the first results, then the
        # steady rate from the first results to the last.
        (first, n_first), last = arrivals[0], arrivals[-1][0]
        timing.update(first_results_s=round(first - t0, 2),
                      steady_images_per_s=round((n_todo - n_first) / max(last - first, 1e-9), 2))
    return out, timing


# ----------------------------------------------------------------------------- outputs
def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Runs one evaluation and writes every output; returns the metrics.json content."""
    bundle = load_bundle(config.bundle)
    evaluated, fit, fit_description = resolve_inputs(config)
    rows = pd.concat([evaluated.assign(role=EVAL)] + ([fit.assign(role=FIT)] if fit is not None else []),
                     ignore_index=True)
    scored, timing = score_rows(rows, bundle=bundle, config=config, fit_description=fit_description)
    agents = bundle.agent_names
    vote_cols = [f"{a}_p_fake" for a in agents]
    ev = scored[scored["role"] == EVAL].reset_index(drop=True)
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
    eval_context = ok[context_column(CONTEXT)].to_numpy(dtype=np.float64)
    systems, unavailable, controller = build_systems(
        bundle=bundle,
        votes=eval_votes,
        fit_votes=fit_ok[vote_cols].to_numpy(dtype=np.float64) if fit is not None else None,
        fit_labels=fit_ok["label"].to_numpy(dtype=int) if fit is not None else None,
        fit_description=fit_description,
        context=eval_context,
    )
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
        **score_systems(y, systems, config.bootstrap),
        "unavailable": unavailable,
        "ablation": ablation(y, eval_votes, agents, controller, eval_context),
        "bootstrap": {"n_resamples": config.bootstrap.n_resamples, "confidence": config.bootstrap.confidence,
                      "seed": config.bootstrap.seed},
        "timing": timing,
    }
    # Paths relative to the evaluated folder (or manifest's folder), so the file is portable.
    root = config.data.resolve() if config.data.is_dir() else config.data.resolve().parent
    predictions = pd.DataFrame({"path": [os.path.relpath(p, root) for p in ok["path"]], "label": y})
    for s in systems:
        predictions[s.name] = s.p_fake
    atomic_write_text(config.out / "predictions.csv", predictions.to_csv(index=False))
    write_report(out_dir=config.out, result=result, predictions=predictions, systems=systems,
                 bundle=bundle, controller=controller)
    atomic_write_text(config.out / "metrics.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result


# ----------------------------------------------------------------------------- CLI
def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The `fakeface evaluate` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Score each agent, the baseline combiners and the RL ensemble on one labelled set.",
    )
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the shipped bundle)")
    parser.add_argument("--data", type=Path, required=True,
                        help="manifest CSV (its --split is evaluated) or a folder with real/ and fake/")
    parser.add_argument("--out", type=Path, required=True, help="output directory for metrics, predictions, report")
    parser.add_argument("--split", default="test", help="manifest split to evaluate (default: test)")
    parser.add_argument("--fit-manifest", type=Path, default=None,
                        help="manifest whose --fit-split fits stacking / a missing controller (folder input)")
    parser.add_argument("--fit-split", default="val", help="split used for fitting (default: val)")
    parser.add_argument("--detect", choices=DETECT_MODES, default="auto",
                        help="face detection: auto = images that are face crops already are used whole, "
                             "others are detected and aligned")
    parser.add_argument("--ray-address", default=None, help="Ray cluster address, or 'local' to start a "
                        "local Ray (default: $RAY_ADDRESS, else in this process for small jobs, else a local Ray)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per Ray Data batch")
    parser.add_argument("--workers", type=int, default=0,
                        help="N actors for the face stage and for each agent's own pool (0: one face actor and "
                             "one actor per CPU that runs every agent, as `fakeface batch`)")
    parser.add_argument("--cpus-per-actor", type=float, default=0.0,
                        help="Ray CPUs reserved per actor (0 = the largest share that fits every actor)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray Data's per-operator progress bars and stats instead of one bar")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="vote cache folder (default $FAKEFACE_CACHE/votes or ~/.cache/fakeface/votes)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the vote cache")
    return parser


def main(argv: list[str]) -> int:
    """CLI entry point; returns 0 on success, 2 on a user error (one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        config = EvalConfig(
            data=args.data, out=args.out, bundle=args.bundle, split=args.split,
            fit_manifest=args.fit_manifest, fit_split=args.fit_split, detect=args.detect,
            ray_address=args.ray_address, batch_size=args.batch_size, workers=args.workers,
            cpus_per_actor=args.cpus_per_actor,
            bootstrap=BootstrapConfig(n_resamples=args.bootstrap, seed=args.seed),
            progress=not args.no_progress, verbose=args.verbose or os.environ.get(VERBOSE_ENV) == "1",
            cache_dir=args.cache_dir, use_cache=not args.no_cache,
        )
        result = evaluate(config)
    except (ValueError, OSError) as err:  # EvaluationError, BundleError, config validation, unwritable --out
        print(f"{PROG}: error: {err}", file=sys.stderr)
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
    print(f"Report: {config.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
