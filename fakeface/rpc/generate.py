"""Regenerates the Python gRPC code from ``proto/`` (the one place the command lives).

Run from anywhere: ``python -m fakeface.rpc.generate``. It is equivalent to, from the repo root::

    python -m grpc_tools.protoc -Ifakeface/rpc=proto --python_out=. --grpc_python_out=. \
        --pyi_out=. proto/fakeface/v1/detector.proto

The ``-Ifakeface/rpc=proto`` mapping makes protoc see the file as
``fakeface/rpc/fakeface/v1/detector.proto``, so the generated modules import each other by
package path (``from fakeface.rpc.fakeface.v1 import detector_pb2``) and land under
``fakeface/rpc/``. ``proto/`` itself never becomes a Python package (``proto`` is
proto-plus's import name). ``tests/unit/fakeface/test_rpc_codegen.py`` regenerates into a temporary directory
and fails when the committed files differ.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
# .proto files, relative to proto/.
PROTO_FILES = ("fakeface/v1/detector.proto",)
# Where protoc's virtual path for PROTO_ROOT points: the generated package prefix.
PACKAGE_PREFIX = "fakeface/rpc"


def protoc_args(out_dir: Path) -> list[str]:
    """The protoc command line (without the program name) writing under ``out_dir``."""
    out = str(out_dir)
    return [
        f"-I{PACKAGE_PREFIX}={PROTO_ROOT}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        *(str(PROTO_ROOT / name) for name in PROTO_FILES),
    ]


def generated_files(out_dir: Path) -> list[Path]:
    """Paths of every generated module under ``out_dir`` (a repo root or a temp dir)."""
    paths = []
    for name in PROTO_FILES:
        stem = Path(PACKAGE_PREFIX) / Path(name).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            paths.append(out_dir / stem.parent / f"{stem.name}{suffix}")
    return paths


def generate(out_dir: Path = REPO) -> list[Path]:
    """Runs protoc (from grpcio-tools) and returns the generated files.

    Args:
        out_dir: output root; the files land in ``out_dir/blackboard/rpc/...``.

    Raises:
        RuntimeError: when protoc reports an error (its message is included).
    """
    out_dir = Path(out_dir)
    for name in PROTO_FILES:
        (out_dir / PACKAGE_PREFIX / name).parent.mkdir(parents=True, exist_ok=True)
    # A child process: grpc_tools' bundled protoc crashes when TensorFlow's own protobuf
    # library is already loaded in the calling process (e.g. in the test suite).
    proc = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *protoc_args(out_dir)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"protoc failed (exit {proc.returncode}) for {', '.join(PROTO_FILES)}: {proc.stderr.strip()}")
    return generated_files(out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakeface.rpc.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO, help="output root (default: the repository)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
