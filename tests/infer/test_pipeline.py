"""The actor loop as a pipeline: reads run while another shard has the models, two shards
at once write what one at a time writes, and read units follow the store's chunks."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from surveyproc.catalog.writer import part_name
from surveyproc.infer import plan_inference
from surveyproc.infer.shard import ShardProcessor, ShardReport, busy_seconds
from surveyproc.jobs import JobSpec
from surveyproc.models import save_checkpoint
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.testing import seeded_checkpoint


def _processor(chunk: int, batch: int, prefetch: int, per_shard: int, n: int = 192):
    """A processor as an actor builds it (through the plan), on a fresh in-memory store."""
    store = synthesize(f"memory://pipeline/{uuid.uuid4().hex}.zarr",
                       SynthConfig(n=n, size=16, seed=4), chunk_objects=chunk)
    out = f"memory://pipeline-out/{uuid.uuid4().hex}"
    save_checkpoint(seeded_checkpoint(store, "sfnet", ["metallicity"], k=3, seed=2),
                    f"{out}/checkpoints/sf.pt")
    job = JobSpec.model_validate({
        "name": "pipe", "store": {"url": store.url}, "output": {"dir": out},
        "resources": {"batch_size": batch},
        "models": [{"name": "sf", "kind": "sfnet", "k": 3, "width": 8,
                    "targets": ["metallicity"]}],
        "infer": {"catalog": f"{out}/catalog", "objects_per_shard": per_shard},
        "metrics": {"enabled": False}})
    plan = plan_inference(job, store)
    processor = ShardProcessor(
        store_url=store.url, store_options=None, checkpoints=plan.checkpoints,
        schema=plan.schema.describe(), catalog_url=plan.catalog, catalog_options=None,
        run_id="pipe", batch_size=batch, prefetch=prefetch)
    return processor, plan


def _rows(plan, index: int):
    with fsspec.open(f"{plan.catalog}/{part_name(index)}", "rb") as part:
        return pq.read_table(part)


def test_a_shards_reads_run_while_another_shard_has_the_models():
    """Reads are submitted when a shard arrives, not when it gets the models: a shard
    that waited for the model turn finds its pixels read (no wait), while without
    read-ahead the models wait for every read."""
    processor, plan = _processor(chunk=32, batch=32, prefetch=2, per_shard=64)
    shard = plan.shards[0]  # two units of one chunk each: both read ahead
    processor._model_turn.acquire()  # another shard holds the models
    result: list[ShardReport] = []
    worker = threading.Thread(target=lambda: result.append(processor.process(shard)))
    worker.start()
    time.sleep(1.0)
    processor._model_turn.release()
    worker.join()
    processor.close()
    ahead = result[0].stages
    assert ahead["read"] > 0 and ahead["wait"] < 0.25 * ahead["read"], ahead

    inline, plan = _processor(chunk=32, batch=32, prefetch=0, per_shard=64)
    stages = inline.process(plan.shards[0]).stages
    assert stages["wait"] >= stages["read"] > 0, stages


@pytest.mark.parametrize(("chunk", "batch", "batches"), [(32, 32, 2), (16, 40, 2), (64, 24, 3)])
def test_two_shards_at_once_write_what_one_at_a_time_writes(chunk, batch, batches):
    """Whatever the chunk and batch sizes (units of several chunks; a chunk cut into
    batches), shards processed concurrently commit the rows of a serial pass."""
    processor, plan = _processor(chunk=chunk, batch=batch, prefetch=2, per_shard=64)
    serial = [processor.process(s) for s in plan.shards]
    expected = [_rows(plan, s.index) for s in plan.shards]
    with ThreadPoolExecutor(max_workers=2) as pool:
        concurrent = list(pool.map(processor.process, plan.shards))
    processor.close()
    for shard, want in zip(plan.shards, expected, strict=True):
        assert _rows(plan, shard.index).equals(want)
    assert [r.rows for r in concurrent] == [r.rows for r in serial] == [64, 64, 64]
    # units: whole chunks up to a batch (16, 40: two chunks of 16); a 64-object chunk is
    # cut into batches of 24, 24, 16
    assert [r.batches for r in concurrent] == [batches] * 3


def test_busy_time_counts_an_actors_overlapping_shards_once():
    def span(worker: str, a: float, b: float) -> ShardReport:
        return ShardReport(0, 0, 0, 0, 0, started_at=a, finished_at=b, worker=worker)

    reports = [span("x", 0, 10), span("x", 5, 12), span("x", 20, 21), span("y", 0, 4)]
    assert busy_seconds(reports) == pytest.approx(12 + 1 + 4)
    assert np.isclose(busy_seconds([]), 0.0)


def test_an_inference_actor_does_not_import_what_it_never_calls():
    """An actor's start-up is part of every run's wall time: importing the actor loop must
    not load scikit-learn (PCA training), SciPy, astropy or GalSim (the synthetic survey),
    about 1.5 s of imports on this machine before they were made lazy."""
    import subprocess
    import sys

    code = ("import sys, surveyproc.infer.shard; print(' '.join(sorted(m for m in "
            "('sklearn', 'scipy', 'astropy', 'galsim') if m in sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "", loaded


def test_an_actor_imports_no_training_or_statistics_libraries():
    """An actor's start-up is on every run's clock: the modules it loads (the engine, the
    shard loop, every built-in kind) must not pull in scikit-learn, SciPy's statistics or
    pandas, which only fitting and the statistics stage use (1.7 s of start-up here)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from surveyproc.infer.engine import InferenceActor\n"
            "from surveyproc.infer.shard import ShardProcessor\n"
            "from surveyproc.kinds.registry import load_plugins\n"
            "load_plugins([])\n"
            "print(' '.join(m for m in ('sklearn', 'scipy.stats', 'pandas') "
            "if m in sys.modules))\n")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert loaded == []
