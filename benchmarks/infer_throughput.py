"""Inference throughput: the whole pipeline against the models alone, and how it scales.

    python benchmarks/infer_throughput.py [--n 1024] [--size 64] [--width 64]
        [--models sfnet,photoz] [--batch-size 256] [--threads 2] [--no-s3]

In one run, with the same models, batch size and threads throughout:

(a) model only: the models' forward passes on normalised tensors already in
    memory (no reading, no output handling) -- the ceiling;
(b) the full pipeline (`run_inference`: Ray actor, store reads with prefetch,
    normalisation, every model, PDF summaries, Parquet commit) from a local store;
(c) the same from a loopback S3 store (moto server on 127.0.0.1, through s3fs);
(d) N, 4N and 16N objects from local stores: wall time and peak memory.

Pipeline throughput is quoted two ways: "steady", objects over the actor's busy
time (reading, inference and commits; what a long survey run sees), and
"end to end", over the whole call including starting the actor and loading
its models (a fixed cost of a few seconds).  Ratios (b)/(a) and (c)/(a) use the
steady figure; the target is >= 0.9 on CPU (>= 0.85 on a GPU).  Checkpoints are
seeded, untrained networks of the real architectures: speed does not depend on
what a network has learned.  On a GPU machine pass ``--gpus 1`` (and e.g.
``--size 144 --models sfnet --batch-size 1024``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from support import PeakMemory, moto_server

from surveyproc.infer import run_inference
from surveyproc.jobs import JobSpec
from surveyproc.models import Checkpoint, save_checkpoint
from surveyproc.ops.ray_runtime import ray_runtime
from surveyproc.store import SurveyStore
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.testing import seeded_checkpoint

GRID = {"low": 0.0, "high": 0.4, "n_bins": 180}
MODELS = {
    "sfnet": ("sfnet", ["metallicity"], {"k": 4}),
    "dense": ("dense_cnn", ["metallicity"], {}),
    "photoz": ("binned_density", ["redshift"], GRID),
}


def _checkpoints(store: SurveyStore, names: list[str], width: int, out: str) -> list[Checkpoint]:
    made = []
    for i, name in enumerate(names):
        kind, targets, config = MODELS[name]
        checkpoint = seeded_checkpoint(store, kind, targets, seed=i, width=width, **config)
        save_checkpoint(checkpoint, f"{out}/checkpoints/{name}.pt")
        made.append(checkpoint)
    return made


def _job(store: SurveyStore, names: list[str], out: str, catalog: str, args,
         storage_options: dict | None = None) -> JobSpec:
    sections = []
    for name in names:
        kind, targets, config = MODELS[name]
        section = {"name": name, "kind": kind, "targets": targets, "width": args.width}
        if "k" in config:
            section["k"] = config["k"]
        if kind == "binned_density":
            section["grid"] = GRID
        sections.append(section)
    return JobSpec.model_validate({
        "name": "bench",
        "store": {"url": store.url, "storage_options": storage_options or {}},
        "output": {"dir": out},
        "resources": {"actors": 1, "cpus_per_actor": args.cpus_per_actor,
                      "gpus_per_actor": args.gpus, "threads_per_actor": args.threads,
                      "batch_size": args.batch_size},
        "models": sections,
        "infer": {"catalog": catalog, "overwrite": True},
        "metrics": {"enabled": False},
    })


def _model_only(checkpoints: list[Checkpoint], pixels, args) -> float:
    """Cutouts/s of the bare forward passes on tensors already in memory."""
    device = torch.device("cuda" if args.gpus and torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    modules = [c.build().to(device) for c in checkpoints]
    x = checkpoints[0].normalization.apply(np.array(pixels)).to(device)  # Ray's are read-only
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
        modules = [m.to(memory_format=torch.channels_last) for m in modules]

    @torch.inference_mode()
    def once() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            for module in modules:
                module(x)
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):  # warm up
        once()
    batches = max(16, 4 * args.n // len(x))
    started = time.perf_counter()
    for _ in range(batches):
        once()
    return batches * len(x) / (time.perf_counter() - started)


def model_only(checkpoints: list[Checkpoint], store: SurveyStore, args) -> float:
    """:func:`_model_only` in a Ray worker with the inference actor's resources, so that
    both sides of the ratio run in the same kind of process."""
    import ray

    pixels = store.read(0, min(args.batch_size, store.n_objects), labels=False,
                        photometry=False).images
    remote = ray.remote(num_cpus=args.cpus_per_actor, num_gpus=args.gpus)(_model_only)
    return float(ray.get(remote.remote(checkpoints, pixels, args)))


def pipeline(store: SurveyStore, names: list[str], catalog_dir: str, args,
             storage_options: dict | None = None, catalog_out: str | None = None) -> dict:
    """Run inference over ``store`` into ``<catalog_dir>/catalog-<n>`` with the checkpoints
    under ``catalog_out`` (default: ``catalog_dir``)."""
    job = _job(store, names, catalog_out or catalog_dir, f"{catalog_dir}/catalog-{store.n_objects}",
               args, storage_options)
    with PeakMemory() as memory:
        result = run_inference(job, store)
    busy = sum(r["wall_seconds"] for r in result.reports)
    return {"objects": result.objects_run, "seconds": result.seconds, "busy": busy,
            "steady": result.objects_run / busy, "end_to_end": result.cutouts_per_s,
            "actor_mb": result.peak_actor_rss_mb, "driver_mb": memory.driver / 2**20,
            "shards": result.n_shards}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1024, help="N of the scaling table")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 width (64: standard)")
    parser.add_argument("--models", default="sfnet,photoz")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs for the actor")
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    os.environ.setdefault("SURVEYPROC_PROGRESS", "0")
    # Dummy credentials for the loopback S3 server, set before Ray starts so actors inherit
    # them from the environment as they would real ones.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
    names = args.models.split(",")
    scales = [int(s) for s in args.scales.split(",")]
    root = Path(args.workdir or tempfile.mkdtemp(prefix="surveyproc-infer-bench-"))
    t0 = time.perf_counter()
    with ray_runtime():
        stores = {}
        for scale in scales:
            config = SynthConfig(n=args.n * scale, size=args.size, seed=0)
            stores[scale] = synthesize(str(root / f"s{scale}.zarr"), config)
        out = str(root / "out")
        checkpoints = _checkpoints(stores[scales[0]], names, args.width, out)

        # One untimed run first: Ray's worker pool and the file cache settle, so that the
        # N run measures the pipeline, not the cluster warming up.
        pipeline(stores[scales[0]], names, f"{out}/warmup", args, catalog_out=out)
        rows = {scale: pipeline(stores[scale], names, out, args) for scale in scales}
        rate_a = model_only(checkpoints, stores[scales[-1]], args)
        rate_b = rows[scales[-1]]["steady"]
        rate_c = None
        if not args.no_s3:
            with moto_server() as endpoint:
                import s3fs

                options = {"endpoint_url": endpoint}
                s3fs.S3FileSystem(**options).mkdir("bench")
                s3_store = synthesize("s3://bench/s.zarr", SynthConfig(n=args.n * 4,
                                                                       size=args.size, seed=0),
                                      storage_options=options)
                rate_c = pipeline(s3_store, names, out, args, options)["steady"]

    device = (torch.cuda.get_device_name(0) if args.gpus and torch.cuda.is_available()
              else f"{platform.machine()}, {os.cpu_count()} CPUs")
    print(f"\nmachine: {device}; torch {torch.__version__}, {args.threads} threads; "
          f"total {(time.perf_counter() - t0) / 60:.1f} min")
    print(f"models: {', '.join(names)} (ResNet-18 width {args.width}); {args.size}x{args.size} "
          f"cutouts, {len(stores[scales[0]].bands)} bands; batch {args.batch_size}; 1 actor")
    print(f"\n(a) model only (tensors in memory): {rate_a:8.1f} cutouts/s")
    print(f"(b) pipeline, local store:          {rate_b:8.1f} cutouts/s steady "
          f"({rows[scales[-1]]['end_to_end']:.1f} end to end)  (b)/(a) = {rate_b / rate_a:.2f}")
    if rate_c is not None:
        print(f"(c) pipeline, loopback S3 store:    {rate_c:8.1f} cutouts/s steady"
              f"{'':22}(c)/(a) = {rate_c / rate_a:.2f}")
    print("\n(d) scaling (local store)")
    print(f"{'objects':>8} {'shards':>6} {'wall s':>8} {'busy s':>8} {'busy s/1k':>9} "
          f"{'cutouts/s':>10} {'actor peak MB':>14} {'driver peak MB':>15}")
    base = rows[scales[0]]
    for scale in scales:
        r = rows[scale]
        print(f"{r['objects']:>8} {r['shards']:>6} {r['seconds']:>8.1f} {r['busy']:>8.1f} "
              f"{1000 * r['busy'] / r['objects']:>9.2f} {r['end_to_end']:>10.1f} "
              f"{r['actor_mb']:>14.0f} {r['driver_mb']:>15.0f}")
    last = rows[scales[-1]]
    wall_ratio = last["seconds"] / base["seconds"]
    busy_ratio = last["busy"] / base["busy"]
    print(f"\n{scales[-1]}N / N: busy time x{busy_ratio:.2f}, wall time x{wall_ratio:.2f} for "
          f"x{scales[-1]} objects (linear = x{scales[-1]}; wall includes a fixed actor "
          f"start-up); actor peak memory x{last['actor_mb'] / base['actor_mb']:.2f}, "
          f"driver x{last['driver_mb'] / base['driver_mb']:.2f} (flat = x1.00)")
    whole_run = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"driver max RSS (whole run, incl. synthesis and model-only): {whole_run:.0f} MB")


if __name__ == "__main__":
    main()
