"""How the blackboard is deployed: `EnsembleConfig`, one validated config for every runner.

A pydantic dataclass: the constraints are declared beside each field (pydantic checks them and
says what it received), so the stdlib dataclass API (``replace``, ``asdict``, pickling for Ray)
stays as it was.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class EnsembleConfig:
    """How the blackboard is deployed on Ray."""

    # "sets": every agent and the face detector in each replica of one Serve application, one call
    # per case, one process for every model (fastest and smallest on few cores); "agents": one application per
    # agent and one for the detector (faults and scaling per agent). See blackboard.serve_apps.
    layout: Literal["sets", "agents"] = "sets"
    replicas: int = Field(1, ge=1)  # Serve replicas per agent application (the minimum when autoscaling)
    # Autoscaling upper bound per agent (Serve scales on ongoing requests); None = fixed replicas.
    max_replicas: Optional[int] = None
    # CPU share per replica; None = the cluster's CPUs spread over every replica (at most 1 each),
    # so four agents + the detector fit on a 2-CPU machine (0.4 each) and grow with the cluster.
    num_cpus_per_actor: Optional[float] = Field(None, ge=0)
    num_gpus_per_actor: float = Field(0.0, ge=0)  # GPU share per agent replica
    max_batch_size: int = Field(16, ge=1)  # dynamic micro-batching per agent (@serve.batch): crops per forward pass
    # How long a batch waits to fill while other requests are in flight (a lone request never waits).
    max_wait_ms: float = Field(60.0, ge=0)
    deadline_s: float = Field(10.0, gt=0)  # default per-case deadline
    # Subset of the bundle's agents (None = all; else at least one name).
    agents: Optional[tuple[str, ...]] = Field(None, min_length=1)
    # Degraded-copy check (blackboard.fragile): the agents also score cheap copies of each face and
    # a verdict they flip becomes "uncertain". Off by default: it costs more than it pays here.
    fragile_check: bool = False
    fragile_margin: Optional[float] = None  # None: the controller's fitted margin (else fragile.DEFAULT_MARGIN)
    # Agent replicas trace their Grad-CAM heat maps while loading, so a service that renders them
    # with every answer (the web page) says SERVING only once the first one is cheap.
    warm_heatmaps: bool = False

    @model_validator(mode="after")
    def _replicas_bound(self) -> "EnsembleConfig":
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas must be >= replicas ({self.replicas}), received {self.max_replicas}.")
        return self
