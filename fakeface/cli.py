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
    "batch": ("training.batch", "classify folders/videos as a Ray Data batch job"),
    "serve": ("blackboard.serve_cli", "run the gRPC detector service"),
    "classify": ("blackboard.classify_cli", "classify images, screenshots or videos"),
}


def _usage() -> str:
    lines = ["usage: fakeface [--version] <command> [options] [--verbose]", "", "commands:"]
    for name, (_, text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<15} {text}")
    lines.append("")
    lines.append("Run `fakeface <command> --help` for a command's options (defaults shown).")
    lines.append("--verbose (any command) also shows the libraries' logs: TensorFlow, Ray, gRPC, warnings.")
    return "\n".join(lines)


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
    from blackboard.logs import quiet_third_party

    quiet_third_party(verbose)  # before TensorFlow, Ray and gRPC are imported: they read it then
    module = importlib.import_module(SUBCOMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:
        print("fakeface: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
