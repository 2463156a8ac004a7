"""``surveyproc run``: carry a job file through every stage, in order.

Stages so far: prepare the store (synthesise it when the job says so and it
does not exist yet, otherwise open and validate it).  Training, inference and
aggregation join here as they land; each stage reads what the previous one
wrote, so a re-run picks up where the last one stopped.
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

__all__ = ["RunResult", "prepare_store", "run_job"]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Where a run put things (URLs, safe to print)."""

    store: str
    output: str
    summary: str
    artifacts: dict[str, str] = field(default_factory=dict)


def prepare_store(job: JobSpec) -> SurveyStore:
    """Open the job's store, synthesising it first when it is missing and ``store.synth`` is set."""
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


def run_job(job: JobSpec) -> RunResult:
    """Run every stage of ``job`` and write ``run_summary.json`` to the output directory."""
    with ray_runtime(job.ray.address, num_cpus=job.ray.num_cpus, dashboard=job.ray.dashboard):
        store = prepare_store(job)
    summary_url = join(job.output.dir, "run_summary.json")
    summary: dict[str, Any] = {
        "job": job.name,
        "store": {"url": store.url, "n_objects": store.n_objects, "bands": list(store.bands),
                  "labels": list(store.label_names)},
        "stages": ["store"],
    }
    fs, path = resolve(summary_url, job.output.storage_options)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as f:
        json.dump(summary, f, indent=2)
    return RunResult(store=store.url, output=join(job.output.dir), summary=summary_url)
