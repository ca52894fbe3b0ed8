"""Whether a heat map says anything: a map that shows no location is withheld, with the reason.

Two kinds of evidence, both measured on the map Grad-CAM returns (values in [0, 1], any size):

* Per map, at serving time: a map whose mass is spread almost evenly over the face (a flat
  tint) points nowhere. :func:`concentration` is one minus the normalised entropy of the map
  taken as a distribution: 0 for a uniform map, 1 for all the mass in one cell. A map with
  less than :data:`MIN_CONCENTRATION` is withheld.
* Per agent, offline (``benchmarks/bench_heatmaps.py``): on synthetic self-blended fakes, whose
  blend mask is known, :func:`mask_lift` says how much more of the map's mass falls inside the
  blended region than a uniform map's would (1.0 = no better than uniform), and
  :func:`pointing_hit` whether the map's peak lies inside it. An agent whose maps do not beat
  the uniform map is declared uninformative beside its config in ``agents.registry``.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import ConfigDict, model_validator
from pydantic.dataclasses import dataclass

# Measured on the shipped bundle (BENCHMARKS.md, "Heat maps"): VGG-16's near-uniform maps score
# 0.01-0.02, maps with a visible peak 0.3 and more. A uniform map scores 0.
MIN_CONCENTRATION = 0.05
# An agent's maps localise when, on average over synthetic blends, the mass inside the blended
# region is at least MIN_LIFT times a uniform map's, and at least MIN_OWN_MASK times what the same
# maps score against other faces' masks (the blends are face-centred: a map that only prefers the
# middle of the crop scores as well on a stranger's mask as on its own).
MIN_LIFT = 1.2
MIN_OWN_MASK = 1.1


# Built once per agent and face, after Grad-CAM and a PNG encode that cost milliseconds: pydantic's
# check adds about 1.5 us (timed: 1.9 -> 3.4 us per AgentMap), which does not show.
@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class AgentMap:
    """One agent's heat map of one face: the overlay PNG, or why none is shown.

    Attributes:
        png: the face crop with the agent's map drawn over it (empty when withheld).
        withheld: one line for a person on why this agent's map is not shown ("" when shown).
    """

    png: bytes = b""
    withheld: str = ""

    @model_validator(mode="after")
    def _exactly_one(self) -> "AgentMap":
        if bool(self.png) == bool(self.withheld):
            raise ValueError(f"an AgentMap holds a PNG or a reason it is withheld, exactly one; received "
                             f"{len(self.png)} PNG bytes and withheld={self.withheld!r}.")
        return self


def _as_map(cam: np.ndarray) -> np.ndarray:
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2 or min(cam.shape) < 1:
        raise ValueError(f"a heat map must be a 2-D array, received shape {cam.shape}.")
    if not np.all(np.isfinite(cam)):
        raise ValueError("a heat map must be finite, received NaN or infinity.")
    return np.clip(cam, 0.0, None)


def concentration(cam: np.ndarray) -> float:
    """One minus the map's normalised Shannon entropy: 0 for a uniform (or empty) map, 1 for a point.

    An all-zero map (no positive evidence anywhere) counts as uniform: it shows no location.
    """
    cam = _as_map(cam)
    total = cam.sum()
    if cam.size < 2 or total <= 0:
        return 0.0
    p = cam.ravel() / total
    p = p[p > 0]
    return float(1.0 - (-(p * np.log(p)).sum()) / np.log(cam.size))


def _mask_at(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (H, W) or (H, W, 1), received shape {mask.shape}.")
    # Area interpolation keeps each cell's share of the blended region.
    return cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) >= 0.5


def mask_lift(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's mass inside the mask over the mask's share of the area.

    1.0 is what a uniform map scores, above 1 the map favours the blended region, below 1 it
    favours the rest. NaN when the map is empty or the mask covers none or all of the map.

    Args:
        cam: the heat map, values >= 0, at its own resolution.
        mask: the blend mask at any resolution (values in [0, 1]; inside means >= 0.5).
    """
    cam = _as_map(cam)
    inside = _mask_at(mask, cam.shape)
    area = inside.mean()
    total = cam.sum()
    if total <= 0 or area in (0.0, 1.0):
        return float("nan")
    return float(cam[inside].sum() / total / area)


def pointing_hit(cam: np.ndarray, mask: np.ndarray) -> bool:
    """True when the map's peak cell lies inside the mask (the pointing game)."""
    cam = _as_map(cam)
    inside = _mask_at(mask, cam.shape)
    return bool(inside.ravel()[int(np.argmax(cam))])


def localises(lift: float, lift_other_mask: float) -> bool:
    """The per-agent verdict from the benchmark's mean lifts (:func:`mask_lift`) on synthetic blends:
    the maps favour the blended region, and this face's more than another face's."""
    if not (np.isfinite(lift) and np.isfinite(lift_other_mask)) or lift_other_mask <= 0:
        return False
    return lift >= MIN_LIFT and lift / lift_other_mask >= MIN_OWN_MASK


def withheld_reason(agent: str, cam: np.ndarray) -> str:
    """Why this map is not shown, or "" when it is: near-uniform maps point nowhere."""
    score = concentration(cam)
    if score < MIN_CONCENTRATION:
        return (f"{agent}'s map is spread evenly over this face (concentration {score:.2f} < "
                f"{MIN_CONCENTRATION}): it shows no location, so it is not shown.")
    return ""
