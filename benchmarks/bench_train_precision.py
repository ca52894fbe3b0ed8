"""Training throughput of the bundle's Keras agents under each precision policy, on this machine.

`make bundle` trains VGG-16-BN with `--precision auto`: bfloat16 where a GPU or the CPU computes it
(AVX-512 BF16, AMX), float32 elsewhere, because a CPU without those instructions emulates
bfloat16 and trains many times slower. This measures that choice where it runs: one short
`fakeface train` per (agent, policy), each in its own process as a user runs it, on a
group-preserving sample of the mixed split's train images (64 px, batch 64, `make bundle`'s
agent options apart from the serving cut, which needs the landmark pass), and reads the trainer's
own images per second (first epoch's graph tracing included) and the policy `auto` resolved to.

    PYTHONPATH=. python benchmarks/bench_train_precision.py [--images 1024] [--bf16-images 384]

Emulated bfloat16 is slow enough that its run gets fewer images (``--bf16-images``); the float32
run is repeated on as few, so each ratio compares runs of one size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, bench_parser, setup, stamp, write_json

setup()

from training.precision import BF16_FLAGS, cpu_flags  # noqa: E402

VGG = ["--vgg16-batch-norm", "--vgg16-width", "0.5"]


def train_once(agent: str, policy: str, images: int, manifest: Path, work: Path) -> dict[str, object]:
    """One epoch of ``agent`` under ``policy`` on ``images`` train images; the trainer's numbers."""
    out = work / f"{agent}-{policy}-{images}"
    cmd = [sys.executable, "-c", "import sys; from fakeface.cli import main; sys.exit(main())", "train",
           "--manifest", str(manifest), "--agents", agent, *(VGG if agent == "vgg16" else []),
           "--input-size", f"{agent}=64", "--precision", policy, "--out", str(out),
           "--optimizer", "adam", "--lr", "1e-3", "--epochs", "1", "--batch-size", "64",
           "--max-train-images", str(images), "--max-val-images", "128", "--workers", "2", "--keep-work"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    meta = json.loads((out.with_name(out.name + ".work") / agent / "meta.json").read_text())["training"]
    return {"agent": agent, "requested": policy, "policy": meta.get("precision_policy", policy),
            "train_images": images, "images_per_second": meta["train_images_per_second"],
            "train_seconds": meta["train_seconds"], "wall_seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str]) -> None:
    parser = bench_parser(__doc__, out="train_precision.json")
    parser.add_argument("--manifest", type=Path, default=REPO / "benchmarks" / "splits" / "mixed.csv")
    parser.add_argument("--images", type=int, default=1024, help="train images per float32 run")
    parser.add_argument("--bf16-images", type=int, default=384, help="train images per bfloat16 run")
    parser.add_argument("--agents", default="vgg16,custom,lenet")
    args = parser.parse_args(argv)

    native = sorted(BF16_FLAGS & cpu_flags())
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-train-precision-") as tmp:
        for agent in args.agents.split(","):
            runs.append(train_once(agent, "float32", args.images, args.manifest, Path(tmp)))
            if agent == "vgg16":  # the agent `make bundle` trains with `auto`
                for policy in ("float32", "mixed_bfloat16", "auto"):
                    runs.append(train_once(agent, policy, args.bf16_images, args.manifest, Path(tmp)))
            print(json.dumps(runs[-1]), flush=True)
    lines = ["| agent | requested | policy | train images | img/s (first epoch, tracing included) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['agent']} | {r['requested']} | {r['policy']} | {r['train_images']} | {r['images_per_second']} |"
              for r in runs]
    text = "\n".join(lines)
    print(text)
    write_json(args.out, {**stamp(argv), "cpu_bf16_flags": native, "runs": runs}, markdown=text)


if __name__ == "__main__":
    main(sys.argv[1:])
