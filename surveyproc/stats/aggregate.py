"""``surveyproc aggregate``: one streaming Dask pass over catalog + labels, then tables,
figures and the report.

Every partition of the joined frame is reduced to small mergeable sums
(:mod:`.features`, :mod:`.calibration`), combined in a tree, and only the
merged sums reach the driver; memory is bounded by the number of features and
histogram bins, never by rows.  Exemplar cutouts for the montages are read from
the store afterwards, a handful per feature.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..catalog.reader import catalog_schema
from ..catalog.schema import CatalogSchema
from ..models.targets import resolve_targets, values_from_labels
from ..store import SurveyStore
from .calibration import CalibrationSums, calibration_partial, finish_calibration
from .features import FeatureSums, feature_partial, finish_features
from .frames import catalog_frame, join_labels, labels_frame, list_values

__all__ = ["AggregateSpec", "Aggregates", "aggregate_catalog", "dask_client"]

log = logging.getLogger(__name__)

BPT_LINES = ("flux_nii", "flux_halpha", "flux_oiii", "flux_hbeta")
MAG_EDGES = (14.0, 16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 24.0)
TARGET_BINS = 5
BPT_SAMPLE = 20_000
#: Rows reduced at a time within a partition (bounds the working memory of a worker).
ROWS_PER_STEP = 8192


@contextlib.contextmanager
def dask_client(address: str | None, n_workers: int = 2) -> Iterator[Any]:
    """A Dask client for the block: the current one if any, the scheduler at ``address``,
    or a local cluster of ``n_workers`` single-threaded processes bound to 127.0.0.1."""
    from distributed import Client, LocalCluster, default_client

    with contextlib.suppress(ValueError):
        yield default_client()
        return
    if address:
        with Client(address) as client:
            yield client
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None, processes=True) as cluster, \
            Client(cluster) as client:
        yield client


@dataclass
class AggregateSpec:
    """What to compute, derived from the catalog's description and the store."""

    sparse: list[tuple[str, str, str, int, list[str]]]  # model, idx col, val col, F, targets
    pdf_targets: list[tuple[str, float, float]]  # target, low, high
    point_targets: list[str]
    labels: list[str]
    mag_band: str | None
    zero_point: float
    bpt: bool
    sample_rows: int = 0

    def catalog_columns(self) -> list[str]:
        columns = [f"{t}_mean" for t in self.point_targets]
        columns += [f"{t}_pdf" for t, _, _ in self.pdf_targets]
        for _, idx, val, _, _ in self.sparse:
            columns += [idx, val]
        return columns

    def store_columns(self) -> list[str]:
        columns = [f"labels/{name}" for name in self.labels]
        if self.mag_band:
            columns.append(f"photometry/{self.mag_band}")
        return columns


def plan_aggregate(schema: CatalogSchema, store: SurveyStore) -> AggregateSpec:
    sparse, pdf_targets, point_targets = [], [], []
    for model in schema.models:
        point_targets += list(model.targets)
        if model.grid is not None:
            pdf_targets += [(t, model.grid["low"], model.grid["high"]) for t in model.targets]
        if model.k is not None:
            n_features = model.n_features or 512
            sparse.append((model.name, model.act_idx, model.act_val, n_features,
                           list(model.targets)))
    bands = store.layout.photometry_bands
    mag_band = "r" if "r" in bands else (bands[-1] if bands else None)
    zero_point = float(store.attrs.get("zero_points", {}).get(mag_band, 22.5)) if mag_band else 0
    return AggregateSpec(sparse, pdf_targets, point_targets, list(store.label_names), mag_band,
                         zero_point, all(b in store.label_names for b in BPT_LINES))


@dataclass
class Partial:
    """The sums of some rows: one FeatureSums per sparse model, CalibrationSums per target."""

    features: dict[str, FeatureSums] = field(default_factory=dict)
    calibration: dict[str, CalibrationSums] = field(default_factory=dict)
    rows: int = 0

    def __add__(self, other: Partial) -> Partial:
        return Partial({k: v + other.features[k] for k, v in self.features.items()},
                       {k: v + other.calibration[k] for k, v in self.calibration.items()},
                       self.rows + other.rows)


def _groups(spec: AggregateSpec, target: str, low: float, high: float,
            truth: np.ndarray, mag: np.ndarray | None) -> tuple[list[str], list[np.ndarray]]:
    names, masks = ["all"], [np.ones(len(truth), dtype=bool)]
    if mag is not None:
        for a, b in itertools.pairwise(MAG_EDGES):
            names.append(f"{spec.mag_band} {a:g}-{b:g}")
            masks.append((mag >= a) & (mag < b))
    edges = np.linspace(low, high, TARGET_BINS + 1)
    for a, b in itertools.pairwise(edges):
        names.append(f"{target} {a:.3g}-{b:.3g}")
        masks.append((truth >= a) & (truth < b))
    return names, masks


def partial_sums(frame: pd.DataFrame, spec: AggregateSpec, seed: int) -> Partial:
    """All statistics' sums over one partition of the joined frame, in slices of
    :data:`ROWS_PER_STEP` rows: Dask may merge small Parquet parts into large
    partitions, and a slice's working arrays (PDFs as float64, their CDFs) must
    stay small whatever the partition size."""
    total: Partial | None = None
    n = len(frame)
    for step, start in enumerate(range(0, max(n, 1), ROWS_PER_STEP)):
        part = frame.iloc[start:start + ROWS_PER_STEP]
        sample = -(-spec.sample_rows * len(part) // max(n, 1))
        result = _slice_sums(part, spec, sample, seed * 100_003 + step)
        total = result if total is None else total + result
    assert total is not None
    return total


def _slice_sums(frame: pd.DataFrame, spec: AggregateSpec, sample_rows: int,
                seed: int) -> Partial:
    n = len(frame)
    label_columns = {name: frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
                     for name in spec.labels if name in frame}
    specs = resolve_targets(spec.point_targets, spec.labels)
    truth_table = values_from_labels(label_columns, n, specs)
    truth = {s.name: truth_table[:, j].astype(np.float64) for j, s in enumerate(specs)}
    mag = None
    if spec.mag_band:
        flux = frame[f"phot_{spec.mag_band}"].to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = np.where(flux > 0, spec.zero_point - 2.5 * np.log10(flux), np.nan)
    result = Partial(rows=n)
    bpt = None
    if spec.bpt:
        with np.errstate(divide="ignore", invalid="ignore"):
            nii, ha, oiii, hb = (label_columns[b] for b in BPT_LINES)
            bpt = pd.DataFrame({"log_nii_ha": np.log10(nii / ha),
                                "log_oiii_hb": np.log10(oiii / hb),
                                "agn": label_columns.get("agn", np.full(n, np.nan))})
    object_id = frame.index.to_numpy()
    for model, idx_col, val_col, n_features, targets in spec.sparse:
        labels = {**label_columns, **{t: truth[t] for t in targets}}
        result.features[model] = feature_partial(
            list_values(frame[idx_col]), list_values(frame[val_col]), object_id, labels,
            list(targets), n_features, sample_rows, bpt, seed)
    pdf_grids = {t: (low, high) for t, low, high in spec.pdf_targets}
    for target in spec.point_targets:
        point = frame[f"{target}_mean"].to_numpy(dtype=np.float64, na_value=np.nan)
        grid = pdf_grids.get(target)
        low, high = grid if grid else (np.nanmin(truth[target], initial=0.0),
                                       np.nanmax(truth[target], initial=1.0))
        groups, masks = (_groups(spec, target, low, high, truth[target], mag) if grid
                         else (["all"], [np.ones(n, dtype=bool)]))
        pdf = list_values(frame[f"{target}_pdf"]) if grid else None
        result.calibration[target] = calibration_partial(
            truth[target], point, masks, groups, target == "redshift", pdf, grid)
    return result


def _tree_sum(items: list[Any], fan_in: int = 8) -> Any:
    from dask import delayed

    while len(items) > 1:
        items = [delayed(sum)(items[i + 1:i + fan_in], items[i])
                 for i in range(0, len(items), fan_in)]
    return items[0]


@dataclass
class Aggregates:
    """Everything the report shows."""

    rows: int
    seconds: float
    features: dict[str, dict[str, Any]]
    calibration: dict[str, pd.DataFrame]
    pit_hist: dict[str, np.ndarray]  # all galaxies, PIT_BINS bins on [0, 1]
    spec: AggregateSpec


def aggregate_catalog(catalog_url: str, store: SurveyStore,
                      storage_options: dict[str, Any] | None = None) -> Aggregates:
    """Compute every statistic of the catalog at ``catalog_url`` against ``store``'s labels
    (on the current Dask client)."""
    from dask import delayed

    started = time.perf_counter()
    schema = catalog_schema(catalog_url, storage_options)
    spec = plan_aggregate(schema, store)
    catalog = catalog_frame(catalog_url, storage_options, spec.catalog_columns())
    joined = join_labels(catalog, labels_frame(store, spec.store_columns()))
    parts = joined.to_delayed()
    spec.sample_rows = -(-BPT_SAMPLE // max(len(parts), 1))
    partials = [delayed(partial_sums)(part, spec, seed) for seed, part in enumerate(parts)]
    total: Partial = _tree_sum(partials).compute()
    features = {}
    for model, _, _, _, targets in spec.sparse:
        features[model] = finish_features(total.features[model], targets)
    calibration = {target: pd.DataFrame(finish_calibration(sums))
                   for target, sums in total.calibration.items()}
    pit_hist = {target: sums.pit_hist[0] for target, sums in total.calibration.items()
                if sums.has_pdf}
    return Aggregates(total.rows, time.perf_counter() - started, features, calibration,
                      pit_hist, spec)
