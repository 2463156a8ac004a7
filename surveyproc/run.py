"""``surveyproc run``: carry a job file through every stage, in order.

Stages so far: prepare the store (synthesise it when the job says so and it
does not exist yet, otherwise open and validate it), then train the job's
models (keeping checkpoints that are up to date).  Inference and aggregation
join here as they land; each stage reads what the previous one wrote, so a
re-run picks up where the last one stopped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from .errors import StoreNotFoundError
from .fs import join, resolve
from .jobs import JobSpec
from .ops.ray_runtime import ray_runtime
from .store import SurveyStore, open_store
from .store.synth import SynthConfig, synthesize

__all__ = ["RunResult", "format_metrics", "prepare_store", "run_job"]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Where a run put things (URLs, safe to print)."""

    store: str
    output: str
    summary: str
    artifacts: dict[str, str] = field(default_factory=dict)


def prepare_store(job: JobSpec) -> SurveyStore:
    """Open the job's store, synthesising it first (on the job's Ray) when missing and
    ``store.synth`` is set."""
    with ray_runtime(job.ray.address, num_cpus=job.ray.num_cpus, dashboard=job.ray.dashboard):
        return _prepare_store(job)


def _prepare_store(job: JobSpec) -> SurveyStore:
    section = job.store
    try:
        store = open_store(section.url, section.storage_options)
    except StoreNotFoundError:
        if section.synth is None:
            raise
        s = section.synth
        log.info("store %s does not exist: synthesising %d galaxies", section.url, s.n)
        config = SynthConfig(n=s.n, size=s.size, bands=tuple(s.bands), seed=s.seed,
                             pixel_scale=s.pixel_scale, z_max=s.z_max)
        return synthesize(section.url, config, storage_options=section.storage_options,
                          chunk_objects=s.chunk, shard_chunks=s.shard_chunks,
                          compression=s.compression, dtype=s.dtype)
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
    from .train import train_job

    stages = ["store"]
    store = prepare_store(job)
    trained = []
    if job.models:
        trained = train_job(job, store)
        stages.append("train")
    summary_url = join(job.output.dir, "run_summary.json")
    summary: dict[str, Any] = {
        "job": job.name,
        "store": {"url": store.url, "n_objects": store.n_objects, "bands": list(store.bands),
                  "labels": list(store.label_names)},
        "models": [{"name": t.name, "checkpoint": t.url, "model_id": t.model_id,
                    "metrics": t.metrics} for t in trained],
        "stages": stages,
    }
    fs, path = resolve(summary_url, job.output.storage_options)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as f:
        json.dump(summary, f, indent=2)
    return RunResult(store=store.url, output=join(job.output.dir), summary=summary_url,
                     artifacts={f"checkpoint {t.name}": f"{t.url} (model {t.model_id}; "
                                f"{format_metrics(t.metrics)})" for t in trained})
