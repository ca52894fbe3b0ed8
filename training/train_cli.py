"""`fakeface train`: train agents from a manifest into a model bundle."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agents.registry import agent_names
from training.calibrate import THRESHOLD_RULES
from training.precision import PRECISIONS


def _key_values(items: list[str], flag: str, cast) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"{flag} takes AGENT=VALUE, received {item!r}.")
        key, value = item.split("=", 1)
        out[key.strip()] = cast(value)
    return out


def _agent_options(items: list[str]) -> dict[str, dict]:
    """Parses AGENT:FIELD=VALUE into {agent: {field: value}}, casting by TrainConfig's field types."""
    from training.train import TrainConfig

    casts = {"int": int, "float": float, "str": str, "bool": lambda v: v.lower() in ("1", "true", "yes"),
             "int | None": lambda v: None if v.lower() == "none" else int(v)}
    out: dict[str, dict] = {}
    for item in items:
        if ":" not in item or "=" not in item:
            raise ValueError(f"--agent-option takes AGENT:FIELD=VALUE, received {item!r}.")
        agent, rest = item.split(":", 1)
        key, value = rest.split("=", 1)
        field = TrainConfig.__dataclass_fields__.get(key)
        if field is None or key in ("overrides", "agent_kwargs", "input_sizes"):
            raise ValueError(f"--agent-option: unknown option {key!r} in {item!r}.")
        cast = casts.get(str(field.type), str)
        out.setdefault(agent.strip(), {})[key] = cast(value)
    return out


def build_parser(prog: str = "fakeface train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Train agents on a manifest's train split (early "
                                "stopping on val), calibrate them on val and write a model bundle.")
    p.add_argument("--manifest", required=True, help="manifest.csv from `fakeface dataset build`")
    p.add_argument("--agents", default=",".join(agent_names()), help="comma-separated agent names (default: all)")
    p.add_argument("--out", required=True, help="bundle directory to write (replaced atomically)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=["rmsprop", "adam"], default="rmsprop")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    p.add_argument("--patience", type=int, default=4, help="early-stopping patience (epochs) on val ROC AUC")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="learning-rate schedule over --epochs")
    p.add_argument("--no-cache", action="store_true",
                   help="read the image files every epoch instead of a decoded, resized cache in OUT.work/")
    p.add_argument("--threshold-rule", default="f0.5", help=f"one of {', '.join(THRESHOLD_RULES)}")
    p.add_argument("--synth-fakes", type=float, default=0.0, metavar="RATIO",
                   help="extra self-blended fakes per real training image (e.g. 0.5)")
    p.add_argument("--no-augment", action="store_true", help="turn train-time augmentation off")
    p.add_argument("--no-class-weights", action="store_true")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="Keras policy; auto: bfloat16 where a GPU or the CPU (AVX-512 BF16, AMX) computes it, "
                        "else float32 (emulated bfloat16 is many times slower)")
    p.add_argument("--input-size", action="append", default=[], metavar="AGENT=SIZE",
                   help="square input size for an agent, e.g. vgg16=64 (repeatable)")
    p.add_argument("--agent-option", action="append", default=[], metavar="AGENT:FIELD=VALUE",
                   help="per-agent override of a training option, e.g. vgg16:learning_rate=1e-4 or "
                        "custom:precision=mixed_bfloat16 (repeatable)")
    p.add_argument("--backbone-weights", default="none", help="vgg16 conv base: imagenet | none | PATH")
    p.add_argument("--trainable-blocks", type=int, default=None,
                   help="vgg16: train only the last N of 5 conv blocks (0 freezes the base)")
    p.add_argument("--vgg16-batch-norm", action="store_true",
                   help="vgg16: VGG-16-BN (BatchNorm after each of its 13 convolutions, He init) for "
                        "training from scratch; needs --backbone-weights none")
    p.add_argument("--vgg16-width", type=float, default=1.0,
                   help="with --vgg16-batch-norm: a factor on every convolution's filters (0.5 halves them)")
    p.add_argument("--max-train-images", type=int, default=None, help="cap train images (whole groups kept)")
    p.add_argument("--max-val-images", type=int, default=None)
    p.add_argument("--storage-dtype", choices=["float32", "float16"], default="float32",
                   help="weights precision in the bundle files (float16 halves the size)")
    p.add_argument("--workers", type=int, default=2, help="image reader threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default=None,
                   help="where per-agent checkpoints and finished agents live (default: OUT.work next to "
                        "--out); runs that share it reuse each other's finished agents")
    p.add_argument("--keep-work", action="store_true",
                   help="keep OUT.work/ (per-agent checkpoints, finished agents, image caches) afterwards; "
                        "without it the folder is removed once the bundle is written. A rerun of the same "
                        "command resumes from OUT.work/ either way while it exists")
    p.add_argument("--description", default="", help="JSON object describing the training data (stored in the bundle)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    manifest_path = Path(args.manifest)
    if not manifest_path.is_file():
        print(f"fakeface train: manifest {manifest_path} not found; build one with `fakeface dataset build`.",
              file=sys.stderr)
        return 2
    try:
        agents = [a.strip() for a in args.agents.split(",") if a.strip()]
        unknown = [a for a in agents if a not in agent_names()]
        if unknown:
            raise ValueError(f"unknown agent(s) {unknown}; known: {', '.join(agent_names())}")
        description = json.loads(args.description) if args.description else {}
        vgg_kwargs = {"backbone_weights": args.backbone_weights, "trainable_blocks": args.trainable_blocks}
        if args.vgg16_batch_norm:
            if args.backbone_weights != "none":
                raise ValueError("--vgg16-batch-norm trains from scratch; it takes no --backbone-weights "
                                 f"(received {args.backbone_weights!r})")
            vgg_kwargs["batch_norm"] = True
            if args.vgg16_width != 1.0:
                vgg_kwargs["width"] = args.vgg16_width
        elif args.vgg16_width != 1.0:
            raise ValueError("--vgg16-width applies to --vgg16-batch-norm only")
        from training.train import TrainConfig  # heavy import (Keras) after argument checks

        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, learning_rate=args.lr,
            patience=args.patience, lr_schedule=args.lr_schedule, cache=not args.no_cache,
            threshold_rule=args.threshold_rule, synth_fakes=args.synth_fakes,
            augment=not args.no_augment, class_weights=not args.no_class_weights, precision=args.precision,
            max_train_images=args.max_train_images, max_val_images=args.max_val_images, workers=args.workers,
            seed=args.seed, input_sizes=_key_values(args.input_size, "--input-size", int),
            agent_kwargs={"vgg16": vgg_kwargs}, overrides=_agent_options(args.agent_option),
        )
        for name in config.overrides:
            if name not in agents:
                raise ValueError(f"--agent-option names agent {name!r}, which is not being trained")
            config.for_agent(name)
    except (ValueError, json.JSONDecodeError) as err:
        print(f"fakeface train: {err}", file=sys.stderr)
        return 2

    from training.dataset import read_manifest
    from training.train import train_bundle

    try:
        manifest = read_manifest(manifest_path)
    except (ValueError, KeyError, OSError) as err:
        print(f"fakeface train: cannot read manifest {manifest_path}: {err}", file=sys.stderr)
        return 2
    description = {"manifest": str(manifest_path), "n_rows": int(len(manifest)), **description}
    try:
        bundle = train_bundle(manifest, agents, args.out, config, description=description,
                              storage_dtype=args.storage_dtype, keep_work=args.keep_work, work_dir=args.work_dir)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"fakeface train: {err}", file=sys.stderr)
        return 2
    print(f"bundle written to {bundle.path} (version {bundle.version})")
    for name in bundle.agent_names:
        info = bundle.agent(name)
        m = info.val_metrics
        print(f"  {name:<8} val AUC {m.get('auc', float('nan')):.4f}  acc {m.get('accuracy', float('nan')):.4f}  "
              f"T={info.temperature:.3f}  threshold={info.threshold:.3f} ({info.threshold_rule})")
    return 0
