"""Catalog columns of the two shapes most kinds produce: point estimates and PDFs on a grid.

Kinds call these from their ``columns`` and ``infer`` methods; a kind with
other outputs adds its own columns (``ModelColumns.extra_columns``) beside
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..catalog.columns import STATS, pdf_column, stat_column
from ..catalog.pdf import GAUSSIAN_Q16, summarize_pdfs
from ..catalog.schema import ModelColumns
from ..models.checkpoint import Checkpoint, TargetInfo
from ..models.grid import Grid

__all__ = ["check_grids", "density_columns", "density_outputs", "point_columns",
           "point_outputs", "target_grid"]

#: A target's default PDF grid spans this many training standard deviations either side.
GRID_HALF_WIDTH = 5.0


def point_columns(name: str, checkpoint: Checkpoint, **extra: Any) -> ModelColumns:
    """Columns of a point-estimate model: its spread is the validation RMSE of each target."""
    targets = tuple(t.name for t in checkpoint.targets)
    val = checkpoint.metrics.get("val", {})
    spread = tuple(float(val.get(f"rmse_{t}", float("nan"))) for t in targets)
    return ModelColumns(name, checkpoint.model_id, checkpoint.kind, targets,
                        tuple(t.unit for t in checkpoint.targets), "validation_rmse",
                        spread=spread, **extra)


def density_columns(name: str, checkpoint: Checkpoint, grid: Grid, **extra: Any) -> ModelColumns:
    """Columns of a model that gives every galaxy a PDF of each target on ``grid``."""
    return ModelColumns(name, checkpoint.model_id, checkpoint.kind,
                        tuple(t.name for t in checkpoint.targets),
                        tuple(t.unit for t in checkpoint.targets), "pdf", grid=grid, **extra)


def point_outputs(standardised: np.ndarray, checkpoint: Checkpoint,
                  columns: ModelColumns) -> dict[str, np.ndarray]:
    """(n, targets) standardised predictions -> ``<t>_mean/std/q16/q50/q84``; the spread is
    the same for every galaxy, the quantiles those of a Gaussian of that spread."""
    out: dict[str, np.ndarray] = {}
    for j, info in enumerate(checkpoint.targets):
        mean = (standardised[:, j] * info.std + info.mean).astype(np.float32)
        spread = np.float32(columns.spread[j] if columns.spread else np.nan)
        values = {"mean": mean, "std": np.full_like(mean, spread),
                  "q16": mean - np.float32(GAUSSIAN_Q16) * spread, "q50": mean,
                  "q84": mean + np.float32(GAUSSIAN_Q16) * spread}
        out.update({stat_column(info.name, s): values[s] for s in STATS})
    return out


def density_outputs(pdf: np.ndarray, target: str, grid: Grid) -> dict[str, np.ndarray]:
    """(n, bins) densities of one target -> its summaries, its mode and the PDF column."""
    summary = summarize_pdfs(pdf, grid)
    q16, q50, q84 = summary.quantiles
    values = {"mean": summary.mean, "std": summary.std, "q16": q16, "q50": q50, "q84": q84,
              "mode": summary.mode}
    out = {stat_column(target, s): v.astype(np.float32) for s, v in values.items()}
    out[pdf_column(target)] = pdf.astype(np.float32)
    return out


def check_grids(grids: Mapping[str, Grid], targets: list[str], model: str) -> None:
    """Per-target grids of a job must name targets of the model (a settings validator's
    check: ValueError)."""
    unknown = sorted(set(grids) - set(targets))
    if unknown:
        msg = f"grids given for {', '.join(unknown)}, which are not targets of {model}"
        raise ValueError(msg)


def target_grid(config: Mapping[str, Any], info: TargetInfo) -> Grid:
    """A target's PDF grid for a kind with per-target grids: the job's (``grids`` in the
    config), else the training mean +- :data:`GRID_HALF_WIDTH` standard deviations in
    ``pdf_bins`` bins."""
    given = config.get("grids", {}).get(info.name)
    if given is not None:
        return Grid(**given)
    half = GRID_HALF_WIDTH * info.std
    return Grid(low=info.mean - half, high=info.mean + half, n_bins=int(config["pdf_bins"]))
