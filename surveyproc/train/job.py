"""``surveyproc train JOB.yaml``: train every model a job names and save its checkpoint.

One model at a time: in this process (:mod:`.single`), or on Ray Train when
``train.workers`` is set (:mod:`.distributed`).  Checkpoints go to
``job.outputs.checkpoint(name)``; one whose fingerprint (model settings,
optimisation, store) matches is kept, so re-running a job does not retrain
what is already trained.
"""

from __future__ import annotations

from ..errors import InvalidParameterError
from ..jobs import JobSpec
from ..store import SurveyStore
from .plan import TrainedModel
from .single import train_model

__all__ = ["train_job"]


def train_job(job: JobSpec, store: SurveyStore, *, force: bool = False,
              resume: str | None = None) -> list[TrainedModel]:
    """Train every model of ``job`` on ``store`` (skipping up-to-date checkpoints)."""
    if not job.models:
        msg = f"job {job.name} names no models to train (add a 'models' section)"
        raise InvalidParameterError(msg)
    if resume is not None and (len(job.models) != 1 or not job.train.workers):
        msg = "--resume needs a job with one model and train.workers set (Ray Train)"
        raise InvalidParameterError(msg)
    if job.train.workers:
        from ..ops.ray_runtime import ray_runtime
        from .distributed import train_model_distributed

        with ray_runtime(job.ray.address, num_cpus=job.ray.num_cpus,
                         dashboard=job.ray.dashboard):
            return [train_model_distributed(job, store, section, force=force, resume=resume)
                    for section in job.models]
    return [train_model(store, section, job.train, url=job.outputs.checkpoint(section.name),
                        storage_options=job.output.storage_options, force=force,
                        plugins=job.plugins)
            for section in job.models]
