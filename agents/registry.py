"""A small registry of agents by name, each with its preprocessing contract beside its builder."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import keras

from agents.custom import build_custom
from agents.lenet import build_lenet
from agents.preprocessing import Preprocessing
from agents.vgg16 import build_vgg16


@dataclass(frozen=True)
class AgentSpec:
    """One registered agent."""

    name: str  # registry key, also the model name and the bundle's file stem
    builder: Callable[..., keras.Model]  # keyword-only builder returning an uncompiled model
    preprocessing: Preprocessing  # default input contract (size may be overridden per bundle)
    description: str  # one line for `--help` and reports

    def contract(self, input_size: int | None = None) -> Preprocessing:
        """The preprocessing contract, optionally at another square input size."""
        if input_size is None:
            return self.preprocessing
        return replace(self.preprocessing, height=int(input_size), width=int(input_size))

    def build(self, *, input_size: int | None = None, **kwargs: Any) -> keras.Model:
        """Builds the model for the (possibly resized) contract."""
        return self.builder(input_shape=self.contract(input_size).input_shape, name=self.name, **kwargs)


_REGISTRY: dict[str, AgentSpec] = {
    spec.name: spec
    for spec in (
        AgentSpec(
            name="custom",
            builder=build_custom,
            preprocessing=Preprocessing(height=96, width=96, channels=1, scale="unit"),
            description="custom ConvNet, 96x96 grayscale (the report's own)",
        ),
        AgentSpec(
            name="lenet",
            builder=build_lenet,
            preprocessing=Preprocessing(height=96, width=96, channels=1, scale="unit"),
            description="LeNet-like CNN, 96x96 grayscale",
        ),
        AgentSpec(
            name="vgg16",
            builder=build_vgg16,
            preprocessing=Preprocessing(height=224, width=224, channels=3, scale="raw"),
            description="VGG-16 conv base + BN + dropout + GAP + dense, RGB",
        ),
    )
}


def agent_names() -> list[str]:
    """Names of all registered agents, in registry order."""
    return list(_REGISTRY)


def get_agent(name: str) -> AgentSpec:
    """Looks up an agent by name.

    Raises:
        ValueError: naming the known agents when ``name`` is not registered.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown agent {name!r}; known agents: {', '.join(_REGISTRY)}.") from None


def build_agent(name: str, *, input_size: int | None = None, **kwargs: Any) -> keras.Model:
    """Builds the named agent's model (uncompiled)."""
    return get_agent(name).build(input_size=input_size, **kwargs)
