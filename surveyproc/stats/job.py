"""``surveyproc aggregate JOB.yaml``: statistics of the job's catalog, on the job's Dask."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointNotFoundError
from ..fs import is_local, join, normalize, resolve
from ..jobs import JobSpec
from ..models import Checkpoint, load_checkpoint
from ..store import SurveyStore
from .aggregate import aggregate_catalog, dask_client
from .report import write_report

__all__ = ["AggregateResult", "aggregate_job"]

log = logging.getLogger(__name__)


@dataclass
class AggregateResult:
    report: str
    rows: int
    seconds: float


def aggregate_job(job: JobSpec, store: SurveyStore) -> AggregateResult:
    """Aggregate the job's catalog against ``store`` and write the report."""
    catalog = job.outputs.catalog
    with dask_client(job.dask.address, job.dask.n_workers):
        aggregates = aggregate_catalog(catalog, store, job.output.storage_options,
                                       targets=job.targets, plugins=job.plugins,
                                       allow_partial=job.aggregate.allow_partial)
    checkpoints: dict[str, Checkpoint] = {}
    for model in job.models:
        try:
            checkpoints[model.name] = load_checkpoint(job.outputs.checkpoint(model.name),
                                                      job.output.storage_options)
        except CheckpointNotFoundError:
            log.info("model %s: no checkpoint; its kind's report section gets none",
                     model.name)
    target = job.outputs.report
    title = f"surveyproc report: {job.name}"
    if is_local(target):
        path = write_report(aggregates, store, Path(normalize(target)), checkpoints, catalog,
                            title)
        return AggregateResult(str(path), aggregates.rows, aggregates.seconds)
    with tempfile.TemporaryDirectory(prefix="surveyproc-report-") as tmp:
        write_report(aggregates, store, Path(tmp), checkpoints, catalog, title)
        fs, remote = resolve(target, job.output.storage_options)
        fs.put(f"{tmp}/", remote, recursive=True)
    return AggregateResult(join(target, "index.html"), aggregates.rows, aggregates.seconds)
