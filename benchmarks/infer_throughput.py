"""Inference throughput: the whole pipeline against the models alone, and how it scales.

    python benchmarks/infer_throughput.py [--n 1024] [--size 64] [--width 64]
        [--models sfnet,photoz] [--batch-size 256] [--threads 2] [--repeats 5] [--no-s3]

In one run, with the same models, batch size and threads throughout, (a), (b)
and (c) interleaved (a b c a b c ..) ``--repeats`` times on a store of 4N objects:

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
steady figure, are taken within each repeat and are quoted as median and range;
the target is >= 0.9 on CPU (>= 0.85 on a GPU).  A ratio above 1 is not a gain
(the pipeline cannot outrun its models): it is the spread between repeats.  Checkpoints are
seeded, untrained networks of the real architectures: speed does not depend on
what a network has learned.  On a GPU machine pass ``--gpus 1`` (and e.g.
``--size 144 --models sfnet --batch-size 1024``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import PeakMemory, describe, moto_server, publish, ratio_text, spread

from surveyproc.infer import run_inference
from surveyproc.jobs import JobSpec
from surveyproc.kinds import build_network
from surveyproc.models import Checkpoint, save_checkpoint
from surveyproc.ops.ray_runtime import ray_runtime
from surveyproc.store import SurveyStore
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.testing import seeded_checkpoint

GRID = {"low": 0.0, "high": 0.4, "n_bins": 180}
MODELS = {
    "sfnet": ("sfnet", ["metallicity"], {"k": 4}),
    "dense": ("dense_cnn", ["metallicity"], {}),
    "photoz": ("binned_density", ["redshift"], {"grid": GRID}),
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
    modules = [build_network(c).to(device) for c in checkpoints]
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
    busy = sum(r.wall_seconds for r in result.reports)
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
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of a, b, c")
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="raw results (default docs/results/)")
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
    repeats: dict[str, list] = {"a": [], "b": [], "c": []}
    with ray_runtime(), contextlib.ExitStack() as stack:
        stores = {}
        for scale in sorted(set(scales) | {4}):
            config = SynthConfig(n=args.n * scale, size=args.size, seed=0)
            stores[scale] = synthesize(str(root / f"s{scale}.zarr"), config)
        out = str(root / "out")
        checkpoints = _checkpoints(stores[4], names, args.width, out)
        s3 = None
        if not args.no_s3:
            import s3fs

            options = {"endpoint_url": stack.enter_context(moto_server())}
            s3fs.S3FileSystem(**options).mkdir("bench")
            s3 = (synthesize("s3://bench/s.zarr", SynthConfig(n=args.n * 4, size=args.size,
                                                                seed=0),
                             storage_options=options), options)

        # One untimed run first: Ray's worker pool and the file cache settle, so that the
        # first repeat measures the pipeline, not the cluster warming up.
        pipeline(stores[4], names, f"{out}/warmup", args, catalog_out=out)
        for i in range(args.repeats):
            repeats["a"].append(model_only(checkpoints, stores[4], args))
            repeats["b"].append(pipeline(stores[4], names, f"{out}/b{i}", args, catalog_out=out))
            if s3 is not None:
                repeats["c"].append(pipeline(s3[0], names, f"{out}/c{i}", args, s3[1],
                                             catalog_out=out))
            print(f"repeat {i + 1}/{args.repeats}: a {repeats['a'][-1]:.1f}, "
                  f"b {repeats['b'][-1]['steady']:.1f} cutouts/s", flush=True)
        scaling = [pipeline(stores[scale], names, out, args) for scale in scales]

    device = (torch.cuda.get_device_name(0) if args.gpus and torch.cuda.is_available()
              else None)
    record = {"device": device, "repeats": repeats, "scaling": scaling,
              "driver_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    publish("infer_throughput", args, record, render, started=t0)


def render(record: dict) -> str:
    """The Markdown section of ``docs/results.md`` for these raw results."""
    a, r = record["args"], record["results"]
    rep = r["repeats"]
    rate_a = spread(rep["a"])
    lines = [
        "## Inference throughput (`benchmarks/infer_throughput.py`)", "",
        f"Models {a['models']} in one pass (ResNet-18 width {a['width']}), "
        f"{a['size']}x{a['size']} cutouts, batch {a['batch_size']}, one actor with "
        f"{a['threads']} torch threads (`cpus_per_actor` {a['cpus_per_actor']}); model-only "
        "runs in a Ray worker with the same resources. Seeded, untrained weights (speed "
        "does not depend on training). \"Steady\" = objects / the actor's busy time (reads, "
        "models, PDF summaries, Parquet commits); \"end to end\" adds the actor's start-up. "
        f"(a), (b), (c) interleaved, {len(rep['a'])} repeats, {4 * a['n']:,} objects each; "
        "figures are medians, ratios per repeat as median (min-max).", "",
        describe(record["machine"]) + (f" Device: {r['device']}." if r["device"] else ""), "",
        "| measurement | cutouts/s | ratio to model only |", "|---|---:|---:|",
        f"| (a) model only, tensors in memory | {rate_a['median']:.1f} | 1 |"]
    for key, label in (("b", "(b) pipeline, local store"), ("c", "(c) pipeline, loopback S3 "
                                                                     "store (moto)")):
        if not rep[key]:
            continue
        steady = [p["steady"] for p in rep[key]]
        ends = spread([p["end_to_end"] for p in rep[key]])["median"]
        ratio = spread([s / m for s, m in zip(steady, rep["a"], strict=True)])
        lines.append(f"| {label} | {spread(steady)['median']:.1f} steady ({ends:.1f} end to "
                     f"end) | {ratio_text(ratio)} |")
    lines += ["", "A ratio above 1 is not a gain: the pipeline cannot run faster than its "
              "models, so it is the spread between repeats; the pipeline's overhead is "
              "within it where the range includes 1.", "",
              "(d) scaling, local store, one run each:", "",
              "| objects | shards | wall s | busy s | busy s per 1,000 | actor peak RSS "
              "| driver peak RSS |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for p in r["scaling"]:
        lines.append(f"| {p['objects']:,} | {p['shards']} | {p['seconds']:.1f} | "
                     f"{p['busy']:.1f} | {1000 * p['busy'] / p['objects']:.2f} | "
                     f"{p['actor_mb']:,.0f} MB | {p['driver_mb']:,.0f} MB |")
    first, last = r["scaling"][0], r["scaling"][-1]
    times = last["objects"] / first["objects"]
    lines += ["", f"{times:.0f}N / N: busy time x{last['busy'] / first['busy']:.1f} for "
              f"x{times:.0f} objects, wall time x{last['seconds'] / first['seconds']:.1f} "
              "(the fixed start-up); actor peak memory "
              f"x{last['actor_mb'] / first['actor_mb']:.2f}, driver "
              f"x{last['driver_mb'] / first['driver_mb']:.2f}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
