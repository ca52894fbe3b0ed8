"""How often the "can't tell" gate abstains, and what that does to accuracy on what it answers.

Usage:
    python benchmarks/bench_ood.py [--bundle B] [--manifest benchmarks/splits/dfdc.csv]
        [--videos ../shared/data/videos/fake] [--out benchmarks/results/ood.json]

The bundle's OOD model is used when it has one; otherwise one is fitted in memory on the
manifest's train/val splits (`training.fit_ood`, nothing written). Held-out data: the manifest's
test split (as `--detect off` would see it: each crop whole), scored with the bundle's agents and
controller; out-of-domain inputs: whole video frames squashed to a crop, uniform noise, 16x16
images, flat images and non-face natural pictures from scikit-image.
"""

from __future__ import annotations

from pathlib import Path

from harness import REPO, bench_parser, now, setup, write_json

setup(tf_log_level="3")

import numpy as np  # noqa: E402


def out_of_domain(videos: Path) -> dict[str, list[tuple[np.ndarray, tuple[float, float]]]]:
    """Named sets of (crop, face box size) as the service would see them with --detect off."""
    import cv2
    from skimage import data

    from vision.faces import whole_image_crop
    from vision.media import sample_frames

    def whole(img):
        c = whole_image_crop(np.ascontiguousarray(img))
        return c.crop, (c.box[2], c.box[3])

    rng = np.random.default_rng(0)
    rooms = [whole(f.rgb) for v in sorted(videos.glob("*.mp4")) for f in sample_frames(v, fps=1.0)]
    scenes = [whole(getattr(data, name)()) for name in ("coffee", "rocket", "chelsea", "hubble_deep_field",
                                                         "immunohistochemistry", "retina", "cat", "colorwheel")]
    gray = [np.asarray(getattr(data, name)()) for name in ("camera", "coins", "page", "text", "moon", "horse")]
    gray = [whole(cv2.cvtColor(g.astype(np.uint8) * (255 if g.dtype == bool else 1), cv2.COLOR_GRAY2RGB))
            for g in gray]
    return {
        "room_frames_squashed": rooms,
        "uniform_noise_224": [whole(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(50)],
        "tiny_16x16": [whole(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(20)],
        "flat_colour": [whole(np.full((224, 224, 3), rng.integers(0, 256, 3), np.uint8)) for _ in range(20)],
        "natural_non_face": scenes + gray,
    }


def main() -> None:
    from sklearn.metrics import accuracy_score

    from agents.bundle import load_bundle
    from blackboard.controllers.store import load_controller
    from blackboard.decision import context_for, decide
    from vision.faces import whole_image_crop
    from blackboard.ood import UncertaintyGate, load_ood
    from training.fit_ood import fit_ood
    from training.votes import collect_votes, read_manifest_split, read_rgb

    parser = bench_parser(__doc__, out="ood.json")
    parser.add_argument("--bundle", default=str(REPO / "agents/default_bundle"), help="bundle (default: shipped)")
    parser.add_argument("--manifest", default=str(REPO / "benchmarks/splits/dfdc.csv"), help="split manifest")
    parser.add_argument("--videos", default=str(REPO.parent / "shared/data/videos/fake"), help="videos folder")
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    model = load_ood(bundle)
    source = "bundle"
    if model is None:
        model, _ = fit_ood(args.bundle, args.manifest, write=False)
        source = "fitted in memory on the manifest's train/val (bundle has none)"
    gate = UncertaintyGate(model)
    paths, labels = read_manifest_split(args.manifest, "test")
    votes = collect_votes(bundle, paths, progress=False)
    ok = np.all(np.isfinite(votes), axis=1)
    controller = load_controller(bundle)
    crops = [whole_image_crop(read_rgb(path)).crop for path, keep in zip(paths, ok) if keep]
    decided = decide({a: votes[ok, j] for j, a in enumerate(bundle.agent_names)}, controller,
                     context=context_for(controller, crops), explain=False)
    p = np.asarray(decided.p_fake)
    threshold = 0.5 if controller is None else float(controller.threshold)
    pred = (p >= threshold).astype(int)
    y = labels[ok]
    reasons, scores = gate.assess(crops, [(224.0, 224.0)] * len(crops))
    answered = np.array([not r for r in reasons])
    result = {
        "created": now(),
        "bundle": str(args.bundle), "ood_model": source, "ood_threshold": model.threshold,
        "false_abstain_rate_on_val": model.false_abstain_rate,
        "test_split": {
            "crops": int(len(y)),
            "abstain_rate": round(float(1 - answered.mean()), 4),
            "accuracy_all": round(float(accuracy_score(y, pred)), 4),
            "accuracy_answered": round(float(accuracy_score(y[answered], pred[answered])), 4),
            "accuracy_abstained": (round(float(accuracy_score(y[~answered], pred[~answered])), 4)
                                   if (~answered).any() else None),
        },
        "out_of_domain": {},
    }
    for name, items in out_of_domain(Path(args.videos)).items():
        why, _ = gate.assess([c for c, _ in items], [s for _, s in items])
        result["out_of_domain"][name] = {"inputs": len(items), "abstain_rate": round(float(np.mean([bool(w) for w in why])), 4)}
    write_json(args.out, result, echo=True)


if __name__ == "__main__":
    main()
