"""Calibration of each shard's PDFs while inference runs, for objects with a known truth.

A survey store often holds labels for a spectroscopic subset.  For those
objects each shard reports, per model and PDF target, how many true values fall
in the PDF's 68 % and 95 % central intervals and in which PIT decile: counts,
so they add up across shards, actors and nodes into the same coverage the
statistics report computes for the finished catalog (the interval rule is
:func:`surveyproc.catalog.pdf.covered`, shared with the report).  The metrics
turn them into series, so a dashboard shows calibration drifting while the run
is still going.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..catalog.pdf import covered, pit_values
from ..catalog.schema import CatalogSchema
from ..errors import InvalidParameterError
from ..models.grid import Grid
from ..models.targets import TargetSpec, label_columns, resolve_targets, values_from_labels

__all__ = ["LiveCalibration", "LiveTarget", "label_names", "live_calibration", "live_targets"]

PIT_DECILES = 10


@dataclass(frozen=True)
class LiveTarget:
    """A PDF target whose truth the store holds."""

    model: str
    target: str
    grid: Grid
    spec: TargetSpec
    column: str  # the model's PDF column of the target


@dataclass(frozen=True)
class LiveCalibration:
    """One shard's counts for one (model, target)."""

    model: str
    target: str
    n: int  # objects with a finite truth and a finite PDF
    cover68: int
    cover95: int
    pit_counts: tuple[int, ...]  # per PIT decile


def live_targets(schema: CatalogSchema, store_labels: tuple[str, ...]) -> list[LiveTarget]:
    """The PDF targets of ``schema``'s models that the store's labels give a truth for."""
    found = []
    for model in schema.models:
        for target, grid in model.pdf_grids.items():
            try:
                (spec,) = resolve_targets([target], store_labels)
            except InvalidParameterError:  # no such label in this store: nothing to judge
                continue
            found.append(LiveTarget(model.name, target, grid, spec, model.pdf(target)))
    return found


def label_names(targets: list[LiveTarget]) -> list[str]:
    """The store label columns ``targets`` need."""
    return label_columns([t.spec for t in targets])


def live_calibration(targets: list[LiveTarget], labels: dict[str, np.ndarray],
                     estimates: dict[str, np.ndarray]) -> list[LiveCalibration]:
    """Counts for each target from a shard's label columns and estimate columns."""
    results = []
    for t in targets:
        pdf = np.asarray(estimates[t.column], dtype=np.float64)
        truth = values_from_labels(labels, len(pdf), [t.spec])[:, 0].astype(np.float64)
        known = np.isfinite(truth) & np.isfinite(pdf).all(axis=1)
        pit = pit_values(pdf[known], truth[known], t.grid)
        deciles = np.histogram(pit, bins=PIT_DECILES, range=(0.0, 1.0))[0]
        results.append(LiveCalibration(t.model, t.target, int(known.sum()),
                                       int(covered(pit, 0.68).sum()),
                                       int(covered(pit, 0.95).sum()),
                                       tuple(int(c) for c in deciles)))
    return results
