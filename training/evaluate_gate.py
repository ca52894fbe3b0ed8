"""The ensemble's own "can't tell" in `fakeface evaluate`: the service's uncertainty gate per face.

`fakeface serve` and `fakeface batch` answer ``uncertain`` for a face that is too small, not
face-shaped or far from the training crops (`blackboard.ood.UncertaintyGate`). Evaluate scores
every face regardless, and reports on the side how the ensemble does on the faces it would
have answered (`training.selective`, and per transform with ``--degrade``, where small faces in
phone screenshots are the common case).

`GateStage` runs after the agents, on the crops they saw and the face boxes; it writes the
gate's reason into the ``reason`` column of faces that get a verdict otherwise (status stays
``ok``), so the vote cache keeps it, and it drops the crops before they reach the driver.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Bumped with the salt of the vote cache: votes cached before the gate ran carry no reason.
GATE_SALT = "gate-v1"
GATE_INPUTS = ("face", "box_w", "box_h", "has_face")  # columns the stage needs besides ``keep``


def gate_salt(bundle: Any) -> str:
    """What the cached gate reasons depend on in the bundle: its OOD model (by checksum; `fit-ood`
    replaces it without touching the agents) and the smallest face that gets a verdict."""
    from blackboard.ood import BUNDLE_KEY, MIN_FACE_PX

    extra = bundle.extra(BUNDLE_KEY) or {}
    return f"{GATE_SALT}\0ood={extra.get('sha256', 'none')}\0min_face={MIN_FACE_PX}"


class GateStage:
    """Ray Data stage: the gate's reason for each face (in ``reason``), then only ``keep`` columns.

    Args:
        bundle: bundle directory (its ``ood`` extra, when present, is the statistics model).
        keep: the columns to return.
        threads: CPU threads this actor may use.
    """

    def __init__(self, *, bundle: str | None, keep: tuple[str, ...], threads: int = 1) -> None:
        from agents.bundle import load_bundle
        from blackboard.ood import UncertaintyGate
        from blackboard.worker_threads import limit_threads

        limit_threads(threads)
        self.gate = UncertaintyGate.from_bundle(load_bundle(bundle))
        self.keep = keep

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        reason = np.asarray(batch["reason"], dtype=object).copy()
        faces = np.flatnonzero(np.asarray(batch["has_face"], dtype=bool))
        if len(faces):
            sizes = list(zip(np.asarray(batch["box_w"])[faces], np.asarray(batch["box_h"])[faces]))
            why, _ = self.gate.assess(list(np.asarray(batch["face"])[faces]), sizes)
            for i, text in zip(faces, why):
                reason[i] = text
        out = {k: batch[k] for k in self.keep}
        out["reason"] = reason
        return out


def add_gate_stage(ds: Any, *, bundle: str | None, keep: tuple[str, ...], cpus: float, threads: int) -> Any:
    """Appends `GateStage` (one actor) after the agent stages."""
    from blackboard.stage_plan import add_actor_stage

    return add_actor_stage(ds, GateStage, {"bundle": bundle, "keep": keep, "threads": threads}, actors=1, cpus=cpus)


def uncertain(status: Any, reason: Any) -> np.ndarray:
    """(N,) True for scored faces the gate would answer "uncertain" (status ok, a reason given)."""
    from blackboard.stage_rows import OK

    status = np.asarray(status, dtype=object)
    reason = np.asarray(reason, dtype=object)
    return (status == OK) & np.array([bool(r) and r == r for r in reason], dtype=bool)
