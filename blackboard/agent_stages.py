"""The agents' stages of `fakeface batch` and `fakeface evaluate`: each face row gets every vote.

`AgentStage` runs one agent (an actor pool per agent); `AgentSetStage` runs every agent of a
bundle in turn (a pool of these keeps a small node's cores busy). Each adds ``{agent}_p_fake``
to the face rows (`blackboard.stage_rows`), NaN on placeholder rows without a face.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.predictor import AgentPredictor
from blackboard.worker_threads import limit_threads


class AgentStage(AgentPredictor):
    """One agent's actor: adds ``{agent}_p_fake`` (NaN on placeholder rows without a face).

    Args:
        bundle: bundle directory (None = shipped default) or a loaded `agents.bundle.Bundle`.
        agent: agent name in the bundle.
        batch_size: images per forward pass.
        threads: CPU threads this actor may use.
        keep: the columns it returns (None: every column in, plus its vote).
        warm_up: trace the first batch shapes now (a pool actor); False when the first batch
            follows at once in this process, which would trace them anyway.
    """

    def __init__(self, *, bundle: Any, agent: str, batch_size: int = 32, threads: int = 1,
                 keep: tuple[str, ...] | None = None, warm_up: bool = True) -> None:
        limit_threads(threads)
        super().__init__(bundle, agent, batch_size=batch_size)
        self.keep = keep
        # Graph traces for the first two batch shapes now, on blank crops, instead of on the
        # first batches of data (measured: ~2 s per actor before the first results).
        if warm_up:
            self.warm_up()

    def __call__(self, batch: dict[str, Any], prepared: dict[Any, np.ndarray] | None = None) -> dict[str, Any]:
        """The batch with this agent's vote (``prepared``: see `agents.predictor.AgentPredictor.predict_proba`)."""
        mask = np.asarray(batch["has_face"], dtype=bool)
        p = np.full(len(mask), np.nan, dtype=np.float32)
        if mask.any():
            p[mask] = self.predict_p_fake(np.asarray(batch["face"])[mask], prepared)
        out = dict(batch)
        out[f"{self.name}_p_fake"] = p
        return _only(out, self.keep)


def _only(batch: dict[str, Any], keep: tuple[str, ...] | None) -> dict[str, Any]:
    """The ``keep`` columns of a batch (all when None)."""
    return batch if keep is None else {k: batch[k] for k in keep}


class AgentSetStage:
    """Every agent in one actor, one after the other (``AgentStage`` each): on small nodes a pool
    of these, one per core, keeps every core busy without balancing one pool per agent.

    Args:
        bundle: bundle directory (None = shipped default).
        agents: agent names in the bundle.
        threads: CPU threads of the actor, each agent's stage using them all in its turn.
        keep: the columns it returns (None: every column in, plus the votes).
        **stage: the other options of `AgentStage` (``batch_size``, ``warm_up``), the same for
            every agent.
    """

    def __init__(self, *, bundle: str | None, agents: tuple[str, ...], threads: int = 1,
                 keep: tuple[str, ...] | None = None, **stage: Any) -> None:
        limit_threads(threads)  # before the bundle's models start their thread pools
        from agents.bundle import load_bundle

        loaded = load_bundle(bundle)  # read and checked once for all its agents
        self.stages = [AgentStage(bundle=loaded, agent=a, threads=threads, **stage) for a in agents]
        self.keep = keep
        # Agents of one preprocessing contract (the shipped LeNet and custom CNN: 64 px YCrCb,
        # normalised) score the same prepared inputs, made once: ~0.5 ms a face. Only those are
        # kept for the batch's length: a contract of one agent is prepared chunk by chunk as before.
        contracts = [s.info.preprocessing for s in self.stages]
        self._shared = {c for c in contracts if contracts.count(c) > 1}

    @property
    def thread_safe(self) -> bool:
        """Whether two threads may run this stage at once (`agents.predictor.AgentPredictor`)."""
        return all(stage.thread_safe for stage in self.stages)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        prepared: dict[Any, np.ndarray] = {}
        for stage in self.stages:
            batch = stage(batch, prepared if stage.info.preprocessing in self._shared else None)
        return _only(batch, self.keep)
