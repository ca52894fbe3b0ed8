"""The repository keeps the design card's layout: one room per concern, imports flowing one way.

agents (the classifiers) <- vision (pixels in, faces out) <- blackboard (the case engine and its
learning) <- training / fakeface (training and evaluation; every front door). These checks read
the source with `ast`, so they see imports inside functions too.
"""

from __future__ import annotations

import ast
import graphlib
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["agents", "vision", "blackboard", "training", "fakeface"]
# A package may import only packages of a lower rank (training and fakeface share a rank and
# never import each other: the CLI reaches training's commands by module name).
RANK = {"agents": 0, "vision": 1, "blackboard": 2, "training": 3, "fakeface": 3}
MAX_LINES = 400
# Modules still over MAX_LINES, each to be split along its concerns; the list may only shrink.
OVER_LIMIT: set[str] = set()
# The only __main__ outside fakeface/: a watchdog process the Ray runtime starts by path.
SCRIPTS = {"blackboard/ray_reaper.py"}


def _sources() -> dict[str, Path]:
    """Module name -> file, for every hand-written module of the project's packages."""
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")) or "default_bundle" in path.parts:
                continue
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


SOURCES = _sources()


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (type-only imports run never)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every project import that runs, in a file."""
    found = []
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in RANK:
                found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] in RANK]
    return found


def _target(module: str, name: str) -> str:
    """The module an import statement depends on (a submodule when the name is one)."""
    return f"{module}.{name}" if f"{module}.{name}" in SOURCES else module


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_from_this_repo(package):
    module = importlib.import_module(package)
    assert Path(module.__file__).resolve().parent == REPO / package


def test_proto_is_not_a_package():
    # `proto` is proto-plus's import name (Ray pulls it in); ours holds .proto files only.
    assert not (REPO / "proto" / "__init__.py").exists()


def test_imports_flow_one_way():
    for name, path in SOURCES.items():
        own = name.split(".")[0]
        for module, _, line in _imports(path):
            other = module.split(".")[0]
            assert other == own or RANK[other] < RANK[own], (
                f"{path.relative_to(REPO)}:{line} imports {module}: {own} may not import {other}"
            )


def test_no_import_circles():
    graph = graphlib.TopologicalSorter()
    for name, path in SOURCES.items():
        deps = {_target(m, n) for m, names, _ in _imports(path) for n in (names or [""])}
        graph.add(name, *(d for d in deps if d != name and d in SOURCES))
    try:
        graph.prepare()
    except graphlib.CycleError as err:
        pytest.fail(f"modules import each other in a circle: {' -> '.join(err.args[1])}")


def test_modules_stay_small():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in SOURCES.values()}
    over = {f for f, n in sizes.items() if n > MAX_LINES}
    assert over <= OVER_LIMIT, f"modules over {MAX_LINES} lines: {sorted(over - OVER_LIMIT)}"
    fixed = OVER_LIMIT - over
    assert not fixed, f"now within {MAX_LINES} lines, drop from OVER_LIMIT: {sorted(fixed)}"


def test_no_re_export_shims():
    """A name imported from another project module must be used where it is imported; callers
    import it from the module that defines it (package __init__ files may import submodules)."""
    for name, path in SOURCES.items():
        tree = ast.parse(path.read_text())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        used |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in RANK):
                continue
            for alias in node.names:
                local = alias.asname or alias.name
                if f"{node.module}.{alias.name}" in SOURCES and path.name == "__init__.py":
                    continue  # a package importing its submodules (e.g. to register them)
                assert local in used, (
                    f"{path.relative_to(REPO)}:{node.lineno} imports {alias.name} from "
                    f"{node.module} without using it: import it from its own module instead"
                )


def test_front_doors_live_in_fakeface():
    scripts = {str(p.relative_to(REPO)) for p in SOURCES.values()
               if re.search(r'^if __name__ == "__main__":', p.read_text(), flags=re.M)}
    outside = {s for s in scripts if not s.startswith("fakeface/")} - SCRIPTS
    assert not outside, f"entry points outside fakeface/: {sorted(outside)}"
    from fakeface.cli import SUBCOMMANDS

    for command, (module, _) in SUBCOMMANDS.items():
        assert module in SOURCES, f"`fakeface {command}` points at a missing module {module}"
        assert module.split(".")[0] in ("fakeface", "training"), (command, module)
    for name in SOURCES:
        if name.startswith("training."):
            text = SOURCES[name].read_text()
            for word in ("grpc", "fastapi", "uvicorn", "ray.serve"):
                assert not re.search(rf"^\s*(from|import) {re.escape(word)}\b", text, flags=re.M), (
                    f"{name} imports {word}: training/ holds nothing that serves"
                )


def test_test_files_have_unique_names():
    # pytest imports each test file by its base name (tests/ has no __init__.py, so the e2e
    # helpers import as plain modules); two files of one name stop the whole run at collection.
    seen: dict[str, Path] = {}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        assert path.name not in seen, f"{path.relative_to(REPO)} has the name of {seen[path.name].relative_to(REPO)}"
        seen[path.name] = path


def test_every_module_is_imported_by_a_unit_test():
    # A module reached only end to end fails there with its cause buried under Ray and Serve;
    # each one is imported by a unit test (tests/unit/<package>/, usually test_<module>.py), or
    # is listed in REACHED_BY with the test that drives it. Packages' __init__ are left out.
    imported: set[str] = set()
    for path in (REPO / "tests" / "unit").rglob("test_*.py"):
        for module, names, _ in _imports(path):
            imported |= {module, *(f"{module}.{name}" for name in names)}
    untested = sorted(name for name, path in SOURCES.items()
                      if path.name != "__init__.py" and name not in imported and name not in REACHED_BY)
    assert not untested, f"modules no unit test imports (add one, or say in REACHED_BY what drives them): {untested}"
    for module, test in REACHED_BY.items():
        assert module in SOURCES and (REPO / test).is_file(), (module, test)


# Modules no unit test imports, and the test that drives them instead (the why beside each).
REACHED_BY = {
    "fakeface.batch": "tests/e2e/test_batch.py",  # `fakeface batch`: its options unit-tested in batch_config
    "fakeface.serve.cli": "tests/e2e/test_serve_start.py",  # `fakeface serve` started as a process
    "training.train_cli": "tests/unit/training/test_training.py",  # `fakeface train` through fakeface.cli.main
    "training.callbacks": "tests/unit/training/test_training.py",  # the training loop's callbacks (resume, stop)
    "blackboard.ray_reaper": "tests/unit/blackboard/test_ray_reaper.py",  # a watchdog started by path
    # Ray Serve's wrappers of blackboard.workers' plain classes (unit-tested in test_workers.py) and
    # the applications built from them: what they add is Ray Serve itself.
    "blackboard.deployments": "tests/e2e/test_deployments.py",
    "blackboard.serve_apps": "tests/e2e/test_ensemble.py",
}
