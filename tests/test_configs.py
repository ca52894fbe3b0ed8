"""Every settings dataclass checked by pydantic names the field and the value it refuses.

The configs declare their constraints beside their fields (pydantic dataclasses); a value out of
range must come back as a ValueError (pydantic's ValidationError) whose first problem is that
field with the value received, so a command or a log can say exactly what was wrong.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agents.preprocessing import Preprocessing
from blackboard.calibration import Calibrator
from blackboard.controllers.ctxbins import BinnedConfig
from blackboard.controllers.logodds import LogOddsConfig
from blackboard.controllers.qtrust import ControllerConfig
from blackboard.feedback_learning import PromotionConfig
from blackboard.feedback_promotion import PromotionRule
from blackboard.fragile import FragileConfig
from blackboard.stage_plan import StagePlan
from fakeface.serve.admission import InputLimits
from fakeface.serve.ratelimit import RateLimitConfig
from fakeface.serve.server import ServerConfig
from fakeface.web.app import WebConfig
from training.augment import AugmentConfig
from training.dataset import BuildConfig
from training.evaluate import EvalConfig
from training.metrics import BootstrapConfig
from training.train import TrainConfig
from vision.face_detector import FaceGate
from vision.face_tracking import FollowConfig
from vision.heatmap_quality import AgentMap

PLAN = {"bundle": None, "agents": ("a",), "detect": "auto", "agent_actors": (1,)}
EVAL = {"data": "d.csv", "out": "out"}

# (config, the fields it is given, the field refused, the value received)
REFUSED: list[tuple[type, dict[str, Any], str, Any]] = [
    (Preprocessing, {"width": 4}, "width", 4),
    (Preprocessing, {"scale": "percent"}, "scale", "percent"),
    (Calibrator, {"kind": "beta"}, "kind", "beta"),
    (ControllerConfig, {"alpha": 0.0}, "alpha", 0.0),
    (ControllerConfig, {"weight_map": "linear"}, "weight_map", "linear"),
    (LogOddsConfig, {"online_lr": 1.5}, "online_lr", 1.5),
    (LogOddsConfig, {"context": ["blur", "blur"]}, "context", ["blur", "blur"]),
    (LogOddsConfig, {"threshold_rule": "fixed:1"}, "threshold_rule", "fixed:1"),
    (BinnedConfig, {"context": ()}, "context", ()),
    (BinnedConfig, {"bins": 11}, "bins", 11),
    (PromotionConfig, {"check_every": 0}, "check_every", 0),
    (PromotionRule, {"min_clients": 0}, "min_clients", 0),
    (FragileConfig, {"margin": 1.0}, "margin", 1.0),
    (FragileConfig, {"copies": ()}, "copies", ()),
    (StagePlan, {**PLAN, "threads": 0}, "threads", 0),
    (InputLimits, {"min_side": 0}, "min_side", 0),
    (RateLimitConfig, {"burst": 0}, "burst", 0),
    (ServerConfig, {"drain_grace_s": -1.0}, "drain_grace_s", -1.0),
    (ServerConfig, {"tokens": ("ok", "")}, "tokens.1", ""),
    (WebConfig, {"video_fps": 0.0}, "video_fps", 0.0),
    (AugmentConfig, {"jpeg_quality": (0, 90)}, "jpeg_quality.0", 0),
    (BuildConfig, {"hash_distance": 65}, "hash_distance", 65),
    (EvalConfig, {**EVAL, "workers": -1}, "workers", -1),
    (BootstrapConfig, {"confidence": 0.5}, "confidence", 0.5),
    (TrainConfig, {"optimizer": "sgd"}, "optimizer", "sgd"),
    (FaceGate, {"min_confidence": 1.2}, "min_confidence", 1.2),
    (FollowConfig, {"shift": 0.6}, "shift", 0.6),
    (AgentMap, {"withheld": 3}, "withheld", 3),
]


@pytest.mark.parametrize("config, fields, field, received", REFUSED,
                         ids=[f"{c.__name__}.{f}" for c, _, f, _ in REFUSED])
def test_a_refused_value_is_named_with_its_field(config, fields, field, received):
    with pytest.raises(ValidationError) as caught:
        config(**fields)
    first = caught.value.errors()[0]
    assert ".".join(str(part) for part in first["loc"]) == field and first["input"] == received
    assert isinstance(caught.value, ValueError)  # what callers catch


@pytest.mark.parametrize("config", sorted({c for c, *_ in REFUSED}, key=lambda c: c.__name__))
def test_unknown_settings_are_refused_not_ignored(config):
    fields = {StagePlan: PLAN, EvalConfig: EVAL, AgentMap: {"png": b"x"}}.get(config, {})
    with pytest.raises(ValidationError, match="colour"):
        config(**fields, colour="blue")
