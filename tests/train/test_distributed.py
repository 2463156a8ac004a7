"""Ray Train: two CPU workers train from the store, survive a killed worker, match one."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from surveyproc.errors import CheckpointNotFoundError
from surveyproc.infer import run_inference
from surveyproc.jobs import JobSpec
from surveyproc.models import load_checkpoint
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.train import train_job
from surveyproc.train.distributed import load_state
from surveyproc.train.loop import TrainingState
from tests.support.servers import free_port

pytestmark = [pytest.mark.ray_cluster, pytest.mark.slow, pytest.mark.timeout(300)]

LEARNED = 0.8  # validation RMSE below this share of the target's spread: learnt, not the mean


@pytest.fixture(scope="module")
def survey(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("ddp")
    store = synthesize(str(root / "survey.zarr"), SynthConfig(n=1600, size=16, seed=11),
                       chunk_objects=100)
    return store, root


def _job(root, name: str, workers: int | None, epochs: int, **train) -> JobSpec:
    return JobSpec.model_validate({
        "name": name,
        "store": {"url": str(root / "survey.zarr")},
        "output": {"dir": str(root / name)},
        "resources": {"actors": 1, "cpus_per_actor": 0.5, "batch_size": 128},
        "models": [{"name": "mass", "kind": "sfnet", "k": 4, "width": 8,
                    "targets": ["log_mstar"]}],
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.01, "patience": 10,
                  "workers": workers, "cpus_per_worker": 0.5, "threads": 1, **train},
        "metrics": {"enabled": False},
    })


@pytest.fixture(scope="module")
def two_workers(survey):
    store, root = survey
    job = _job(root, "two", 2, 3)
    return job, train_job(job, store)[0]


def _final_state(trained) -> TrainingState:
    """The last epoch's training state of a Ray Train run (current weights, not the best)."""
    run = Path(load_checkpoint(trained.url).provenance["ray_train_run"])
    return load_state(str(sorted(run.glob("checkpoint_*/state.pt"))[-1]))


def _parameters(state: TrainingState) -> dict[str, torch.Tensor]:
    """Trainable weights only: BatchNorm running statistics are not synchronised by DDP."""
    return {k: v for k, v in state.model.items() if "running_" not in k
            and "num_batches_tracked" not in k}


def test_two_workers_learn_in_step_and_the_checkpoint_runs_in_infer(survey, two_workers):
    store, _ = survey
    job, trained = two_workers
    checkpoint = load_checkpoint(trained.url)
    metrics = checkpoint.metrics
    assert metrics["epochs_run"] == 3 and checkpoint.provenance["workers"] == 2
    assert metrics["val"]["rmse_log_mstar"] < LEARNED * checkpoint.targets[0].std
    [start] = checkpoint.provenance["starts"]
    assert start["origin"] == "fresh" and start["epoch"] == 0
    # after the first optimiser step both ranks held the same weights (DDP synchronised
    # the gradients), and those weights had moved from the initial ones
    digests = [r["weights"] for r in start["ranks"]]
    assert len(digests) == 2 and len(set(digests)) == 1
    assert digests[0] != start["weights"]
    result = run_inference(job, store)
    assert result.complete and result.objects_run == store.n_objects


def test_one_worker_accumulating_two_micro_batches_matches_two_workers(survey, two_workers):
    store, root = survey
    one = train_job(_job(root, "one", 1, 3, accumulate=2), store)[0]
    two = two_workers[1]
    std = load_checkpoint(one.url).targets[0].std
    for trained in (one, two):  # both learn, to the same bar
        assert trained.metrics["val"]["rmse_log_mstar"] < LEARNED * std
    # the same galaxies in every global batch, the same augmentation draws, the same
    # optimiser steps: after 3 epochs the weights agree to float rounding
    a, b = _parameters(_final_state(one)), _parameters(_final_state(two))
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max() / (b[k].abs().max() + 1e-8)) for k in a)
    assert worst < 1e-3, worst
    # a different global batch gives visibly different weights: the check can fail
    other = train_job(_job(root, "other", 1, 3, batch_size=32, accumulate=1), store)[0]
    c = _parameters(_final_state(other))
    assert max(float((c[k] - b[k]).abs().max() / (b[k].abs().max() + 1e-8)) for k in c) > 0.01


def test_a_killed_worker_restarts_from_the_last_checkpoint(survey):
    store, root = survey
    job = _job(root, "killed", 2, 4)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["trained"] = train_job(job, store)[0]
        except BaseException as error:
            outcome["error"] = error

    runner = threading.Thread(target=run)
    runner.start()
    storage = root / "killed" / "ray_train"
    killed = None
    while runner.is_alive() and killed is None:
        states = sorted(storage.glob("*/checkpoint_*/state.pt")) if storage.exists() else []
        if states:  # after the first epoch's checkpoint, mid-way through training
            try:
                state = load_state(str(states[0]))
            except CheckpointNotFoundError:  # still being written
                time.sleep(0.05)
                continue
            # a worker of this run, by the PID it reported (never by process name)
            killed = state.starts[0]["ranks"][-1]["pid"]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    runner.join()
    assert killed is not None, "training finished before a worker could be killed"
    assert "error" not in outcome, outcome.get("error")
    checkpoint = load_checkpoint(outcome["trained"].url)
    history = checkpoint.metrics["history"]
    assert [e["epoch"] for e in history] == [0, 1, 2, 3]  # each epoch once, none twice
    first, restart = checkpoint.provenance["starts"]
    assert first["origin"] == "fresh" and restart["origin"] == "restart"
    # the restarted group began right after the checkpointed epoch, with its weights
    assert 1 <= restart["epoch"] <= 3
    assert restart["weights"] == history[restart["epoch"] - 1]["weights"]
    assert len({r["weights"] for r in restart["ranks"]}) == 1
    assert killed not in {r["pid"] for r in restart["ranks"]}  # a new worker took its place


def test_resume_runs_only_the_missing_epochs_and_metrics_are_served(survey, two_workers):
    store, root = survey
    finished = load_checkpoint(two_workers[1].url)
    assert finished.metrics["epochs_run"] == 3  # the run to continue is finished
    run = Path(finished.provenance["ray_train_run"])
    last = sorted(run.glob("checkpoint_*/state.pt"))[-1].parent
    longer = _job(root, "two", 2, 4)  # one epoch more than the finished run
    port = free_port()
    longer.metrics.enabled, longer.metrics.port = True, port
    seen: list[dict[str, float]] = []
    outcome: dict = {}
    def run() -> None:
        try:
            outcome["t"] = train_job(longer, store, resume=str(last))[0]
        except BaseException as error:  # reported by the assertion below
            outcome["error"] = error

    runner = threading.Thread(target=run)
    runner.start()
    while runner.is_alive():
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
            seen.append({f"{s.name}{sorted(s.labels.items())}": s.value
                         for f in text_string_to_metric_families(text.decode())
                         for s in f.samples if s.name.startswith("surveyproc_train")})
        except OSError:
            pass
        time.sleep(0.2)
    runner.join()
    assert "error" not in outcome, outcome.get("error")
    checkpoint = load_checkpoint(outcome["t"].url)
    assert checkpoint.metrics["epochs_run"] == 4
    assert checkpoint.provenance["resumed_from"] == str(last)
    # the first three epochs are the finished run's own records (timings included), not reruns
    assert checkpoint.metrics["history"][:3] == finished.metrics["history"]
    first, resumed = checkpoint.provenance["starts"]
    assert first == finished.provenance["starts"][0]
    assert resumed["origin"] == "resume" and resumed["epoch"] == 3
    assert resumed["weights"] == finished.metrics["history"][2]["weights"]
    epochs = {v for s in seen for k, v in s.items() if k.startswith("surveyproc_train_epoch")}
    assert epochs == {4}  # the only epoch trained (and served) after the resume
    assert any("surveyproc_train_samples_per_second" in k for s in seen for k in s)


@pytest.mark.s3
def test_checkpoints_go_to_s3(survey, s3_bucket):
    store, root = survey
    bucket, options = s3_bucket
    spec = _job(root, "s3run", 1, 1).model_dump()
    spec["output"] = {"dir": f"{bucket}/out", "storage_options": options}
    job = JobSpec.model_validate(spec)
    trained = train_job(job, store)[0]
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    states = fs.glob(f"{bucket[5:]}/out/ray_train/*/checkpoint_*/state.pt")
    assert states, fs.find(f"{bucket[5:]}/out")
    assert load_checkpoint(trained.url, options).metrics["epochs_run"] == 1


def test_two_workers_keep_a_clap_ensemble_in_step(survey):
    """CLAP's contrastive loss reads several heads of each realisation: it must go through
    the wrapped module's forward, or DDP never synchronises the gradients."""
    store, root = survey
    job = JobSpec.model_validate({
        **_job(root, "clap", 2, 1).model_dump(),
        "models": [{"name": "photoz", "kind": "clap", "inputs": "photometry", "members": 2,
                    "mlp_hidden": 16, "latent_dims": 4, "extra_dims": 4, "refit_epochs": 0,
                    "targets": ["redshift"], "grid": {"low": 0.0, "high": 0.4, "n_bins": 20}}]})
    [trained] = train_job(job, store)
    [start] = load_checkpoint(trained.url).provenance["starts"]
    digests = [r["weights"] for r in start["ranks"]]
    assert len(digests) == 2 and len(set(digests)) == 1
    assert digests[0] != start["weights"]
