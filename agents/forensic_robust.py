"""Forensic features that survive what a screenshot does to a face: resizing, blur, re-encoding.

The first feature set (:mod:`agents.forensic_features`) reads fine detail at 224 px: a face
shown at half size and scaled back up, or blurred, loses exactly that. These groups measure
evidence at *canonical* scales below the detail a player's resize removes (the crop area-shrunk
to 112 and 64 px), as ratios between regions of the same crop (a global blur or gain cancels),
or against the crop's own bandwidth:

=========  ===========================================================================
group      what it measures
=========  ===========================================================================
canon      Laplacian residual level of Y/Cr/Cb and gradient, inner and ring vs border,
           at 112 and 64 px
npr        neighbouring-pixel residual (the crop minus its 2x nearest down-up copy,
           after NPR, Tan et al. 2024): regional levels, kurtosis, cross-channel
           correlation, at 224 and 112 px (generators' upsampling leaves it)
bandnorm   the radial log spectrum resampled at multiples of the crop's own RMS
           bandwidth (whole crop and inner square), and that bandwidth
colourmix  Y/Cr/Cb correlations per region, and histogram distances inner/ring vs border
profile    radial profile at 112 px in 10 thin annuli: Y/Cr/Cb means, residual and
           gradient energy, each relative to the crop's own mean (seams on the ring)
quality    how degraded the crop is (gradient and residual across scales, noise level),
           so the trees can read the other groups in its light
=========  ===========================================================================
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

CANON_SIZES = (112, 64)
NPR_SIZES = (224, 112)
PROFILE_SIZE = 112
N_ANNULI = 10
BANDNORM_MULTIPLES = np.geomspace(0.5, 4.0, 10)
EPS = 1e-6
_CH = ("Y", "Cr", "Cb")


def group_names() -> dict[str, list[str]]:
    """Feature names of each group, in output order."""
    groups: dict[str, list[str]] = {}
    groups["canon"] = [f"{stat}_{s}" for s in CANON_SIZES for stat in
                       [f"lap{c}_{r}_border" for c in _CH for r in ("inner", "ring")]
                       + [f"lap{c}_border_level" for c in _CH] + ["grad_inner_border", "grad_ring_border"]]
    groups["npr"] = [f"{stat}_{s}" for s in NPR_SIZES for stat in
                     [f"{c}_inner_border" for c in _CH] + [f"{c}_border_level" for c in _CH]
                     + ["kurtY_inner", "kurtY_border", "corr_Y_Cr", "corr_Y_Cb"]]
    groups["bandnorm"] = [f"{part}_{stat}" for part in ("whole", "inner") for stat in
                          ["log_bandwidth"] + [f"at{m:.2f}b" for m in BANDNORM_MULTIPLES]]
    groups["colourmix"] = ([f"corr_{a}_{b}_{r}" for r in ("inner", "ring", "border")
                            for a, b in (("Y", "Cr"), ("Y", "Cb"), ("Cr", "Cb"))]
                           + [f"corrdiff_{a}_{b}" for a, b in (("Y", "Cr"), ("Y", "Cb"), ("Cr", "Cb"))]
                           + [f"hist{h}_{r}_border" for h in ("CrCb", "Y") for r in ("inner", "ring")])
    groups["profile"] = [f"{stat}_a{i}" for stat in ("Y", "Cr", "Cb", "loglap", "loggrad") for i in range(N_ANNULI)]
    groups["quality"] = ["grad_224_over_112", "grad_112_over_64", "lap_224_over_112", "log_noise_mad"]
    return groups


@lru_cache(maxsize=8)
def _layout(size: int, inner_radius: float, ring_radius: float) -> tuple[tuple[np.ndarray, ...], np.ndarray,
                                                                          np.ndarray]:
    """Region masks (inner, ring, border), annulus labels and annulus sizes of a square crop."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    half = size / 2
    r = np.sqrt(((yy - (size - 1) / 2) / half) ** 2 + ((xx - (size - 1) / 2) / half) ** 2)
    masks = tuple(m.astype(np.uint8) for m in (r < inner_radius, (r >= inner_radius) & (r < ring_radius),
                                                 r >= ring_radius))
    # Thin annuli out to the edge midpoints; the corners beyond join the last one.
    labels = np.minimum((r / (1.0 / N_ANNULI)).astype(np.int64), N_ANNULI - 1).ravel()
    return masks, labels, np.bincount(labels, minlength=N_ANNULI).astype(np.float64)


def _region_rms(maps: np.ndarray, masks: tuple[np.ndarray, ...]) -> np.ndarray:
    """Root mean square of each channel of ``maps`` in each region: (channels, regions)."""
    sq = maps * maps
    return np.sqrt(np.array([cv2.mean(sq, mask=m)[:sq.shape[2]] for m in masks]).T)


def _gradient(y: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a float32 plane.

    NumPy, not ``cv2.magnitude``: OpenCV's (IPP) version rounds differently with the buffer's
    memory alignment, and training and serving must compute bit-identical features.
    """
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def _logratio(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    return np.log((np.asarray(a) + EPS) / (np.asarray(b) + EPS))


def _ycrcb(rgb: np.ndarray, size: int) -> np.ndarray:
    if rgb.shape[0] != size or rgb.shape[1] != size:
        interp = cv2.INTER_AREA if size < rgb.shape[0] else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (size, size), interpolation=interp)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32)


def _canon(ycrcb: np.ndarray, masks: tuple[np.ndarray, ...]) -> tuple[np.ndarray, float]:
    """Residual and gradient ratios at one canonical scale, and its mean gradient."""
    lap = cv2.Laplacian(ycrcb, cv2.CV_32F, ksize=1)
    rms = _region_rms(lap, masks)  # (3 channels, 3 regions)
    y = ycrcb[..., 0]
    grad = _gradient(y)
    g = np.array([cv2.mean(grad, mask=m)[0] for m in masks])
    values = np.concatenate([_logratio(rms[:, :2], rms[:, 2:3]).ravel(), np.log(rms[:, 2] + EPS),
                             _logratio(g[:2], g[2])])
    return values, float(grad.mean())


def _npr(ycrcb: np.ndarray, masks: tuple[np.ndarray, ...]) -> np.ndarray:
    """Statistics of the crop minus its nearest-neighbour 2x down-up copy."""
    h, w = ycrcb.shape[:2]
    coarse = np.ascontiguousarray(ycrcb[::2, ::2])
    up = cv2.resize(coarse, (coarse.shape[1] * 2, coarse.shape[0] * 2), interpolation=cv2.INTER_NEAREST)[:h, :w]
    res = cv2.subtract(ycrcb, up)
    sq = res * res
    rms = np.sqrt(np.array([cv2.mean(sq, mask=m)[:3] for m in masks]).T)  # (channels, regions)
    y4 = sq[..., 0] * sq[..., 0]
    m4 = np.array([cv2.mean(y4, mask=masks[i])[0] for i in (0, 2)])
    kurt = m4 / (rms[0, [0, 2]] ** 4 + EPS)
    whole = cv2.mean(sq)[:3]
    cross = cv2.mean(cv2.merge([res[..., 0] * res[..., 1], res[..., 0] * res[..., 2]]))[:2]
    # Residuals are close to zero-mean, so second moments stand in for (co)variances.
    corr = [cross[k] / (np.sqrt(whole[0] * whole[c]) + EPS) for k, c in enumerate((1, 2))]
    return np.concatenate([_logratio(rms[:, 0], rms[:, 2]), np.log(rms[:, 2] + EPS), np.log(kurt + EPS), corr])


def _bandnorm(logpow: np.ndarray) -> np.ndarray:
    """The radial log spectrum sampled at multiples of its RMS bandwidth, relative to the value there."""
    n = len(logpow)
    f = (np.arange(n) + 0.5) / n  # bin centres, 1.0 = Nyquist
    power = 10.0 ** logpow.astype(np.float64) * f  # times the annulus' circumference: power per band
    bandwidth = float(np.sqrt((f**2 * power).sum() / (power.sum() + EPS)))
    bandwidth = min(max(bandwidth, f[0]), 1.0)
    log_f = np.log(f)
    at = np.interp(np.log(np.minimum(bandwidth * BANDNORM_MULTIPLES, f[-1])), log_f, logpow)
    return np.concatenate([[np.log(bandwidth)], at - np.interp(np.log(bandwidth), log_f, logpow)])


def _colourmix(ycrcb: np.ndarray, masks: tuple[np.ndarray, ...]) -> np.ndarray:
    """Channel correlations per region and histogram distances to the border region."""
    products = cv2.merge([ycrcb[..., 0] * ycrcb[..., 1], ycrcb[..., 0] * ycrcb[..., 2],
                          ycrcb[..., 1] * ycrcb[..., 2]])
    corr = []
    for m in masks:
        mean, std = cv2.meanStdDev(ycrcb, mask=m)
        mean, std = mean[:, 0], std[:, 0]
        e = cv2.mean(products, mask=m)[:3]
        corr.append([(e[k] - mean[a] * mean[b]) / (std[a] * std[b] + 1e-3)
                     for k, (a, b) in enumerate(((0, 1), (0, 2), (1, 2)))])
    corr = np.array(corr)  # (regions, pairs)
    u8 = np.clip(ycrcb, 0, 255).astype(np.uint8)
    chroma = [cv2.normalize(cv2.calcHist([u8], [1, 2], m, [16, 16], [0, 256, 0, 256]), None, 1, 0, cv2.NORM_L1)
              for m in masks]
    luma = [cv2.normalize(cv2.calcHist([u8], [0], m, [32], [0, 256]), None, 1, 0, cv2.NORM_L1) for m in masks]
    dist = [cv2.compareHist(h[r], h[2], cv2.HISTCMP_BHATTACHARYYA) for h in (chroma, luma) for r in (0, 1)]
    return np.concatenate([corr.ravel(), corr[0] - corr[2], dist])


def _profile(ycrcb: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-annulus colour means and log residual/gradient energy, each minus the crop's own mean."""
    y = ycrcb[..., 0]
    lap = cv2.Laplacian(y, cv2.CV_32F, ksize=1)
    grad = _gradient(y)
    maps = [ycrcb[..., 0], ycrcb[..., 1], ycrcb[..., 2], lap * lap, grad]
    out = []
    for k, m in enumerate(maps):
        means = np.bincount(labels, weights=m.ravel().astype(np.float64), minlength=N_ANNULI) / np.maximum(counts, 1)
        if k >= 3:  # energies: relative on a log scale, so a global blur or gain cancels
            means = np.log(means + EPS)
        out.append(means - means.mean())
    return np.concatenate(out)


def robust_features(rgb: np.ndarray, whole_logpow: np.ndarray, inner_logpow: np.ndarray, lap_y: np.ndarray,
                    grad_mean: float, *, inner_radius: float, ring_radius: float) -> np.ndarray:
    """The robust groups' features of one prepared crop, in :func:`group_names` order.

    Args:
        rgb: (H, W, 3) uint8 RGB crop at the contract's size.
        whole_logpow: its radial log power spectrum (from the first feature set).
        inner_logpow: the same of its inner square.
        lap_y: the 4-neighbour Laplacian of its Y channel (computed once, by the first set).
        grad_mean: the mean Sobel gradient magnitude of its Y channel.
        inner_radius: the inner region's normalised radius (shared with the first set).
        ring_radius: the ring's outer normalised radius.
    """
    canon, grads = [], []
    scaled = {s: _ycrcb(rgb, s) for s in sorted(set(CANON_SIZES + NPR_SIZES + (PROFILE_SIZE,)))}
    for s in CANON_SIZES:
        values, g = _canon(scaled[s], _layout(s, inner_radius, ring_radius)[0])
        canon.append(values)
        grads.append(g)
    npr = [_npr(scaled[s], _layout(s, inner_radius, ring_radius)[0]) for s in NPR_SIZES]
    masks, labels, counts = _layout(PROFILE_SIZE, inner_radius, ring_radius)
    colourmix = _colourmix(scaled[PROFILE_SIZE], masks)
    profile = _profile(scaled[PROFILE_SIZE], labels, counts)
    # Degradation descriptors: detail at full size relative to the coarser scales, and noise.
    lap_mid = cv2.Laplacian(scaled[CANON_SIZES[0]][..., 0], cv2.CV_32F, ksize=1)
    abs_lap = np.abs(lap_y).ravel()
    noise = float(np.partition(abs_lap, len(abs_lap) // 2)[len(abs_lap) // 2]) / 0.6745  # robust sigma (MAD)
    quality = np.array([_logratio(grad_mean, grads[0]), _logratio(grads[0], grads[1]),
                        _logratio(float(np.sqrt((lap_y**2).mean())), float(np.sqrt((lap_mid**2).mean()))),
                        np.log(noise + EPS)])
    return np.concatenate([*canon, *npr, _bandnorm(whole_logpow), _bandnorm(inner_logpow), colourmix, profile,
                           quality]).astype(np.float32)
