"""Figures of the report (matplotlib, Agg): feature frequencies, explained variance,
exemplar montages, BPT diagrams, correlation matrices, PIT histograms, estimate
vs truth, and calibration by bin.  Each function writes one PNG and returns its
file name; every binned axis says its quantity and unit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter

__all__ = ["bpt_figure", "calibration_figure", "causal_figure", "correlation_figure",
           "estimate_figure",
           "explained_figure", "frequency_figure", "kauffmann03", "kewley01", "local_tests_figure",
           "montage_figure", "pit_figure"]

DPI = 90


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return name


def frequency_figure(per_feature: pd.DataFrame, out: Path, name: str, top: int = 30) -> str:
    data = per_feature.sort_values("frequency", ascending=False).head(top)
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.bar(range(len(data)), data["frequency"], color="tab:blue")
    ax.set_xticks(range(len(data)), [str(f) for f in data["feature"]], rotation=90, fontsize=7)
    ax.set_xlabel("feature (most frequent first)")
    ax.set_ylabel("activation frequency")
    return _save(fig, out, name)


def explained_figure(explained: pd.DataFrame, out: Path, name: str) -> str:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for target, rows in explained.groupby("target"):
        ax.plot(rows["m"], rows["explained_variance"], "o-", label=str(target))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("m most frequent features")
    ax.set_ylabel("variance of the label explained")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _save(fig, out, name)


def montage_figure(rows: list[tuple[int, list[tuple[int, np.ndarray]]]], out: Path,
                   name: str) -> str:
    """``rows``: (feature, [(object id, rgb image (h, w, 3) uint8) ...]) per feature; each
    cutout is titled with its object id, so a reader can look the galaxy up."""
    n_cols = max((len(images) for _, images in rows), default=1)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.3 * n_cols, 1.5 * len(rows)),
                             squeeze=False)
    for r, (feature, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                object_id, image = images[c]
                ax.imshow(image, origin="lower")
                ax.set_title(f"id {object_id}", fontsize=6, pad=2)
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(f"feature {feature}", fontsize=8)
    return _save(fig, out, name)


def kauffmann03(x: np.ndarray) -> np.ndarray:
    """Kauffmann et al. (2003) star-forming / composite line, for log [NII]/Ha < 0.05."""
    return 0.61 / (x - 0.05) + 1.3


def kewley01(x: np.ndarray) -> np.ndarray:
    """Kewley et al. (2001) maximum-starburst line, for log [NII]/Ha < 0.47."""
    return 0.61 / (x - 0.47) + 1.19


def bpt_figure(sample: pd.DataFrame, features: list[int], out: Path, name: str) -> str:
    """BPT diagram of a random sample, once per feature, coloured by its activation."""
    cols = min(3, len(features)) or 1
    n_rows = -(-len(features) // cols) or 1
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.6 * cols, 3.2 * n_rows), squeeze=False)
    x, y = sample["log_nii_ha"].to_numpy(), sample["log_oiii_hb"].to_numpy()
    good = np.isfinite(x) & np.isfinite(y)
    idx = np.stack(sample["act_idx"].to_numpy()) if len(sample) else np.zeros((0, 1), int)
    val = np.stack(sample["act_val"].to_numpy()) if len(sample) else np.zeros((0, 1))
    xs1, xs2 = np.linspace(-2.0, 0.0, 200), np.linspace(-2.0, 0.4, 200)
    for i, feature in enumerate(features):
        ax = axes[i // cols][i % cols]
        activation = np.where(idx == feature, val, 0.0).sum(axis=1)
        order = np.argsort(activation[good])  # active galaxies drawn on top
        points = ax.scatter(x[good][order], y[good][order], c=activation[good][order], s=3,
                            cmap="viridis", rasterized=True)
        ax.plot(xs1, kauffmann03(xs1), "k--", lw=1, label="Kauffmann+03")
        ax.plot(xs2, kewley01(xs2), "r-", lw=1, label="Kewley+01")
        ax.set_xlim(-2.0, 1.0)
        ax.set_ylim(-1.5, 1.5)
        ax.set_title(f"feature {feature}", fontsize=9)
        ax.set_xlabel("log [NII]/Ha", fontsize=8)
        ax.set_ylabel("log [OIII]/Hb", fontsize=8)
        fig.colorbar(points, ax=ax, label="activation")
        if i == 0:
            ax.legend(fontsize=7, loc="lower left")
    for j in range(len(features), n_rows * cols):
        axes[j // cols][j % cols].axis("off")
    return _save(fig, out, name)


def correlation_figure(matrix: np.ndarray, rows: list[str], cols: list[str], out: Path,
                       name: str, title: str) -> str:
    fig, ax = plt.subplots(figsize=(1.2 + 0.22 * len(cols), 1.0 + 0.2 * len(rows)))
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=6)
    ax.set_yticks(range(len(rows)), rows, fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="Pearson r")
    return _save(fig, out, name)


def pit_figure(hists: Mapping[str, np.ndarray], target: str, out: Path, name: str,
               bins: int = 50) -> str:
    """PIT histograms of one target (label -> fine histogram), as densities: one filled,
    several as outlines on the same axes (models side by side)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for label, hist in hists.items():
        coarse = hist.reshape(bins, -1).sum(axis=1)
        density = coarse / max(coarse.sum(), 1) * bins
        if len(hists) == 1:
            ax.stairs(density, np.linspace(0, 1, bins + 1), fill=True, alpha=0.6)
        else:
            ax.stairs(density, np.linspace(0, 1, bins + 1), lw=1.4, label=label)
    ax.axhline(1.0, color="k", ls="--", lw=1, label="calibrated")
    ax.set_xlabel(f"PIT of {target}")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return _save(fig, out, name)


def estimate_figure(counts: np.ndarray, value_range: tuple[float, float], truth_label: str,
                    estimate_label: str, out: Path, name: str, *, relative: bool = False,
                    thresholds: tuple[float, ...] = ()) -> str:
    """Estimate against truth as a 2-D histogram coloured by galaxies per cell (log
    scale), the one-to-one line, and the outlier boundaries of the target's thresholds
    (``|e - t| > threshold (1 + t)`` for relative errors, ``> threshold`` otherwise)."""
    low, high = value_range
    edges = np.linspace(low, high, counts.shape[0] + 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    shown = np.where(counts > 0, counts, np.nan)
    top = max(float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0, 1.0)
    mesh = ax.pcolormesh(edges, edges, shown.T, cmap="viridis", norm=LogNorm(1, max(top, 2)),
                         rasterized=True)
    bar = fig.colorbar(mesh, ax=ax, label="galaxies per cell")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    bar.ax.yaxis.set_major_formatter(plain)
    bar.ax.yaxis.set_minor_formatter(plain)
    line = np.linspace(low, high, 100)
    ax.plot(line, line, "k-", lw=0.8, label="estimate = truth")
    for i, threshold in enumerate(thresholds):
        offset = threshold * (1 + line) if relative else np.full_like(line, threshold)
        label = (f"|error| = {threshold:g}" + (" (1 + truth)" if relative else ""))
        style = ("--", ":", "-.")[i % 3]
        ax.plot(line, line + offset, "r" + style, lw=0.8, label=label)
        ax.plot(line, line - offset, "r" + style, lw=0.8)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel(truth_label)
    ax.set_ylabel(estimate_label)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, out, name)


def calibration_figure(table: pd.DataFrame, target: str, out: Path, name: str) -> str:
    """sigma_NMAD, median error and (for PDFs) 68 % / 95 % coverage against the centre of
    each bin, one column per binned quantity (its unit on the axis); bins with a note of
    too few objects are left out, bins off calibration drawn in red."""
    from .calibration import FEW_OBJECTS

    bins = table[(table["group"] != "all") & (table["note"] != FEW_OBJECTS)]
    quantities = list(dict.fromkeys(bins["binned_by"]))
    panels = [("sigma_nmad", "sigma_NMAD"), ("bias_median", "median error")]
    if "coverage_68" in bins:
        panels.append(("coverage", "interval coverage"))
    fig, axes = plt.subplots(len(panels), max(len(quantities), 1),
                             figsize=(4.2 * max(len(quantities), 1), 2.3 * len(panels)),
                             squeeze=False, sharex="col")
    for col, quantity in enumerate(quantities):
        rows = bins[bins["binned_by"] == quantity]
        centre = ((rows["bin_low"] + rows["bin_high"]) / 2).to_numpy()
        half = ((rows["bin_high"] - rows["bin_low"]) / 2).to_numpy()
        off = (rows["note"] != "").to_numpy()
        for row, (column, label) in enumerate(panels):
            ax = axes[row][col]
            series = ([("coverage_68", 0.68), ("coverage_95", 0.95)] if column == "coverage"
                      else [(column, 0.0 if column == "bias_median" else None)])
            for (series_column, nominal), colour in zip(series, ("tab:blue", "tab:green"),
                                                        strict=False):
                values = rows[series_column].to_numpy()
                ax.errorbar(centre, values, xerr=half, fmt="o", ms=3, color=colour, lw=0.8,
                            label=(series_column.replace("coverage_", "") + " % interval"
                                   if column == "coverage" else None))
                ax.plot(centre[off], values[off], "o", ms=6, mfc="none", color="tab:red")
                if nominal is not None:
                    ax.axhline(nominal, color="k", ls="--", lw=0.8)
            if column == "sigma_nmad":  # from zero, so bins' scatter compares by eye
                finite = rows[column].to_numpy(dtype=float)
                finite = finite[np.isfinite(finite)]  # a bin of flagged rows has none
                ax.set_ylim(0, 1.15 * max(float(finite.max()) if finite.size else 0.0, 1e-6))
            if col == 0:
                ax.set_ylabel(label)
                if column == "coverage":
                    ax.legend(fontsize=7)
        axes[-1][col].set_xlabel(quantity)
    fig.suptitle(f"{target} by bin (red rings: off calibration)", fontsize=10)
    return _save(fig, out, name)


def causal_figure(graph: dict, out: Path, name: str) -> str:
    """The causal graph on a circle: each edge's darkness and width its bootstrap
    frequency, an arrow where PC oriented it, dashed where only resamples found it."""
    names = graph["variables"]
    angle = np.linspace(0, 2 * np.pi, len(names), endpoint=False)
    xy = {v: (np.cos(a), np.sin(a)) for v, a in zip(names, angle, strict=True)}
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    for edge in graph["edges"]:
        freq = edge["bootstrap_frequency"] or 0.0
        if not edge["in_graph"] and freq < 0.2:
            continue
        a, b = edge["direction"] or edge["pair"]
        style = dict(color=plt.cm.Greys(0.3 + 0.7 * freq), lw=0.5 + 3 * freq,
                     linestyle="-" if edge["in_graph"] else "--")
        arrow = "-|>" if edge["direction"] else "-"
        ax.annotate("", xy=xy[b], xytext=xy[a],
                    arrowprops=dict(arrowstyle=arrow, shrinkA=14, shrinkB=14, **style))
    for v, (x, y) in xy.items():
        ax.text(x, y, v, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc="white", ec="tab:blue"))
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    ax.set_axis_off()
    ax.set_title("PC graph; width and darkness: bootstrap frequency", fontsize=9)
    return _save(fig, out, name)


def local_tests_figure(result: dict, out: Path, name: str) -> str:
    """Per query, the local correlations of the target with it (filled) against the same
    after shuffling (outline): unconditional above, conditional below when there is one."""
    tests = result["tests"]
    conditional = result["condition"] is not None
    rows = 2 if conditional else 1
    fig, axes = plt.subplots(rows, len(tests), figsize=(3.2 * len(tests), 2.6 * rows),
                             squeeze=False)
    for col, test in enumerate(tests):
        for row, t in enumerate([test, test.get("conditional")][:rows]):
            ax = axes[row][col]
            edges = np.asarray(t["histogram"]["edges"])
            ax.stairs(t["histogram"]["correlation"], edges, fill=True, alpha=0.6,
                      color="tab:blue", label="in neighbourhoods")
            ax.stairs(t["histogram"]["permuted"], edges, color="k", label="query shuffled")
            given = f" | {result['condition']}" if row else ""
            ax.set_title(f"{result['target']} vs {test['query']}{given}", fontsize=8)
            ax.set_xlabel("local correlation r")
    axes[0][0].set_ylabel("neighbourhoods")
    axes[0][0].legend(fontsize=7)
    return _save(fig, out, name)
