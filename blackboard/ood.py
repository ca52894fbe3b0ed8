""""Can't tell": the uncertainty gate in front of every verdict.

A face is answered ``uncertain`` (with its reason, keeping the ensemble's p_fake) when

* it is **too small**: its box in the input is under ``min_face_px`` on a side (a 16x16 image,
  a distant face) -- the agents would classify upsampling blur;
* it is **not a face crop**: a whole non-square image (aspect beyond ``MAX_ASPECT``) that would
  be squashed to a square (``--detect off`` on a room frame); or
* it is **far outside what the agents were trained on**: the Mahalanobis distance of cheap image
  statistics of the 224x224 crop (brightness, contrast, colour, skin share, sharpness, frequency
  content) from those of the training crops is above a threshold calibrated on val at a chosen
  false-abstain rate. A whole room squashed into a crop, noise, a flat picture or a landscape
  lands there.

The statistics model is fitted by `fakeface fit-ood` (``training.fit_ood``) and stored in the
bundle as the extra ``ood`` (a small JSON file whose sha256 the manifest holds; nothing is
unpickled). A bundle without it gets the size check only.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from typing import Any, Sequence

import cv2
import numpy as np

from blackboard.case import UNCERTAIN, Case

# Bundle extra key and file of the fitted model.
BUNDLE_KEY = "ood"
BUNDLE_FILE = "ood/ood.json"
FORMAT = "fakeface-ood-mahalanobis"
# Smallest face side (input pixels) that gets a verdict.
MIN_FACE_PX = 32
# Most elongated face box (long side / short side) that gets a verdict.
MAX_ASPECT = 1.7
# Side the statistics are computed at (cheap, and independent of the crop size).
STATS_SIZE = 112
FEATURES = (
    "luma_mean", "luma_std", "chroma_a", "chroma_b", "saturation", "colourfulness", "skin_share",
    "centre_minus_border", "log_laplacian_var", "log_gradient", "high_freq_share", "luma_entropy",
)


def too_small_reason(width: float, height: float, min_face_px: int = MIN_FACE_PX) -> str:
    """The "too small" reason for a face box, or "" when it is large enough."""
    if min(width, height) < min_face_px:
        return (f"too small: the face is {width:.0f}x{height:.0f} px, under the {min_face_px} px "
                "minimum the agents can judge")
    return ""


def shape_reason(width: float, height: float, min_face_px: int = MIN_FACE_PX) -> str:
    """Why a face box cannot be judged from its size and shape alone ("" when it can).

    Besides "too small": a box whose aspect ratio is outside :data:`MAX_ASPECT` is not a face
    (MTCNN's face boxes are about 0.8:1); it is a whole non-square image (``--detect off``, a
    room frame) that would reach the agents squashed to a square.
    """
    reason = too_small_reason(width, height, min_face_px)
    if not reason and max(width, height) / max(min(width, height), 1e-9) > MAX_ASPECT:
        reason = (f"not a face crop: the {width:.0f}x{height:.0f} px input would be squashed to a square; "
                  "crop the face or let detection find it")
    return reason


def crop_features(crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Image statistics of face crops, one row per crop, columns in :data:`FEATURES` order.

    Args:
        crops: RGB uint8 crops (N, H, W, 3) or a list of (H, W, 3) arrays.

    Returns:
        float64 array (N, len(FEATURES)).
    """
    rows = [_one(np.asarray(c)) for c in crops]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))


def _one(crop: np.ndarray) -> list[float]:
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"Expected an RGB crop (H, W, 3), received shape {crop.shape}.")
    rgb = cv2.resize(np.ascontiguousarray(crop, dtype=np.uint8), (STATS_SIZE, STATS_SIZE),
                     interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float64)
    luma = lab[:, :, 0]
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    skin = (ycc[:, :, 1] >= 133) & (ycc[:, :, 1] <= 173) & (ycc[:, :, 2] >= 77) & (ycc[:, :, 2] <= 127)
    r, g, b = (rgb[:, :, i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    colourful = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    q = STATS_SIZE // 4
    centre = luma[q:-q, q:-q]
    border = np.concatenate([luma[:q].ravel(), luma[-q:].ravel(), luma[q:-q, :q].ravel(), luma[q:-q, -q:].ravel()])
    gray = luma.astype(np.float32)
    laplacian = cv2.Laplacian(gray, cv2.CV_32F)
    gradient = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    power = np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean()))) ** 2
    high = power[_high_frequencies(STATS_SIZE)].sum() / max(power.sum(), 1e-9)
    hist = np.bincount(np.clip(luma, 0, 255).astype(np.int64).ravel() // 8, minlength=32) / luma.size
    entropy = -float(np.sum(hist[hist > 0] * np.log2(hist[hist > 0])))
    return [
        luma.mean(), luma.std(), lab[:, :, 1].mean(), lab[:, :, 2].mean(), hsv[:, :, 1].mean(), colourful,
        skin.mean(), centre.mean() - border.mean(), np.log1p(laplacian.var()), np.log1p(gradient.mean()),
        high, entropy,
    ]


@functools.cache
def _high_frequencies(size: int) -> np.ndarray:
    """Mask of the centred (fftshift) spectrum beyond a quarter of the crop's size from DC."""
    yy, xx = np.mgrid[:size, :size] - size / 2
    mask = np.hypot(yy, xx) > size / 4
    mask.flags.writeable = False  # shared by every call
    return mask


@dataclass(frozen=True)
class OODModel:
    """Mahalanobis distance of crop statistics from the training crops, with its threshold."""

    mean: np.ndarray  # (D,) feature means of the training crops
    precision: np.ndarray  # (D, D) inverse of the (shrunk) feature covariance
    threshold: float  # distances above this are out of distribution
    false_abstain_rate: float  # share of val crops above the threshold when it was set
    info: dict[str, Any]  # provenance: manifest, counts, val/test figures

    def score(self, crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Distance of each crop from the training crops (larger = less like them)."""
        return self.score_features(crop_features(crops))

    def score_features(self, features: np.ndarray) -> np.ndarray:
        """Distance of feature rows (from :func:`crop_features`)."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", centred, self.precision, centred), 0.0))

    def to_json(self) -> bytes:
        return json.dumps({
            "format": FORMAT, "features": list(FEATURES), "mean": self.mean.tolist(),
            "precision": self.precision.tolist(), "threshold": self.threshold,
            "false_abstain_rate": self.false_abstain_rate, "info": self.info,
        }, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> "OODModel":
        """Parses :meth:`to_json` output.

        Raises:
            ValueError: another format, other features, or malformed arrays.
        """
        raw = json.loads(data)
        if raw.get("format") != FORMAT or tuple(raw.get("features", ())) != FEATURES:
            raise ValueError(f"Not a {FORMAT} model for features {FEATURES}; refit it with `fakeface fit-ood`.")
        mean = np.asarray(raw["mean"], dtype=np.float64)
        precision = np.asarray(raw["precision"], dtype=np.float64)
        if mean.shape != (len(FEATURES),) or precision.shape != (len(FEATURES),) * 2:
            raise ValueError(f"OOD model arrays have shapes {mean.shape}, {precision.shape}; refit it.")
        return cls(mean=mean, precision=precision, threshold=float(raw["threshold"]),
                   false_abstain_rate=float(raw["false_abstain_rate"]), info=dict(raw.get("info", {})))


def fit_ood_model(train_features: np.ndarray, val_features: np.ndarray, *, false_abstain_rate: float = 0.03,
                  info: dict[str, Any] | None = None) -> OODModel:
    """Fits the distance on training crops and sets the threshold on val crops.

    Args:
        train_features: :func:`crop_features` of training crops (>= 2 * features rows).
        val_features: the same for validation crops, which set the threshold.
        false_abstain_rate: share of val crops to leave above the threshold.
        info: provenance stored with the model.
    """
    from sklearn.covariance import LedoitWolf

    if not 0.0 < false_abstain_rate < 0.5:
        raise ValueError(f"false_abstain_rate must be in (0, 0.5), received {false_abstain_rate}.")
    if len(train_features) < 2 * len(FEATURES) or len(val_features) < 20:
        raise ValueError(f"Too few crops to fit: {len(train_features)} train (need {2 * len(FEATURES)}), "
                         f"{len(val_features)} val (need 20).")
    lw = LedoitWolf().fit(train_features)
    model = OODModel(mean=lw.location_, precision=lw.precision_, threshold=float("inf"),
                     false_abstain_rate=false_abstain_rate, info=dict(info or {}))
    threshold = float(np.quantile(model.score_features(val_features), 1.0 - false_abstain_rate))
    return replace(model, threshold=threshold)


def load_ood(bundle: Any) -> OODModel | None:
    """The bundle's OOD model (checksum verified by the bundle), or None when it has none."""
    data = bundle.read_extra(BUNDLE_KEY)
    return None if data is None else OODModel.from_json(data)


class UncertaintyGate:
    """Turns decisions on faces that cannot be judged into ``uncertain`` with a reason.

    Args:
        ood: the bundle's statistics model (None: only the size check).
        min_face_px: smallest face side, in input pixels, that gets a verdict.
    """

    def __init__(self, ood: OODModel | None = None, *, min_face_px: int = MIN_FACE_PX) -> None:
        self.ood = ood
        self.min_face_px = int(min_face_px)

    @classmethod
    def from_bundle(cls, bundle: Any, *, min_face_px: int = MIN_FACE_PX) -> "UncertaintyGate":
        return cls(load_ood(bundle), min_face_px=min_face_px)

    def assess(self, crops: Sequence[np.ndarray], sizes: Sequence[tuple[float, float]],
               features: np.ndarray | None = None) -> tuple[list[str], list[float | None]]:
        """Per face: the reason it cannot be judged ("" when it can) and its OOD score.

        Args:
            crops: the crops the agents see.
            sizes: (width, height) of each face's box in the input image.
            features: the crops' :func:`crop_features`, computed where the crops are (the
                serving ingress); None computes them from ``crops``.
        """
        scores: list[float | None] = [None] * len(sizes)
        if self.ood is not None and len(sizes):
            rows = crop_features(crops) if features is None else np.asarray(features)
            scores = [float(s) for s in self.ood.score_features(rows)]
        reasons = []
        for (width, height), score in zip(sizes, scores):
            reason = shape_reason(width, height, self.min_face_px)
            if not reason and score is not None and score > self.ood.threshold:
                reason = (f"not a face, or far outside what the agents were trained on (out-of-distribution "
                          f"score {score:.1f} above {self.ood.threshold:.1f})")
            reasons.append(reason)
        return reasons, scores

    def apply(self, case: Case, features: np.ndarray | None = None) -> Case:
        """Marks the case's undecidable faces ``uncertain`` (p_fake and votes are kept).

        Args:
            case: the decided case.
            features: :func:`crop_features` of every face, in order, when the crops stayed with
                the workers; None: computed from the faces' crops. A face without its crop (the
                server keeps none unless heat maps are asked for) and without features gets no
                OOD score, but its box's size and shape are checked all the same.
        """
        faces = list(case.faces)
        scored = faces if features is not None or self.ood is None else [f for f in faces if f.crop is not None]
        reasons, scores = self.assess([f.crop for f in scored], [(f.box[2], f.box[3]) for f in scored], features)
        found = {id(f): (reason, score) for f, reason, score in zip(scored, reasons, scores)}
        for face in faces:
            if id(face) in found:
                reason, face.ood_score = found[id(face)]
            else:
                reason = shape_reason(face.box[2], face.box[3], self.min_face_px)
            if reason and face.decision is not None:
                face.decision = replace(face.decision, label=UNCERTAIN, reason=reason)
        return case


__all__ = ["BUNDLE_KEY", "BUNDLE_FILE", "FEATURES", "MIN_FACE_PX", "OODModel", "UncertaintyGate",
           "crop_features", "fit_ood_model", "load_ood", "shape_reason", "too_small_reason"]
