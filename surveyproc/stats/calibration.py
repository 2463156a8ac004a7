"""Calibration of PDFs on a grid against known truth (CLAP paper; qp/RAIL conventions).

Per galaxy: the PIT (the PDF's CDF at the true value), the CRPS, whether the
truth falls in the central 68 % and 95 % intervals (equivalently, PIT within
[0.16, 0.84] and [0.025, 0.975]), and the point-estimate error: relative,
``dz = (point - truth) / (1 + truth)``, for targets whose settings say so
(photometric redshifts), else ``point - truth`` in the target's unit (dex for
logarithmic ones).  Outlier thresholds are the target's settings too.
A truth outside the PDF's grid has PIT 0 or 1 and its CRPS includes the
distance to the grid (where the PDF has no mass); such objects are counted.
Partitions reduce these to histograms and sums that merge exactly; the statistics are read off the
merged histograms, so memory does not grow with rows:

* KS, Cramer-von Mises and Anderson-Darling (k-sample, against an evenly spaced
  uniform sample, as ``qp.metrics.PIT`` does) from a 10,000-bin PIT histogram:
  the statistics of the PIT values rounded to 1e-4;
* median and sigma_NMAD = 1.4826 median(|dz - median(dz)|) -- the convention
  standard in photo-z work (with dz the relative error for redshift), i.e. the
  NMAD about the median, not about zero -- from a histogram of the error on
  [-1, 1] in steps of 1e-4 (errors outside count as far from the median).

The PDF is read as piecewise constant within bins (the same reading as the
catalog's quantiles).  A 2-D histogram of (truth, estimate) over the target's
range gives the estimate-vs-truth figure at any catalog size.

Each bin's row gets a ``note``: ``few objects`` below :data:`MIN_BIN_OBJECTS`
(its statistics are noise: the report marks it and leaves it out of figures
and checks), or why it is off calibration -- 68 % coverage more than
:data:`COVERAGE_MARGIN_68` from 0.68, 95 % coverage more than
:data:`COVERAGE_MARGIN_95` from 0.95, or a median error larger than
:data:`BIAS_MARGIN` times the whole catalog's sigma_NMAD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..catalog.pdf import bin_mass, cdf_at_edges, covered, pit_values
from ..models.grid import Grid

__all__ = ["BIAS_MARGIN", "COVERAGE_MARGIN_68", "COVERAGE_MARGIN_95", "FEW_OBJECTS",
           "MIN_BIN_OBJECTS", "SIGMA_NMAD_CONVENTION", "CalibrationSums", "Group",
           "anderson_ksamp_binned", "calibration_partial", "crps", "finish_calibration",
           "off_calibration", "pit_values"]

PIT_BINS = 10_000
DZ_RANGE = 1.0
DZ_BINS = 20_000
#: Bins per axis of the (truth, estimate) histogram behind the estimate-vs-truth figure.
JOINT_BINS = 120
#: A bin with fewer galaxies is marked and left out of figures and calibration checks.
MIN_BIN_OBJECTS = 30
#: How far a bin's interval coverage may stray from nominal before it is called off.
COVERAGE_MARGIN_68 = 0.10
COVERAGE_MARGIN_95 = 0.05
#: A bin's median error beyond this many times the catalog's sigma_NMAD is called off.
BIAS_MARGIN = 0.5
FEW_OBJECTS = "few objects"


#: How sigma_NMAD is computed, as the report states it.
SIGMA_NMAD_CONVENTION = "sigma_NMAD = 1.4826 x median(|e - median(e)|), e the error"
#: Harmonic sums of the Anderson-Darling normalisation are accumulated this many terms at
#: a time, so memory does not grow with the catalog.
HARMONIC_BLOCK = 1 << 20


def crps(pdf: np.ndarray, truth: np.ndarray, grid: Grid) -> np.ndarray:
    """Continuous ranked probability score of each row: the integral over the whole line
    of (F(x) - [x >= truth])^2, with F = 0 below the grid and 1 above it.

    A truth above the grid adds ``truth - high``, below it ``low - truth`` (the
    stretch where the step and the CDF disagree by 1).
    """
    cdf = cdf_at_edges(bin_mass(pdf, grid))
    low, high, width = grid.low, grid.high, grid.width
    y = np.clip(truth, low, high)
    # integral of F^2 over the grid: F is linear within each bin
    left, right = cdf[:, :-1], cdf[:, 1:]
    f2 = (width * (left**2 + left * right + right**2) / 3).sum(axis=1)
    # integral of F from low to each edge, then to y
    integral = np.concatenate([np.zeros((len(cdf), 1)),
                               np.cumsum(width * (left + right) / 2, axis=1)], axis=1)
    position = (y - low) / width
    k = np.minimum(position.astype(np.int64), grid.n_bins - 1)
    frac = position - k
    rows = np.arange(len(pdf))
    f_at_y = cdf[rows, k] + frac * (cdf[rows, k + 1] - cdf[rows, k])
    below = integral[rows, k] + frac * width * (cdf[rows, k] + f_at_y) / 2
    above = integral[:, -1] - below
    return f2 - 2 * above + (high - y) + np.abs(truth - y)


@dataclass(frozen=True)
class Group:
    """Galaxies the statistics are given for: all of them, or a bin of one quantity.

    ``by`` names the binned quantity with its unit (``r-band magnitude [AB mag]``,
    ``true redshift``), so tables and figure axes can say what the bin edges mean.
    """

    name: str
    by: str = ""
    low: float = math.nan
    high: float = math.nan


ALL = Group("all")


@dataclass
class CalibrationSums:
    """Mergeable per-group sums of one target (group 0 = all galaxies), and the
    (truth, estimate) histogram of all galaxies over ``joint_range``."""

    groups: list[Group]
    n: np.ndarray  # (G,)
    pit_hist: np.ndarray  # (G, PIT_BINS)
    dz_hist: np.ndarray  # (G, DZ_BINS)
    dz_below: np.ndarray  # dz under -DZ_RANGE (off the histogram)
    dz_sum: np.ndarray
    crps_sum: np.ndarray
    cover68: np.ndarray
    cover95: np.ndarray
    outside: np.ndarray  # truth outside the PDF's grid (PIT 0 or 1)
    outliers: np.ndarray  # (G, thresholds)
    thresholds: tuple[float, ...]
    has_pdf: bool
    joint_range: tuple[float, float] = (0.0, 1.0)
    joint: np.ndarray = field(default_factory=lambda: np.zeros((JOINT_BINS, JOINT_BINS)))
    joint_outside: float = 0.0  # galaxies with truth or estimate off the joint histogram

    @classmethod
    def empty(cls, groups: list[Group], has_pdf: bool, thresholds: tuple[float, ...] = (),
              joint_range: tuple[float, float] = (0.0, 1.0)) -> CalibrationSums:
        g = len(groups)
        pit = np.zeros((g, PIT_BINS)) if has_pdf else np.zeros((g, 0))
        return cls(groups, np.zeros(g), pit, np.zeros((g, DZ_BINS)), np.zeros(g), np.zeros(g),
                   np.zeros(g), np.zeros(g), np.zeros(g), np.zeros(g),
                   np.zeros((g, len(thresholds))), tuple(thresholds), has_pdf, joint_range)

    def __add__(self, other: CalibrationSums) -> CalibrationSums:
        return CalibrationSums(self.groups, self.n + other.n, self.pit_hist + other.pit_hist,
                               self.dz_hist + other.dz_hist, self.dz_below + other.dz_below,
                               self.dz_sum + other.dz_sum,
                               self.crps_sum + other.crps_sum, self.cover68 + other.cover68,
                               self.cover95 + other.cover95, self.outside + other.outside,
                               self.outliers + other.outliers, self.thresholds, self.has_pdf,
                               self.joint_range, self.joint + other.joint,
                               self.joint_outside + other.joint_outside)


def calibration_partial(truth: np.ndarray, point: np.ndarray, group_masks: list[np.ndarray],
                        groups: list[Group], *, relative: bool = False,
                        thresholds: tuple[float, ...] = (), pdf: np.ndarray | None = None,
                        grid: Grid | None = None,
                        joint_range: tuple[float, float] = (0.0, 1.0)) -> CalibrationSums:
    """Sums of one partition; ``group_masks[g]`` selects the rows of group ``g``."""
    sums = CalibrationSums.empty(groups, pdf is not None, thresholds, joint_range)
    known = np.isfinite(truth) & np.isfinite(point)
    sums.joint = np.histogram2d(truth[known], point[known], bins=JOINT_BINS,
                                range=[joint_range, joint_range])[0]
    sums.joint_outside = float(known.sum() - sums.joint.sum())
    dz = (point - truth) / (1 + truth) if relative else point - truth
    pit = score = outside = None
    if pdf is not None and grid is not None:
        safe = np.where(known, truth, grid.low)
        pit = pit_values(pdf, safe, grid)
        score = crps(pdf, safe, grid)
        outside = (safe < grid.low) | (safe > grid.high)
    for g, mask in enumerate(group_masks):
        rows = mask & known
        sums.n[g] = rows.sum()
        d = dz[rows]
        sums.dz_hist[g] = np.histogram(d, bins=DZ_BINS, range=(-DZ_RANGE, DZ_RANGE))[0]
        sums.dz_below[g] = (d < -DZ_RANGE).sum()
        sums.dz_sum[g] = d.sum()
        for j, threshold in enumerate(thresholds):
            sums.outliers[g, j] = (np.abs(d) > threshold).sum()
        if pit is not None and score is not None and outside is not None:
            p = pit[rows]
            sums.pit_hist[g] = np.histogram(p, bins=PIT_BINS, range=(0.0, 1.0))[0]
            sums.crps_sum[g] = score[rows].sum()
            sums.cover68[g] = covered(p, 0.68).sum()
            sums.cover95[g] = covered(p, 0.95).sum()
            sums.outside[g] = outside[rows].sum()
    return sums


def _median_from_hist(hist: np.ndarray, low: float, high: float, total: float,
                      below: float = 0.0) -> float:
    """Median of ``total`` values histogrammed on [low, high) (linear within bins), of
    which ``below`` lie under ``low`` and the rest not in ``hist`` above ``high``."""
    if total == 0:
        return float("nan")
    width = (high - low) / len(hist)
    cdf = below + np.cumsum(hist)
    k = int(np.searchsorted(cdf, total / 2))
    if k >= len(hist):
        return high
    before = cdf[k - 1] if k else below
    return low + width * (k + (total / 2 - before) / max(hist[k], 1e-300))


def _sigma_nmad(hist: np.ndarray, n_total: float, below: float) -> tuple[float, float]:
    """(median, sigma_NMAD) of dz from its histogram; ``below`` values lie under -1 and the
    rest of ``n_total`` not in the histogram above +1 (both are outliers, far from the
    median, so only their number matters)."""
    centres = -DZ_RANGE + (2 * DZ_RANGE / DZ_BINS) * (np.arange(DZ_BINS) + 0.5)
    median = _median_from_hist(hist, -DZ_RANGE, DZ_RANGE, n_total, below=below)
    deviation = np.abs(centres - median)
    order = np.argsort(deviation, kind="stable")
    cdf = np.cumsum(hist[order])  # off-histogram values have the largest deviations
    k = int(np.searchsorted(cdf, n_total / 2))
    mad = float(deviation[order][k]) if k < len(order) else float("inf")
    return median, 1.4826 * mad


def _pit_tests(hist: np.ndarray) -> dict[str, float]:
    """KS, CvM (scipy's one-sample statistics) and qp's k-sample AD from a PIT histogram."""
    n = hist.sum()
    if n < 2:
        return {"ks": float("nan"), "cvm": float("nan"), "ad": float("nan")}
    bins = len(hist)
    edges = np.linspace(0.0, 1.0, bins + 1)
    cdf = np.concatenate([[0.0], np.cumsum(hist)]) / n
    # KS: the ECDF jumps inside a bin; its extremes are the bin's end values
    ks = float(max(np.max(cdf[1:] - edges[:-1]), np.max(edges[1:] - cdf[:-1])))
    ks = min(ks, float(np.max(np.abs(cdf - edges))) + 1.0 / bins)
    # CvM: T = 1/(12n) + sum_i (u_i - (2i-1)/(2n))^2 with every value at its bin centre
    centres = (edges[:-1] + edges[1:]) / 2
    counts = hist.astype(np.float64)
    start = np.concatenate([[0.0], np.cumsum(counts)[:-1]])  # values before this bin
    # sum over the c values of a bin of (x - (2i-1)/(2n))^2, i = start+1 .. start+c
    c, s = counts, start
    mean_rank = (2 * s + c) / (2 * n)  # mean of (2i-1)/(2n) over the bin
    var_rank = (c**2 - 1) / (12 * n**2)  # their spread around the mean
    cvm = float(1 / (12 * n) + np.sum(c * ((centres - mean_rank) ** 2 + var_rank)))
    return {"ks": ks, "cvm": cvm, "ad": anderson_ksamp_binned(hist)}


def _harmonic_sums(big_n: int) -> tuple[float, float]:
    """scipy's ``h = sum_{i<N} 1/i`` and ``g = sum_{i=1}^{N-2} sum_{j=i+1}^{N-1} 1/((N-j) j)``
    written as ``sum_m c_m / (m + 2)`` with ``c_m`` the running sum of ``1 / (N-1-i)``,
    accumulated in blocks of :data:`HARMONIC_BLOCK` terms: memory stays constant, however
    many rows the catalog has."""
    running, g = 0.0, 0.0
    for start in range(0, big_n - 2, HARMONIC_BLOCK):
        m = np.arange(start, min(start + HARMONIC_BLOCK, big_n - 2), dtype=np.float64)
        partial = running + np.cumsum(1.0 / (big_n - 1 - m))
        g += float((partial / (m + 2)).sum())
        running = float(partial[-1])
    return running + 1.0, g


def anderson_ksamp_binned(hist: np.ndarray) -> float:
    """scipy's normalised k-sample Anderson-Darling statistic (midrank version) of PIT
    values binned in ``hist`` against ``len`` evenly spaced values on [0, 1], with the
    values of each bin tied at its centre (``qp.metrics.PIT.evaluate_PIT_anderson_ksamp``)."""
    n1 = int(hist.sum())
    if n1 < 2:
        return float("nan")
    bins = len(hist)
    # the reference sample linspace(0, 1, n1), counted per bin exactly
    edges = np.linspace(0.0, 1.0, bins + 1)
    below = np.ceil(edges * (n1 - 1) - 1e-9).astype(np.int64)
    below[-1] = n1 - 1  # the value 1.0 falls in the last bin
    ref = np.diff(below).astype(np.float64)
    ref[-1] += 1
    counts = [hist.astype(np.float64), ref]
    pooled = counts[0] + counts[1]
    live = pooled > 0
    lj = pooled[live]
    big_n = float(2 * n1)
    bj = np.cumsum(lj) - lj + lj / 2  # values below the group, plus half the ties
    a2 = 0.0
    for f in counts:
        fij = f[live]
        mij = np.cumsum(fij) - fij + fij / 2
        a2 += float(np.sum(lj / big_n * (big_n * mij - bj * n1) ** 2
                           / (bj * (big_n - bj) - big_n * lj / 4))) / n1
    a2 *= (big_n - 1) / big_n
    k, n = 2, np.array([n1, n1], dtype=np.float64)
    h_sum = (1.0 / n).sum()
    h, g = _harmonic_sums(int(big_n))
    a = (4 * g - 6) * (k - 1) + (10 - 6 * g) * h_sum
    b = (2 * g - 4) * k**2 + 8 * h * k + (2 * g - 14 * h - 4) * h_sum - 8 * h + 4 * g - 6
    c = (6 * h + 2 * g - 2) * k**2 + (4 * h - 4 * g + 6) * k + (2 * h - 6) * h_sum + 4 * h
    d = (2 * h + 6) * k**2 - 4 * h * k
    sigmasq = (a * big_n**3 + b * big_n**2 + c * big_n + d) / (
        (big_n - 1) * (big_n - 2) * (big_n - 3))
    return float((a2 - (k - 1)) / math.sqrt(sigmasq))


def finish_calibration(sums: CalibrationSums) -> list[dict[str, float | str]]:
    """One row of statistics per group, each with its :func:`bin_note`."""
    rows: list[dict[str, float | str]] = []
    for g, group in enumerate(sums.groups):
        n = sums.n[g]
        if n == 0:
            continue
        median, nmad = _sigma_nmad(sums.dz_hist[g], n, sums.dz_below[g])
        row: dict[str, float | str] = {
            "group": group.name, "binned_by": group.by, "bin_low": group.low,
            "bin_high": group.high, "n": float(n), "bias_mean": float(sums.dz_sum[g] / n),
            "bias_median": median, "sigma_nmad": nmad}
        for j, threshold in enumerate(sums.thresholds):
            row[f"outlier_frac_{threshold:g}"] = float(sums.outliers[g, j] / n)
        if sums.has_pdf:
            row.update(_pit_tests(sums.pit_hist[g]))
            row.update({"crps": float(sums.crps_sum[g] / n),
                        "coverage_68": float(sums.cover68[g] / n),
                        "coverage_95": float(sums.cover95[g] / n),
                        "outside_grid": float(sums.outside[g])})
        rows.append(row)
    overall = next((r for r in rows if r["group"] == ALL.name), None)
    scatter = float(overall["sigma_nmad"]) if overall else math.nan
    for row in rows:
        row["note"] = bin_note(row, scatter) if row["group"] != ALL.name else ""
    return rows


def off_calibration(table: Any) -> list[dict[str, Any]]:
    """The bins of a finished calibration table (a DataFrame) called off: group, n, why."""
    return [{"group": str(row.group), "n": int(row.n), "why": str(row.note)}
            for row in table.itertuples()
            if row.group != ALL.name and row.note not in ("", FEW_OBJECTS)]


def bin_note(row: dict[str, float | str], catalog_sigma_nmad: float) -> str:
    """'' for a bin within the margins, :data:`FEW_OBJECTS`, or what is off and by how much."""
    if float(row["n"]) < MIN_BIN_OBJECTS:
        return FEW_OBJECTS
    off = []
    for column, nominal, margin in (("coverage_68", 0.68, COVERAGE_MARGIN_68),
                                    ("coverage_95", 0.95, COVERAGE_MARGIN_95)):
        value = row.get(column)
        if value is not None and abs(float(value) - nominal) > margin:
            off.append(f"{column} {float(value):.2f} (nominal {nominal:.2f})")
    bias = float(row["bias_median"])
    if math.isfinite(catalog_sigma_nmad) and abs(bias) > BIAS_MARGIN * catalog_sigma_nmad:
        off.append(f"median error {bias:+.3g} (catalog sigma_NMAD {catalog_sigma_nmad:.3g})")
    return "; ".join(off)
