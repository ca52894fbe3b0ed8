"""The blackboard's case: one request, its faces, every agent's vote and the decision.

A case is also the explanation a user gets back: which agents voted what, with which trust
weight, and whether anything was missing.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from agents.labels import FAKE, REAL

# The third answer: the face cannot be judged (too small, not a face, far from the training
# data); Decision.reason says why. See blackboard.ood.UncertaintyGate.
UNCERTAIN = "uncertain"


@dataclass
class Vote:
    """One agent's assessment of one face."""

    agent: str  # agent name
    p_fake: float  # calibrated probability that the face is fake
    latency_ms: float  # time the agent spent on the batch this face was in, per face
    model_sha: str  # sha256 of the model file that voted
    weight: float = 0.0  # trust weight the controller gave this vote (filled at decision)
    # How the face's context moved this agent's weight: the log-odds weight applied minus the
    # weight the controller gives the agent in the average condition (0 for context-free rules).
    context_shift: float = 0.0

    @property
    def label(self) -> str:
        return FAKE if self.p_fake >= 0.5 else REAL


@dataclass
class Decision:
    """The controller's decision for one face."""

    label: str  # "real", "fake" or "uncertain" (then ``reason`` says why; p_fake is still given)
    p_fake: float  # calibrated ensemble probability of fake
    threshold: float  # threshold on p_fake used for the label
    combiner: str  # which combiner decided ("ensemble", "mean", ...)
    controller_version: str = ""  # trust-table version that produced the weights
    reason: str = ""  # why the label is "uncertain"; "" otherwise


@dataclass
class FaceRecord:
    """A face on the blackboard: where it is, its crop, the votes and the decision."""

    index: int  # face number within the request
    box: tuple[float, float, float, float]  # x, y, width, height in the input image (pixels)
    landmarks: list[tuple[float, float]]  # 5 points: eyes, nose, mouth corners; [] if none
    confidence: float  # detector confidence (1.0 when the input was used as a crop)
    crop: np.ndarray | None = None  # 224x224 RGB uint8 aligned crop (not serialised)
    votes: dict[str, Vote] = field(default_factory=dict)  # agent -> vote
    decision: Decision | None = None
    degraded: bool = False  # True when some agent's vote is missing
    missing_agents: list[str] = field(default_factory=list)
    ood_score: float | None = None  # out-of-distribution score of the crop (None: bundle has no OOD model)
    # The picture's condition around the face (vision.context: face_size, sharpness, blockiness,
    # brightness, detected), computed once; the controller may condition its trust on it.
    context: dict[str, float] = field(default_factory=dict)


@dataclass
class Case:
    """One request on the blackboard."""

    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    source: str = ""  # file name or client-supplied label, for logs and reports
    image_shape: tuple[int, ...] = ()  # shape of the decoded input
    faces: list[FaceRecord] = field(default_factory=list)
    no_face_reason: str = ""  # why there are no faces, when there are none
    timings_ms: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    bundle_version: str = ""
    controller_version: str = ""

    @property
    def degraded(self) -> bool:
        return any(f.degraded for f in self.faces)

    @property
    def missing_agents(self) -> list[str]:
        return sorted({a for f in self.faces for a in f.missing_agents})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (crops dropped)."""
        out = asdict(self)
        for face in out["faces"]:
            face.pop("crop", None)
        out["degraded"] = self.degraded
        out["missing_agents"] = self.missing_agents
        return out
