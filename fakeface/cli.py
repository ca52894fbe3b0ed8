"""Thin `fakeface` dispatcher.

Each subcommand lives with the code it drives and exposes two functions:
``build_parser(prog: str) -> argparse.ArgumentParser`` and ``main(argv: list[str]) -> int``.
Modules are imported lazily so ``fakeface --help`` and light subcommands do not pay for
TensorFlow, Ray or gRPC start-up.
"""

from __future__ import annotations

import importlib
import os
import sys

# subcommand -> (module, one-line help). Nested commands ("dataset build") are handled by the
# module itself.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "dataset": ("training.dataset_cli", "build face-crop datasets: `fakeface dataset build ...`"),
    "train": ("training.train_cli", "train agents from a manifest into a model bundle"),
    "fit-controller": ("training.fit_controller", "learn the controller's trust table on val"),
    "promote-feedback": ("training.promote_feedback", "operator: promote a controller from the feedback log"),
    "fit-ood": ("training.fit_ood", "fit the \"can't tell\" (out-of-distribution) gate into a bundle"),
    "evaluate": ("training.evaluate", "score the ensemble against each single model"),
    "batch": ("fakeface.batch", "classify folders/videos as a Ray Data batch job"),
    "serve": ("fakeface.serve.cli", "run the gRPC detector service"),
    "classify": ("fakeface.classify", "classify images, screenshots or videos"),
    "feedback": ("fakeface.feedback_cli", "tell a running server that one of its answers is wrong"),
    "bundle": ("fakeface.bundle_cli", "sign and verify model bundles: `fakeface bundle keygen|sign|verify`"),
}


def _usage() -> str:
    lines = ["usage: fakeface [--version] <command> [options] [--verbose]", "", "commands:"]
    for name, (_, text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<15} {text}")
    lines.append("")
    lines.append("Run `fakeface <command> --help` for a command's options (defaults shown).")
    lines.append("--verbose (any command) also shows the libraries' logs: TensorFlow, Ray, gRPC, warnings.")
    lines.append("--trusted-key PUB (any command, repeatable) also trusts bundles signed by that ed25519 public key;")
    lines.append("--allow-unsigned (any command) loads an unsigned or wrongly signed bundle, with a warning.")
    return "\n".join(lines)


def _bundle_trust(argv: list[str]) -> list[str]:
    """Takes ``--trusted-key PUB`` and ``--allow-unsigned`` out of ``argv`` into the environment.

    Every command that loads a bundle reads them there (`agents.signing.TrustPolicy.from_env`),
    and so do the Ray workers it starts, which inherit the environment.

    Raises:
        ValueError: ``--trusted-key`` without a path, or naming no file.
    """
    from agents.signing import ALLOW_UNSIGNED_ENV, TRUSTED_KEYS_ENV

    rest, keys = [], []
    args = iter(argv)
    for arg in args:
        if arg == "--allow-unsigned":
            os.environ[ALLOW_UNSIGNED_ENV] = "1"
        elif arg == "--trusted-key" or arg.startswith("--trusted-key="):
            path = arg.partition("=")[2] if "=" in arg else next(args, "")
            if not path or not os.path.isfile(path):
                raise ValueError(f"--trusted-key {path or '(missing)'}: no such file; pass an ed25519 public key (PEM).")
            keys.append(os.path.abspath(path))
        else:
            rest.append(arg)
    if keys:
        known = [p for p in os.environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if p]
        os.environ[TRUSTED_KEYS_ENV] = os.pathsep.join(known + keys)
    return rest


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fakeface")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    """Dispatches to a subcommand module and returns its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    try:
        argv = _bundle_trust(argv)
    except ValueError as err:
        print(f"fakeface: {err}", file=sys.stderr)
        return 2
    if verbose:  # commands with progress of their own (batch, evaluate) then show Ray Data's instead
        os.environ["FAKEFACE_VERBOSE"] = "1"
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"fakeface {_version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"fakeface: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    # Keras must see its backend before the first import; TensorFlow is the default here
    # because MTCNN only runs on it.
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from fakeface.logs import quiet_third_party

    quiet_third_party(verbose)  # before TensorFlow, Ray and gRPC are imported: they read it then
    module = importlib.import_module(SUBCOMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:
        print("fakeface: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
