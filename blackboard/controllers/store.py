"""The controller's place in a model bundle: versions, companions, checksums and rollback.

Each fit is stored as version ``N`` (three checksummed bundle extras, saved in one atomic bundle
update so they always belong together)::

    controller/vN.json            the controller table  (extra "controller")
    controller/baselines-vN.json  majority, mean and fitted stacking  (extra "baselines")
    controller/replay-vN.json     held-out labelled val votes for the feedback guard  (extra "replay")

Earlier versions stay in the bundle with their checksums listed in the controller entry's
``history``, so :func:`rollback_controller` can verify and restore a version with its companions.
Bundles written before companions existed (a lone ``controller/v1.json``, schema v1) load as they
are; they simply have no baselines or replay set until ``fakeface fit-controller`` is run again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from agents.bundle import Bundle, BundleError, load_bundle, update_bundle
from agents.errors import ErrorFactory, raised_as, read_verified
from blackboard.combine import Combiner, baselines_from_json
from blackboard.controllers.base import Controller, controller_from_json

CONTROLLER_KEY = "controller"
BASELINES_KEY = "baselines"
REPLAY_KEY = "replay"
REPLAY_SCHEMA = "fakeface-replay"
REFIT_HINT = "run `fakeface fit-controller --bundle DIR --manifest M` to store them"
T = TypeVar("T")


@dataclass(frozen=True)
class ReplaySet:
    """Labelled val votes held out of controller fitting, replayed to judge feedback updates."""

    agents: tuple[str, ...]  # column order of votes
    votes: np.ndarray  # (N, A) calibrated p_fake, NaN = missing
    labels: np.ndarray  # (N,) 0 = real, 1 = fake
    # feature name -> (N,) the faces' context (vision.context), so a context controller is
    # judged in the conditions it was fitted for; empty in sets written before context existed.
    context: dict[str, np.ndarray] = field(default_factory=dict)

    def context_for(self, names: Sequence[str]) -> np.ndarray | None:
        """(N, K) context for the named features, or None when the set lacks one of them."""
        if not names or any(n not in self.context for n in names):
            return None
        return np.stack([np.asarray(self.context[n], dtype=np.float64) for n in names], axis=1)

    def to_json(self) -> bytes:
        """Plain JSON (rounded to 6 digits: far below any AUC difference that matters)."""
        def cell(v: float) -> float | None:
            return None if not np.isfinite(v) else round(float(v), 6)

        obj = {"schema": REPLAY_SCHEMA, "schema_version": 1, "agents": list(self.agents),
               "votes": [[cell(v) for v in row] for row in self.votes], "labels": [int(v) for v in self.labels]}
        if self.context:  # absent otherwise, so sets without context keep their bytes
            obj["context"] = {k: [cell(v) for v in col] for k, col in self.context.items()}
        return json.dumps(obj).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> "ReplaySet":
        """Restores a replay set; refuses other files and ragged tables."""
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("schema") != REPLAY_SCHEMA:
            raise ValueError(f"Not a fakeface replay set (expected schema {REPLAY_SCHEMA}).")
        votes = np.array([[np.nan if v is None else v for v in row] for row in obj["votes"]], dtype=np.float64)
        labels = np.asarray(obj["labels"], dtype=int)
        agents = tuple(str(a) for a in obj["agents"])
        if votes.shape != (len(labels), len(agents)):
            raise ValueError(f"Replay votes {votes.shape} do not match {len(labels)} labels x {len(agents)} agents.")
        context = {str(k): np.array([np.nan if v is None else v for v in col], dtype=np.float64)
                   for k, col in obj.get("context", {}).items()}
        if any(col.shape != labels.shape for col in context.values()):
            raise ValueError(f"Replay context columns do not match its {len(labels)} labels.")
        return cls(agents=agents, votes=votes, labels=labels, context=context)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _history(bundle: Bundle) -> list[dict[str, Any]]:
    entry = bundle.extra(CONTROLLER_KEY)
    return [] if entry is None else list(entry.get("history", []))


def _companion(rel: str, data: bytes) -> dict[str, str]:
    return {"file": rel, "sha256": hashlib.sha256(data).hexdigest()}


def save_controller(bundle_dir: str | os.PathLike[str], controller: Controller, *,
                    baselines: bytes | None = None, replay: ReplaySet | None = None) -> Bundle:
    """Stores the controller (and its companions) as version N+1 and makes it active.

    Args:
        bundle_dir: the bundle, updated atomically.
        controller: a fitted controller whose agents are agents of the bundle.
        baselines: ``blackboard.combine.baselines_to_json`` output, fitted on the same val split.
        replay: held-out val votes for the feedback promotion guard.

    Raises:
        BundleError: the bundle is invalid, or its agents do not include the controller's.
    """
    bundle = load_bundle(bundle_dir)
    if not set(controller.agents) <= set(bundle.agent_names):
        raise BundleError(
            f"Controller agents {controller.agents} are not agents of bundle {bundle.path} ({bundle.agent_names})."
        )
    history = _history(bundle)
    n = max((int(h["n"]) for h in history), default=0) + 1
    data = controller.to_json()
    rel = f"controller/v{n}.json"
    extras: dict[str, tuple[str, bytes, dict[str, Any]]] = {}
    companions: dict[str, dict[str, str]] = {}
    for key, payload in ((BASELINES_KEY, baselines), (REPLAY_KEY, None if replay is None else replay.to_json())):
        if payload is not None:
            crel = f"controller/{key}-v{n}.json"
            extras[key] = (crel, payload, {"n": n, "controller_version": controller.version})
            companions[key] = _companion(crel, payload)
    record = {"n": n, "version": controller.version, "kind": controller.kind, **_companion(rel, data),
              "companions": companions, "saved": _now()}
    fields = {"n": n, "version": controller.version, "kind": controller.kind, "agents": list(controller.agents),
              "fitted_on": dict(controller.fitted_on), "history": history + [record]}
    extras[CONTROLLER_KEY] = (rel, data, fields)
    return update_bundle(bundle_dir, extras=extras)


def _as_bundle(bundle: Bundle | str | os.PathLike[str] | None) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else load_bundle(bundle)


def _parsed(bundle: Bundle, key: str, data: bytes | None, parse: Callable[[bytes], T]) -> T | None:
    """``parse(data)`` of the bundle's extra ``key`` (None when it has none); a file that does not
    parse is a BundleError that names it (a KeyError too: a JSON object without a field it needs)."""
    if data is None:
        return None
    # json.JSONDecodeError is a ValueError.
    with raised_as(BundleError, bundle.extra_path(key), catch=(ValueError, KeyError)):
        return parse(data)


def load_controller(bundle: Bundle | str | os.PathLike[str] | None) -> Controller | None:
    """The bundle's active controller (checksum-verified, any kind), or None when it has none.

    Raises:
        BundleError: the controller file was modified (checksum mismatch) or is not a table.
    """
    bundle = _as_bundle(bundle)
    return _parsed(bundle, CONTROLLER_KEY, bundle.read_extra(CONTROLLER_KEY), controller_from_json)


def _companion_of_active(bundle: Bundle, key: str) -> bytes | None:
    """A companion's bytes when it belongs to the active controller version, else None."""
    entry, active = bundle.extra(key), bundle.extra(CONTROLLER_KEY)
    if entry is None or active is None or int(entry.get("n", -1)) != int(active.get("n", -2)):
        return None
    return bundle.read_extra(key)


def load_baselines(bundle: Bundle | str | os.PathLike[str] | None) -> dict[str, Combiner] | None:
    """Majority, mean and stacking stored with the active controller, or None (older bundles).

    Raises:
        BundleError: the stored file was modified or is not a baselines file.
    """
    bundle = _as_bundle(bundle)
    return _parsed(bundle, BASELINES_KEY, _companion_of_active(bundle, BASELINES_KEY), baselines_from_json)


def load_replay(bundle: Bundle | str | os.PathLike[str] | None) -> ReplaySet | None:
    """The held-out replay votes stored with the active controller, or None (older bundles)."""
    bundle = _as_bundle(bundle)
    return _parsed(bundle, REPLAY_KEY, _companion_of_active(bundle, REPLAY_KEY), ReplaySet.from_json)


def list_controller_versions(bundle: Bundle | str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every stored controller version, oldest first, with ``active`` marking the one in use."""
    bundle = _as_bundle(bundle)
    active = (bundle.extra(CONTROLLER_KEY) or {}).get("file")
    return [{**h, "active": h["file"] == active} for h in _history(bundle)]


def read_controller_file(path: Path, sha256: str, *, error: ErrorFactory, what: str) -> Controller:
    """The controller table stored in ``path``, checked against the ``sha256`` recorded with it.

    Raises:
        error: naming the file, when it cannot be read, was modified after it was stored, or
            holds no controller table.
    """
    data = read_verified(path, sha256, error=error, what=what)
    with raised_as(error, path):
        return controller_from_json(data)


def find_version(versions: Sequence[dict[str, Any]], version: str | int) -> dict[str, Any] | None:
    """The stored record matching a version string ("3-1a2b3c4d"), a number (3) or "v3"."""
    key = str(version)
    matches = [v for v in versions if key in (v["version"], str(v["n"]), f"v{v['n']}")]
    return matches[-1] if matches else None


def read_stored_controller(bundle: Bundle, record: dict[str, Any]) -> Controller:
    """A stored (not necessarily active) controller version, after verifying its checksum."""
    return read_controller_file(bundle.path / record["file"], record["sha256"], error=BundleError,
                                what="stored controller")


def rollback_controller(bundle_dir: str | os.PathLike[str], version: str | int | None = None) -> Bundle:
    """Makes an earlier stored controller active again, with the companions stored beside it.

    Args:
        bundle_dir: the bundle.
        version: a controller version string ("3-1a2b3c4d"), a stored number (3 or "v3"), or
            None for the version saved before the active one.

    Raises:
        BundleError: no such version, or one of its files was modified.
    """
    bundle = load_bundle(bundle_dir)
    versions = list_controller_versions(bundle)
    if not versions:
        raise BundleError(f"Bundle {bundle.path} has no controller to roll back; run `fakeface fit-controller`.")
    if version is None:
        active = [i for i, v in enumerate(versions) if v["active"]]
        idx = (active[0] if active else len(versions)) - 1
        if idx < 0:
            raise BundleError(f"Bundle {bundle.path}: the active controller is the oldest; nothing to roll back to.")
        target = versions[idx]
    else:
        target = find_version(versions, version)
        if target is None:
            known = ", ".join(f"v{v['n']} ({v['version']})" for v in versions)
            raise BundleError(f"Bundle {bundle.path} has no controller version {version!r}; stored: {known}.")
    controller = read_stored_controller(bundle, target)
    data = read_verified(bundle.path / target["file"], target["sha256"], error=BundleError, what="stored controller")
    n = int(target["n"])
    extras: dict[str, tuple[str, bytes, dict[str, Any]]] = {}
    for key, comp in dict(target.get("companions", {})).items():
        extras[key] = (comp["file"], read_verified(bundle.path / comp["file"], comp["sha256"], error=BundleError,
                                                   what=f"stored {key}"),
                       {"n": n, "controller_version": target["version"]})
    fields = {"n": n, "version": target["version"], "kind": controller.kind, "agents": list(controller.agents),
              "fitted_on": dict(controller.fitted_on),
              "history": [{k: v for k, v in h.items() if k != "active"} for h in versions], "rolled_back": _now()}
    extras[CONTROLLER_KEY] = (target["file"], data, fields)
    return update_bundle(bundle_dir, extras=extras)
