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
import functools
import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..catalog.reader import CommittedParts, catalog_schema, committed_parts
from ..catalog.schema import CatalogSchema, ModelColumns
from ..errors import CatalogMismatchError, InvalidParameterError
from ..flags import Flag
from ..flags import count as count_flags
from ..jobs import TargetSettings
from ..kinds import KindAggregator, get_kind, load_plugins
from ..kinds.base import MAGNITUDE_EDGES, MAGNITUDE_LABEL
from ..models.grid import Grid
from ..models.targets import label_columns, resolve_targets, values_from_labels
from ..redact import redact
from ..store import SurveyStore
from ..store.layout import ZERO_POINT
from .calibration import (
    ALL,
    CalibrationSums,
    Group,
    calibration_partial,
    finish_calibration,
)
from .features import FeatureStatistics, FeatureSums, feature_partial, finish_features
from .frames import catalog_frame, join_labels, labels_frame, list_values

__all__ = ["AggregateSpec", "Aggregates", "aggregate_catalog", "dask_client"]

log = logging.getLogger(__name__)

BPT_LINES = ("flux_nii", "flux_halpha", "flux_oiii", "flux_hbeta")
TARGET_BINS = 5
BPT_SAMPLE = 20_000
#: Labels read to find the plotted range of a target without a PDF grid.
RANGE_SAMPLE = 65_536
#: Rows reduced at a time within a partition (bounds the working memory of a worker).
ROWS_PER_STEP = 8192


@contextlib.contextmanager
def dask_client(address: str | None, n_workers: int = 2) -> Iterator[Any]:
    """A Dask client for the block: the scheduler at ``address`` when given, else the
    current client if any, else a local cluster of ``n_workers`` single-threaded processes
    bound to 127.0.0.1."""
    from distributed import Client, LocalCluster, default_client

    if address:
        with Client(address) as client:
            yield client
        return
    try:
        current = default_client()
    except ValueError:  # no client in this process
        current = None
    if current is not None:  # (an error of the caller's block must not be taken for this)
        yield current
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None, processes=True) as cluster, \
            Client(cluster) as client:
        yield client


@dataclass
class AggregateSpec:
    """What to compute, derived from the catalog's description, the store and the job.

    It travels to the Dask workers: models are plain column descriptions, and
    a plug-in kind's aggregator is looked up there after ``plugins`` are imported.
    """

    models: list[ModelColumns]
    targets: dict[str, TargetSettings]  # evaluation settings of every target
    labels: list[str]
    mag_band: str | None
    zero_point: float
    bpt: bool
    plugins: list[str] = field(default_factory=list)
    sample_rows: int = 0
    units: dict[str, str] = field(default_factory=dict)  # each target's unit
    #: Range of each estimate's figures and bins: its PDF grid, else its labels' spread.
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def sparse(self) -> list[ModelColumns]:
        return [m for m in self.models if m.k is not None]

    @property
    def estimates(self) -> dict[str, tuple[ModelColumns, str]]:
        """Every estimate in the catalog, by its name (``<t>``, or ``<model>_<t>`` where
        several models estimate ``t``): its model and target."""
        return {name: (m, t) for m in self.models for name, t in m.estimates.items()}

    @property
    def estimated_targets(self) -> list[str]:
        """The targets some model estimates, each once."""
        return list(dict.fromkeys(t for m in self.models for t in m.targets))

    @functools.cached_property
    def pdf_grids(self) -> dict[str, Grid]:
        """The PDF grid of each estimate that has one, by estimate name."""
        return {m.estimate(t): g for m in self.models for t, g in m.pdf_grids.items()}

    def point_column(self, estimate: str) -> str:
        """The column judged as an estimate's point value (its target's settings, for
        PDFs)."""
        model, target = self.estimates[estimate]
        stat = self.targets[target].point if estimate in self.pdf_grids else "mean"
        return model.stat(target, stat)

    def kind_aggregators(self) -> dict[str, KindAggregator]:
        """The model kinds' own aggregators, by model name (unknown kinds: none)."""
        out = {}
        for model in self.models:
            try:
                kind = get_kind(model.kind)
            except InvalidParameterError:
                continue
            aggregator = kind.aggregator(model)
            if aggregator is not None:
                out[model.name] = aggregator
        return out

    def catalog_columns(self) -> list[str]:
        columns = ["flags", *(self.point_column(e) for e in self.estimates)]
        columns += [model.pdf(target) for name, (model, target) in self.estimates.items()
                    if name in self.pdf_grids]
        for model in self.sparse:
            columns += [model.act_idx, model.act_val]
        for aggregator in self.kind_aggregators().values():
            columns += aggregator.columns
        return list(dict.fromkeys(columns))

    def store_columns(self) -> list[str]:
        columns = [f"labels/{name}" for name in self.labels]
        if self.mag_band:
            columns.append(f"photometry/{self.mag_band}")
        return columns


def plan_aggregate(schema: CatalogSchema, store: SurveyStore,
                   targets: Mapping[str, TargetSettings] | None = None,
                   plugins: list[str] | None = None) -> AggregateSpec:
    targets = dict(targets or {})
    for model in schema.models:
        for target in model.targets:
            targets.setdefault(target, TargetSettings())
    bands = store.layout.photometry_bands
    mag_band = "r" if "r" in bands else (bands[-1] if bands else None)
    zero_point = (float(store.attrs.get("zero_points", {}).get(mag_band, ZERO_POINT))
                  if mag_band else 0)
    units = {t: u for m in schema.models for t, u in zip(m.targets, m.units, strict=True)}
    ranges = {m.estimate(t): (g.low, g.high) for m in schema.models
              for t, g in m.pdf_grids.items()}
    ungridded = {e: t for m in schema.models for e, t in m.estimates.items() if e not in ranges}
    by_label = _label_ranges(store, list(dict.fromkeys(ungridded.values())))
    ranges.update({e: by_label[t] for e, t in ungridded.items()})
    return AggregateSpec(list(schema.models), targets, list(store.label_names), mag_band,
                         zero_point, all(b in store.label_names for b in BPT_LINES),
                         list(plugins or []), units=units, ranges=ranges)


def _label_ranges(store: SurveyStore, targets: list[str]) -> dict[str, tuple[float, float]]:
    """The 0.5-99.5 percentile range, widened by 5 % each side, of each target's true
    values among the store's first :data:`RANGE_SAMPLE` objects (objects are in no
    particular order of the targets, so a leading sample stands for the survey)."""
    if not targets:
        return {}
    specs = resolve_targets(targets, list(store.label_names))
    n = min(store.n_objects, RANGE_SAMPLE)
    names = label_columns(specs)
    columns = {name: np.asarray(store.array(f"labels/{name}")[:n]) for name in names}
    values = values_from_labels(columns, n, specs)
    out = {}
    for j, spec in enumerate(specs):
        known = values[:, j][np.isfinite(values[:, j])]
        if not len(known):
            out[spec.name] = (0.0, 1.0)
            continue
        low, high = np.percentile(known.astype(np.float64), [0.5, 99.5])
        pad = 0.05 * (high - low) or 0.5
        out[spec.name] = (float(low - pad), float(high + pad))
    return out


@dataclass
class Partial:
    """The sums of some rows: FeatureSums per sparse model, CalibrationSums per estimate,
    and each kind aggregator's arrays per model."""

    features: dict[str, FeatureSums] = field(default_factory=dict)
    calibration: dict[str, CalibrationSums] = field(default_factory=dict)
    kinds: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    rows: int = 0
    flags: dict[str, int] = field(default_factory=dict)  # objects per quality flag set

    def __add__(self, other: Partial) -> Partial:
        return Partial({k: v + other.features[k] for k, v in self.features.items()},
                       {k: v + other.calibration[k] for k, v in self.calibration.items()},
                       {m: {k: v + other.kinds[m][k] for k, v in sums.items()}
                        for m, sums in self.kinds.items()},
                       self.rows + other.rows, dict(Counter(self.flags) + Counter(other.flags)))


def with_unit(text: str, unit: str) -> str:
    """``text [unit]``, or ``text`` for a dimensionless quantity."""
    return f"{text} [{unit}]" if unit else text


def _groups(spec: AggregateSpec, estimate: str, truth: np.ndarray,
            mag: np.ndarray | None) -> tuple[list[Group], list[np.ndarray]]:
    """All galaxies, bins of magnitude, and :data:`TARGET_BINS` bins of the target's truth
    over the estimate's range (names stay short; ``by`` carries the quantity's unit)."""
    target = spec.estimates[estimate][1]
    groups, masks = [ALL], [np.ones(len(truth), dtype=bool)]
    unit = spec.units.get(target, "")
    if mag is not None:
        by = f"{spec.mag_band}-band magnitude [AB mag]"
        for a, b in itertools.pairwise(MAGNITUDE_EDGES):
            groups.append(Group(f"{spec.mag_band} {a:g}-{b:g} mag", by, a, b))
            masks.append((mag >= a) & (mag < b))
    by = with_unit(f"true {target}", unit)
    low, high = spec.ranges[estimate]
    for a, b in itertools.pairwise(np.linspace(low, high, TARGET_BINS + 1)):
        groups.append(Group(f"{target} {a:.3g}-{b:.3g}", by, float(a), float(b)))
        masks.append((truth >= a) & (truth < b))
    return groups, masks


def partial_sums(frame: pd.DataFrame, spec: AggregateSpec, seed: int) -> Partial:
    """All statistics' sums over one partition of the joined frame, in slices of
    :data:`ROWS_PER_STEP` rows: Dask may merge small Parquet parts into large
    partitions, and a slice's working arrays (PDFs as float64, their CDFs) must
    stay small whatever the partition size."""
    load_plugins(spec.plugins)  # a Dask worker is a fresh process
    aggregators = spec.kind_aggregators()
    total: Partial | None = None
    n = len(frame)
    for step, start in enumerate(range(0, max(n, 1), ROWS_PER_STEP)):
        part = frame.iloc[start:start + ROWS_PER_STEP]
        sample = -(-spec.sample_rows * len(part) // max(n, 1))
        result = _slice_sums(part, spec, aggregators, sample, seed * 100_003 + step)
        total = result if total is None else total + result
    assert total is not None
    return total


def _slice_sums(frame: pd.DataFrame, spec: AggregateSpec,
                aggregators: dict[str, KindAggregator], sample_rows: int, seed: int) -> Partial:
    n = len(frame)
    label_columns = {name: frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
                     for name in spec.labels if name in frame}
    specs = resolve_targets(spec.estimated_targets, spec.labels)
    truth_table = values_from_labels(label_columns, n, specs)
    truth = {s.name: truth_table[:, j].astype(np.float64) for j, s in enumerate(specs)}
    mag = None
    if spec.mag_band:
        flux = frame[f"phot_{spec.mag_band}"].to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = np.where(flux > 0, spec.zero_point - 2.5 * np.log10(flux), np.nan)
    result = Partial(rows=n)
    result.flags = count_flags(frame["flags"].to_numpy())
    bpt = None
    if spec.bpt:
        with np.errstate(divide="ignore", invalid="ignore"):
            nii, ha, oiii, hb = (label_columns[b] for b in BPT_LINES)
            bpt = pd.DataFrame({"log_nii_ha": np.log10(nii / ha),
                                "log_oiii_hb": np.log10(oiii / hb),
                                "agn": label_columns.get("agn", np.full(n, np.nan))})
    object_id = frame.index.to_numpy()
    for model in spec.sparse:
        labels = {**label_columns, **{t: truth[t] for t in model.targets}}
        result.features[model.name] = feature_partial(
            list_values(frame[model.act_idx]), list_values(frame[model.act_val]), object_id,
            labels, list(model.targets), model.n_features or 512, sample_rows, bpt, seed)
    grids = spec.pdf_grids
    for estimate, (model, target) in spec.estimates.items():
        settings = spec.targets[target]
        point = frame[spec.point_column(estimate)].to_numpy(dtype=np.float64, na_value=np.nan)
        grid = grids.get(estimate)
        groups, masks = _groups(spec, estimate, truth[target], mag)
        pdf = list_values(frame[model.pdf(target)]) if grid else None
        result.calibration[estimate] = calibration_partial(
            truth[target], point, masks, groups, relative=settings.relative_error,
            thresholds=tuple(settings.outliers), pdf=pdf, grid=grid,
            joint_range=spec.ranges[estimate])
    for name, aggregator in aggregators.items():
        result.kinds[name] = aggregator.partial(
            frame, {**label_columns, **truth, **({MAGNITUDE_LABEL: mag} if mag is not None
                                                 else {})})
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
    features: dict[str, FeatureStatistics]
    calibration: dict[str, pd.DataFrame]  # by estimate name (AggregateSpec.estimates)
    pit_hist: dict[str, np.ndarray]  # all galaxies, PIT_BINS bins on [0, 1]
    spec: AggregateSpec
    #: Per estimate: its (truth, estimate) histogram's counts and how many fell off it.
    joint: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict)
    kinds: dict[str, Any] = field(default_factory=dict)  # kind aggregators' results by model
    parts: CommittedParts | None = None  # which shards were read
    flags: dict[str, int] = field(default_factory=dict)  # objects per quality flag set
    causal: dict[str, Any] | None = None  # the causal graph (CausalGraph.to_dict), if asked
    local_tests: dict[str, Any] | None = None  # local independence tests' summary, if asked


def aggregate_catalog(catalog_url: str, store: SurveyStore,
                      storage_options: dict[str, Any] | None = None, *,
                      targets: Mapping[str, TargetSettings] | None = None,
                      plugins: list[str] | None = None,
                      allow_partial: bool = False) -> Aggregates:
    """Compute every statistic of the catalog at ``catalog_url`` against ``store``'s labels
    (on the current Dask client), reading only committed parts.

    Raises
    ------
    CatalogMismatchError
        The catalog is unfinished (no manifest) and ``allow_partial`` is false; the
        message says how many shards of how many are committed.
    """
    from dask import delayed

    started = time.perf_counter()
    load_plugins(plugins or [])
    schema = catalog_schema(catalog_url, storage_options)
    parts = committed_parts(catalog_url, storage_options, schema)
    if not parts.complete and not allow_partial:
        msg = (f"catalog {redact(catalog_url)} is unfinished: {parts.summary}; finish it with "
               "surveyproc infer, or aggregate what is there with "
               "--set aggregate.allow_partial=true")
        raise CatalogMismatchError(msg)
    if not parts.urls:
        msg = f"catalog {redact(catalog_url)} has no committed shards yet ({parts.summary})"
        raise CatalogMismatchError(msg)
    spec = plan_aggregate(schema, store, targets, plugins)
    catalog = catalog_frame(parts.urls, storage_options, spec.catalog_columns())
    joined = join_labels(catalog, labels_frame(store, spec.store_columns()))
    partitions = joined.to_delayed()
    spec.sample_rows = -(-BPT_SAMPLE // max(len(partitions), 1))
    partials = [delayed(partial_sums)(part, spec, seed) for seed, part in enumerate(partitions)]
    total: Partial = _tree_sum(partials).compute()
    features = {model.name: finish_features(total.features[model.name], list(model.targets))
                for model in spec.sparse}
    aggregators = spec.kind_aggregators()
    kinds = {name: aggregators[name].finish(sums) for name, sums in total.kinds.items()}
    calibration = {estimate: pd.DataFrame(finish_calibration(sums))
                   for estimate, sums in total.calibration.items()}
    pit_hist = {estimate: sums.pit_hist[0] for estimate, sums in total.calibration.items()
                if sums.has_pdf}
    joint = {estimate: (sums.joint, sums.joint_outside)
             for estimate, sums in total.calibration.items()}
    flags = {str(f.name): total.flags[str(f.name)] for f in Flag if str(f.name) in total.flags}
    return Aggregates(total.rows, time.perf_counter() - started, features, calibration,
                      pit_hist, spec, joint, kinds, parts, flags)
