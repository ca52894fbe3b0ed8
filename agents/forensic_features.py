"""Hand-made forensic features of a face crop, in named groups, for the `forensic` agent.

A face swap pastes a generated face into a real frame: the pasted region's colour, noise and
detail rarely match the surroundings exactly, and generation and blending leave traces in the
frequency spectrum. The features measure those, comparing three concentric regions of the
crop (``inner`` face, the ``ring`` where blending seams lie, the ``border`` of surroundings):

======== ===========================================================================
group    what it measures
======== ===========================================================================
colour   mean/std of Y, Cr, Cb per region; inner-border and inner-ring differences
saturation  HSV saturation mean/std per region and their inner-border differences
spectrum radially averaged log power spectrum of the windowed gray crop (48 bins),
         of its inner square (24 bins), spectral slope and high-frequency share
noise    Laplacian residual of Y, Cr, Cb per region: std, kurtosis; inner/border ratios
sharpness gradient magnitude per region and inner/border, inner/ring ratios
jpeg     8x8 blockiness of Y (block-edge vs interior steps), whole crop and inner square
======== ===========================================================================

Version 2 adds the groups of :mod:`agents.forensic_robust` (canon, npr, bandnorm, colourmix,
profile, quality): evidence measured at canonical scales, as ratios, or against the crop's own
bandwidth, so that a face shown smaller, blurred or re-encoded keeps most of it.

The input is the forensic contract's prepared batch (RGB, 224x224, values 0..255 as uint8 or
as the float32 that `agents.preprocessing.prepare_batch` gives with ``scale="raw"``), so
training and serving share one code path. Everything is per image, vectorised with OpenCV and
NumPy, about 3-4 ms per 224 px crop on one core (see ``benchmarks/bench_forensic.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

from agents.forensic_robust import group_names as _robust_group_names
from agents.forensic_robust import robust_features
from agents.preprocessing import Preprocessing

# Bump whenever a feature's definition changes: models and feature caches record it.
FEATURE_VERSION = 2
# The input contract of the forensic agent (stored in the bundle like any agent's).
CONTRACT = Preprocessing(height=224, width=224, channels=3, scale="raw", color="rgb")
# Region boundaries on the normalised elliptical radius (0 at the centre, 1 at the edge midpoints).
INNER_RADIUS = 0.45
RING_RADIUS = 0.75
REGIONS = ("inner", "ring", "border")
SPECTRUM_BINS = 48
INNER_SPECTRUM_BINS = 24
EPS = 1e-6
_CHANNELS = ("Y", "Cr", "Cb")


@dataclass(frozen=True)
class _Geometry:
    """Masks and spectrum bin indices for one crop size (computed once per size)."""

    masks: tuple[np.ndarray, ...]  # one (H, W) uint8 mask per region, in REGIONS order
    inner_box: tuple[slice, slice]  # the central square inside the inner region
    window: np.ndarray  # (H, W) float32 2-D Hann window
    inner_window: np.ndarray  # Hann window of the inner square
    spectrum: tuple[np.ndarray, np.ndarray, np.ndarray]  # kept frequencies, their radial bin, bin sizes
    inner_spectrum: tuple[np.ndarray, np.ndarray, np.ndarray]  # the same for the inner square


def _radial_bins(h: int, w: int, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of the frequencies kept (0 < radius <= Nyquist), their bin, and bin sizes."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.sqrt(fy**2 + fx**2) / 0.5  # 1.0 at Nyquist
    bins = np.floor(radius * n_bins).astype(np.int64)
    bins[(radius > 1.0) | (radius == 0)] = -1  # corners beyond Nyquist and DC are left out
    bins = np.minimum(bins, n_bins - 1).ravel()
    counts = np.bincount(bins[bins >= 0], minlength=n_bins).astype(np.float64)
    return np.flatnonzero(bins >= 0), bins[bins >= 0], counts


@lru_cache(maxsize=4)
def _geometry(h: int, w: int) -> _Geometry:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.sqrt(((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2)
    masks = tuple(m.astype(np.uint8) for m in (r < INNER_RADIUS, (r >= INNER_RADIUS) & (r < RING_RADIUS),
                                                 r >= RING_RADIUS))
    # The largest centred square inside the inner ellipse, rounded down to whole 8x8 blocks.
    half_h = int(h / 2 * INNER_RADIUS / np.sqrt(2)) // 8 * 8 or 8
    half_w = int(w / 2 * INNER_RADIUS / np.sqrt(2)) // 8 * 8 or 8
    cy, cx = h // 2 // 8 * 8, w // 2 // 8 * 8
    box = (slice(cy - half_h, cy + half_h), slice(cx - half_w, cx + half_w))
    return _Geometry(
        masks=masks, inner_box=box,
        window=np.outer(np.hanning(h), np.hanning(w)).astype(np.float32),
        inner_window=np.outer(np.hanning(2 * half_h), np.hanning(2 * half_w)).astype(np.float32),
        spectrum=_radial_bins(h, w, SPECTRUM_BINS),
        inner_spectrum=_radial_bins(2 * half_h, 2 * half_w, INNER_SPECTRUM_BINS),
    )


def _names() -> tuple[tuple[str, ...], dict[str, tuple[int, ...]]]:
    """Feature names in output order and each group's column indices."""
    groups: dict[str, list[str]] = {}
    stats = [f"{s}_{c}_{r}" for s in ("mean", "std") for c in _CHANNELS for r in REGIONS]
    groups["colour"] = stats + [f"diff_{c}_{a}_{b}" for a, b in (("inner", "border"), ("inner", "ring"))
                                for c in _CHANNELS] + [f"stdratio_{c}_inner_border" for c in _CHANNELS]
    groups["saturation"] = [f"{s}_S_{r}" for s in ("mean", "std") for r in REGIONS] + [
        "diff_S_inner_border", "stdratio_S_inner_border"]
    groups["spectrum"] = ([f"logpow_{i}" for i in range(SPECTRUM_BINS)]
                          + [f"inner_logpow_{i}" for i in range(INNER_SPECTRUM_BINS)]
                          + ["slope", "inner_slope", "hf_share", "inner_hf_share", "inner_minus_whole_hf"])
    groups["noise"] = ([f"{s}_lap{c}_{r}" for s in ("std", "kurt") for c in _CHANNELS for r in REGIONS]
                       + [f"stdratio_lap{c}_inner_border" for c in _CHANNELS])
    groups["sharpness"] = [f"grad_{r}" for r in REGIONS] + ["gradratio_inner_border", "gradratio_inner_ring"]
    groups["jpeg"] = [f"blockiness_{a}_{d}" for a in ("whole", "inner") for d in ("x", "y")] + [
        "blockiness_whole", "blockiness_inner"]
    groups.update(_robust_group_names())
    names: list[str] = []
    index: dict[str, tuple[int, ...]] = {}
    for group, cols in groups.items():
        index[group] = tuple(range(len(names), len(names) + len(cols)))
        names.extend(f"{group}.{c}" for c in cols)
    return tuple(names), index


FEATURE_NAMES, GROUPS = _names()
N_FEATURES = len(FEATURE_NAMES)


def _log_radial_power(gray: np.ndarray, window: np.ndarray,
                      bins: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """log10 of the azimuthally averaged power spectrum of a zero-mean, windowed gray image."""
    keep, index, counts = bins
    x = (gray - gray.mean()) * window
    spec = cv2.dft(x, flags=cv2.DFT_COMPLEX_OUTPUT).reshape(-1, 2)[keep].astype(np.float64)
    power = spec[:, 0] ** 2 + spec[:, 1] ** 2
    sums = np.bincount(index, weights=power, minlength=len(counts))
    return np.log10(sums / np.maximum(counts, 1.0) + EPS)


def _spectrum_summary(logpow: np.ndarray) -> tuple[float, float]:
    """Slope of log power against log frequency, and the share of power in the top third of bands."""
    n = len(logpow)
    logf = np.log10((np.arange(n) + 0.5) / n)
    slope = float(np.polyfit(logf[1:], logpow[1:], 1)[0])
    power = 10.0 ** logpow
    return slope, float(power[2 * n // 3:].sum() / (power.sum() + EPS))


def _blockiness(y: np.ndarray) -> tuple[float, float]:
    """Mean absolute step across 8-pixel block edges over the mean step inside blocks (x, y)."""
    out = []
    for axis in (1, 0):
        steps = np.abs(np.diff(y, axis=axis))
        means = steps.mean(axis=1 - axis)  # one mean step per position along `axis`
        at_edge = (np.arange(len(means)) % 8) == 7
        out.append(float(means[at_edge].mean() / (means[~at_edge].mean() + EPS)))
    return out[0], out[1]


def _as_uint8_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Forensic features need an RGB image (H, W, 3), received shape {image.shape}.")
    if image.dtype != np.uint8:
        # The raw-scale contract holds whole numbers 0..255 as float32: this is exact.
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def image_features(image: np.ndarray) -> np.ndarray:
    """The feature vector of one prepared RGB crop.

    Args:
        image: (H, W, 3) RGB, uint8 or float32 with values 0..255 (the forensic contract's
            prepared input; H, W >= 32).

    Returns:
        float32 array of shape ``(N_FEATURES,)`` in ``FEATURE_NAMES`` order.
    """
    rgb = _as_uint8_rgb(image)
    h, w = rgb.shape[:2]
    if h < 32 or w < 32:
        raise ValueError(f"Forensic features need at least 32x32 pixels, received {h}x{w}.")
    geo = _geometry(h, w)
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    sat = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32)
    lap = cv2.Laplacian(ycrcb, cv2.CV_32F, ksize=1)  # per channel: the 4-neighbour residual
    y = ycrcb[..., 0]
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
    # NumPy, not cv2.magnitude, whose rounding varies with the buffers' memory alignment: training
    # and serving must compute bit-identical features.
    grad = np.sqrt(gx * gx + gy * gy)

    # Per-region statistics with OpenCV's masked reductions (one pass per region and map).
    # cv2.merge, not np.dstack: the same interleaved channels, 5x faster (0.07 ms, not 0.4).
    colour_sat = cv2.merge([ycrcb, sat])
    lap2 = lap * lap
    lap2_grad = cv2.merge([lap2, grad])
    lap4 = lap2 * lap2
    mean, std, lap_ms, lap_m4, grad_mean = [], [], [], [], []
    for mask in geo.masks:
        m, s = cv2.meanStdDev(colour_sat, mask=mask)
        mean.append(m[:, 0])
        std.append(s[:, 0])
        lg = cv2.mean(lap2_grad, mask=mask)
        lap_ms.append(lg[:3])
        grad_mean.append(lg[3])
        lap_m4.append(cv2.mean(lap4, mask=mask)[:3])
    mean, std = np.array(mean).T, np.array(std).T  # (4: Y, Cr, Cb, S; 3 regions)
    lap_ms, lap_m4 = np.array(lap_ms).T, np.array(lap_m4).T  # E[r^2], E[r^4] per channel and region
    lap_std = np.sqrt(lap_ms)  # the residual's mean is ~0, so its RMS is its std
    lap_kurt = lap_m4 / (lap_ms**2 + EPS)
    grad_mean = np.array(grad_mean)
    inner, ring, border = 0, 1, 2

    colour = np.concatenate([
        mean[:3].ravel(), std[:3].ravel(),
        mean[:3, inner] - mean[:3, border], mean[:3, inner] - mean[:3, ring],
        (std[:3, inner] + EPS) / (std[:3, border] + EPS),
    ])
    saturation = np.concatenate([mean[3], std[3], [mean[3, inner] - mean[3, border],
                                                  (std[3, inner] + EPS) / (std[3, border] + EPS)]])
    gray = y / 255.0
    box = gray[geo.inner_box]
    whole_pow = _log_radial_power(gray, geo.window, geo.spectrum)
    inner_pow = _log_radial_power(np.ascontiguousarray(box), geo.inner_window, geo.inner_spectrum)
    slope, hf = _spectrum_summary(whole_pow)
    inner_slope, inner_hf = _spectrum_summary(inner_pow)
    spectrum = np.concatenate([whole_pow, inner_pow, [slope, inner_slope, hf, inner_hf, inner_hf - hf]])
    noise = np.concatenate([lap_std.ravel(), lap_kurt.ravel(), (lap_std[:, inner] + EPS) / (lap_std[:, border] + EPS)])
    sharpness = np.concatenate([grad_mean, [(grad_mean[inner] + EPS) / (grad_mean[border] + EPS),
                                            (grad_mean[inner] + EPS) / (grad_mean[ring] + EPS)]])
    bx, by = _blockiness(y)
    ibx, iby = _blockiness(y[geo.inner_box])
    jpeg = np.array([bx, by, ibx, iby, (bx + by) / 2, (ibx + iby) / 2])
    robust = robust_features(rgb, whole_pow, inner_pow, lap[..., 0], float(grad.mean()),
                             inner_radius=INNER_RADIUS, ring_radius=RING_RADIUS)
    out = np.concatenate([colour, saturation, spectrum, noise, sharpness, jpeg, robust]).astype(np.float32)
    if out.shape != (N_FEATURES,):  # guards the name table against drift
        raise AssertionError(f"feature count {out.shape} != {N_FEATURES} names")
    return out


def batch_features(images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Feature matrix ``(N, N_FEATURES)`` float32 of prepared crops (a list or an (N, H, W, 3) array)."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    out = np.empty((len(images), N_FEATURES), dtype=np.float32)
    for i, image in enumerate(images):
        out[i] = image_features(image)
    return out
