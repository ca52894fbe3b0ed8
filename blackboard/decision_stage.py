"""The decision stage of `fakeface batch`: the agents' votes of each face combined into a verdict.

The same rules as the service: the bundle's controller (the mean of the votes when it has
none), its borderline band, and the uncertainty gate. Drops the face crops, so that only small
columns travel back to the driver.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blackboard.stage_rows import row_contexts
from blackboard.worker_threads import limit_threads


class DecisionStage:
    """Combines the agents' votes with the bundle's controller (mean of votes if it has none).

    Drops the face crops so only small columns travel back to the driver.

    Args:
        bundle: bundle directory (None = shipped default).
        threads: CPU threads this actor may use (the uncertainty gate's models).
    """

    def __init__(self, *, bundle: str | None, threads: int = 1) -> None:
        limit_threads(threads)
        from agents.bundle import load_bundle
        from blackboard.controllers.store import load_controller

        loaded = load_bundle(bundle)
        self.bundle_version = loaded.version
        self.controller = load_controller(loaded)
        self.agents = list(loaded.agent_names)
        self.combiner_name = "mean" if self.controller is None else f"controller:{self.controller.version}"
        self.threshold = 0.5 if self.controller is None else float(self.controller.threshold)
        from blackboard.ood import UncertaintyGate

        self.gate = UncertaintyGate.from_bundle(loaded)  # the same "uncertain" rule as the service
        from blackboard.borderline import borderline_for
        from blackboard.controllers.store import load_replay

        self.band = borderline_for(self.controller, load_replay(loaded))  # the service's borderline band

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from blackboard.decision import context_for, decide

        has_face = np.asarray(batch["has_face"], dtype=bool)
        n = len(has_face)
        votes = np.stack([np.asarray(batch[f"{a}_p_fake"], dtype=np.float64) for a in self.agents], axis=1)
        present = np.isfinite(votes)
        p = np.full(n, np.nan, dtype=np.float32)
        if has_face.any():
            faces = list(np.asarray(batch["face"])[has_face]) if "face" in batch else [None]
            decided = decide({a: votes[has_face, j] for j, a in enumerate(self.agents)}, self.controller,
                             context=context_for(self.controller, faces, row_contexts(batch, has_face)),
                             explain=False, band=self.band)
            p[has_face] = decided.p_fake
        label = np.full(n, "", dtype=object)
        reason = np.asarray(batch["reason"], dtype=object).copy()
        faces = np.flatnonzero(has_face)
        if len(faces):  # the decision's own labels: "uncertain" inside the borderline band
            label[faces] = decided.labels
            for i, text in zip(faces, decided.reasons):
                if text:
                    reason[i] = text
        if len(faces):
            sizes = zip(np.asarray(batch["box_w"])[faces], np.asarray(batch["box_h"])[faces])
            why, _ = self.gate.assess(list(np.asarray(batch["face"])[faces]), list(sizes))
            for i, text in zip(faces, why):
                if text:
                    label[i], reason[i] = "uncertain", text
        out = {k: v for k, v in batch.items() if k != "face" and not k.endswith("_latency_ms")}
        out.update(
            reason=reason,
            p_fake=p,
            label=label.astype(object),
            threshold=np.full(n, self.threshold, dtype=np.float32),
            degraded=has_face & ~present.all(axis=1),
            combiner=np.full(n, self.combiner_name, dtype=object),
            bundle_version=np.full(n, self.bundle_version, dtype=object),
        )
        return out
