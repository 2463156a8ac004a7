"""Dask statistics over the catalog: sparse-feature interpretability, PDF calibration, report."""

from .aggregate import Aggregates, aggregate_catalog, dask_client
from .calibration import crps, pit_values
from .job import AggregateResult, aggregate_job

__all__ = [
    "AggregateResult",
    "Aggregates",
    "aggregate_catalog",
    "aggregate_job",
    "crps",
    "dask_client",
    "pit_values",
]
