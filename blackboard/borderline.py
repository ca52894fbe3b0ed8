"""The borderline band: p_fake so close to the threshold that the answer is a coin flip.

Near the threshold the ensemble is barely better than chance (on the default bundle's held-out
val votes, 58 % right within ±0.10 of it, against 78 % overall), yet a 52 % was shown as a
bold FAKE and a 50 % as a green REAL. Inside the band the answer is "can't tell — borderline"
(label ``uncertain`` with its reason); p_fake is still reported, on a scale, never as a verdict.

The half-width is fitted on labelled val votes (`fit_borderline`): the widest band, on a grid,
inside which accuracy stays near chance (at most ``max_accuracy``) while the share of val cases
it withholds stays at most ``max_share``. ``fakeface fit-controller`` stores it in the
controller's ``fitted_on["borderline"]``; a bundle fitted before that has it fitted at load time
from its replay set (held-out val votes), and a bundle without either gets ``DEFAULT_HALF_WIDTH``.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from agents.records import JsonRecord
from blackboard.combine import vote_matrix

KEY = "borderline"  # in Controller.fitted_on
DEFAULT_HALF_WIDTH = 0.05
GRID = tuple(round(0.01 * k, 2) for k in range(1, 21))  # 0.01 .. 0.20
MIN_INSIDE = 10  # val cases needed inside a band to judge its accuracy


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Borderline(JsonRecord):
    """A band of ±``half_width`` around the decision threshold."""

    half_width: Annotated[float, Field(ge=0, lt=0.5)]  # a band of 0.5 would hold every score
    accuracy_inside: float | None = None  # val accuracy of the cases inside the band (None: not fitted)
    share_inside: float | None = None  # share of val cases inside it
    accuracy_outside: float | None = None  # val accuracy of the cases answered
    rule: str = "default"  # how it was chosen

    def inside(self, p_fake: np.ndarray, threshold: float) -> np.ndarray:
        """(N,) True where p_fake lies strictly within the band around ``threshold``."""
        return np.abs(np.asarray(p_fake, dtype=np.float64) - float(threshold)) < self.half_width

    def bounds(self, threshold: float) -> tuple[float, float]:
        """(low, high) of the band around ``threshold``, clipped to [0, 1]."""
        return max(0.0, threshold - self.half_width), min(1.0, threshold + self.half_width)

    def reason(self, p_fake: float, threshold: float) -> str:
        """The "can't tell" reason for a p_fake inside the band, in plain words."""
        low, high = self.bounds(threshold)
        text = (f"borderline: the fake score {p_fake * 100:.0f} % is between {low * 100:.0f} % and "
                f"{high * 100:.0f} %, too close to the threshold ({threshold * 100:.0f} %) to call")
        if self.accuracy_inside is not None:
            text += f"; on validation faces this close, the detector was right only {self.accuracy_inside * 100:.0f} % of the time"
        return text


def fit_borderline(p_fake: np.ndarray, labels: np.ndarray, threshold: float, *, max_accuracy: float = 0.65,
                   max_share: float = 0.15) -> Borderline:
    """The widest grid band whose inside is near chance and withholds at most ``max_share`` of val.

    Args:
        p_fake: (N,) the ensemble's p_fake on labelled val faces not used to fit it.
        labels: (N,) 0 = real, 1 = fake.
        threshold: the decision threshold.
        max_accuracy: the most accuracy inside the band still counted as "near chance".
        max_share: the largest share of val cases the band may withhold.

    Returns:
        The fitted band; ``DEFAULT_HALF_WIDTH`` (rule "default") when no grid band qualifies.
    """
    p = np.asarray(p_fake, dtype=np.float64)
    y = np.asarray(labels, dtype=int)
    if len(p) == 0 or len(p) != len(y):
        raise ValueError(f"p_fake and labels must be non-empty and of one length, received {len(p)} and {len(y)}.")
    correct = (p >= threshold) == (y == 1)
    distance = np.abs(p - threshold)
    chosen = None
    for width in GRID:
        inside = distance < width
        if inside.mean() > max_share:
            break
        if inside.sum() >= MIN_INSIDE and correct[inside].mean() <= max_accuracy:
            chosen = width
    if chosen is None:
        return Borderline(DEFAULT_HALF_WIDTH)
    inside = distance < chosen
    outside = correct[~inside].mean() if (~inside).any() else None
    return Borderline(chosen, float(correct[inside].mean()), float(inside.mean()),
                      None if outside is None else float(outside),
                      f"widest band with val accuracy <= {max_accuracy:.2f} inside and <= {max_share:.0%} of val withheld")


def _replay_p(controller: Any, replay: Any) -> np.ndarray:
    """The controller's p_fake on the replay rows, each with its own context (a context controller
    is judged in the conditions its band and error rates describe, as `fit-controller` fitted it)."""
    votes, present = vote_matrix({a: replay.votes[:, j] for j, a in enumerate(replay.agents)}, controller.agents)
    names = tuple(getattr(controller, "context_names", ()) or ())
    return controller.predict_proba(votes, present, replay.context_for(names) if names else None)


def val_error_rates(controller: Any, replay: Any, band: Borderline) -> dict[str, Any] | None:
    """What a person should know first, measured on the held-out val faces (None without them).

    Returns:
        ``cases``, ``real``, ``fake``; ``false_alarm`` (share of real faces called fake) and
        ``miss`` (share of fakes called real) among the faces answered, ``withheld`` (share
        answered "can't tell — borderline"), and both rates without the band (``*_all``).
    """
    if controller is None or replay is None or len(replay.labels) == 0:
        return None
    p, y, t = _replay_p(controller, replay), np.asarray(replay.labels, dtype=int), float(controller.threshold)
    answered = ~band.inside(p, t)
    real, fake = y == 0, y == 1

    def share(hit: np.ndarray, of: np.ndarray) -> float | None:
        return float(hit[of].mean()) if of.any() else None

    return {"cases": int(len(y)), "real": int(real.sum()), "fake": int(fake.sum()),
            "false_alarm": share(p >= t, real & answered), "miss": share(p < t, fake & answered),
            "withheld": float(1.0 - answered.mean()), "false_alarm_all": share(p >= t, real),
            "miss_all": share(p < t, fake)}


def borderline_for(controller: Any, replay: Any = None) -> Borderline:
    """The band to use with a controller: stored with it, else fitted on the replay set, else default."""
    stored = None if controller is None else getattr(controller, "fitted_on", {}).get(KEY)
    if isinstance(stored, dict):
        return Borderline.from_dict(stored)
    if controller is None or replay is None:
        return Borderline(DEFAULT_HALF_WIDTH)
    return fit_borderline(_replay_p(controller, replay), replay.labels, float(controller.threshold))
