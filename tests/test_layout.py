"""The project imports from this repository with the design card's layout."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["agents", "blackboard", "training", "fakeface"])
def test_package_imports_from_this_repo(package):
    module = importlib.import_module(package)
    assert Path(module.__file__).resolve().parent == REPO / package


def test_proto_is_not_a_package():
    # `proto` is proto-plus's import name (Ray pulls it in); ours holds .proto files only.
    assert not (REPO / "proto" / "__init__.py").exists()


def test_imports_flow_one_way():
    """agents <- blackboard <- training <- fakeface: no lower layer imports a higher one."""
    layers = ["agents", "blackboard", "training", "fakeface"]
    for i, layer in enumerate(layers):
        higher = layers[i + 1:]
        for path in (REPO / layer).rglob("*.py"):
            if "rpc" in path.parts and path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            text = path.read_text()
            for other in higher:
                pattern = rf"^\s*(from|import)\s+{other}\b"
                assert not re.search(pattern, text, flags=re.M), (
                    f"{path.relative_to(REPO)} imports {other}, a higher layer"
                )
