"""Promoted controllers that outlive the process: kept next to the feedback log, not in the bundle.

The bundle is what was fitted and shipped (and may be signed), so an operator's promotion from
feedback is not written into it. It goes into a folder beside the feedback log::

    controller-state/state.json          which version is live, and every promotion/rollback
    controller-state/<version>.json      each promoted controller table (checksum in state.json)

Every file is written with `agents.atomic` (the table first, then ``state.json``), so a crash
leaves either the old state or the new one. On start the server reloads the live version when
``state.json`` was written for the same bundle version; a state written for another bundle is
ignored with a warning (its controllers may weigh other models).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from agents.atomic import atomic_write_bytes
from blackboard.controllers.base import Controller
from blackboard.controllers.store import read_controller_file

log = logging.getLogger("fakeface.server")
SCHEMA = "fakeface-controller-state"
STATE_FILE = "state.json"
FOLDER = "controller-state"


class StateError(ValueError):
    """The state folder cannot be used as asked (unknown version, modified file)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def state_folder_for(feedback_log: str | os.PathLike[str]) -> Path:
    """The state folder that belongs to a feedback log (its sibling ``controller-state``)."""
    return Path(feedback_log).parent / FOLDER


class ControllerState:
    """The live promoted controller and its history, for one bundle version; thread-safe.

    Args:
        folder: where ``state.json`` and the promoted tables live (created when needed).
        bundle_version: the serving bundle's version; a state of another bundle is not reloaded.
        base_version: the bundle's own controller version ("rollback to the bundle" target).
    """

    def __init__(self, folder: str | os.PathLike[str], bundle_version: str, base_version: str) -> None:
        self.folder = Path(folder)
        self.bundle_version = str(bundle_version)
        self.base_version = str(base_version)
        self._lock = threading.Lock()
        self.active: str = self.base_version
        self.history: list[dict[str, Any]] = []
        self._read()

    def _read(self) -> None:
        path = self.folder / STATE_FILE
        if not path.is_file():
            return
        try:
            obj = json.loads(path.read_bytes())
        except (OSError, json.JSONDecodeError) as err:
            raise StateError(f"{path} is not readable JSON ({err}); move it aside to start from the bundle's "
                             "controller") from err
        if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
            raise StateError(f"{path} is not a fakeface controller state (expected schema {SCHEMA}).")
        if obj.get("bundle_version") != self.bundle_version:
            log.warning("controller state belongs to another bundle; serving the bundle's own controller",
                        extra={"fields": {"path": str(path), "state_bundle": obj.get("bundle_version"),
                                          "bundle": self.bundle_version}})
            return
        self.active = str(obj.get("active") or self.base_version)
        self.history = list(obj.get("history", []))

    def _write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"schema": SCHEMA, "schema_version": 1, "bundle_version": self.bundle_version,
                           "base_version": self.base_version, "active": self.active,
                           "history": self.history}, indent=2, sort_keys=True).encode()
        atomic_write_bytes(self.folder / STATE_FILE, data)

    def _record(self, version: str) -> dict[str, Any] | None:
        promoted = [h for h in self.history if h.get("event") == "promote" and h.get("version") == version]
        return promoted[-1] if promoted else None

    def load(self, version: str | None = None) -> Controller | None:
        """The stored table of ``version`` (default: the active one), checksum-verified; None
        when that version is the bundle's own controller.

        Raises:
            StateError: the version is unknown here, or its file is missing or was modified.
        """
        version = self.active if version is None else version
        if version == self.base_version:
            return None
        record = self._record(version)
        if record is None:
            known = [self.base_version] + [h["version"] for h in self.history if h.get("event") == "promote"]
            raise StateError(f"Unknown controller version {version!r}; known: {', '.join(known)}.")
        return read_controller_file(self.folder / record["file"], record["sha256"], error=StateError,
                                    what="promoted controller")

    def promote(self, controller: Controller, detail: dict[str, Any]) -> dict[str, Any]:
        """Stores ``controller`` and makes it the live version; returns the history record."""
        with self._lock:
            data = controller.to_json()
            name = f"{controller.version}.json"
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.folder / name, data)  # the table first: state.json never names a missing file
            record = {"event": "promote", "version": controller.version, "file": name,
                      "sha256": hashlib.sha256(data).hexdigest(), "previous": self.active, "time": _now(), **detail}
            self.history.append(record)
            self.active = controller.version
            self._write()
            return record

    def rollback(self, version: str) -> Controller | None:
        """Makes a known version live again (the bundle's own: returns None); persists it.

        Raises:
            StateError: unknown version, or its stored table was modified.
        """
        with self._lock:
            controller = self.load(version)
            self.history.append({"event": "rollback", "version": version, "previous": self.active, "time": _now()})
            self.active = version
            self._write()
            return controller

    def versions(self) -> list[dict[str, Any]]:
        """The bundle's own version then every promoted one, with ``active`` marking the live one."""
        out = [{"version": self.base_version, "source": "bundle", "active": self.active == self.base_version}]
        for h in self.history:
            if h.get("event") == "promote":
                out.append({**h, "source": "feedback", "active": self.active == h["version"]})
        return out
