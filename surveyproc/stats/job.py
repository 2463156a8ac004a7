"""``surveyproc aggregate JOB.yaml``: statistics of the job's catalog, on the job's Dask."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointNotFoundError
from ..fs import is_local, join, normalize, resolve
from ..jobs import JobSpec
from ..models import Checkpoint, load_checkpoint
from ..store import SurveyStore
from .aggregate import aggregate_catalog, dask_client
from .calibration import off_calibration
from .causal import bootstrap_graphs, store_variables
from .report import write_report

__all__ = ["AggregateResult", "aggregate_job"]

log = logging.getLogger(__name__)


@dataclass
class AggregateResult:
    report: str
    rows: int
    seconds: float
    #: Per target, its bins off calibration (group, n, why), as the report lists them.
    off_calibration: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def warning(self) -> str | None:
        """One line naming the bins off calibration, or None when there are none."""
        named = [f"{b['group']}" for bins in self.off_calibration.values() for b in bins]
        if not named:
            return None
        shown = ", ".join(named[:4]) + (f" and {len(named) - 4} more" if len(named) > 4 else "")
        return (f"warning: {len(named)} bins off calibration ({shown}); the report's "
                "calibration sections say why")


def aggregate_job(job: JobSpec, store: SurveyStore) -> AggregateResult:
    """Aggregate the job's catalog against ``store`` and write the report."""
    catalog = job.outputs.catalog
    with dask_client(job.dask.address, job.dask.n_workers):
        aggregates = aggregate_catalog(catalog, store, job.output.storage_options,
                                       targets=job.targets, plugins=job.plugins,
                                       allow_partial=job.aggregate.allow_partial)
        causal = job.aggregate.causal
        if causal.enabled:
            variables = store_variables(store, causal.rows, labels=causal.labels)
            aggregates.causal = bootstrap_graphs(
                np.column_stack(list(variables.values())), list(variables),
                causal.resamples, causal.alpha).to_dict()
    checkpoints: dict[str, Checkpoint] = {}
    for model in job.models:
        try:
            checkpoints[model.name] = load_checkpoint(job.outputs.checkpoint(model.name),
                                                      job.output.storage_options)
        except CheckpointNotFoundError:
            log.info("model %s: no checkpoint; its kind's report section gets none",
                     model.name)
    off = {target: bins for target, table in aggregates.calibration.items()
           if (bins := off_calibration(table))}
    target = job.outputs.report
    title = f"surveyproc report: {job.name}"
    if is_local(target):
        path = write_report(aggregates, store, Path(normalize(target)), checkpoints, catalog,
                            title)
        return AggregateResult(str(path), aggregates.rows, aggregates.seconds, off)
    with tempfile.TemporaryDirectory(prefix="surveyproc-report-") as tmp:
        write_report(aggregates, store, Path(tmp), checkpoints, catalog, title)
        fs, remote = resolve(target, job.output.storage_options)
        fs.put(f"{tmp}/", remote, recursive=True)
    return AggregateResult(join(target, "index.html"), aggregates.rows, aggregates.seconds,
                           off)
