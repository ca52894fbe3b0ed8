"""Shared fixtures: every fixture is made here, no test needs ../shared."""

from __future__ import annotations

import os

# Set before anything imports keras/ray.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Every local Ray in the tests runs as `fakeface` runs it: loopback only, Ray token auth ON
# (a random token for this session), so the suite proves the product works with auth.
from blackboard.ray_runtime import local_ray_env  # noqa: E402 - must run before anything imports ray

local_ray_env()


# `make test` sets this to a folder its two passes (and their workers) share for the run, so the
# tiny bundle is trained once, not once per process (~15 s each), and signed with one key.
SHARED_ENV = "FAKEFACE_TEST_SHARED"


def shared_once(name: str, make) -> "Path":
    """``make(path)`` run once per ``$FAKEFACE_TEST_SHARED`` folder: the first process makes
    ``name`` there under a lock (into a temporary path, then renamed), the others wait and reuse it.
    Without the variable, each process makes its own in a fresh temporary folder."""
    import tempfile
    from pathlib import Path

    from filelock import FileLock

    shared = os.environ.get(SHARED_ENV)
    if not shared:
        import atexit
        import shutil

        folder = tempfile.mkdtemp(prefix=f"fakeface-test-{name}-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        return make(Path(folder) / name)
    target = Path(shared) / name
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            building = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=shared)) / name
            make(building)
            building.rename(target)
    return target


def _trust_a_throwaway_key() -> None:
    """Every bundle the suite writes is signed with a key made for this run and trusted the way an
    operator's key is (``--trusted-key`` -> ``$FAKEFACE_TRUSTED_KEYS``), never with the project's."""
    from agents.signing import SIGNING_KEY_ENV, TRUSTED_KEYS_ENV, generate_key_pair

    keys = shared_once("keys", lambda path: generate_key_pair(path, "test-signing") and path)
    private, public = keys / "test-signing.key", keys / "test-signing.pub"
    os.environ[SIGNING_KEY_ENV] = str(private)  # bundle writers sign with it (agents.bundle_staging.seal)
    os.environ[TRUSTED_KEYS_ENV] = str(public)  # inherited by the servers and Ray workers tests start


_trust_a_throwaway_key()

from pathlib import Path

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items) -> None:
    """Every test of the end-to-end tier (tests/e2e: real Ray, Serve, gRPC, browser) is `slow`;
    units elsewhere carry the mark themselves when they need several seconds of CPU.

    Modules whose tests use the session's Ray run last (in their order), so the session's Ray
    processes (and their share of the 2 cores, ~0.13 cores idle) are not alive while the other
    tests run; of those, the modules sharing the agent-set ensemble (one Serve application, started
    once) run at the very end, so its idle replica is not alive beside the other modules' replica
    kills (the server's kill test: 36 s in a run without it beside, 58 s in one with it).
    """
    for item in items:
        if "e2e" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.slow)
    for fixture in ("ray_session", "set_ensemble"):
        users = {getattr(item, "module", None) for item in items if fixture in item.fixturenames} - {None}
        items.sort(key=lambda item: getattr(item, "module", None) in users)  # stable: order kept within each part


@pytest.fixture(scope="session")
def face_rgb() -> np.ndarray:
    """A real photograph with one frontal face (scikit-image's astronaut), RGB uint8 512x512."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def face_photo(face_rgb, tmp_path_factory) -> Path:
    """`face_rgb` as a PNG file (read-only: the classify and batch tests take it as an input)."""
    import cv2

    path = tmp_path_factory.mktemp("face-photo") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def face_crop(face_rgb) -> np.ndarray:
    """A 224x224 RGB crop around the astronaut's face."""
    import cv2

    crop = face_rgb[30:250, 120:340]
    return cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA)


def make_tiny_bundle(out_dir: Path, *, seed: int = 0) -> Path:
    """A bundle of the three registered agents at tiny sizes, each trained for one step."""
    import keras

    from agents.bundle import write_bundle
    from agents.preprocessing import prepare_batch
    from agents.registry import agent_names, get_agent

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(8, 64, 64, 3), dtype=np.uint8)
    labels = np.array([0, 1] * 4)
    arts = {}
    for name in agent_names(kind="keras"):
        spec = get_agent(name)
        size = 32
        contract = spec.contract(size)
        kwargs = {"filters": (8, 16)} if name == "custom" else {}
        if name == "lenet":
            kwargs = {"filters": (4, 8), "dense_units": 16}
        model = spec.build(input_size=size, **kwargs)
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
        model.train_on_batch(prepare_batch(images, contract), labels)
        arts[name] = {
            "model": model,
            "preprocessing": contract,
            "temperature": 1.0,
            "threshold": 0.5,
            "threshold_rule": "fixed",
            "val_metrics": {},
            "training": {"data": "random test fixture"},
        }
    write_bundle(out_dir, arts, description={"data": "test fixture"})
    return out_dir


@pytest.fixture(scope="session")
def tiny_bundle() -> Path:
    """Path of a tiny three-agent bundle (session-scoped, shared by the run's processes under
    `make test`: treat as read-only; copy to modify)."""
    return shared_once("tiny-bundle", make_tiny_bundle)


def bundle_with_controller(tiny_bundle: Path, dest: Path) -> Path:
    """A copy of the tiny bundle with a controller (and replay set) fitted on random votes.

    Servers need a controller that feedback can update; the replay set lets the promotion
    guard decide.
    """
    import shutil

    from blackboard.controllers.qtrust import QController
    from blackboard.controllers.store import save_controller
    from blackboard.controllers.store import ReplaySet

    shutil.copytree(tiny_bundle, dest)
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 20)
    votes = np.clip(labels[:, None] * 0.4 + rng.uniform(0, 0.6, size=(40, 3)), 0, 1)
    agents = ["custom", "lenet", "vgg16"]
    save_controller(dest, QController(agents).fit(votes, labels), replay=ReplaySet(tuple(agents), votes, labels))
    return dest


@pytest.fixture
def controlled_bundle(tiny_bundle, tmp_path_factory):
    """Makes copies of the tiny bundle with a fitted controller: ``controlled_bundle()`` -> path."""
    return lambda: bundle_with_controller(tiny_bundle, tmp_path_factory.mktemp("controlled") / "tiny")


def slow_agent_class() -> type:
    """`AgentDeployment` plus a ``set_delay`` knob (defined in a function so Ray ships it by value).

    A test makes one agent slow (to miss a deadline, or to be killed mid-call); a replica that
    Serve starts in place of a dead one comes back with no delay.
    """
    from blackboard.deployments import AgentDeployment

    class SlowAgent(AgentDeployment):
        delay_s = 0.0

        def set_delay(self, seconds: float) -> float:
            self.delay_s = float(seconds)
            return self.delay_s

        async def __call__(self, crops, deadline=None):
            import asyncio

            if len(crops) and self.delay_s > 0:
                await asyncio.sleep(self.delay_s)
            return await super().__call__(crops, deadline)

    return SlowAgent


def slow_set_class() -> type:
    """`AgentSetDeployment` plus ``set_delay(agent, seconds)``: one agent of the set becomes slow."""
    from blackboard.deployments import AgentSetDeployment

    class SlowSet(AgentSetDeployment):
        def set_delay(self, agent: str, seconds: float) -> float:
            import time

            worker = self.workers[agent]
            plain = type(worker).assess

            def slow_assess(requests):
                time.sleep(seconds)  # this agent's thread only: the others vote meanwhile
                return plain(worker, requests)

            worker.assess = slow_assess
            return float(seconds)

    return SlowSet


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray for the whole session (loopback only, token auth on: see above).

    Four logical CPUs on the 2-core CI box: the session ensemble's five replicas take 1.25 and
    batch/evaluate actor pools share the rest. Modules never start or stop Ray themselves.
    """
    import ray

    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, num_cpus=4, log_to_driver=False)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def session_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle with a controller and replay set (read-only: feedback tests roll back)."""
    return bundle_with_controller(tiny_bundle, tmp_path_factory.mktemp("session-bundle") / "tiny")


def _loaded_until_teardown(ens, *, failure: str):
    """A fixture's body for a Ray Serve ensemble: waits for its models (``failure`` if they do not
    load within five minutes), yields it, and shuts it down at teardown whatever happened."""
    with ens:
        assert ens.ready(timeout_s=300), failure
        yield ens


@pytest.fixture(scope="session")
def ensemble(ray_session, session_bundle):
    """THE ensemble of the test session, on Ray Serve, with a delay knob on every agent.

    Started once (four TensorFlow replicas are the slow part) and shared by the ensemble, server
    and web tests. Tests that change it (delays, feedback, killed replicas) put it back.
    """
    from blackboard.ensemble import Ensemble
    from blackboard.config import EnsembleConfig

    class FaultyEnsemble(Ensemble):
        agent_class = slow_agent_class()

    # Layout "agents": one replica per agent, so a test can slow down or kill one agent alone.
    # The default layout ("sets") has its own ensemble: `set_ensemble` below.
    ens = FaultyEnsemble(session_bundle, EnsembleConfig(layout="agents", num_cpus_per_actor=0.25, deadline_s=30.0))
    yield from _loaded_until_teardown(ens, failure="replicas did not load their models")


@pytest.fixture(scope="session")
def set_ensemble(ray_session, session_bundle):
    """An ensemble in the default layout ("sets": every agent in one replica), with a delay knob.

    Started once for the modules that use it (they run one after the other). Tests that kill its
    replica wait for the replacement.
    """
    from blackboard.ensemble import Ensemble
    from blackboard.config import EnsembleConfig

    class FaultySetEnsemble(Ensemble):
        set_class = slow_set_class()

    ens = FaultySetEnsemble(session_bundle, EnsembleConfig(num_cpus_per_actor=0.25, deadline_s=60.0))
    assert ens.config.layout == "sets"
    yield from _loaded_until_teardown(ens, failure="the agent set did not load its models")
