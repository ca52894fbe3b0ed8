"""A fragile verdict becomes "can't tell": the decision must survive one or two cheap copies.

The agents also score a slightly degraded copy of each face (a JPEG re-encode at quality 70, a
down-up-scale through half size; see :data:`COPIES`). When a copy's ensemble verdict differs
from the face's, or its p_fake moves more than a margin fitted on val
(:func:`fit_margin`, stored with the controller in ``fitted_on["fragile"]``), the face is
answered ``uncertain`` with a reason starting ``"fragile: "``. A verdict that a re-encode flips is
one a victim's messenger app could flip too; the user is better served by "can't tell".

:func:`fragile_reasons` is the one rule; the board (:mod:`blackboard.board`) calls it on the
copies' votes it collected with the case's own.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Callable, Mapping, Optional, Sequence

import cv2
import numpy as np
from pydantic import AfterValidator, ConfigDict, Field
from pydantic.dataclasses import dataclass

from blackboard.case import UNCERTAIN, FaceRecord
from blackboard.decision import decide
from vision.degrade import apply as degrade

FRAGILE_PREFIX = "fragile: "
# name -> what it does to a crop: cheap enough to score with the case's own batch.
COPIES = {"jpeg70": "re-encoded as JPEG quality 70", "rescale0.5": "scaled to half size and back"}
DEFAULT_COPIES = ("jpeg70", "rescale0.5")
DEFAULT_MARGIN = 0.25  # used until a controller stores a fitted margin: a quarter of the p range


def _known_copy(name: str) -> str:
    if name not in COPIES:
        raise ValueError(f"copies must name some of {sorted(COPIES)}, received {name!r}.")
    return name


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class FragileConfig:
    """Whether and how the degraded-copy check runs."""

    enabled: bool = False  # off by default: see BENCHMARKS.md for its cost per face
    # Names from COPIES (a list reads as a tuple); at least one, or the check has nothing to compare.
    copies: tuple[Annotated[str, AfterValidator(_known_copy)], ...] = Field(DEFAULT_COPIES, min_length=1)
    margin: Optional[float] = Field(None, gt=0, lt=1)  # None: the controller's fitted margin, else DEFAULT_MARGIN


def make_copy(crop: np.ndarray, name: str) -> np.ndarray:
    """One named cheap copy of a crop, same size as the crop (deterministic)."""
    if name == "jpeg70":
        return degrade("jpeg70", crop, seed=0)
    if name == "rescale0.5":
        half = degrade("scale0.5", crop, seed=0)
        return cv2.resize(half, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    raise ValueError(f"Unknown copy {name!r}; known: {sorted(COPIES)}.")


def make_copies(crops: Sequence[np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """Copies of every crop, copy-major: all crops' first copy, then all crops' second."""
    return [make_copy(c, name) for name in names for c in crops]


def with_copies(crops: Sequence[np.ndarray], config: FragileConfig) -> list[np.ndarray]:
    """What one agent call carries: the faces, then (when the check is on) their copies.

    The copies ride in the same batch as the faces, so they share the case's deadline and the
    agents' batching.
    """
    return list(crops) + (make_copies(crops, config.copies) if config.enabled else [])


def split_copies(results: Mapping[str, tuple[np.ndarray, float]], faces: int, config: FragileConfig
                 ) -> tuple[dict[str, tuple[np.ndarray, float]], dict[str, np.ndarray]]:
    """The votes on `with_copies` crops, split: (agent -> (p_fake per face, ms per crop),
    agent -> (C, F) copy votes)."""
    copies = len(config.copies) if config.enabled else 0
    copy_votes = {name: p[faces:].reshape(copies, faces) for name, (p, _) in results.items()} if copies else {}
    return {name: (p[:faces], ms) for name, (p, ms) in results.items()}, copy_votes


def vote_with_copies(vote: Callable[[list[np.ndarray], float], dict[str, tuple[np.ndarray, float]]],
                     crops: list[np.ndarray], deadline: float,
                     config: FragileConfig) -> tuple[dict[str, tuple[np.ndarray, float]], dict[str, np.ndarray]]:
    """One agent call for the faces and their copies (`with_copies`), split (`split_copies`)."""
    return split_copies(vote(with_copies(crops, config), deadline), len(crops), config)


def mark_fragile(faces: Sequence[FaceRecord], copy_votes: Mapping[str, np.ndarray], controller: Any,
                 context: np.ndarray | None, config: FragileConfig) -> None:
    """Answers "uncertain" (with the reason) for decided faces whose verdict a copy flips; no-op without copies."""
    if not copy_votes or not faces:
        return
    p_copies = np.stack([decide({a: v[c] for a, v in copy_votes.items()}, controller, context=context,
                                explain=False).p_fake for c in range(len(config.copies))])
    p = np.array([face.decision.p_fake for face in faces])
    reasons = fragile_reasons(p, p_copies, faces[0].decision.threshold, margin_of(controller, config), config.copies)
    for face, reason in zip(faces, reasons):
        if reason:
            face.decision = replace(face.decision, label=UNCERTAIN, reason=reason)


def margin_of(controller: Any, config: FragileConfig) -> float:
    """The margin in force: the config's, else the controller's fitted one, else the default."""
    if config.margin is not None:
        return float(config.margin)
    fitted = {} if controller is None else dict(getattr(controller, "fitted_on", {}).get("fragile", {}))
    return float(fitted.get("margin", DEFAULT_MARGIN))


def fragile_reasons(p: np.ndarray, p_copies: np.ndarray, threshold: float, margin: float,
                    names: Sequence[str]) -> list[str]:
    """Why each face's verdict is fragile ("" when it holds).

    Args:
        p: (F,) the faces' calibrated ensemble p_fake.
        p_copies: (C, F) the same for each copy.
        threshold: the decision threshold on p_fake.
        margin: the largest move of p_fake a sound verdict may show.
        names: the C copies' names (for the reason).
    """
    p, p_copies = np.asarray(p, np.float64), np.atleast_2d(np.asarray(p_copies, np.float64))
    reasons = []
    for f in range(len(p)):
        why = ""
        for c, name in enumerate(names):
            q = p_copies[c, f]
            if not np.isfinite(q):
                continue
            flipped = (q >= threshold) != (p[f] >= threshold)
            if flipped or abs(q - p[f]) > margin:
                verb = "flips the verdict" if flipped else f"moves p_fake more than {margin:.2f}"
                why = f"{FRAGILE_PREFIX}{COPIES[name]}, the face {verb} ({p[f]:.2f} -> {q:.2f})"
                break
        reasons.append(why)
    return reasons


def fit_margin(p: np.ndarray, p_copies: np.ndarray, labels: np.ndarray, threshold: float, *,
               abstain: float = 0.10) -> dict[str, float]:
    """The margin that makes about ``abstain`` of val faces "can't tell", and what it buys.

    Flips are always abstentions; the margin takes the rest of the budget from the largest
    moves. Returns the margin, the share answered uncertain, and the accuracy of all faces and of
    the answered ones (the selective-risk point of the check).
    """
    p, p_copies, y = np.asarray(p, float), np.atleast_2d(np.asarray(p_copies, float)), np.asarray(labels, int)
    flips = ((p_copies >= threshold) != (p >= threshold)[None]).any(axis=0)
    move = np.nanmax(np.abs(p_copies - p[None]), axis=0)
    budget = max(0.0, abstain - flips.mean())
    rest = np.sort(move[~flips])[::-1]
    k = int(np.floor(budget * len(p)))
    margin = float(np.clip(rest[k] if k < len(rest) else 0.0, 1e-3, 0.999)) if len(rest) else DEFAULT_MARGIN
    uncertain = flips | (move > margin)
    correct = (p >= threshold).astype(int) == y
    return {"margin": margin, "abstain": float(uncertain.mean()), "accuracy_all": float(correct.mean()),
            "accuracy_answered": float(correct[~uncertain].mean()) if (~uncertain).any() else float("nan")}
