"""The three classifier agents, their preprocessing contracts and the model bundle."""

from agents.labels import CLASSES, FAKE, FAKE_INDEX, REAL, REAL_INDEX, label_to_index
from agents.preprocessing import Preprocessing, prepare_batch
from agents.registry import AgentSpec, agent_names, build_agent, get_agent

__all__ = [
    "CLASSES", "FAKE", "FAKE_INDEX", "REAL", "REAL_INDEX", "label_to_index",
    "Preprocessing", "prepare_batch",
    "AgentSpec", "agent_names", "build_agent", "get_agent",
]
