"""Summaries of PDFs on a grid: mean, standard deviation and quantiles.

A PDF is stored as densities at the centres of equal bins; within a bin the
density is taken as constant, so the CDF is piecewise linear between bin
edges and quantiles are exact for that reading.  (``qp``'s interpolated
ensemble joins the centres linearly instead; the two agree to a fraction of
a bin.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.grid import Grid

__all__ = ["GAUSSIAN_Q16", "PDFSummary", "bin_mass", "cdf_at_edges", "covered", "pdf_mode",
           "pit_values", "summarize_pdfs"]

#: The 16th/84th percentiles of a Gaussian lie this many sigma from its mean.
GAUSSIAN_Q16 = 0.994457883


def bin_mass(pdf: np.ndarray, grid: Grid) -> np.ndarray:
    """Probability in each bin (rows sum to 1; a row with no mass becomes uniform)."""
    pdf = np.asarray(pdf, dtype=np.float64)
    mass = np.clip(pdf, 0.0, None) * grid.width
    total = mass.sum(axis=1, keepdims=True)
    return np.divide(mass, total, out=np.full_like(mass, 1.0 / grid.n_bins), where=total > 0)


def cdf_at_edges(mass: np.ndarray) -> np.ndarray:
    """(n, bins + 1) CDF at the bin edges, from :func:`bin_mass`."""
    return np.concatenate([np.zeros((len(mass), 1)), np.cumsum(mass, axis=1)], axis=1)


def pit_values(pdf: np.ndarray, truth: np.ndarray, grid: Grid) -> np.ndarray:
    """CDF of each row's PDF at its true value (0 below the grid, 1 above)."""
    cdf = cdf_at_edges(bin_mass(pdf, grid))
    position = np.clip((truth - grid.low) / grid.width, 0.0, grid.n_bins)
    k = np.minimum(position.astype(np.int64), grid.n_bins - 1)
    frac = position - k
    rows = np.arange(len(pdf))
    pit = cdf[rows, k] + frac * (cdf[rows, k + 1] - cdf[rows, k])
    # exactly 0 or 1 off the grid (not a cumulative sum's rounding of them)
    return np.where(truth >= grid.high, 1.0, np.where(truth <= grid.low, 0.0, pit))


#: Central intervals by probability: a true value is covered at 68 % when its PIT lies in
#: [0.16, 0.84].  The one definition the report and the live metrics share.
CENTRAL_INTERVALS = {0.68: (0.16, 0.84), 0.95: (0.025, 0.975)}


def covered(pit: np.ndarray, probability: float) -> np.ndarray:
    """Whether each PIT lies inside the central interval holding ``probability``.

    >>> covered(np.array([0.1, 0.5, 0.9]), 0.68).tolist()
    [False, True, False]
    """
    low, high = CENTRAL_INTERVALS[probability]
    return (pit >= low) & (pit <= high)


def pdf_mode(mass: np.ndarray, grid: Grid) -> np.ndarray:
    """The peak of each PDF: the fullest bin, refined by a parabola through it and its
    neighbours (kept inside the bin).

    For a two-peaked redshift PDF the mean falls between the peaks, where the
    galaxy almost certainly is not; the mode sits on the likelier peak.

    Examples
    --------
    >>> grid = Grid(low=0.0, high=1.0, n_bins=4)
    >>> round(float(pdf_mode(np.array([[0.1, 0.5, 0.3, 0.1]]), grid)[0]), 4)  # pulled right
    0.4167
    """
    rows = np.arange(len(mass))
    k = np.argmax(mass, axis=1)
    left = mass[rows, np.clip(k - 1, 0, grid.n_bins - 1)]
    right = mass[rows, np.clip(k + 1, 0, grid.n_bins - 1)]
    centre = mass[rows, k]
    curvature = left - 2 * centre + right
    shift = np.divide(left - right, 2 * curvature, out=np.zeros(len(mass)),
                      where=curvature < 0)
    return grid.centres_array()[k] + np.clip(shift, -0.5, 0.5) * grid.width


@dataclass
class PDFSummary:
    """Per-galaxy summaries of PDFs on a grid (float64 arrays of n)."""

    mean: np.ndarray
    std: np.ndarray
    mode: np.ndarray
    quantiles: list[np.ndarray]


def summarize_pdfs(pdf: np.ndarray, grid: Grid,
                   quantiles: tuple[float, ...] = (0.16, 0.5, 0.84)) -> PDFSummary:
    """Mean, standard deviation, mode and ``quantiles`` of each row of ``pdf`` (n, bins).

    Rows are renormalised first, so float32 rounding cannot push a quantile
    off the grid.

    Examples
    --------
    >>> pdf = np.zeros((1, 4)); pdf[0, 1] = 1.0   # all mass in [0.25, 0.5)
    >>> s = summarize_pdfs(pdf, Grid(low=0.0, high=1.0, n_bins=4))
    >>> float(s.mean[0]), round(float(s.std[0]), 4), float(s.quantiles[1][0]), float(s.mode[0])
    (0.375, 0.0722, 0.375, 0.375)
    """
    mass = bin_mass(pdf, grid)
    width, n_bins = grid.width, grid.n_bins
    centres = grid.centres_array()
    mean = mass @ centres
    # Variance of a piecewise-constant density: between-bin spread + width^2/12 within bins.
    var = mass @ centres**2 - mean**2 + width**2 / 12
    cdf = cdf_at_edges(mass)
    edges = grid.low + width * np.arange(n_bins + 1)
    out = []
    rows = np.arange(len(mass))
    for q in quantiles:
        # The bin whose CDF interval holds q, then linear interpolation inside it.
        k = np.clip((cdf[:, 1:] < q).sum(axis=1), 0, n_bins - 1)
        below, inside = cdf[rows, k], mass[rows, k]
        frac = np.divide(q - below, inside, out=np.full(len(mass), 0.5), where=inside > 0)
        out.append(edges[k] + np.clip(frac, 0.0, 1.0) * width)
    return PDFSummary(mean, np.sqrt(np.clip(var, 0.0, None)), pdf_mode(mass, grid), out)
