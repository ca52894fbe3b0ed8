"""Bootstrap by source image: every copy of a face goes in or out of a resample together.

With ``--degrade`` each source image is scored many times (clean and once per transform). A
bootstrap that resampled rows would split a face's copies between "in" and "out" and treat
them as independent, so its intervals would come out too narrow. Here a resample draws the
*sources* with replacement (multinomial counts), and every row carries its source's count as
its weight. The same counts serve every transform and every system, so differences (a
transform's AUC minus the clean AUC) are paired.

``scipy.stats.bootstrap`` resamples observations, not clusters, and calling ``roc_auc_score``
per resample costs ~1.3 ms per system and transform (hundreds of thousands of calls here); the
weighted AUC below takes every resample at once from one sort of the scores (a test checks it
against ``roc_auc_score(sample_weight=...)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # training.metrics draws its grouped resamples from here
    from training.metrics import BootstrapConfig

# Resamples handled at once: bounds the (resamples x rows) weight matrices to ~100 MB whatever
# the number of copies.
_ROWS_PER_CHUNK = 4_000_000


def source_counts(n_sources: int, config: "BootstrapConfig") -> np.ndarray:
    """(n_resamples, n_sources) times each source is drawn in each resample."""
    if n_sources < 1:
        raise ValueError("Need at least one source image to resample.")
    rng = np.random.default_rng(config.seed)
    return rng.multinomial(n_sources, np.full(n_sources, 1.0 / n_sources), size=config.n_resamples)


def weighted_aucs(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of ``p`` under each row of ``weights`` (R, N); NaN where a class has no weight.

    AUC = sum over (fake i, real j) of w_i w_j [p_i > p_j] (ties count half), divided by the
    fake weight times the real weight: Mann-Whitney with integer weights, i.e. roc_auc_score
    on the resample.
    """
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    p_sorted, fake = p[order], y[order]
    starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]])  # first row of each tied score
    out = np.full(len(weights), np.nan)
    step = max(1, _ROWS_PER_CHUNK // max(len(p), 1))
    for first in range(0, len(weights), step):
        w = np.asarray(weights[first:first + step], dtype=np.float64)[:, order]
        pos = np.add.reduceat(np.where(fake, w, 0.0), starts, axis=1)  # fake weight per score value
        neg = np.add.reduceat(np.where(fake, 0.0, w), starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg  # real weight strictly below each score value
        num = (pos * (below + 0.5 * neg)).sum(axis=1)
        den = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[first:first + step] = np.where(den > 0, num / den, np.nan)
    return out


def weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of ``values`` (N,) under each row of ``weights`` (R, N); NaN for zero weight."""
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, w @ np.asarray(values, dtype=np.float64) / total, np.nan)


def group_weights(groups: np.ndarray, config: "BootstrapConfig") -> np.ndarray | None:
    """(n_resamples, N) weights that draw whole groups (a video's real and fake crops together),
    or None when every row is its own group (a plain resample of rows is then the same thing)."""
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    if n_groups == len(codes):
        return None
    return source_counts(n_groups, config)[:, codes]


def interval(values: np.ndarray, config: "BootstrapConfig") -> list[float] | None:
    """Percentile interval of the finite resampled values (None when under half are finite)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) < max(10, config.n_resamples // 2):
        return None
    alpha = (1.0 - config.confidence) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return [float(lo), float(hi)]
