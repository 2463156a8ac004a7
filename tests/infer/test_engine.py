"""Inference on a real local Ray: every object once, the serial answer, resume, metrics.

The checkpoints are real checkpoints of seeded, untrained networks: what is
under test is that the pipeline applies them faithfully, not what they learned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from surveyproc.catalog import catalog_schema, manifest, pdf_ensemble, read_catalog
from surveyproc.cli import main
from surveyproc.flags import Flag
from surveyproc.infer import run_inference
from surveyproc.jobs import JobSpec
from surveyproc.kinds import build_network
from surveyproc.models import save_checkpoint
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.testing import seeded_checkpoint, tiny_store
from tests.support.servers import free_port

pytestmark = [pytest.mark.ray_cluster, pytest.mark.slow, pytest.mark.timeout(240)]

N, CHUNK, PER_SHARD = 3000, 200, 400  # 8 shards of 2 chunks (the last one short)
GRID = {"low": 0.0, "high": 0.4, "n_bins": 60}


@pytest.fixture(scope="module")
def survey(tmp_path_factory, ray_session):
    """A synthetic store and seeded checkpoints of SFNet (metallicity) and photo-z."""
    root = tmp_path_factory.mktemp("infer")
    store = synthesize(str(root / "survey.zarr"), SynthConfig(n=N, size=24, seed=3),
                       chunk_objects=CHUNK)
    out = root / "out"
    save_checkpoint(seeded_checkpoint(store, "sfnet", ["metallicity"], k=3, seed=1),
                    str(out / "checkpoints/sf.pt"))
    save_checkpoint(seeded_checkpoint(store, "binned_density", ["redshift"], seed=2, grid=GRID),
                    str(out / "checkpoints/photoz.pt"))
    return store, root


def _job(root, **infer) -> JobSpec:
    return JobSpec.model_validate({
        "name": "t",
        "store": {"url": str(root / "survey.zarr")},
        "output": {"dir": str(root / "out")},
        "resources": {"actors": 2, "cpus_per_actor": 0.5, "batch_size": 128},
        "models": [{"name": "sf", "kind": "sfnet", "k": 3, "width": 8,
                    "targets": ["metallicity"]},
                   {"name": "photoz", "kind": "binned_density", "width": 8,
                    "targets": ["redshift"], "grid": GRID}],
        "infer": {"objects_per_shard": PER_SHARD, **infer},
    })


@pytest.fixture(scope="module")
def clean_run(survey):
    store, root = survey
    result = run_inference(_job(root), store)
    return result, read_catalog(str(root / "out/catalog"))


@torch.inference_mode()
def _serial(store, name, root):
    """The same checkpoint applied in this process, the plain way."""
    from surveyproc.models import load_checkpoint

    checkpoint = load_checkpoint(str(root / f"out/checkpoints/{name}.pt"))
    model = build_network(checkpoint)
    outputs = [model(checkpoint.normalization.apply(store.read(a, min(a + 500, N)).images))
               for a in range(0, N, 500)]
    return checkpoint, outputs


def test_catalog_holds_every_object_once_and_matches_a_serial_run(survey, clean_run):
    store, root = survey
    result, table = clean_run
    assert result.complete and result.shards_run == 8 and result.objects_run == N
    ids = table.column("object_id").to_numpy()
    assert len(ids) == N and np.array_equal(np.sort(ids), np.sort(store.read_column("object_id")))
    flags = table.column("flags").to_numpy()
    ood = (flags & Flag.OUT_OF_DISTRIBUTION) != 0  # the domain was fitted on 512 of them
    assert np.array_equal(flags & ~Flag.OUT_OF_DISTRIBUTION, store.read_column("flags"))
    assert result.out_of_distribution == ood.sum() < 0.05 * N
    assert manifest(str(root / "out/catalog"))["rows"] == N
    assert len({r.node for r in result.reports}) >= 1 and result.peak_actor_rss_mb > 0

    checkpoint, outputs = _serial(store, "sf", root)
    info = checkpoint.targets[0]
    expected = torch.cat([o.prediction for o in outputs])[:, 0].numpy() * info.std + info.mean
    np.testing.assert_allclose(table.column("metallicity_mean").to_numpy(), expected,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(table.column("metallicity_std").to_numpy(), 0.1)
    act_val = np.stack(table.column("act_val").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(act_val, torch.cat([o.act_val for o in outputs]).numpy(),
                               rtol=1e-4, atol=1e-5)
    act_idx = np.stack(table.column("act_idx").to_numpy(zero_copy_only=False))
    same = (act_idx == torch.cat([o.act_idx for o in outputs]).numpy()).all(axis=1)
    assert same.mean() > 0.999  # a float near-tie may swap two indices, nothing more

    density, outputs = _serial(store, "photoz", root)
    pdf = torch.softmax(torch.cat([o.logits for o in outputs]), 1).numpy() / (0.4 / 60)
    stored = np.stack(table.column("redshift_pdf").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(stored, pdf, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(table.column("redshift_mean").to_numpy(),
                               pdf @ np.linspace(0, 0.4, 61)[:-1] * (0.4 / 60) + 0.4 / 120,
                               atol=1e-5)
    schema = catalog_schema(str(root / "out/catalog"))
    assert table.column("model_id")[0].as_py() == (
        f"sf={checkpoint.model_id},photoz={density.model_id}")
    qp = pytest.importorskip("qp")
    ensemble = pdf_ensemble(table.slice(0, 50), schema, "redshift")
    assert isinstance(ensemble, qp.Ensemble)
    np.testing.assert_allclose(ensemble.mean().ravel(),
                               table.column("redshift_mean").to_numpy()[:50], atol=0.4 / 60)


def test_a_stopped_run_resumes_with_only_the_missing_shards(survey, clean_run):
    store, root = survey
    catalog = str(root / "resumed")
    first = run_inference(_job(root, catalog=catalog, stop_after_shards=3), store)
    assert (first.shards_run, first.complete) == (3, False)
    assert manifest(catalog) is None
    parts = {p.name: p.stat().st_mtime_ns for p in (root / "resumed").glob("part-*.parquet")}
    assert len(parts) == 3

    second = run_inference(_job(root, catalog=catalog), store)
    assert (second.shards_skipped, second.shards_run, second.complete) == (3, 5, True)
    assert {r.index for r in second.reports}.isdisjoint(
        {r.index for r in first.reports})
    for name, mtime in parts.items():  # committed parts were not rewritten
        assert (root / "resumed" / name).stat().st_mtime_ns == mtime
    resumed, clean = read_catalog(catalog), clean_run[1]
    assert len(set(pc.unique(resumed.column("run_id")).to_pylist())) == 2
    for name in clean.column_names:
        if name != "run_id":
            assert resumed.column(name).equals(clean.column(name)), name


def test_metrics_are_served_while_it_runs(survey):
    store, root = survey
    port = free_port()
    job = _job(root, catalog=str(root / "metered"))
    job.metrics.port = port
    seen: list[dict[str, float]] = []
    runner = threading.Thread(target=run_inference, args=(job, store))
    runner.start()
    while runner.is_alive():
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
        except OSError:
            time.sleep(0.05)
            continue
        seen.append({s.name: s.value for f in text_string_to_metric_families(text.decode())
                     for s in f.samples if s.name.startswith("surveyproc_")})
        time.sleep(0.05)
    runner.join()
    assert seen, "the /metrics endpoint never answered"
    assert seen[0]["surveyproc_objects_planned"] == N
    for name in ("surveyproc_bytes_read_total", "surveyproc_batches_total",
                 "surveyproc_shard_retries_total", "surveyproc_inflight_shards",
                 "surveyproc_failed_objects_total", "surveyproc_stage_seconds_count"):
        assert name in seen[-1], name
    processed = [s.get("surveyproc_cutouts_processed_total", 0.0) for s in seen]  # per node:
    # a node's series appears with its first shard
    assert processed == sorted(processed) and 0 < max(processed) <= N


def test_a_checkpoint_for_other_bands_is_refused_in_one_line(survey, tmp_path, capsys):
    _, root = survey
    other = tiny_store(n=10, bands=2, size=24)
    save_checkpoint(seeded_checkpoint(other, "sfnet", ["redshift"], k=2),
                    str(tmp_path / "checkpoints/sf.pt"))
    job = tmp_path / "job.yaml"
    job.write_text(f"""
name: wrong
store: {{url: {root / 'survey.zarr'}}}
output: {{dir: {tmp_path}}}
models: [{{name: sf, kind: sfnet, k: 2, width: 8, targets: [redshift]}}]
""")
    assert main(["infer", str(job)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on bands b0,b1 but store" in err[0], err
    assert not (tmp_path / "catalog").exists()
    (tmp_path / "checkpoints/sf.pt").unlink()
    assert main(["infer", str(job)]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_in_memory_stores_run_in_process(tmp_path):
    store = tiny_store(n=90, chunk=16, size=16)
    save_checkpoint(seeded_checkpoint(store, "sfnet", ["redshift"], k=2),
                    "memory://ckpt/out/checkpoints/sf.pt")
    job = JobSpec.model_validate({
        "name": "mem", "store": {"url": store.url}, "output": {"dir": "memory://ckpt/out"},
        "models": [{"name": "sf", "kind": "sfnet", "k": 2, "width": 8, "targets": ["redshift"]}],
        "metrics": {"enabled": False}})
    result = run_inference(job, store)
    table = read_catalog("memory://ckpt/out/catalog")
    assert result.complete and table.column("object_id").to_pylist() == list(range(90))


@pytest.mark.timeout(300)
def test_a_node_removed_mid_run_costs_nothing_on_a_multinode_cluster(survey, clean_run):
    """Worker nodes of a ``ray.cluster_utils.Cluster``; one node holding an actor is removed
    after the actor's third commit: its next shards go to a replacement actor on the spare
    node."""
    _, root = survey
    spec = _job(root, catalog=str(root / "multinode"), objects_per_shard=CHUNK).model_dump()
    spec["resources"] = {"actors": 2, "cpus_per_actor": 1, "batch_size": 128}
    spec["metrics"]["enabled"] = False
    script = Path(__file__).with_name("multinode_run.py")
    done = subprocess.run([sys.executable, str(script), json.dumps(spec), "--remove-node"],
                          capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["complete"] and len(report["nodes"]) >= 2, report
    assert report["removed"] and report["retries"] >= 1, report
    multinode, clean = read_catalog(str(root / "multinode")), clean_run[1]
    for name in clean.column_names:
        if name != "run_id":
            assert multinode.column(name).equals(clean.column(name)), name


def test_a_killed_actor_is_replaced_and_its_shard_rerun(survey, clean_run):
    store, root = survey
    catalog = root / "killed"
    job = _job(root, catalog=str(catalog))
    job.resources.actors = 1
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(result=run_inference(job, store)))
    runner.start()
    killed = None
    while runner.is_alive() and killed is None:
        committed = list((catalog / "_committed").glob("*.json")) if catalog.exists() else []
        if committed:  # mid-run: some shards in, more to go
            # the actor of this run that committed it, by the PID it recorded (records are
            # compacted only at the end of so short a run)
            writer = json.loads(committed[0].read_text())["writer"]
            killed = int(writer.rsplit(":", 1)[1])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.02)
    runner.join()
    assert killed is not None, "the run finished before an actor could be killed"
    result = outcome["result"]
    assert result.complete and result.objects_run == N and result.retries >= 1
    table, clean = read_catalog(str(catalog)), clean_run[1]
    for name in clean.column_names:
        if name != "run_id":
            assert table.column(name).equals(clean.column(name)), name
