"""Sparse-feature statistics (SFNet paper, sections 3-4) as mergeable partial sums.

Each partition of the catalog contributes sums that add up exactly across
partitions, so Dask computes them in one streaming pass with memory bounded
by the number of features, never by rows:

* per feature: how often it is active, the sum, sum of squares and maximum of
  its activation, and its top-activating galaxies (exemplars);
* the Gram matrix of activations and their products with every label, from
  which follow the feature-feature and feature-label correlation matrices and,
  by least squares on the normal equations, the share of each target's variance
  explained by its ``m`` most frequent features;
* a bounded random sample of (BPT coordinates, activations) for the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["FeatureStatistics", "FeatureSums", "feature_partial", "finish_features"]

EXEMPLARS = 8


@dataclass
class FeatureSums:
    """Partial sums over some rows; ``+`` merges two.

    ``labels`` get sums for correlations (per label l, over rows where l is
    known: n_l, sum x, sum x^2, sum x y, sum y, sum y^2); ``targets`` (a few)
    also get the full Gram matrix over their known rows, for least squares.
    """

    n_features: int
    labels: list[str]
    targets: list[str]
    n: int
    count: np.ndarray  # (F,) rows where the feature is active
    total: np.ndarray  # (F,) sum of activations
    total_sq: np.ndarray
    maximum: np.ndarray
    gram: np.ndarray  # (F, F) sum x_f x_g
    label_n: np.ndarray  # (L,)
    label_x: np.ndarray  # (L, F)
    label_xx: np.ndarray  # (L, F)
    label_xy: np.ndarray  # (L, F)
    label_y: np.ndarray  # (L,)
    label_yy: np.ndarray  # (L,)
    target_gram: np.ndarray  # (T, F, F)
    top_values: np.ndarray  # (F, E)
    top_ids: np.ndarray  # (F, E)
    sample: pd.DataFrame | None = None

    @classmethod
    def empty(cls, n_features: int, labels: list[str], targets: list[str]) -> FeatureSums:
        f, n_labels = n_features, len(labels)
        return cls(n_features, labels, targets, 0, np.zeros(f), np.zeros(f), np.zeros(f),
                   np.zeros(f), np.zeros((f, f)), np.zeros(n_labels), np.zeros((n_labels, f)),
                   np.zeros((n_labels, f)), np.zeros((n_labels, f)), np.zeros(n_labels),
                   np.zeros(n_labels), np.zeros((len(targets), f, f)),
                   np.full((f, EXEMPLARS), -np.inf), np.full((f, EXEMPLARS), -1, dtype=np.int64))

    def __add__(self, other: FeatureSums) -> FeatureSums:
        values = np.concatenate([self.top_values, other.top_values], axis=1)
        ids = np.concatenate([self.top_ids, other.top_ids], axis=1)
        keep = np.argsort(-values, axis=1, kind="stable")[:, :EXEMPLARS]
        samples = [s for s in (self.sample, other.sample) if s is not None]
        return FeatureSums(
            self.n_features, self.labels, self.targets, self.n + other.n,
            self.count + other.count, self.total + other.total,
            self.total_sq + other.total_sq, np.maximum(self.maximum, other.maximum),
            self.gram + other.gram, self.label_n + other.label_n,
            self.label_x + other.label_x, self.label_xx + other.label_xx,
            self.label_xy + other.label_xy, self.label_y + other.label_y,
            self.label_yy + other.label_yy, self.target_gram + other.target_gram,
            np.take_along_axis(values, keep, 1), np.take_along_axis(ids, keep, 1),
            pd.concat(samples, ignore_index=True) if samples else None)


def _per_feature(idx: np.ndarray, weights: np.ndarray, f: int) -> np.ndarray:
    return np.bincount(idx.ravel(), weights=weights.ravel(), minlength=f)


def _gram(idx: np.ndarray, val: np.ndarray, f: int) -> np.ndarray:
    """sum over rows of x x^T for k-sparse rows, as one bincount over k^2 pairs per row."""
    pairs = idx[:, :, None] * f + idx[:, None, :]
    products = val[:, :, None] * val[:, None, :]
    return np.bincount(pairs.ravel(), weights=products.ravel(), minlength=f * f).reshape(f, f)


def feature_partial(act_idx: np.ndarray, act_val: np.ndarray, object_id: np.ndarray,
                    labels: dict[str, np.ndarray], targets: list[str], n_features: int,
                    sample_rows: int, bpt: pd.DataFrame | None, seed: int) -> FeatureSums:
    """Sums over one partition: (n, k) active indices and values, ids, label columns.

    Work is proportional to rows x k (x k for the Gram matrix), never rows x features.
    """
    f = n_features
    sums = FeatureSums.empty(f, list(labels), list(targets))
    n = len(act_idx)
    if n == 0:
        return sums
    # a zero activation is "not active": its index may be anything, so give it no weight
    val = act_val.astype(np.float64)
    idx = np.where(val != 0, act_idx.astype(np.int64), 0)
    sums.n = n
    sums.count = _per_feature(idx, (val != 0).astype(np.float64), f)
    sums.total = _per_feature(idx, val, f)
    sums.total_sq = _per_feature(idx, val * val, f)
    sums.gram = _gram(idx, val, f)
    for j, (name, values) in enumerate(labels.items()):
        known = np.isfinite(values)
        ik, vk, yk = idx[known], val[known], values[known].astype(np.float64)
        sums.label_n[j] = known.sum()
        sums.label_x[j] = _per_feature(ik, vk, f)
        sums.label_xx[j] = _per_feature(ik, vk * vk, f)
        sums.label_xy[j] = _per_feature(ik, vk * yk[:, None], f)
        sums.label_y[j] = yk.sum()
        sums.label_yy[j] = (yk * yk).sum()
        if name in targets:
            sums.target_gram[targets.index(name)] = _gram(ik, vk, f)
    # maximum and exemplars: entries sorted by feature, then by activation, largest first
    flat_idx, flat_val = idx.ravel(), val.ravel()
    rows = np.repeat(np.arange(n), idx.shape[1])
    live = flat_val > 0
    flat_idx, flat_val, rows = flat_idx[live], flat_val[live], rows[live]
    order = np.lexsort((-flat_val, flat_idx))
    flat_idx, flat_val, rows = flat_idx[order], flat_val[order], rows[order]
    starts = np.searchsorted(flat_idx, np.arange(f))
    rank = np.arange(len(flat_idx)) - starts[flat_idx]
    first = rank < EXEMPLARS
    sums.top_values[flat_idx[first], rank[first]] = flat_val[first]
    sums.top_ids[flat_idx[first], rank[first]] = object_id[rows[first]]
    sums.maximum = np.where(np.isfinite(sums.top_values[:, 0]), sums.top_values[:, 0], 0.0)
    if bpt is not None and sample_rows > 0:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(n, size=min(sample_rows, n), replace=False))
        sample = bpt.iloc[chosen].reset_index(drop=True)
        sample["act_idx"] = list(idx[chosen])
        sample["act_val"] = list(val[chosen])
        sums.sample = sample
    return sums


def _explained(sums: FeatureSums, j: int, features: np.ndarray) -> float:
    """R^2 of label ``j`` regressed (with intercept) on ``features``, from the sums."""
    n = sums.label_n[j]
    if n < len(features) + 2:
        return float("nan")
    t = sums.targets.index(sums.labels[j])
    mean_x = sums.label_x[j][features] / n
    mean_y = sums.label_y[j] / n
    cov_xx = sums.target_gram[t][np.ix_(features, features)] / n - np.outer(mean_x, mean_x)
    cov_xy = sums.label_xy[j][features] / n - mean_x * mean_y
    var_y = sums.label_yy[j] / n - mean_y**2
    if var_y <= 0:
        return float("nan")
    beta = np.linalg.lstsq(cov_xx, cov_xy, rcond=None)[0]
    return float(beta @ cov_xy / var_y)


def _correlation(cov: np.ndarray, var_a: np.ndarray, var_b: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.outer(var_a, var_b))
    return np.divide(cov, scale, out=np.full_like(cov, np.nan), where=scale > 0)


@dataclass
class FeatureStatistics:
    """The finished sparse-feature statistics of one model."""

    n: int
    per_feature: pd.DataFrame  # feature, frequency, mean/max activation, mean over all
    order: np.ndarray  # features by decreasing frequency
    feature_corr: np.ndarray  # (F, F)
    label_corr: np.ndarray  # (F, labels)
    explained: pd.DataFrame  # target, m, explained_variance
    exemplars: dict[int, list[int]]  # feature -> object ids of its top activations
    sample: pd.DataFrame | None  # BPT coordinates and activations of a random sample

    def active(self) -> list[int]:
        """Features that were ever active, most frequent first."""
        frequency = self.per_feature["frequency"].to_numpy()
        return [int(f) for f in self.order if frequency[f] > 0]

    def top(self, n: int) -> list[int]:
        """The ``n`` most frequent features (fewer if fewer were ever active)."""
        return self.active()[:n]


def finish_features(sums: FeatureSums, targets: list[str], ms: tuple[int, ...] = (1, 2, 4, 8, 16)
                    ) -> FeatureStatistics:
    """Turn merged sums into tables: per-feature stats, explained variance, correlations."""
    n = max(sums.n, 1)
    frequency = sums.count / n
    mean_active = np.divide(sums.total, sums.count, out=np.zeros_like(sums.total),
                            where=sums.count > 0)
    order = np.argsort(-frequency, kind="stable")
    per_feature = pd.DataFrame({
        "feature": np.arange(sums.n_features), "frequency": frequency,
        "mean_activation": mean_active, "max_activation": sums.maximum,
        "mean_over_all": sums.total / n})
    # feature-feature correlation of the activation vectors (zeros included)
    mean = sums.total / n
    cov = sums.gram / n - np.outer(mean, mean)
    var = np.diag(cov).copy()
    feature_corr = _correlation(cov, var, var)
    # feature-label correlation, each label over the rows where it is known
    label_corr = np.full((sums.n_features, len(sums.labels)), np.nan)
    for j in range(len(sums.labels)):
        nl = sums.label_n[j]
        if nl < 2:
            continue
        mx, my = sums.label_x[j] / nl, sums.label_y[j] / nl
        cxy = sums.label_xy[j] / nl - mx * my
        vx = sums.label_xx[j] / nl - mx**2
        vy = sums.label_yy[j] / nl - my**2
        label_corr[:, j] = _correlation(cxy[:, None], vx, np.array([vy]))[:, 0]
    explained = []
    for target in targets:
        if target not in sums.labels or target not in sums.targets:
            continue
        j = sums.labels.index(target)
        for m in ms:
            if m <= (frequency > 0).sum():
                explained.append({"target": target, "m": m,
                                  "explained_variance": _explained(sums, j, order[:m])})
    exemplars = {int(f): [int(i) for v, i in zip(sums.top_values[f], sums.top_ids[f],
                                                  strict=True) if np.isfinite(v)]
                 for f in order[:32]}
    return FeatureStatistics(sums.n, per_feature, order, feature_corr, label_corr,
                             pd.DataFrame(explained), exemplars, sums.sample)
