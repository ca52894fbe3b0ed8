"""`fakeface fit-ood`: fit the "can't tell" gate's out-of-distribution model into a bundle.

Computes cheap image statistics (`blackboard.ood.crop_features`) of the manifest's train crops,
fits their Mahalanobis distance (Ledoit-Wolf covariance), sets the threshold on the val crops
at ``--false-abstain`` (the share of in-distribution val faces that will be answered
``uncertain``) and stores the model in the bundle as the checksummed JSON extra ``ood``. The
test split is never read. Run it when re-shipping a bundle, after `fakeface fit-controller`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.bundle import BundleError, load_bundle, update_bundle
from vision.faces import whole_image_crop
from blackboard.ood import BUNDLE_FILE, BUNDLE_KEY, OODModel, crop_features, fit_ood_model
from training.cli_args import fit_parser
from training.votes import read_manifest_split, read_rgb

CROP_SIZE = 224  # the agents' crop side (vision.faces.extract_faces' default)
# The defaults of `fit_ood` and of the command's options alike.
FALSE_ABSTAIN_RATE = 0.03  # share of in-distribution val faces the gate may answer uncertain
MAX_TRAIN = 4000  # train crops sampled for the fit
MAX_VAL = 2000  # val crops sampled for the threshold


def build_parser(prog: str = "fakeface fit-ood") -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = fit_parser(prog, __doc__)
    parser.add_argument("--false-abstain", type=float, default=FALSE_ABSTAIN_RATE,
                        help=f"share of val faces allowed to be answered uncertain (default {FALSE_ABSTAIN_RATE})")
    parser.add_argument("--max-train", type=int, default=MAX_TRAIN,
                        help=f"train crops sampled for the fit (default {MAX_TRAIN})")
    parser.add_argument("--max-val", type=int, default=MAX_VAL,
                        help=f"val crops sampled for the threshold (default {MAX_VAL})")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--dry-run", action="store_true", help="fit and report, but do not write the bundle")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def split_features(manifest: str | Path, split: str, limit: int, seed: int) -> tuple[np.ndarray, int]:
    """Statistics of up to ``limit`` crops of one split (a seeded sample); and the unreadable count."""
    if split == "test":
        raise ValueError("The test split is for `fakeface evaluate` only; fit on train, calibrate on val.")
    paths, _ = read_manifest_split(manifest, split)
    order = np.random.default_rng(seed).permutation(len(paths))[:limit]
    crops, unreadable = [], 0
    for i in order:
        rgb = read_rgb(paths[i])
        if rgb is None or min(rgb.shape[:2]) < 8:
            unreadable += 1
            continue
        crops.append(whole_image_crop(rgb, size=CROP_SIZE).crop)
    return crop_features(crops), unreadable


def fit_ood(bundle: str | Path, manifest: str | Path, *, false_abstain_rate: float = FALSE_ABSTAIN_RATE,
            max_train: int = MAX_TRAIN, max_val: int = MAX_VAL, seed: int = 0,
            write: bool = True) -> tuple[OODModel, dict[str, Any]]:
    """Fits the OOD model on train crops, calibrates it on val and (``write``) stores it in the bundle.

    Returns:
        The model and a report (counts, threshold, val abstain rate).

    Raises:
        BundleError: the bundle is missing or damaged.
        ValueError: a bad manifest, an empty split, or too few crops.
    """
    load_bundle(bundle)  # fail on a bad bundle before the slow part
    train, bad_train = split_features(manifest, "train", max_train, seed)
    val, bad_val = split_features(manifest, "val", max_val, seed + 1)
    info = {"manifest": str(manifest), "train_crops": len(train), "val_crops": len(val),
            "unreadable": bad_train + bad_val, "seed": seed}
    model = fit_ood_model(train, val, false_abstain_rate=false_abstain_rate, info=info)
    report = {
        **info,
        "threshold": model.threshold,
        "false_abstain_rate": false_abstain_rate,
        "val_abstain": float(np.mean(model.score_features(val) > model.threshold)),
        "train_abstain": float(np.mean(model.score_features(train) > model.threshold)),
        "written": False,
    }
    if write:
        update_bundle(bundle, extras={BUNDLE_KEY: (BUNDLE_FILE, model.to_json(),
                                                   {"threshold": model.threshold,
                                                    "false_abstain_rate": false_abstain_rate})})
        report["written"] = True
    return model, report


def main(argv: Sequence[str]) -> int:
    """Runs the command; exit 2 for a bad bundle, manifest or arguments."""
    args = build_parser().parse_args(list(argv))
    try:
        _, report = fit_ood(args.bundle, args.manifest, false_abstain_rate=args.false_abstain,
                            max_train=args.max_train, max_val=args.max_val, seed=args.seed, write=not args.dry_run)
    except (BundleError, ValueError) as err:
        print(f"fakeface fit-ood: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"OOD threshold {report['threshold']:.2f}: {report['val_abstain']:.1%} of {report['val_crops']} val "
              f"crops and {report['train_abstain']:.1%} of {report['train_crops']} train crops answered uncertain.")
        print(f"stored in {args.bundle} as extra {BUNDLE_KEY!r}" if report["written"] else "dry run: bundle unchanged")
    return 0
