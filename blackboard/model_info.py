"""What a running ensemble reports about itself, as typed records (no dict guessing).

`Ensemble.describe` builds an `EnsembleInfo`; the server turns it into the wire `ModelInfo`
(`fakeface.rpc_convert.model_info_to_proto`) and `Ensemble.model_info` into a plain dict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from agents.preprocessing import Preprocessing


@dataclass(frozen=True)
class AgentInfo:
    """One agent as deployed."""

    name: str  # agent name in the bundle
    sha256: str  # digest of the model file the actors loaded
    preprocessing: Preprocessing  # the agent's input contract
    temperature: float  # calibration temperature applied to its logits
    threshold: float  # decision threshold of the agent alone
    threshold_rule: str  # how that threshold was chosen
    val_metrics: dict[str, Any]  # validation metrics recorded in the bundle
    replicas: int  # actor replicas serving it
    batches_sent: int  # actor calls made so far (micro-batches)
    crops_sent: int  # face crops sent so far
    up: bool = True  # False while its actors are down or restarting (answers are degraded)
    bias: float = 0.0  # added to its fake log-odds after the temperature (refitted for the prior)


@dataclass(frozen=True)
class EnsembleInfo:
    """The ensemble's bundle, agents, controller and health."""

    bundle_path: str  # bundle directory
    bundle_version: str  # the bundle's content version
    manifest: dict[str, Any]  # the bundle's manifest.json (a copy)
    agents: tuple[AgentInfo, ...]  # deployed agents, in decision order
    combiner: str  # name of the rule combining the votes
    controller_version: str  # active controller version ("mean" without a controller)
    controller: dict[str, Any] | None  # the controller's summary, None for the mean
    trust: dict[str, dict[str, float]]  # agent -> class -> learned trust (empty for the mean)
    threshold: float  # the ensemble's decision threshold on p_fake
    config: dict[str, Any]  # the deployment settings (EnsembleConfig fields)
    detector_up: bool = True  # False while the face-detector actor is down or restarting
    restarts: dict[str, int] = field(default_factory=dict)  # component -> actor restarts seen
    borderline: dict[str, Any] = field(default_factory=dict)  # the "can't tell" band (blackboard.borderline)

    @property
    def degraded(self) -> bool:
        """True when a component is down: answers may lack an agent's vote."""
        return not self.detector_up or any(not a.up for a in self.agents)

    def to_dict(self) -> dict[str, Any]:
        """The plain-dict view (``Ensemble.model_info``): agents keyed by name."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "agents"}
        out["agents"] = {}
        for agent in self.agents:
            entry = dataclasses.asdict(agent)
            entry.pop("name")
            entry["preprocessing"] = agent.preprocessing.to_dict()
            out["agents"][agent.name] = entry
        out["degraded"] = self.degraded
        return out
