"""Adaptive-k nearest-neighbour densities with local PIT recalibration (CLAP, Lin et al.).

Given a reference set (latent vectors of training galaxies with known truth),
a galaxy's raw density is the histogram of its k nearest references' truths.
CLAP picks k per galaxy: for each k of a grid, the references' own PIT values
(each reference's truth against *its* k neighbours, itself left out) near the
galaxy form a local PIT distribution; the k whose local PIT distribution is
closest to uniform (1-Wasserstein) is taken.  The density is then
recalibrated with the same local PIT distribution: a quadratic fitted to its
histogram, ``h(u)``, reweights the density as ``p(z) h(F(z))``, which makes
the PIT of similar galaxies uniform (the CLAP code's ``recali_op=1``: the
training split alone).

The references' own PITs are in-sample: a latent that has learnt its training
galaxies places each one's neighbours closer in redshift than a new galaxy's,
so those PITs look calibrated where the densities of new galaxies are too
narrow.  With a *calibration set* (the validation split, as in the paper's
SDSS default) the local PIT distribution is instead that of the calibration
galaxies nearest the query, each one's PIT taken against its neighbours among
the references: out-of-sample PITs, which see that over-confidence and undo it.

Neighbours come from scikit-learn (exact; a ball tree or brute force as it
chooses), with ``n_jobs`` threads; at survey scale the reference set is the
training split only, so its size, not the catalog's, sets the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import Grid

__all__ = ["KNNDensities", "adaptive_knn_densities", "k_grid", "knn_pit", "neighbours",
           "wasserstein_pdfs"]

#: Bins of a local PIT distribution.
PIT_BINS = 100


def k_grid(k_max: int, k_min: int = 5) -> np.ndarray:
    """Candidate k values: about 16 geometrically spaced from ``k_min`` to ``k_max``.

    >>> k_grid(200).tolist()
    [5, 6, 8, 10, 13, 17, 22, 28, 36, 46, 58, 75, 96, 122, 156, 200]
    """
    k_min = max(1, min(k_min, k_max))
    values = np.unique(np.round(np.geomspace(k_min, k_max, 16)).astype(int))
    return values


def neighbours(reference: np.ndarray, query: np.ndarray, k: int, *,
               exclude_self: bool = False, n_jobs: int | None = None) -> np.ndarray:
    """(n_query, k) indices into ``reference`` of each query's k nearest (Euclidean); with
    ``exclude_self`` the queries are the references themselves and each is left out of
    its own list."""
    from sklearn.neighbors import NearestNeighbors

    extra = 1 if exclude_self else 0
    k = min(k, len(reference) - extra)
    finder = NearestNeighbors(n_neighbors=k + extra, n_jobs=n_jobs).fit(reference)
    idx = finder.kneighbors(query, return_distance=False)
    if not exclude_self:
        return idx
    rows = np.arange(len(query))[:, None]
    not_self = idx != rows
    # Each row drops itself (or, among exact duplicates, its last neighbour).
    keep = np.where(not_self.all(axis=1, keepdims=True),
                    np.arange(k + 1)[None, :] < k, not_self)
    return idx[keep].reshape(len(query), k)


def knn_pit(truth_ref: np.ndarray, idx: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """PIT of each ``truth`` among the truths of its first ``k`` neighbours ``idx`` (ties
    count half).

    >>> knn_pit(np.array([0.1, 0.2, 0.3]), np.array([[0, 1, 2]]), np.array([0.2]), 3).tolist()
    [0.5]
    """
    values = truth_ref[idx[:, :k]]
    below = (values < truth[:, None]).sum(axis=1)
    equal = (values == truth[:, None]).sum(axis=1)
    return (below + 0.5 * equal) / k


def wasserstein_pdfs(p: np.ndarray, q: np.ndarray, grid: Grid) -> np.ndarray:
    """1-Wasserstein distance (target units) between rows of two (n, bins) densities.

    >>> g = Grid(low=0.0, high=1.0, n_bins=10)
    >>> p, q = np.zeros((1, 10)), np.zeros((1, 10))
    >>> p[0, 2], q[0, 5] = 10.0, 10.0
    >>> [round(float(v), 6) for v in wasserstein_pdfs(p, q, g)]
    [0.3]
    """
    cdf_p = np.cumsum(p * grid.width, axis=1)
    cdf_q = np.cumsum(q * grid.width, axis=1)
    return np.abs(cdf_p - cdf_q).sum(axis=1) * grid.width


def _wasserstein_to_uniform(pits: np.ndarray) -> np.ndarray:
    """1-Wasserstein distance of each row's sample of PIT values (n, m) to the uniform
    distribution, on :data:`PIT_BINS` bins."""
    hist = _pit_histograms(pits)
    cdf = np.cumsum(hist, axis=1)
    uniform = np.arange(1, PIT_BINS + 1) / PIT_BINS
    return np.abs(cdf - uniform).sum(axis=1) / PIT_BINS


def _pit_histograms(pits: np.ndarray) -> np.ndarray:
    """(n, PIT_BINS) normalised histograms of each row's PIT values."""
    n, m = pits.shape
    bins = np.clip((pits * PIT_BINS).astype(int), 0, PIT_BINS - 1)
    hist = np.zeros((n, PIT_BINS))
    np.add.at(hist, (np.repeat(np.arange(n), m), bins.ravel()), 1.0)
    return hist / m


def _histograms(values: np.ndarray, grid: Grid) -> np.ndarray:
    """(n, bins) normalised histograms (probability per bin) of each row's values on
    ``grid``; values outside it fall in the end bins."""
    n, m = values.shape
    bins = np.clip(np.floor((values - grid.low) / grid.width).astype(int), 0, grid.n_bins - 1)
    hist = np.zeros((n, grid.n_bins))
    np.add.at(hist, (np.repeat(np.arange(n), m), bins.ravel()), 1.0)
    return hist / m


def _recalibrate(mass: np.ndarray, local_pits: np.ndarray) -> np.ndarray:
    """Reweight each row's bin masses by a quadratic fitted to its local PIT histogram,
    evaluated at the row's CDF (CLAP's recalibration); rows renormalised."""
    hist = _pit_histograms(local_pits) * PIT_BINS  # densities on [0, 1]
    centres = (np.arange(PIT_BINS) + 0.5) / PIT_BINS
    design = np.stack([centres ** 2, centres, np.ones_like(centres)], axis=1)
    coefficients = hist @ np.linalg.pinv(design).T  # (n, 3) least squares per row
    cdf = np.cumsum(mass, axis=1)
    weight = (coefficients[:, :1] * cdf ** 2 + coefficients[:, 1:2] * cdf
              + coefficients[:, 2:3])
    out = mass * np.clip(weight, 0.0, None)
    total = out.sum(axis=1, keepdims=True)
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), mass)


@dataclass
class KNNDensities:
    """Per query galaxy: the density (n, bins) on the grid and the k chosen."""

    pdf: np.ndarray
    k: np.ndarray


def adaptive_knn_densities(reference: np.ndarray, truth_ref: np.ndarray, query: np.ndarray,
                           grid: Grid, *, k_max: int = 200, query_is_reference: bool = False,
                           recalibrate: bool = True, n_jobs: int | None = None,
                           calibration: tuple[np.ndarray, np.ndarray] | None = None
                           ) -> KNNDensities:
    """CLAP's adaptive-KNN densities of ``query`` latents against a reference set.

    ``query_is_reference``: the queries are the references (the refit's targets); each is
    then left out of its own neighbours.  ``calibration``: latents and truths of a
    calibration set whose PITs (against the references) choose k and recalibrate, in
    place of the references' own (see the module docstring); k is then at most its size.
    """
    k_max = max(1, min(k_max, len(reference) - 1,
                       len(calibration[0]) if calibration is not None else k_max))
    ks = k_grid(k_max)
    ref_idx = (neighbours(reference, reference, k_max, exclude_self=True, n_jobs=n_jobs)
               if query_is_reference or calibration is None else None)
    idx = ref_idx if query_is_reference else neighbours(reference, query, k_max,
                                                        n_jobs=n_jobs)
    assert idx is not None
    if calibration is None:
        assert ref_idx is not None
        pits = np.stack([knn_pit(truth_ref, ref_idx, truth_ref, k) for k in ks], axis=1)
        local_idx = idx
    else:
        cal_latent, cal_truth = calibration
        cal_idx = neighbours(reference, cal_latent, k_max, n_jobs=n_jobs)
        pits = np.stack([knn_pit(truth_ref, cal_idx, cal_truth, k) for k in ks], axis=1)
        local_idx = neighbours(cal_latent, query, k_max, n_jobs=n_jobs)
    pdf = np.zeros((len(query), grid.n_bins))
    chosen_k = np.zeros(len(query), dtype=np.int64)
    for start in range(0, len(query), _BLOCK):  # bounded memory: (block, k_max, n_k) PITs
        rows = slice(start, start + _BLOCK)
        pdf[rows], chosen_k[rows] = _block_densities(pits[local_idx[rows]],
                                                     truth_ref[idx[rows]], ks, grid,
                                                     recalibrate)
    return KNNDensities(pdf / grid.width, chosen_k)


#: Queries handled at once.
_BLOCK = 2048


def _block_densities(local: np.ndarray, truths: np.ndarray, ks: np.ndarray, grid: Grid,
                     recalibrate: bool) -> tuple[np.ndarray, np.ndarray]:
    """Bin masses and chosen k of a block of queries from their neighbours' own PITs
    ``local`` (n, k_max, n_k) and truths (n, k_max)."""
    distance = np.stack([_wasserstein_to_uniform(local[:, :k, j]) for j, k in enumerate(ks)],
                        axis=1)
    chosen = np.argmin(distance, axis=1)
    mass = np.zeros((len(local), grid.n_bins))
    for j, k in enumerate(ks):
        rows = np.flatnonzero(chosen == j)
        if not rows.size:
            continue
        part = _histograms(truths[rows, :k], grid)
        mass[rows] = _recalibrate(part, local[rows, :k, j]) if recalibrate else part
    return mass, ks[chosen]
