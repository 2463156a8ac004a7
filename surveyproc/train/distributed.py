"""Data-parallel training on Ray Train: the single-process loop, on N workers with DDP.

``train.workers: N`` in a job makes ``surveyproc train`` run
:func:`~surveyproc.train.loop.fit` inside a ``TorchTrainer`` of N workers
(gloo on CPU, NCCL with ``use_gpu``).  Each worker streams its own disjoint
share of the store's chunk-aligned shards every epoch
(:meth:`~surveyproc.train.plan.TrainingPlan.train_streams`),
with the same id-hash train/validation split; the main worker (rank 0)
validates on the whole validation split and the others act on its numbers, so
early stopping agrees.  ``batch_size`` is the global batch, split across
workers (with ``scale_lr`` it is per worker and the learning rate scales with
N instead); every worker takes exactly the same number of optimiser steps, and after the
first one the ranks compare parameter digests (recorded in the run's
``starts``; a mismatch stops training: gradients are not synchronised).

After every epoch rank 0 reports a checkpoint (the resumable
:class:`~surveyproc.train.loop.TrainingState`: current and best weights,
optimiser, scheduler, epoch, history) to Ray Train's storage (a local
directory or any fsspec URL, e.g. s3://), which keeps the last two; a worker
lost mid-epoch makes Ray Train restart the group from the last one
(``FailureConfig(max_failures)``; the restarted workers take the newest complete
state in the run's storage, see :func:`latest_state`).  ``--resume URL`` starts from any such
checkpoint.  The result is saved in the checkpoint format of the models
package, which ``surveyproc infer`` reads.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointNotFoundError, SurveyprocError
from ..fs import is_local, join, normalize, read_bytes, redact, resolve
from ..jobs import JobSpec
from ..kinds import ModelSettings
from ..store import SurveyStore
from .loop import (
    Distribution,
    FitResult,
    TrainingState,
    fit,
    seed_everything,
    weights_digest,
)
from .plan import (
    TrainedModel,
    TrainingPlan,
    fingerprint,
    finish_training,
    plan_training,
    up_to_date,
)

__all__ = ["STATE_FILE", "latest_state", "load_state", "train_model_distributed"]

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"


def load_state(url: str, storage_options: dict[str, Any] | None = None) -> TrainingState:
    """A training state from a checkpoint directory (Ray Train's) or a ``state.pt`` URL."""
    candidates = [url] if url.endswith(".pt") else [join(url, STATE_FILE), url]
    for candidate in candidates:
        try:
            data = read_bytes(candidate, storage_options)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        try:
            return _state_from_bytes(data)
        except Exception as error:  # not a torch file, or not a training state
            msg = f"resume: {redact(candidate)} is not a training checkpoint ({STATE_FILE})"
            raise CheckpointNotFoundError(msg) from error
    msg = f"resume: no training checkpoint ({STATE_FILE}) at {redact(url)}"
    raise CheckpointNotFoundError(msg)


def latest_state(run_url: str, storage_options: dict[str, Any] | None
                 ) -> TrainingState | None:
    """The newest complete training state a run has written, or None before its first.

    A restarted worker group looks in the run's storage itself instead of trusting
    ``ray.train.get_checkpoint()``: Ray Train registers a checkpoint only once its
    controller has collected every worker's report, so a worker lost in between
    restarts the group without one although a complete ``state.pt`` is in storage
    (the group then silently trains from scratch).  A file cut short by the failure
    does not load and the one before it is taken.
    """
    fs, path = resolve(run_url, storage_options)
    try:
        found = sorted(fs.glob(f"{path}/checkpoint_*/{STATE_FILE}"), reverse=True)
    except FileNotFoundError:
        return None
    for candidate in found:  # Ray names checkpoint directories by time: newest first
        try:
            return _state_from_bytes(bytes(fs.cat_file(candidate)))
        except Exception as error:  # an incomplete upload: fall back to the one before
            log.warning("skipping unreadable training checkpoint %s (%s)",
                        redact(candidate), type(error).__name__)
    return None


def _state_from_bytes(data: bytes) -> TrainingState:
    return TrainingState.from_dict(torch.load(io.BytesIO(data), map_location="cpu",
                                              weights_only=True))


def _worker_loop(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    plan: TrainingPlan = config["plan"]
    train = plan.train
    torch.set_num_threads(config["threads"])
    seed_everything(train.seed)
    model = plan.build()
    start = None
    origin = "resume"
    latest = latest_state(config["run_url"], config["storage_options"])
    if latest is not None:  # restarted after a failure: continue after the last epoch
        start, origin = latest, "restart"
    elif config["resume"] is not None:
        start = _state_from_bytes(config["resume"])
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={
        "find_unused_parameters": not plan.kind.trains_every_parameter})
    streams = plan.train_streams(rank, world)
    validation = plan.stream("val", False, shards=plan.shards if rank == 0 else [])
    fit_config = plan.fit_config()
    if train.scale_lr:
        fit_config = dataclasses.replace(fit_config, lr=fit_config.lr * world)

    def agree(val_loss: float, metrics: dict[str, float]) -> tuple[float, dict[str, float]]:
        shared: list[Any] = [val_loss, metrics]
        torch.distributed.broadcast_object_list(shared, src=0)
        return float(shared[0]), dict(shared[1])

    from ..ops.metrics import TrainMetrics

    sink = config.get("metrics")
    if isinstance(sink, tuple):  # ray channel: this worker exports through its node's agent
        sink = TrainMetrics(*sink)

    def on_epoch(result, core, state) -> None:
        metrics = {"epoch": result.epoch + 1, "train_loss": result.train_loss,
                   "val_loss": result.val_loss, "samples_per_s": result.samples_per_s,
                   "global_samples_per_s": result.samples_per_s * world,
                   **{f"val_{k}": v for k, v in result.val_metrics.items()}}
        if isinstance(sink, TrainMetrics):
            sink.record(rank, metrics)
        elif sink is not None:  # the http channel's exporter actor
            sink.record.remote(rank, metrics)  # fire and forget: never slows training
        if rank == 0:
            with tempfile.TemporaryDirectory() as directory:
                torch.save(state().to_dict(), Path(directory) / STATE_FILE)
                ray.train.report(metrics,
                                 checkpoint=ray.train.Checkpoint.from_directory(directory))
        else:
            ray.train.report(metrics)

    def check_ranks(core: torch.nn.Module) -> list[dict[str, Any]]:
        """Every rank's parameter digest (DDP keeps them equal), host and PID."""
        mine = {"rank": rank, "weights": weights_digest(dict(core.named_parameters())),
                "host": socket.gethostname(), "pid": os.getpid()}
        ranks: list[Any] = [mine]
        if world > 1:
            ranks = [None] * world
            torch.distributed.all_gather_object(ranks, mine)
        digests = [r["weights"] for r in ranks]
        if len(set(digests)) > 1:
            msg = (f"model {plan.section.name}: data-parallel ranks hold different weights "
                   f"after an optimiser step ({', '.join(digests)}): gradients are not "
                   "being synchronised")
            raise SurveyprocError(msg)
        return ranks

    fit(model, plan.task(), streams.batches, validation.epoch, fit_config, streams.steps,
        desc=f"{plan.section.name} (rank {rank})", on_epoch=on_epoch, start=start,
        origin=origin,
        distribution=Distribution(main=rank == 0,
                                  accumulate=streams.accumulate,
                                  agree=agree if world > 1 else None,
                                  first_stream=streams.first_stream,
                                  check_ranks=check_ranks))


def _storage(job: JobSpec) -> tuple[str, Any]:
    """Ray Train's storage path and filesystem for the job's output directory."""
    url = job.outputs.ray_train
    if is_local(url):
        path = normalize(url)
        Path(path).mkdir(parents=True, exist_ok=True)
        return path, None
    import pyarrow.fs

    fs, path = resolve(url, job.output.storage_options)
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def train_model_distributed(job: JobSpec, store: SurveyStore, section: ModelSettings, *,
                            force: bool = False, resume: str | None = None) -> TrainedModel:
    """Train one model of ``job`` with Ray Train and save its checkpoint."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    train = job.train
    url = job.outputs.checkpoint(section.name)
    if not force and resume is None:
        done = up_to_date(section, url, job.output.storage_options,
                          fingerprint(section, train, store))
        if done is not None:
            return done
    plan = plan_training(store, section, train, job.plugins)
    resume_bytes = None
    if resume is not None:
        state = load_state(resume, job.output.storage_options)
        log.info("model %s: resuming after epoch %d from %s", section.name, state.epoch + 1,
                 redact(resume))
        buffer = io.BytesIO()
        torch.save(state.to_dict(), buffer)
        resume_bytes = buffer.getvalue()
    storage_path, storage_filesystem = _storage(job)
    import ray

    sink: Any = None
    if job.metrics.enabled and job.metrics.export == "ray":
        sink = (job.name, section.name, "ray")  # each worker makes its own
    elif job.metrics.enabled:
        from ..ops.metrics import TrainMetrics

        actor: Any = ray.remote(num_cpus=0)(TrainMetrics)
        sink = actor.remote(job.name, section.name, "http", job.metrics.host, job.metrics.port)
        log.info("metrics: %s", ray.get(sink.url.remote()))
    name = f"{job.name}-{section.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    workers = train.workers or 1
    threads = train.threads or max(1, math.ceil(train.cpus_per_worker))
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"plan": plan, "threads": threads, "resume": resume_bytes,
                           "metrics": sink, "run_url": join(job.outputs.ray_train, name),
                           "storage_options": job.output.storage_options},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=train.use_gpu,
                                     resources_per_worker={"CPU": train.cpus_per_worker}),
        run_config=RunConfig(name=name, storage_path=storage_path,
                             storage_filesystem=storage_filesystem,
                             failure_config=FailureConfig(max_failures=train.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    started = time.perf_counter()
    try:
        result = trainer.fit()
    except Exception as error:  # Ray Train wraps the worker's error; say it in one line
        cause = getattr(error, "__cause__", None) or error
        if isinstance(cause, SurveyprocError):
            raise cause from None
        raise
    finally:
        if sink is not None and not isinstance(sink, tuple):  # the http channel's actor
            ray.get(sink.stop.remote())
            ray.kill(sink)
    if result.checkpoint is None:
        msg = f"model {section.name}: Ray Train finished without a checkpoint"
        raise SurveyprocError(msg)
    with result.checkpoint.as_directory() as directory:
        state = _state_from_bytes((Path(directory) / STATE_FILE).read_bytes())
    model = plan.build()
    model.load_state_dict(state.best_state)
    fit_result = FitResult(best_state=state.best_state, best_epoch=state.best_epoch,
                           history=state.history,
                           stopped_early=state.since_best >= train.patience,
                           starts=state.starts)
    return finish_training(
        plan, model, fit_result, url=url, storage_options=job.output.storage_options,
        seconds=time.perf_counter() - started,
        extra_provenance={"workers": workers, "ray_train_run": f"{storage_path}/{name}",
                          "resumed_from": redact(resume) if resume else None})
