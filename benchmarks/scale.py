"""Survey scale: a million objects on this machine, and a billion by simulation.

    python benchmarks/scale.py [--objects 1000000] [--simulate 1000000000]
        [--latency-ms 30] [--skip-run]

(a) The run.  A store of ``--objects`` small cutouts (2 bands x 8 x 8: the point
    is orchestration, not pixels) and a seeded SFNet (width 8), inferred with two
    actors on the embedded local Ray: wall time, driver and actor peak memory,
    catalog and commit-log sizes, then a re-run of the finished catalog (the time
    it takes to decide "nothing to do") and the statistics pass over the catalog.
(b) The plan for ``--simulate`` objects, with no pixels: the shard plan (count,
    planning time, driver memory for the plan and one report per shard), the
    commit log a finished run leaves (segments of 1,024 records, the merged
    segment the manifest names, their sizes), and the requests a resume check
    makes, on a fake filesystem that counts every request (fsspec's memory
    filesystem); with ``--latency-ms`` per request, and 16 requests in flight for
    the concurrent reads, the time each would take on an object store, beside
    the old protocol (one listing of every per-shard record, then one read each).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from benchlib import PeakMemory, describe, publish

#: Concurrent requests a reader keeps in flight (fsspec's default batch for s3fs ``cat``).
IN_FLIGHT = 16
#: Keys an object-store listing returns per request.
PAGE = 1000


def _store(url: str, n: int):
    from surveyproc.store.create import StoreWriter, create_store
    from surveyproc.store.layout import StoreSpec
    from surveyproc.store.open import open_store
    from surveyproc.testing import tiny_batch

    spec = StoreSpec(n_objects=n, bands=("b0", "b1"), height=8, width=8, labels=("redshift",),
                     chunk_objects=4096, survey="scale")
    create_store(url, spec, provenance={"generator": "benchmarks/scale.py"})
    writer = StoreWriter(url)
    for start in range(0, n, 65_536):
        writer.write(tiny_batch(start, min(start + 65_536, n)))
    writer.finalize()
    return open_store(url)


def _size(path: Path, pattern: str) -> tuple[int, int]:
    files = [p for p in path.glob(pattern) if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def run(n: int, workdir: Path) -> dict:
    """(a): store, inference, re-run, statistics at ``n`` objects."""
    from surveyproc.infer import run_inference
    from surveyproc.jobs import JobSpec
    from surveyproc.models import save_checkpoint
    from surveyproc.ops.ray_runtime import ray_runtime
    from surveyproc.stats import aggregate_job
    from surveyproc.testing import seeded_checkpoint

    t0 = time.perf_counter()
    store = _store(str(workdir / "store.zarr"), n)
    store_seconds = time.perf_counter() - t0
    save_checkpoint(seeded_checkpoint(store, "sfnet", ["redshift"], k=2, seed=0),
                    str(workdir / "out/checkpoints/sf.pt"))
    job = JobSpec.model_validate({
        "name": "scale", "store": {"url": store.url}, "output": {"dir": str(workdir / "out")},
        "resources": {"actors": 2, "cpus_per_actor": 0.5, "batch_size": 1024},
        "models": [{"name": "sf", "kind": "sfnet", "k": 2, "width": 8,
                    "targets": ["redshift"]}],
        "metrics": {"enabled": False}})
    with ray_runtime(num_cpus=2):
        with PeakMemory() as memory:
            t0 = time.perf_counter()
            result = run_inference(job, store)
            infer_seconds = time.perf_counter() - t0
        assert result.complete and result.objects_run == n
        t0 = time.perf_counter()
        again = run_inference(job, store)
        rerun_seconds = time.perf_counter() - t0
        assert again.complete and again.shards_run == 0
    catalog = workdir / "out" / "catalog"
    parts, part_bytes = _size(catalog, "part-*.parquet")
    segments, segment_bytes = _size(catalog, "_commits/*.parquet")
    loose, _ = _size(catalog, "_committed/*.json")
    t0 = time.perf_counter()
    report = aggregate_job(job, store)
    aggregate_seconds = time.perf_counter() - t0
    return {
        "objects": n, "shards": result.n_shards, "store_seconds": round(store_seconds, 1),
        "infer_seconds": round(infer_seconds, 1),
        "cutouts_per_s": round(n / infer_seconds),
        "driver_peak_mb": round(memory.driver / 2**20),
        "actor_peak_mb": round(result.peak_actor_rss_mb),
        "ray_processes_peak_mb": round(memory.children / 2**20),
        "catalog_parts": parts, "catalog_mb": round(part_bytes / 2**20, 1),
        "commit_segments": segments, "commit_log_kb": round(segment_bytes / 1024, 1),
        "loose_records": loose,
        "manifest_bytes": (catalog / "_manifest.json").stat().st_size,
        "rerun_seconds": round(rerun_seconds, 2),
        "aggregate_seconds": round(aggregate_seconds, 1), "report_rows": report.rows,
    }


class _CountingFS:
    """Wraps fsspec's memory filesystem, counting requests as an object store would bill them."""

    def __init__(self) -> None:
        import fsspec

        self.fs = fsspec.filesystem("memory")
        self.requests: Counter = Counter()
        self.bytes_read = 0

    def reset(self) -> None:
        self.requests.clear()
        self.bytes_read = 0

    def install(self, log) -> None:
        fs, counter = self.fs, self

        class Proxy:
            def __getattr__(self, name):
                return getattr(fs, name)

            def ls(self, path, detail=False, **kw):
                counter.requests["list"] += 1  # an empty prefix costs a request too
                names = fs.ls(path, detail=detail, **kw)
                counter.requests["list"] += max(0, math.ceil(len(names) / PAGE) - 1)
                return names

            def cat(self, paths, **kw):
                found = fs.cat(paths, **kw)
                counter.requests["get"] += len(paths)
                counter.bytes_read += sum(len(v) for v in found.values() if isinstance(v, bytes))
                return found

            def cat_file(self, path, **kw):
                counter.requests["get"] += 1
                data = fs.cat_file(path, **kw)
                counter.bytes_read += len(data)
                return data

        log.fs = Proxy()

    def seconds(self, latency: float, concurrent_gets: bool) -> float:
        gets = self.requests["get"]
        rounds = math.ceil(gets / IN_FLIGHT) if concurrent_gets else gets
        return (self.requests["list"] + rounds) * latency


def simulate(n: int, latency: float) -> dict:
    """(b): the plan, the commit log and the resume check for ``n`` objects, no pixels."""
    from surveyproc.catalog.commits import COMPACT_EVERY, CommitLog, CommitRecord
    from surveyproc.infer.engine import DEFAULT_OBJECTS_PER_SHARD
    from surveyproc.infer.shard import ShardReport
    from surveyproc.store.shards import plan_shards

    tracemalloc.start()
    t0 = time.perf_counter()
    shards = plan_shards(n, 4096, objects_per_shard=DEFAULT_OBJECTS_PER_SHARD)
    plan_seconds = time.perf_counter() - t0
    plan_bytes = tracemalloc.get_traced_memory()[0]
    # what the driver keeps per finished shard: the summary of its report
    reports = [ShardReport(s.index, len(s), 0, 0, 0, node="0123456789ab").summary()
               for s in shards]
    driver_bytes = tracemalloc.get_traced_memory()[0] - plan_bytes
    tracemalloc.stop()
    del reports
    records = [CommitRecord(s.index, s.start, s.stop, len(s), f"part-{s.index:06d}.parquet",
                            "scale-run", 400_000, "host:12345") for s in shards]

    counting = _CountingFS()
    log = CommitLog("memory://scale-sim/catalog")
    counting.install(log)
    t0 = time.perf_counter()
    for first in range(0, len(records), COMPACT_EVERY):  # what the driver writes during a run
        log._write_segment(records[first:first + COMPACT_EVERY])
    segments = log.segments()
    segment_bytes = sum(len(counting.fs.cat_file(p)) for p in segments)
    counting.reset()
    assert len(log.records()) == len(shards)
    during = {"requests": dict(counting.requests), "mb_read": counting.bytes_read / 2**20,
              "seconds": counting.seconds(latency, True)}
    merged = log.merge(segments, records)  # what finish() leaves, named by the manifest
    merged_bytes = len(counting.fs.cat_file(merged))
    counting.reset()
    assert len(log.records()) == len(shards)
    after_merge = {"requests": dict(counting.requests), "mb_read": counting.bytes_read / 2**20,
                   "seconds": counting.seconds(latency, True)}
    compute_seconds = time.perf_counter() - t0
    counting.fs.rm("/scale-sim", recursive=True)
    # the old protocol: list every per-shard record, then read each one in turn
    old_requests = {"list": math.ceil(len(shards) / PAGE), "get": len(shards)}
    old_seconds = (old_requests["list"] + old_requests["get"]) * latency
    manifest = {"complete": True, "n_shards": len(shards), "rows": n, "bytes": 0,
                "runs": ["scale-run"], "commits": "_commits/commits-0123456789ab.parquet"}
    return {
        "objects": n, "shards": len(shards), "objects_per_shard": DEFAULT_OBJECTS_PER_SHARD,
        "plan_seconds": round(plan_seconds, 2), "plan_mb": round(plan_bytes / 2**20, 1),
        "driver_reports_mb": round(driver_bytes / 2**20, 1),
        "segments_during_run": len(segments), "segments_mb": round(segment_bytes / 2**20, 1),
        "merged_segment_mb": round(merged_bytes / 2**20, 2),
        "manifest_bytes": len(json.dumps(manifest, indent=1)),
        "latency_ms": latency * 1000, "in_flight": IN_FLIGHT,
        "resume_unmerged": during, "resume_merged": after_merge,
        "resume_finished": {"requests": {"get": 2}, "seconds": 2 * latency},
        "resume_old_protocol": {"requests": old_requests, "seconds": old_seconds},
        "simulation_compute_seconds": round(compute_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--simulate", type=int, default=1_000_000_000)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--skip-run", action="store_true", help="only the simulation")
    parser.add_argument("--out", help="results JSON (default docs/results/scale.json)")
    args = parser.parse_args()
    started = time.perf_counter()
    results = {"simulation": simulate(args.simulate, args.latency_ms / 1000)}
    print(json.dumps(results["simulation"], indent=1))
    if not args.skip_run:
        with tempfile.TemporaryDirectory(prefix="surveyproc-scale-") as workdir:
            results["run"] = run(args.objects, Path(workdir))
        print(json.dumps(results["run"], indent=1))
    publish("scale", args, results, render, started=started)


def _requests(entry: dict) -> str:
    r = entry["requests"]
    return f"{r.get('list', 0):,} listings + {r.get('get', 0):,} reads"


def render(record: dict) -> str:
    """The scale section of docs/results.md."""
    res, args = record["results"], record["args"]
    lines = ["## Scale: a million objects here, a billion by simulation", "",
             f"`python benchmarks/scale.py --objects {args['objects']:,} --simulate "
             f"{args['simulate']:,}`. {describe(record['machine'])}", ""]
    if "run" in res:
        r = res["run"]
        lines += [
            f"**The run** ({r['objects']:,} objects of 2 x 8 x 8 pixels, {r['shards']} shards, "
            "a seeded SFNet of width 8, two actors of 0.5 CPU on the embedded Ray):", "",
            "| measure | value |", "|---|---|",
            f"| inference wall time | {r['infer_seconds']} s ({r['cutouts_per_s']:,} "
            "cutouts/s) |",
            f"| driver peak memory | {r['driver_peak_mb']} MB |",
            f"| actor peak memory | {r['actor_peak_mb']} MB (all Ray processes together: "
            f"{r['ray_processes_peak_mb']} MB) |",
            f"| catalog | {r['catalog_parts']} parts, {r['catalog_mb']} MB |",
            f"| commit log | {r['commit_segments']} segment(s), {r['commit_log_kb']} KB; "
            f"{r['loose_records']} loose records; manifest {r['manifest_bytes']} bytes |",
            f"| re-run of the finished catalog (decides nothing is left) | "
            f"{r['rerun_seconds']} s |",
            f"| statistics pass (`aggregate`) | {r['aggregate_seconds']} s over "
            f"{r['report_rows']:,} rows |",
            f"| writing the store | {r['store_seconds']} s |", ""]
    s = res["simulation"]
    lines += [
        f"**The plan for {s['objects']:,} objects** (no pixels; requests counted on a fake "
        f"filesystem, time at {s['latency_ms']:.0f} ms per request and {s['in_flight']} reads "
        "in flight):", "",
        "| measure | value |", "|---|---|",
        f"| shards | {s['shards']:,} of {s['objects_per_shard']:,} objects |",
        f"| planning time | {s['plan_seconds']} s; plan {s['plan_mb']} MB in the driver |",
        f"| driver memory for one report per shard | {s['driver_reports_mb']} MB |",
        f"| commit log during the run | {s['segments_during_run']} segments, "
        f"{s['segments_mb']} MB |",
        f"| commit log when finished | one segment of {s['merged_segment_mb']} MB; manifest "
        f"{s['manifest_bytes']} bytes |",
        f"| resume check, finished catalog | {_requests(s['resume_finished'])}: "
        f"{s['resume_finished']['seconds']:.2f} s |",
        f"| resume check, mid-run (unmerged segments) | {_requests(s['resume_unmerged'])}: "
        f"{s['resume_unmerged']['seconds']:.1f} s |",
        f"| resume check, after a merge | {_requests(s['resume_merged'])}: "
        f"{s['resume_merged']['seconds']:.2f} s |",
        f"| resume check, old protocol (a record per shard) | "
        f"{_requests(s['resume_old_protocol'])}: "
        f"{s['resume_old_protocol']['seconds'] / 60:.0f} min |", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
