"""Do the agents' heat maps point at the manipulated region? Measured on self-blended fakes.

Usage:
    python benchmarks/bench_heatmaps.py [--data ../shared/data/dfdc] [--n 32] [--bundle DIR]

Each of ``n`` real DFDC crops (every k-th of ``real/``, sorted, so the run is repeatable) is made
into a synthetic fake by `training.synth.self_blend_with_mask`, whose blend mask is the known
"manipulated" region. For every Keras agent and every one of its convolutions, Grad-CAM of the
fake class is read at that convolution and scored (`vision.heatmap_quality`):

* ``lift``: the map's share of mass inside the mask over the mask's share of the area (a
  uniform map scores 1.0);
* ``lift_other_mask``: the same map scored against another fake's mask: the crops are face
  centred and so are the masks, so a map that merely favours the centre scores well on both;
  a map that follows this face's blend beats it;
* ``pointing``: how often the map's peak is inside the mask, beside ``mask_area`` (what a
  random peak would score);
* ``concentration``: one minus the map's normalised entropy (0 = uniform), on the fakes and on
  the real crops they came from; the serving threshold is `heatmap_quality.MIN_CONCENTRATION`;
* ``corr_fake_vs_its_real``: the correlation of a fake's map with its real crop's (1.0: the
  alteration changed nothing in the map).

An agent's verdict (``localises``) is `heatmap_quality.localises` on the lifts of the layer it is
served with (``served_layer``: its registry declaration or the rule's pick).

The forensic agent has no spatial map (its tile is a per-feature-group chart), so it is not
scored here. Writes benchmarks/results/heatmaps.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from harness import REPO, bench_parser, setup, stamp, write_json

setup(tf_log_level="3")

import numpy as np  # noqa: E402

from agents.command_line import add_bundle_arg  # noqa: E402


def _crops(data: Path, n: int) -> tuple[list[np.ndarray], list[str]]:
    from vision.media import read_image

    files = sorted((data / "real").glob("*.jpg"))
    if len(files) < n:
        raise SystemExit(f"{data / 'real'} holds {len(files)} crops; --n {n} needs at least that many.")
    step = len(files) // n
    chosen = files[::step][:n]
    return [read_image(p) for p in chosen], [str(p.relative_to(data)) for p in chosen]


def _score(maps: np.ndarray, real_maps: np.ndarray, masks: list[np.ndarray]) -> dict[str, float]:
    from vision.heatmap_quality import concentration, mask_lift, pointing_hit

    n = len(maps)
    lifts = [mask_lift(maps[i], masks[i]) for i in range(n)]
    other = [mask_lift(maps[i], masks[(i + 1) % n]) for i in range(n)]
    return {
        "side": int(maps.shape[1]),
        "lift": float(np.nanmean(lifts)),
        "lift_other_mask": float(np.nanmean(other)),
        "lift_beats_other_mask": float(np.nanmean(np.array(lifts) > np.array(other))),
        "pointing": float(np.mean([pointing_hit(maps[i], masks[i]) for i in range(n)])),
        "concentration_fake": float(np.mean([concentration(m) for m in maps])),
        "concentration_real": float(np.mean([concentration(m) for m in real_maps])),
        "empty_maps": int(sum(float(m.max()) <= 0 for m in maps)),
        # A map that follows the alteration differs between a fake and the crop it was made from.
        "corr_fake_vs_its_real": float(np.nanmean([np.corrcoef(f.ravel(), r.ravel())[0, 1]
                                                    for f, r in zip(maps, real_maps) if f.std() > 0 and r.std() > 0])),
    }


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, out="heatmaps.json")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "dfdc"),
                        help="folder with real/*.jpg crops (default: ../shared/data/dfdc beside the checkout)")
    parser.add_argument("--n", type=int, default=32, help="synthetic fakes to make")
    add_bundle_arg(parser)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error(f"--n must be at least 2, received {args.n}.")

    from agents.bundle import load_bundle
    from agents.labels import FAKE_INDEX
    from agents.preprocessing import prepare_batch
    from agents.registry import agent_names, get_agent
    from training.synth import self_blend_with_mask
    from vision.gradcam import conv_stages, grad_cam, target_layer_index
    from vision.heatmap_quality import localises

    reals, names = _crops(Path(args.data), args.n)
    rng = np.random.default_rng(args.seed)
    blended = [self_blend_with_mask(crop, rng) for crop in reals]
    fakes, masks = [f for f, _ in blended], [m for _, m in blended]
    bundle = load_bundle(args.bundle)
    agents = {}
    for agent in bundle.agent_names:
        info = bundle.agent(agent)
        if info.kind != "keras":
            continue
        model = bundle.load_model(agent, runtime="keras")
        x_fake = prepare_batch(fakes, info.preprocessing)
        x_real = prepare_batch(reals, info.preprocessing)
        p_fake = model.predict(x_fake, verbose=0)[:, FAKE_INDEX]
        declared = get_agent(agent).heatmap_layer if agent in agent_names() else None
        served = [name for name, end, _ in conv_stages(model)
                  if end == target_layer_index(model, layer=declared)][0]
        layers = {}
        start = time.perf_counter()
        for conv, _, side in conv_stages(model):
            layers[conv] = _score(grad_cam(model, x_fake, layer=conv), grad_cam(model, x_real, layer=conv), masks)
        agents[agent] = {"input": f"{info.preprocessing.height}x{info.preprocessing.width}",
                         "declared_layer": declared, "served_layer": served,
                         "localises": localises(layers[served]["lift"], layers[served]["lift_other_mask"]),
                         "p_fake_on_synthetic_mean": float(np.mean(p_fake)), "layers": layers,
                         "seconds": round(time.perf_counter() - start, 1)}
        print(agent, served, {m: round(v, 3) for m, v in layers[served].items()},
              "localises" if agents[agent]["localises"] else "does not localise", flush=True)
    result = {**stamp(sys.argv[1:] if argv is None else argv),
              # Relative to the checkout: a record names no machine's paths.
              "data": os.path.relpath(args.data, REPO), "crops": names, "n": args.n, "seed": args.seed,
              "mask_area": float(np.mean([(m >= 0.5).mean() for m in masks])),
              "bundle": str(bundle.path.name), "bundle_version": bundle.version, "agents": agents}
    write_json(args.out, result, hide=("crops",))


if __name__ == "__main__":
    main()
