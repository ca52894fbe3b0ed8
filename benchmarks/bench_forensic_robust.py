"""The forensic agent on degraded faces and on other kinds of fakes: old agent vs new, one run.

Usage:
    python benchmarks/bench_forensic_robust.py \\
        --new-model [NAME=]runs/forensic/work/forensic/forensic.skops [NAME=PATH ...] \\
        [--old-model agents/default_bundle/forensic.skops --old-ref 1825b78] \\
        [--data ../shared/data] [--manifest benchmarks/splits/mixed.csv] [--limit N]

For every dfdc-test crop and every benchmark degradation of `vision.degrade` that is not a
screenshot composition (those need face detection: `fakeface evaluate --degrade`), the
degraded crop is fed as the crop (the agent's contract resizes it to 224 px, as serving does),
and ROC AUC is reported for both agents; so is AUC on the gan-faces and lfw-swaps test splits
(the manifest's `test` rows of those folders). Conditions named ``aligned`` or ``aligned+NAME``
cut the face as serving cuts a detected one (MTCNN landmarks of the clean image, the
degradation on the whole image, then `vision.alignment.align_face`; `training.pipeline_crops`):
a face inside a photo or screenshot reaches the agents that way. The old agent's features are computed by the
feature module of git revision ``--old-ref`` (version 1), loaded from the repository's history,
so both agents see the very same pixels. Features are cached per condition under ``--cache``
(an interrupted run resumes). Results: benchmarks/results/forensic_robust.json.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import REPO, bench_parser, setup, stamp, write_json

setup(tf_log_level="3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


from agents.forensic import TRUSTED_TYPES, load_forensic, skops_io  # noqa: E402
from agents.forensic_features import CONTRACT, image_features  # noqa: E402
from agents.labels import FAKE_INDEX, label_to_index  # noqa: E402
from agents.preprocessing import prepare_image  # noqa: E402
from vision.media import read_image
from vision import degrade  # noqa: E402
from training.pipeline_crops import LandmarkCache, pipeline_crop  # noqa: E402

# Serving's framing (detect + align), clean and under the degradations that hurt most.
ALIGNED = ["aligned", "aligned+jpeg70", "aligned+scale0.5", "aligned+blur1", "aligned+scale1.5"]


def old_feature_module(ref: str):
    """The forensic feature module as it was at git revision ``ref`` (imported from a temp file)."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:agents/forensic_features.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="forensic-old-")) / "forensic_features_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("forensic_features_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def old_estimator(path: Path, version: int):
    """The estimator of an older forensic model file (the current loader refuses other versions)."""
    payload = skops_io().loads(path.read_bytes(), trusted=list(TRUSTED_TYPES))
    if payload.get("feature_version") != version:
        raise ValueError(f"{path} holds feature version {payload.get('feature_version')}, expected {version}.")
    return payload["estimator"]


def features_of(paths: list[str], condition: str, old_fn, workers: int,
                marks: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(old, new) feature matrices of the files under one condition ("clean", a degradation,
    "aligned" or "aligned+<degradation>"; the aligned ones need ``marks`` from `LandmarkCache`)."""

    def one(path: str) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(path)
        aligned = condition.startswith("aligned")
        name = condition.split("+", 1)[1] if "+" in condition else ("clean" if aligned else condition)
        if name != "clean":
            # Seeded by the file, the same for every run and both agents.
            image = degrade.apply(name, image, seed=zlib.crc32(Path(path).name.encode()))
        if aligned:
            image = pipeline_crop(image, *marks[path])
        x = prepare_image(image, CONTRACT)
        return old_fn(x), image_features(x)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pairs = list(pool.map(one, paths))
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def main(argv: list[str] | None = None) -> None:
    from sklearn.metrics import roc_auc_score

    p = bench_parser(__doc__)
    p.add_argument("--new-model", nargs="+", default=[],
                   help="[NAME=]forensic.skops of each new agent (required unless --features-only)")
    p.add_argument("--old-model", type=Path, default=REPO / "agents/default_bundle/forensic.skops")
    p.add_argument("--old-ref", default="1825b78", help="git revision whose features the old model was trained on")
    p.add_argument("--old-version", type=int, default=1)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data")
    p.add_argument("--manifest", type=Path, default=REPO / "benchmarks/splits/mixed.csv")
    p.add_argument("--cache", type=Path, default=Path("runs/forensic/bench-cache"))
    p.add_argument("--limit", type=int, default=None, help="first N dfdc-test crops per class (quick runs)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--features-only", action="store_true",
                   help="only fill the feature cache (e.g. while the new agent is still training)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/forensic_robust.json")
    args = p.parse_args(argv)

    import cv2

    cv2.setNumThreads(1)
    old_features = old_feature_module(args.old_ref)
    if not args.features_only:
        if not args.new_model:
            p.error("--new-model is required (or --features-only)")
        old_model = old_estimator(args.old_model, args.old_version)
        named = [m.split("=", 1) if "=" in m else (f"new{i + 1}" if len(args.new_model) > 1 else "new", m)
                 for i, m in enumerate(args.new_model)]
        new_models = {name: load_forensic(path) for name, path in named}
    meta = pd.read_csv(args.data / "dfdc-test" / "metadata.csv")
    if args.limit:
        meta = meta.groupby("label", group_keys=False).head(args.limit)
    sets = {"dfdc-test": ([str(args.data / "dfdc-test" / p) for p in meta["path"]], meta["label"].tolist())}
    manifest = pd.read_csv(args.manifest)
    manifest_dir = args.manifest.resolve().parent
    for source in ("gan-faces", "lfw-swaps"):
        rows = manifest[(manifest["split"] == "test") & manifest["path"].str.contains(f"/{source}/")]
        sets[source] = ([str((manifest_dir / p).resolve()) for p in rows["path"]], rows["label"].tolist())
    conditions = [("dfdc-test", "clean")] + [("dfdc-test", n) for n in degrade.names() if not degrade.is_composition(n)]
    conditions += [("gan-faces", "clean"), ("lfw-swaps", "clean")]
    conditions += [("dfdc-test", c) for c in ALIGNED] + [("gan-faces", "aligned"), ("lfw-swaps", "aligned")]
    every = sorted({p for paths, _ in sets.values() for p in paths})
    marks = LandmarkCache(args.cache / "landmarks").landmarks(every)

    args.cache.mkdir(parents=True, exist_ok=True)
    results = []
    for data_set, condition in conditions:
        paths, labels = sets[data_set]
        y = np.array([label_to_index(v) for v in labels])
        cache = args.cache / f"{data_set}-{condition}-{len(paths)}.npz"
        start = time.perf_counter()
        if cache.is_file():
            with np.load(cache) as data:
                f_old, f_new = data["old"], data["new"]
        else:
            f_old, f_new = features_of(paths, condition, old_features.image_features, args.workers, marks)
            tmp = cache.with_name(f".{cache.name}.tmp.npz")
            np.savez(tmp, old=f_old, new=f_new)
            os.replace(tmp, cache)
        if args.features_only:
            print(f"{data_set:10s} {condition:10s} n={len(y):5d} features in {time.perf_counter() - start:.0f}s",
                  flush=True)
            continue
        auc = {"old": float(roc_auc_score(y, old_model.predict_proba(f_old)[:, FAKE_INDEX]))}
        auc.update({name: float(roc_auc_score(y, model.predict_features(f_new)[:, FAKE_INDEX]))
                    for name, model in new_models.items()})
        row = {"data": data_set, "condition": condition, "n": int(len(y)),
               **{f"auc_{k}": round(v, 4) for k, v in auc.items()}, "seconds": round(time.perf_counter() - start, 1)}
        results.append(row)
        print(f"{data_set:10s} {condition:17s} n={row['n']:5d}  " + "  ".join(f"{k} {v:.4f}" for k, v in auc.items()),
              flush=True)

    if args.features_only:
        return
    result = {**stamp(argv or sys.argv[1:]),
              "old_model": str(args.old_model), "old_ref": args.old_ref, "new_models": dict(named),
              "note": "degraded crop fed as the crop (contract resizes to 224); compositions excluded",
              "results": results}
    write_json(args.out, result)


if __name__ == "__main__":
    main()
