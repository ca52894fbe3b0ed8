"""Static checks of deploy/: no Docker engine or Kubernetes runs here, so validate what can be.

YAML parses, KubeRay objects carry the fields the operator needs, image names, commands and
ports agree across files and with pyproject's `fakeface` script and the CLI's subcommands, and
the image runs as a non-root user.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from fakeface.cli import SUBCOMMANDS

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
GRPC_PORT = 50051
IMAGE = "fakeface:0.1.0"


def _load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _script_name() -> str:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    (name,) = [k for k, v in scripts.items() if v == "fakeface.cli:main"]
    return name


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs with continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "docker" / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _assert_cli_command(argv: list[str]) -> None:
    """`fakeface <subcommand> ...` (possibly behind tini) names a real subcommand."""
    argv = [a for a in argv if a not in ("tini", "--")]
    assert argv[0] == _script_name(), argv
    assert argv[1] in SUBCOMMANDS, f"{argv[1]!r} is not a fakeface subcommand ({sorted(SUBCOMMANDS)})"


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for p in DEPLOY.rglob("*.yaml")))
def test_yaml_parses(path):
    assert _load_all(REPO / path)


def test_dockerfile_image_contract():
    steps = _dockerfile()
    first = [args for word, args in steps if word == "FROM"]
    assert first and first[0].startswith("python:3.11-slim")
    users = [args for word, args in steps if word == "USER"]
    assert users, "the image must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    env = " ".join(args for word, args in steps if word == "ENV")
    assert "KERAS_BACKEND=tensorflow" in env
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "-c constraints.txt" in runs, "dependencies must be pinned with constraints.txt"
    assert "load_bundle(None)" in runs, "the build must verify the default bundle is inside"
    # Numba's cache of the detector's loops is made at build time, in a folder the user may write.
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", env)
    assert cache and "load_loops()" in runs
    owners = re.findall(r"chown -R (\S+) (\S+)", runs)
    assert any(cache.group(1).startswith(path) and owner.split(":")[0] not in ("root", "0") for owner, path in owners)
    copies = " ".join(args for word, args in steps if word == "COPY")
    for needed in ("pyproject.toml", "constraints.txt", "agents/", "vision/", "blackboard/", "training/", "fakeface/"):
        assert needed in copies
    entry = [yaml.safe_load(args) for word, args in steps if word == "ENTRYPOINT"][-1]
    cmd = [yaml.safe_load(args) for word, args in steps if word == "CMD"][-1]
    argv = entry + cmd
    _assert_cli_command(argv)
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert int(argv[argv.index("--port") + 1]) == GRPC_PORT
    exposed = {int(p) for word, args in steps if word == "EXPOSE" for p in args.split()}
    assert GRPC_PORT in exposed
    # The build context is the repository root: the ignore file must keep the package in.
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "**" in ignore and "!agents/" in ignore


@pytest.mark.parametrize("data_root", ["agents/default_bundle", "fakeface/web/static"])
def test_installed_package_ships_every_data_folder(data_root):
    # The image installs the project non-editable: a data folder missing from pyproject's
    # packages (the bundle's controller/, ood/ ...) would be left out of it without an error.
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = [p for p in [REPO / data_root, *(REPO / data_root).rglob("*")]
               if p.is_dir() and p.name != "__pycache__" and any(f.is_file() for f in p.iterdir())]
    assert folders
    for folder in folders:
        package = ".".join(folder.relative_to(REPO).parts)
        assert package in tool["packages"], f"{package} is not in pyproject's packages"
        assert tool["package-data"].get(package), f"{package} has no package-data pattern"


def test_compose_head_two_workers_and_server():
    compose = _load_all(DEPLOY / "docker" / "compose.yaml")[0]
    services = compose["services"]
    head = services["ray-head"]
    assert head["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert (DEPLOY / "docker" / head["build"]["context"] / "pyproject.toml").is_file()
    assert "--head" in head["command"] and "--port=6379" in head["command"]
    workers = [s for name, s in services.items() if name.startswith("ray-worker")]
    assert len(workers) == 2
    for worker in workers:
        assert worker["command"][:2] == ["ray", "start"] and "--address=ray-head:6379" in worker["command"]
        assert worker["image"] == IMAGE
    server = services["server"]
    assert server["image"] == IMAGE
    entry = ["tini", "--", _script_name()]  # the image's ENTRYPOINT
    _assert_cli_command(entry + server["command"])
    assert server["command"][0] == "serve"
    assert f"{GRPC_PORT}:{GRPC_PORT}" in server["ports"]
    assert server["command"][server["command"].index("--ray-address") + 1] == "ray-head:6379"


def _pod_containers(template: dict) -> list[dict]:
    return template["spec"]["containers"]


def _check_ray_pod(template: dict) -> None:
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    for c in _pod_containers(template):
        assert c["image"].startswith("fakeface:")
        assert {"name": "KERAS_BACKEND", "value": "tensorflow"} in c["env"]


def _check_cluster_spec(spec: dict) -> None:
    assert spec["rayVersion"] == "2.60.0"
    head = spec["headGroupSpec"]
    assert "rayStartParams" in head
    _check_ray_pod(head["template"])
    ports = {p["name"]: p["containerPort"] for p in _pod_containers(head["template"])[0]["ports"]}
    assert ports["gcs"] == 6379 and ports["dashboard"] == 8265
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        assert {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams"} <= set(group)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        _check_ray_pod(group["template"])


def test_kuberay_raycluster():
    (cluster,) = _load_all(DEPLOY / "k8s" / "raycluster.yaml")
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    _check_cluster_spec(cluster["spec"])
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    gpu = _pod_containers(groups["gpu"]["template"])[0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == 1 and groups["gpu"]["minReplicas"] == 0


def test_kuberay_rayjob_runs_batch():
    (job,) = _load_all(DEPLOY / "k8s" / "rayjob-batch.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    argv = shlex.split(job["spec"]["entrypoint"])
    _assert_cli_command(argv)
    assert argv[1] == "batch" and "--resume" in argv
    # Every flag the entrypoint passes exists in `fakeface batch`.
    from fakeface.batch_config import build_parser

    known = {s for action in build_parser()._actions for s in action.option_strings}
    assert {a for a in argv if a.startswith("--")} <= known
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    _check_cluster_spec(job["spec"]["rayClusterSpec"])


def test_server_deployment_and_service():
    docs = {d["kind"]: d for d in _load_all(DEPLOY / "k8s" / "server.yaml")}
    deployment, service = docs["Deployment"], docs["Service"]
    assert deployment["apiVersion"] == "apps/v1" and service["apiVersion"] == "v1"
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = _pod_containers(pod)
    assert container["image"] == IMAGE
    _assert_cli_command(["tini", "--", _script_name()] + container["args"])
    args = container["args"]
    assert args[0] == "serve" and args[args.index("--host") + 1] == "0.0.0.0"
    port = int(args[args.index("--port") + 1])
    assert port == GRPC_PORT
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named["grpc"] == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port, probe
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    svc = {p["name"]: p for p in service["spec"]["ports"]}
    assert svc["grpc"]["port"] == GRPC_PORT and svc["grpc"]["targetPort"] == "grpc"


def test_ray_cluster_launcher_config():
    config = _load_all(DEPLOY / "ray" / "cluster.yaml")[0]
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    assert any("g5" in v["node_config"]["InstanceType"] or "gpu" in k for k, v in workers.items())
    assert any(v["max_workers"] > v["min_workers"] for v in workers.values()), "CPU workers must autoscale"
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "-c constraints.txt -e ." in setup
    assert "PLACEHOLDER" in (DEPLOY / "ray" / "cluster.yaml").read_text()


def test_readme_names_every_manifest():
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert path.relative_to(REPO).as_posix() in readme, f"deploy/README.md does not mention {path.name}"
