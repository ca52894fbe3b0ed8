"""`fakeface evaluate`: score every agent, every baseline combiner and the RL ensemble on one set.

The evaluated images and (when available) the val images used to fit stacking and a missing
controller go through one Ray Data pipeline::

    paths -> map_batches(FaceStage)           read, detect/crop (MTCNN when needed)
          -> map_batches(AgentPredictor) x A  one actor pool per agent, p_fake column each
          -> pandas                            votes (N, A) per role ("eval" / "fit")

Nothing is ever fitted on the evaluated split: stacking and a missing controller are fitted on
the manifest's val split (or ``--fit-manifest``), and an overlap of fitting and evaluated
images is refused. Outputs (all written atomically) go to ``--out``: metrics.json,
predictions.csv, no_face.csv, report.md and its PNGs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agents.bundle import Bundle, load_bundle
from agents.labels import CLASSES, label_to_index
from agents.predictor import AgentPredictor
from blackboard.decision import case_context
from blackboard.media import IMAGE_EXTENSIONS
from training.metrics import BootstrapConfig, score_systems
from training.systems import ablation, build_systems
from training.report import atomic_write_text, write_report

PROG = "fakeface evaluate"
DETECT_MODES = ("auto", "on", "off")
# Role of a row in the pipeline: scored, or only used to fit stacking / the controller.
EVAL, FIT = "eval", "fit"
CONTEXT_COLUMN = "ctx_blur"  # blackboard.decision's "blur" context of each crop
FACE_CROP_SIZE = 224  # blackboard.faces.extract_faces' default crop side
STATUS_OK, STATUS_NO_FACE, STATUS_UNREADABLE = "ok", "no_face", "unreadable"


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
    ray_address: str | None = None  # Ray cluster address; None = start a local Ray
    batch_size: int = 32  # images per Ray Data batch
    workers: int = 0  # max actors per stage (0 = half the cluster CPUs, at least 1)
    cpus_per_actor: float = 0.5  # fractional, so all stages fit on a 2-CPU machine
    bootstrap: BootstrapConfig = BootstrapConfig()  # intervals and the paired test
    progress: bool = True  # Ray Data progress bars

    def __post_init__(self) -> None:
        if self.detect not in DETECT_MODES:
            raise EvaluationError(f"--detect must be one of {DETECT_MODES}, received {self.detect!r}.")
        if self.batch_size < 1:
            raise EvaluationError(f"--batch-size must be positive, received {self.batch_size}.")
        if self.workers < 0:
            raise EvaluationError(f"--workers must be >= 0, received {self.workers}.")
        if not 0 < self.cpus_per_actor <= 16:
            raise EvaluationError(f"--cpus-per-actor must be in (0, 16], received {self.cpus_per_actor}.")


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
def crop_size_for(bundle: Bundle) -> int:
    """Side of the square crops the pipeline carries: 224 (the face module's crop size, what the
    service and batch jobs hand the agents), or the largest agent input if that is larger.

    Every row leaves the face stage at this size, so Ray moves fixed-shape tensors, and each
    agent then resizes from it with its own contract, as at training time. A 224x224 DFDC crop
    passes through unchanged.
    """
    sizes = [max(bundle.agent(a).preprocessing.height, bundle.agent(a).preprocessing.width) for a in bundle.agent_names]
    return int(max([FACE_CROP_SIZE, *sizes]))


class FaceStage:
    """Ray Data callable class: path -> one RGB face crop (or a status saying why there is none).

    Mode "auto" is `blackboard.faces.extract_faces`' rule, shared with serving and batch jobs:
    an image that is already a face crop (crop-shaped, and no face or one large face found) is
    used whole, exactly as the agents saw their training crops; anything else is detected and
    aligned. The detector is loaded on first need, so "off" never pays for MTCNN.

    Args:
        detect: "auto", "on" (always detect and align) or "off" (always the whole image).
        crop_size: side of the square crop emitted for every row.
    """

    def __init__(self, *, detect: str, crop_size: int) -> None:
        self.detect = detect
        self.crop_size = int(crop_size)
        self._detector = None

    def _detector_for(self, mode: str):
        from blackboard.faces import FaceDetector

        if mode != "off" and self._detector is None:
            self._detector = FaceDetector()
        return self._detector

    def _one(self, path: str) -> tuple[str, str, int, np.ndarray]:
        from blackboard.faces import ImageError, extract_faces, read_image

        blank = np.zeros((self.crop_size, self.crop_size, 3), dtype=np.uint8)
        try:
            rgb = read_image(path)
        except (ImageError, OSError) as err:
            return STATUS_UNREADABLE, str(err).replace("\n", " "), 0, blank
        mode = self.detect
        try:
            faces = extract_faces(rgb, self._detector_for(mode), mode=mode, size=self.crop_size)
        except ValueError as err:  # e.g. a 1-pixel image, or landmarks admitting no alignment
            return STATUS_UNREADABLE, str(err).replace("\n", " "), 0, blank
        if not faces:
            return STATUS_NO_FACE, f"no face found in {rgb.shape[1]}x{rgb.shape[0]} image (detect={mode})", 0, blank
        # One decision per image: extract_faces puts the most confident face first.
        return STATUS_OK, "", len(faces), np.asarray(faces[0].crop, dtype=np.uint8)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [self._one(str(p)) for p in batch["path"]]
        out = {k: v for k, v in batch.items()}
        out["status"] = np.array([r[0] for r in results], dtype=object)
        out["detail"] = np.array([r[1] for r in results], dtype=object)
        out["n_faces"] = np.array([r[2] for r in results], dtype=np.int32)
        out["face"] = np.stack([r[3] for r in results]) if results else np.zeros(
            (0, self.crop_size, self.crop_size, 3), dtype=np.uint8)
        # Case context a controller may read (blackboard.decision), from the crop the agents see.
        out[CONTEXT_COLUMN] = case_context(list(out["face"]), ("blur",))[:, 0]
        return out


def _ensure_ray(address: str | None) -> bool:
    """Connects to Ray unless already connected; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    try:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False)
    except Exception as err:  # noqa: BLE001  Ray raises a bare Exception on start-up timeouts
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise EvaluationError(f"could not start or reach {where}: {err} Retry, or pass --ray-address of a "
                              "running cluster.") from None
    return True


def run_pipeline(rows: pd.DataFrame, *, bundle: Bundle, config: EvalConfig) -> pd.DataFrame:
    """Runs face extraction and every agent over ``rows`` (path, label, role) with Ray Data.

    Returns:
        rows plus status, detail, n_faces and ``{agent}_p_fake`` (NaN where no face), in input order.
    """
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = config.progress
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    workers = config.workers or max(1, cpus // 2)

    def pool() -> ray.data.ActorPoolStrategy:
        return ray.data.ActorPoolStrategy(min_size=1, max_size=workers)

    items = rows.reset_index(drop=True).assign(row=np.arange(len(rows)))
    ds = ray.data.from_pandas(items[["row", "path", "label", "role"]])
    ds = ds.map_batches(
        FaceStage,
        fn_constructor_kwargs={"detect": config.detect, "crop_size": crop_size_for(bundle)},
        batch_size=config.batch_size,
        batch_format="numpy",
        compute=pool(),
        num_cpus=config.cpus_per_actor,
    )
    for agent in bundle.agent_names:
        ds = ds.map_batches(
            AgentPredictor,
            fn_constructor_args=(str(bundle.path), agent),
            fn_constructor_kwargs={"batch_size": config.batch_size},
            batch_size=config.batch_size,
            batch_format="numpy",
            compute=pool(),
            num_cpus=config.cpus_per_actor,
        )
    keep = ["row", "status", "detail", "n_faces", CONTEXT_COLUMN] + [f"{a}_p_fake" for a in bundle.agent_names]
    result = ds.select_columns(keep).to_pandas().sort_values("row").set_index("row")
    out = items.set_index("row").join(result, how="left")
    if out["status"].isna().any():
        raise RuntimeError(f"{int(out['status'].isna().sum())} rows came back from Ray Data without a result.")
    for agent in bundle.agent_names:
        col = f"{agent}_p_fake"
        out[col] = np.where(out["status"] == STATUS_OK, out[col].astype(np.float64), np.nan)
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------- outputs
def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Runs one evaluation and writes every output; returns the metrics.json content."""
    bundle = load_bundle(config.bundle)
    evaluated, fit, fit_description = resolve_inputs(config)
    rows = pd.concat([evaluated.assign(role=EVAL)] + ([fit.assign(role=FIT)] if fit is not None else []),
                     ignore_index=True)
    started = _ensure_ray(config.ray_address)
    t0 = time.perf_counter()
    try:
        scored = run_pipeline(rows, bundle=bundle, config=config)
    finally:
        if started:
            import ray

            ray.shutdown()
    pipeline_s = time.perf_counter() - t0
    agents = bundle.agent_names
    vote_cols = [f"{a}_p_fake" for a in agents]
    ev = scored[scored["role"] == EVAL].reset_index(drop=True)
    ok = ev[ev["status"] == STATUS_OK].reset_index(drop=True)
    config.out.mkdir(parents=True, exist_ok=True)
    missing = ev[ev["status"] != STATUS_OK][["path", "label", "status", "detail"]].rename(columns={"status": "reason"})
    atomic_write_text(config.out / "no_face.csv", missing.to_csv(index=False))
    if ok.empty:
        raise EvaluationError(f"No face was found in any of the {len(ev)} evaluated images; see {config.out / 'no_face.csv'}.")
    fit_ok = scored[(scored["role"] == FIT) & (scored["status"] == STATUS_OK)]
    y = ok["label"].to_numpy(dtype=int)
    eval_votes = ok[vote_cols].to_numpy(dtype=np.float64)
    eval_context = ok[CONTEXT_COLUMN].to_numpy(dtype=np.float64)
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
            "n_no_face": int((ev["status"] == STATUS_NO_FACE).sum()),
            "n_unreadable": int((ev["status"] == STATUS_UNREADABLE).sum()),
            "n_images": int(len(ev)),
            "detect": config.detect,
        },
        "fit": {"source": fit_description, "n": int(len(fit_ok)),
                "n_no_face": int(((scored["role"] == FIT) & (scored["status"] != STATUS_OK)).sum())},
        "bundle": {"path": str(config.bundle) if config.bundle else "default", "version": bundle.version,
                   "agents": agents},
        **score_systems(y, systems, config.bootstrap),
        "unavailable": unavailable,
        "ablation": ablation(y, eval_votes, agents, controller, eval_context),
        "bootstrap": {"n_resamples": config.bootstrap.n_resamples, "confidence": config.bootstrap.confidence,
                      "seed": config.bootstrap.seed},
        "timing": {"pipeline_s": round(pipeline_s, 2), "images_per_s": round(len(rows) / max(pipeline_s, 1e-9), 2)},
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
    parser.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per Ray Data batch")
    parser.add_argument("--workers", type=int, default=0, help="max actors per stage (0 = half the CPUs)")
    parser.add_argument("--cpus-per-actor", type=float, default=0.5, help="CPUs reserved per actor")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--no-progress", action="store_true", help="hide Ray Data progress bars")
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
            progress=not args.no_progress,
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
