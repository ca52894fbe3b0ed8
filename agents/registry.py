"""A small registry of agents by name, each with its preprocessing contract beside its builder.

Agents come in two kinds: "keras" (a CNN built by a Keras builder) and "forensic" (hand-made
features into scikit-learn gradient boosting, `agents.forensic`), whose builder returns an
unfitted `ForensicModel` with the same prediction interface.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from agents.errors import lookup
from agents.forensic_features import CONTRACT as FORENSIC_CONTRACT
from agents.preprocessing import Preprocessing


@dataclass(frozen=True)
class AgentSpec:
    """One registered agent."""

    name: str  # registry key, also the model name and the bundle's file stem
    # "module:function" of the keyword-only builder (an uncompiled keras.Model, or an unfitted
    # ForensicModel); imported on first use, so listing agents (e.g. for --help) needs no Keras.
    builder_path: str
    preprocessing: Preprocessing  # default input contract (size may be overridden per bundle)
    description: str  # one line for `--help` and reports
    kind: str = "keras"  # "keras" (trained by training.train) or "forensic" (training.train_forensic)
    builder_kwargs: Mapping[str, Any] = field(default_factory=dict)  # defaults; build()'s kwargs win
    # `training.train.TrainConfig` fields this agent trains with unless the command line overrides
    # them (plain values: the registry must not import the training package).
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    # The convolution Grad-CAM reads (`vision.gradcam.target_layer_index`); None: the rule's pick,
    # the last convolution whose map is still fine enough to place evidence on a face.
    heatmap_layer: str | None = None
    # Why this agent's Grad-CAM maps are never shown ("" shows them): one line for a person,
    # declared from `benchmarks/bench_heatmaps.py` on the shipped bundle (BENCHMARKS.md, "Heat
    # maps"), where its maps did not follow the blended region of synthetic fakes.
    heatmap_withheld: str = ""
    # Builder keyword -> the contract's fields when that keyword is true: a recipe that needs
    # another input (VGG-16-BN from scratch reads the face standardised by its own crop).
    recipe_preprocessing: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def builder(self) -> Callable[..., Any]:
        """The builder function (imports its module, and Keras with it, on first use)."""
        module, _, function = self.builder_path.partition(":")
        return getattr(importlib.import_module(module), function)

    def contract(self, input_size: int | None = None, **builder_kwargs: Any) -> Preprocessing:
        """The preprocessing contract, optionally at another square input size, for the model
        these builder keywords make (see ``recipe_preprocessing``)."""
        contract = self.preprocessing
        kwargs = {**self.builder_kwargs, **builder_kwargs}
        for keyword, fields in self.recipe_preprocessing.items():
            if kwargs.get(keyword):
                contract = replace(contract, **fields)
        if input_size is None:
            return contract
        return replace(contract, height=int(input_size), width=int(input_size))

    def build(self, *, input_size: int | None = None, **kwargs: Any) -> Any:
        """Builds the model for the (possibly resized) contract."""
        kwargs = {**self.builder_kwargs, **kwargs}
        return self.builder(input_shape=self.contract(input_size, **kwargs).input_shape, name=self.name, **kwargs)


_REGISTRY: dict[str, AgentSpec] = {
    spec.name: spec
    for spec in (
        AgentSpec(
            name="custom",
            builder_path="agents.custom:build_custom",
            # The whole face small (64 px YCrCb), each channel standardised by the crop's own
            # mean and spread: what is left is how the face differs from the rest of its crop
            # (a pasted face's colour and contrast against its surroundings), not the scene's
            # lighting or skin tone. On a CPU this learned where the raw input did not
            # (BENCHMARKS.md, "A CNN that learns on a CPU"); the NPR residual at 224 px, and
            # 64 px patches at the crop's own resolution, stayed at chance.
            preprocessing=Preprocessing(height=64, width=64, channels=3, scale="unit", color="ycrcb",
                                        normalize="image"),
            description="custom ConvNet on the face standardised by its own crop, 64x64 YCrCb",
            # Quarter of the report's widths: enough for a 64 px input, and cheap to serve.
            builder_kwargs={"filters": (16, 32, 64, 128)},
            train_defaults={"screenshot_augment": 0.25},
            # On 96 synthetic blends 0.73x a uniform map's mass inside the blended region and 0.74x
            # inside another face's (the 30-epoch agent of 2026-12-05; that of 2026-12-04 night:
            # 1.30x / 1.25x): no location (BENCHMARKS.md, heat maps).
            heatmap_withheld="custom's map shows no location (no more of it falls on the altered region than "
                             "elsewhere): not shown.",
        ),
        AgentSpec(
            name="lenet",
            builder_path="agents.lenet:build_lenet",
            # The face custom sees (64 px YCrCb, standardised by its own crop: the input that
            # learns on a CPU), read another way: LeNet's dense layer sees the flattened map, so
            # where on the face a pattern lies counts, where custom's global pooling drops it.
            # Batch norm lets it train from scratch at Adam 1e-3 (the plain 128 px LeNet stayed
            # at 0.66 AUC; BENCHMARKS.md, "A LeNet that learns").
            preprocessing=Preprocessing(height=64, width=64, channels=3, scale="unit", color="ycrcb",
                                        normalize="image"),
            description="LeNet-like CNN with batch norm on the face standardised by its own crop, 64x64 YCrCb",
            builder_kwargs={"batch_norm": True},
            train_defaults={"screenshot_augment": 0.25},
            # This LeNet (2026-12-05 night): 0.89x a uniform map's mass inside the blended region
            # of 96 synthetic blends, 0.93x inside another face's (the 128 px one: 1.13x / 1.24x):
            # no location (BENCHMARKS.md, heat maps).
            heatmap_withheld="lenet's map shows no location (no more of it falls on the altered region than "
                             "elsewhere): not shown.",
        ),
        AgentSpec(
            name="vgg16",
            builder_path="agents.vgg16:build_vgg16",
            preprocessing=Preprocessing(height=224, width=224, channels=3, scale="raw"),
            description="VGG-16 conv base + BN + dropout + GAP + dense, RGB",
            # VGG-16-BN from scratch (``batch_norm``) reads the RGB face standardised by its own
            # crop, as the CNNs that learn on a CPU do (custom, lenet), with no ImageNet mean.
            recipe_preprocessing={"batch_norm": {"normalize": "image"}},
            # The shipped VGG-16-BN (2026-12-05 afternoon): 0.50x a uniform map's mass inside the
            # blended region of 96 synthetic blends, 0.51x inside another face's; the ImageNet-mean
            # VGG-16 before it: nearly uniform maps, the same on a fake as on its original.
            heatmap_withheld="vgg16's map shows no location (no more of it falls on the altered region than "
                             "elsewhere): not shown.",
        ),
        AgentSpec(
            name="forensic",
            builder_path="agents.forensic:build_forensic",
            preprocessing=FORENSIC_CONTRACT,
            description="forensic features (colour, spectrum, noise, sharpness, JPEG) into gradient "
                        "boosting, 224x224 RGB",
            kind="forensic",
        ),
    )
}


def agent_names(kind: str | None = None) -> list[str]:
    """Names of the registered agents (of one kind, e.g. "keras", when given), in registry order."""
    return [name for name, spec in _REGISTRY.items() if kind is None or spec.kind == kind]


def get_agent(name: str) -> AgentSpec:
    """Looks up an agent by name.

    Raises:
        ValueError: naming the known agents when ``name`` is not registered.
    """
    return lookup(_REGISTRY, name, what="agent")


def build_agent(name: str, *, input_size: int | None = None, **kwargs: Any) -> Any:
    """Builds the named agent's model (uncompiled Keras model, or unfitted ForensicModel)."""
    return get_agent(name).build(input_size=input_size, **kwargs)
