"""Starting (or joining) Ray the one safe way: loopback only, token auth on, nothing left behind.

Every command that runs the models in-process (`serve`, `classify`, `batch`, `evaluate`) and the
tests start Ray through `init_ray`. A Ray it starts itself (no address, ``RAY_ADDRESS`` unset):

* listens on 127.0.0.1 only: GCS, raylet, workers and agents (Ray binds every port to the node
  address, which is loopback when clusters are switched off), and runs no dashboard and no
  prestarted idle worker;
* runs only the processes one node serving itself needs (`LeanHeadNode`): no autoscaler monitor
  (nothing to scale to), no log monitor (worker logs are not sent to the driver) and no
  dashboard head (with the dashboard off it only reported usage statistics, which are off too),
  ~300 MiB resident less (issue 26). GCS, raylet, the dashboard agent (metrics, health) and the
  runtime-env agent run as usual;
* requires Ray's token authentication (``RAY_AUTH_MODE=token``): a fresh random token is made
  for this process and its children (``RAY_AUTH_TOKEN``) unless you export your own
  (``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``); ``RAY_AUTH_MODE=disabled`` is respected as an
  explicit opt-out;
* is reaped when this process dies, even by SIGKILL (`blackboard.ray_reaper`);
* takes no fixed port: the two Ray servers that had one (the autoscaler's and the dashboard's
  metrics, 44217 and 44227) are not started, and every other Ray port is picked free by the OS
  from its ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by
  default), so a ``--port`` / ``--http-port`` / ``--metrics-port`` below that range never meets
  a Ray port. The ports are logged once Ray is up (logger ``fakeface.ray``).

Joining a cluster (``--ray-address`` or ``RAY_ADDRESS``) changes none of these settings: the
cluster's own token and TLS settings apply (see deploy/README.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENVS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
# Ray's switch for multi-node support on a laptop OS; "0" makes the node address loopback on Linux too.
CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

log = logging.getLogger("fakeface.ray")
_reaper: subprocess.Popen | None = None


def local_ray_env() -> None:
    """Sets the environment a loopback-only, token-protected local Ray reads (before ``ray.init``)."""
    os.environ.setdefault(AUTH_MODE_ENV, "token")
    if os.environ[AUTH_MODE_ENV].lower() == "token" and not any(os.environ.get(k) for k in AUTH_TOKEN_ENVS):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ[CLUSTER_ENV] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Every Ray process (daemons, Serve replicas) inherits this: glibc's per-thread arenas held
    # freed memory in each of a replica's many threads (agents, detector, gRPC); two arenas cut
    # the agent replica's peak under an 8-client soak by ~130 MiB (issue 26, BENCHMARKS.md).
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    if "ray._private.ray_constants" in sys.modules:  # imported before the variable was set
        sys.modules["ray._private.ray_constants"].ENABLE_RAY_CLUSTER = False
    if "ray._raylet" in sys.modules:
        # Ray caches its config at import; reload it so the auth mode set above is seen.
        sys.modules["ray._raylet"].Config.initialize("")


def _children() -> set[int]:
    """This process's direct children (the Ray processes ``ray.init`` starts are among them)."""
    import psutil

    return {child.pid for child in psutil.Process().children()}


def _own_signal_handlers() -> dict[int, Any]:
    """The Python handlers of SIGTERM/SIGINT set by this program (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    out = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(sig)
        if callable(handler) and handler is not signal.default_int_handler:
            out[sig] = handler
    return out


def init_ray(address: str | None = None, *, num_cpus: int | None = None, **kwargs: Any) -> bool:
    """Joins ``address`` (default ``$RAY_ADDRESS``) or starts a loopback-only, authenticated local Ray.

    Args:
        address: a Ray cluster address, "local" or None (``$RAY_ADDRESS``, else local).
        num_cpus: CPUs of a local Ray (default: all).
        **kwargs: more `ray.init` arguments.

    Returns:
        True when this call initialised Ray (the caller owns it and shuts it down), False when
        Ray was already initialised in this process.
    """
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    local = address == "local"
    if local:
        local_ray_env()
    import ray

    if ray.is_initialized():
        return False
    kwargs.setdefault("log_to_driver", False)
    kwargs.setdefault("logging_level", logging.WARNING)
    if local:
        if sys.platform.startswith("linux"):
            # Before ray.init: a SIGTERM or kill -9 during start-up must not leave Ray behind.
            _start_reaper(_children())
        handlers = _own_signal_handlers()
        # No worker started ahead for this driver: Serve's controller and replicas are actors with
        # workers of their own, so the prestarted one only sat idle (85 MiB resident; issue 26).
        system_config = {"prestart_worker_first_driver": False, **kwargs.pop("_system_config", {})}
        with lean_head_node():
            ray.init(address="local", include_dashboard=False, num_cpus=num_cpus, _system_config=system_config,
                     **kwargs)
        # ray.init replaces SIGTERM's handler with one that exits at once; the caller's (a drain) wins.
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        log.info("local Ray started", extra={"fields": {"ports": local_ray_ports()}})
    else:
        ray.init(address=address, **kwargs)
    return True


@contextlib.contextmanager
def lean_head_node() -> Iterator[None]:
    """While inside, a head node that ``ray.init`` starts is a `LeanHeadNode` (Ray's own otherwise).

    ``ray.init`` offers no switch for the autoscaler monitor, the log monitor or the dashboard
    head (``ray start`` has the first two, never the third), and it looks its node class up when
    it starts one, so the class is swapped for that call only.
    """
    from ray._private import node as ray_node

    base = ray_node.Node

    class LeanHeadNode(base):  # type: ignore[misc, valid-type]
        """Ray's head node without the processes an embedded one-node Ray never uses.

        If a later Ray renames what is overridden here, the node simply starts them again.
        """

        def __init__(self, ray_params: Any, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("head"):
                ray_params.no_monitor = True  # the autoscaler: one fixed node, nothing to scale
                ray_params.include_log_monitor = False  # it only streams worker logs to drivers
            super().__init__(ray_params, *args, **kwargs)

        def start_api_server(self, **_: Any) -> None:
            """No dashboard head: ``include_dashboard=False`` left it reporting usage stats only."""

    ray_node.Node = LeanHeadNode
    try:
        yield
    finally:
        ray_node.Node = base


def _start_reaper(old_children: set[int]) -> None:
    """Starts `blackboard.ray_reaper` watching this process and every child it starts from now on."""
    global _reaper
    if _reaper is not None:
        _reaper.poll()  # collects the exit status of an earlier session's reaper
    script = Path(__file__).with_name("ray_reaper.py")
    _reaper = subprocess.Popen(
        [sys.executable, str(script), str(os.getpid()), *map(str, sorted(old_children))],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def local_ray_ports() -> dict[str, int]:
    """The ports the local Ray node listens on, by role (for the log, and for an operator's firewall)."""
    import ray

    node = next((n for n in ray.nodes() if n.get("Alive")), {})
    out = {"gcs": int(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1])}
    for key, name in (("NodeManagerPort", "raylet"), ("ObjectManagerPort", "object_manager"),
                      ("MetricsExportPort", "metrics_export"), ("RuntimeEnvAgentPort", "runtime_env_agent")):
        if node.get(key):
            out[name] = int(node[key])
    return out


# Set on Serve replicas of a loopback-only Ray (see `bind_serve_replica_to_loopback`).
SERVE_LOOPBACK_ENV = "FAKEFACE_SERVE_LOOPBACK"


def ray_is_loopback_only() -> bool:
    """True when every live node of the connected Ray listens on 127.0.0.1 (the embedded local Ray)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return bool(nodes) and all(n.get("NodeManagerAddress") == "127.0.0.1" for n in nodes)


def bind_serve_replica_to_loopback() -> None:
    """Makes this Serve replica's inter-deployment gRPC port listen on 127.0.0.1, not on every interface.

    Ray Serve (2.60) binds each replica's own gRPC server to ``[::]:0`` whatever the node address,
    so a replica of the embedded, loopback-only Ray would still listen on the network (token-checked,
    but reachable). Called from a replica's constructor, before Serve starts that server, when the
    blackboard set `SERVE_LOOPBACK_ENV` (only for a loopback-only Ray: a real cluster's replicas must
    be reachable from the other nodes).
    """
    if os.environ.get(SERVE_LOOPBACK_ENV) != "1":
        return
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "_fakeface_loopback", False):
        return

    def loopback(server: Any, address: str) -> int:
        return original(server, address.replace("[::]:", "127.0.0.1:", 1))

    loopback._fakeface_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = loopback


# ------------------------------------------------- extra local nodes (scaling benchmarks, tests)
def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held together while chosen, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def node_args(temp_dir: str, *, num_cpus: int = 1) -> list[str]:
    """`ray start --block` arguments for one more node on this machine: its own temp dir and
    fixed free ports for every agent (two nodes on one host would otherwise race for Ray's defaults)."""
    grpc, listen, runtime_env, metrics, manager, objects = free_ports(6)
    return [f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}", "--disable-usage-stats", "--block",
            f"--dashboard-agent-grpc-port={grpc}", f"--dashboard-agent-listen-port={listen}",
            f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
            f"--node-manager-port={manager}", f"--object-manager-port={objects}"]


def stop_node(proc: subprocess.Popen) -> None:
    """Stops one `ray start --block` process group: SIGTERM (Ray cleans up), then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass  # SIGKILL below
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything the group left behind
    except ProcessLookupError:
        pass  # the group is gone already
    proc.wait()
