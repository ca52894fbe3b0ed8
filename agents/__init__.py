"""The four agents (three Keras CNNs and the forensic-features model), their preprocessing contracts and the model bundle.

Names are imported lazily so that light users (labels, preprocessing contracts) do not pay
for Keras/TensorFlow start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CLASSES": "agents.labels", "FAKE": "agents.labels", "FAKE_INDEX": "agents.labels",
    "REAL": "agents.labels", "REAL_INDEX": "agents.labels", "label_to_index": "agents.labels",
    "Preprocessing": "agents.preprocessing", "prepare_batch": "agents.preprocessing",
    "AgentSpec": "agents.registry", "agent_names": "agents.registry", "build_agent": "agents.registry",
    "get_agent": "agents.registry",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
