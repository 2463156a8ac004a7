"""``surveyproc run``: carry a job file through every stage, in order.

Stages so far: prepare the store (synthesise it when the job says so and it
does not exist yet, otherwise open and validate it), train the job's models
(keeping checkpoints that are up to date), then infer the catalog (skipping
committed shards), and aggregate the catalog into statistics and a report.
Each stage reads what the previous one wrote, so a re-run picks up where the
last one stopped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from .errors import StoreNotFoundError
from .fs import resolve
from .jobs import JobSpec
from .ops.ray_runtime import job_ray
from .store import SurveyStore, open_store
from .store.synth import synthesize

__all__ = ["RunResult", "format_metrics", "prepare_store", "run_job"]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Where a run put things (URLs, safe to print)."""

    store: str
    output: str
    summary: str
    artifacts: dict[str, str] = field(default_factory=dict)


def prepare_store(job: JobSpec, *, synthesise: bool = True) -> SurveyStore:
    """Open the job's store, synthesising it first (on the job's Ray) when missing,
    ``store.synth`` is set and ``synthesise`` allows it (``train`` and ``run``; never
    ``infer`` or ``aggregate``, where a misspelt URL must be an error, not new galaxies)."""
    section = job.store
    try:
        store = open_store(section.url, section.storage_options)
    except StoreNotFoundError as error:
        if section.synth is None:
            raise
        if not synthesise:
            msg = (f"{error}; infer and aggregate read an existing store and never "
                   "synthesise one (surveyproc synth, train or run make it)")
            raise StoreNotFoundError(msg) from None
        log.info("store %s does not exist: synthesising %d galaxies", section.url,
                 section.synth.n)
        with job_ray(job):
            return synthesize(section.url, section.synth,
                              storage_options=section.storage_options)
    if section.synth is not None:
        log.info("store %s exists: using it as is (the job's synth settings are not applied)",
                 store.url)
    return store


def format_metrics(metrics: dict[str, Any], split: str = "val") -> str:
    """``rmse_metallicity=0.071, ...`` of one split, for a one-line report."""
    values = metrics.get(split, {})
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items()) or "no metrics"


def run_job(job: JobSpec) -> RunResult:
    """Run every stage of ``job`` and write ``run_summary.json`` to the output directory."""
    with job_ray(job):  # one Ray for every stage
        return _run_stages(job)


def _run_stages(job: JobSpec) -> RunResult:
    from .infer import run_inference
    from .stats import aggregate_job
    from .train import train_job

    stages = ["store"]
    store = prepare_store(job)
    trained = []
    inferred = None
    if job.models:
        trained = train_job(job, store)
        stages.append("train")
        inferred = run_inference(job, store)
        stages.append("infer")
    report = None
    if inferred is not None and inferred.complete:
        report = aggregate_job(job, store)
        stages.append("aggregate")
    summary_url = job.outputs.run_summary
    summary: dict[str, Any] = {
        "job": job.name,
        "store": {"url": store.url, "n_objects": store.n_objects, "bands": list(store.bands),
                  "labels": list(store.label_names)},
        "models": [{"name": t.name, "checkpoint": t.url, "model_id": t.model_id,
                    "metrics": t.metrics} for t in trained],
        "stages": stages,
    }
    artifacts = {f"checkpoint {t.name}": f"{t.url} (model {t.model_id}; "
                 f"{format_metrics(t.metrics)})" for t in trained}
    if inferred is not None:
        summary["catalog"] = {"url": inferred.catalog, "complete": inferred.complete,
                              "run_id": inferred.run_id, "objects_run": inferred.objects_run,
                              "cutouts_per_s": round(inferred.cutouts_per_s, 1),
                              "out_of_distribution": inferred.out_of_distribution,
                              "out_of_distribution_by": inferred.ood_reasons,
                              "quarantined": inferred.quarantined,
                              "quarantined_objects": inferred.quarantined_objects,
                              "storage_retries": inferred.storage_retries}
        state = "complete" if inferred.complete else "partial; run again to continue"
        ood = (f"; {inferred.out_of_distribution:,} OUT_OF_DISTRIBUTION"
               if inferred.out_of_distribution else "")
        artifacts["catalog"] = (f"{inferred.catalog} ({store.n_objects:,} objects, {state}; "
                                f"{inferred.cutouts_per_s:,.0f} cutouts/s{ood})")
    if report is not None:
        summary["report"] = report.report
        summary["off_calibration"] = report.off_calibration
        off = sum(len(bins) for bins in report.off_calibration.values())
        artifacts["report"] = report.report + (f" ({off} bins off calibration)" if off else "")
    fs, path = resolve(summary_url, job.output.storage_options)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as f:
        json.dump(summary, f, indent=2)
    return RunResult(store=store.url, output=job.outputs.dir, summary=summary_url,
                     artifacts=artifacts)
