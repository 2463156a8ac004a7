"""Inference throughput: the whole pipeline against its models alone, one model and two.

    python benchmarks/infer_throughput.py
        [--configs sfnet:64,sfnet+photoz:64,sfnet:16,sfnet:16:1] [--sizes 4096,16384]
        [--batch-size 256] [--threads 2] [--repeats 3] [--no-s3]

A config is ``models:width[:threads]``: the models run in one pass
(``+``-joined) on ``threads`` torch threads (default ``--threads``: every core)
at a ResNet-18 width (64: standard; 16: about 10x faster here -- 16x fewer
multiply-adds, and small convolutions use a CPU less well -- a stand-in for a
model as fast as a GPU makes ResNet-18, so the pipeline's overhead shows as a
GPU would see it).  With every core given to the models, the pipeline's
reading, checks and encoding compete with them for the same cores; with ``:1``
on this 2-core machine the models have one core (the accelerator, as it were)
and the pipeline the other, as on a GPU node.  For every config, interleaved
(config by config, a b c a b c ..) ``--repeats`` times:

(a) model only: the models' forward passes and output handling on normalised
    tensors already in memory (no reading, no writing) -- the ceiling;
(b) the full pipeline (`run_inference`: Ray actor, store reads, checks,
    normalisation, every model, outputs, Parquet commits) from a local store of
    each ``--sizes`` objects;
(c) the same from a loopback S3 store (moto server on 127.0.0.1, through s3fs).

Pipeline throughput is quoted two ways: "steady", objects over the actor's busy
time (the union of its shards' spans: it works on two at once), what a long
survey run sees, and "end to end", over the whole call including starting the
actor and loading its models.  Ratios to (a) are taken within each repeat and
quoted as median and range; a ratio above 1 is not a gain (the pipeline cannot
outrun its models): it is the spread between repeats.  Checkpoints are seeded,
untrained networks of the real architectures: speed does not depend on what a
network has learned.  On a GPU machine pass ``--gpus 1`` (and e.g.
``--size 144 --batch-size 1024``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
from benchlib import RESULTS, PeakMemory, describe, moto_server, publish, ratio_text, spread

from surveyproc.infer import run_inference
from surveyproc.infer.estimate import Estimator, model_columns
from surveyproc.infer.shard import busy_seconds
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
    "photoz": ("binned_density", ["redshift"], {"grid": GRID}),
}


def _checkpoints(store: SurveyStore, names: list[str], width: int, out: str
                 ) -> list[Checkpoint]:
    made = []
    for i, name in enumerate(names):
        kind, targets, config = MODELS[name]
        checkpoint = seeded_checkpoint(store, kind, targets, seed=i, width=width, **config)
        save_checkpoint(checkpoint, f"{out}/checkpoints/{name}.pt")
        made.append(checkpoint)
    return made


def _job(store: SurveyStore, names: list[str], width: int, out: str, catalog: str, args,
         storage_options: dict | None = None) -> JobSpec:
    sections = []
    for name in names:
        kind, targets, config = MODELS[name]
        section = {"name": name, "kind": kind, "targets": targets, "width": width}
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
    """Cutouts/s of the actor's estimator (forward passes and output handling) on a batch
    already normalised in memory."""
    device = "cuda" if args.gpus and torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.threads)
    estimator = Estimator([(model_columns(c.kind, c), c) for c in checkpoints], device)
    inputs = {scale: x.to(device) for scale, x in estimator.prepare(pixels).items()}

    def once() -> None:
        estimator.run(inputs)
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):  # warm up
        once()
    batches = max(16, 4096 // len(pixels))
    started = time.perf_counter()
    for _ in range(batches):
        once()
    return batches * len(pixels) / (time.perf_counter() - started)


def model_only(checkpoints: list[Checkpoint], store: SurveyStore, args) -> float:
    """:func:`_model_only` in a Ray worker with the inference actor's resources, so that
    both sides of the ratio run in the same kind of process."""
    import ray

    pixels = store.read(0, min(args.batch_size, store.n_objects), labels=False,
                        photometry=False).images
    remote = ray.remote(num_cpus=args.cpus_per_actor, num_gpus=args.gpus)(_model_only)
    return float(ray.get(remote.remote(checkpoints, pixels, args)))


def pipeline(store: SurveyStore, names: list[str], width: int, out: str, catalog: str, args,
             storage_options: dict | None = None) -> dict:
    """Run inference over ``store`` into ``catalog`` with the checkpoints under ``out``."""
    job = _job(store, names, width, out, catalog, args, storage_options)
    with PeakMemory() as memory:
        result = run_inference(job, store)
    busy = busy_seconds(result.reports)
    return {"objects": result.objects_run, "seconds": result.seconds, "busy": busy,
            "steady": result.objects_run / busy, "end_to_end": result.cutouts_per_s,
            "actor_mb": result.peak_actor_rss_mb, "driver_mb": memory.driver / 2**20,
            "shards": result.n_shards}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="sfnet:64,sfnet+photoz:64,sfnet:16,sfnet:16:1",
                        help="models:width[:threads], comma-separated")
    parser.add_argument("--sizes", default="4096,16384", help="objects per store")
    parser.add_argument("--size", type=int, default=64, help="cutout side (pixels)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs for the actor")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats")
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="raw results (default docs/results/)")
    args = parser.parse_args()
    os.environ.setdefault("SURVEYPROC_PROGRESS", "0")
    # Dummy credentials for the loopback S3 server, set before Ray starts so actors inherit
    # them from the environment as they would real ones.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
    configs = {}
    for text in args.configs.split(","):
        parts = text.split(":")
        threads = int(parts[2]) if len(parts) > 2 else args.threads
        key = f"{parts[0]}:{parts[1]}:{threads}"
        configs[key] = (parts[0].split("+"), int(parts[1]),
                        argparse.Namespace(**{**vars(args), "threads": threads}))
    sizes = [int(n) for n in args.sizes.split(",")]
    root = Path(args.workdir or tempfile.mkdtemp(prefix="surveyproc-infer-bench-"))
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    with ray_runtime(), contextlib.ExitStack() as stack:
        stores: dict[str, dict[int, tuple[SurveyStore, dict | None]]] = {"local": {}, "s3": {}}
        for n in sizes:
            config = SynthConfig(n=n, size=args.size, seed=0)
            stores["local"][n] = (synthesize(str(root / f"s{n}.zarr"), config), None)
        if not args.no_s3:
            import s3fs

            options = {"endpoint_url": stack.enter_context(moto_server())}
            s3fs.S3FileSystem(**options).mkdir("bench")
            for n in sizes:
                config = SynthConfig(n=n, size=args.size, seed=0)
                stores["s3"][n] = (synthesize(f"s3://bench/s{n}.zarr", config,
                                              storage_options=options), options)
        first = stores["local"][sizes[0]][0]
        checkpoints = {}
        for key, (names, width, _) in configs.items():
            out = str(root / key.replace(":", "-").replace("+", "_"))
            checkpoints[key] = (_checkpoints(first, names, width, out), out)
            results[key] = {"a": [], **{f"{where}:{n}": [] for where in stores
                                        for n in stores[where]}}
        # One untimed run first: Ray's worker pool and the file cache settle, so that the
        # first repeat measures the pipeline, not the cluster warming up.
        key, (names, width, config_args) = next(iter(configs.items()))
        pipeline(first, names, width, checkpoints[key][1], str(root / "warmup"), config_args)
        for i in range(args.repeats):
            for key, (names, width, config_args) in configs.items():
                made, out = checkpoints[key]
                runs = results[key]
                runs["a"].append(model_only(made, first, config_args))
                for where, by_size in stores.items():
                    for n, (store, options) in by_size.items():
                        # model only again just before: this machine's speed drifts by
                        # tens of percent over minutes, and the ratio must not see that
                        paired = model_only(made, first, config_args)
                        run = pipeline(store, names, width, out,
                                       f"{root}/cat-{i}-{where}-{n}-{key}", config_args, options)
                        runs[f"{where}:{n}"].append({**run, "model_only": paired})
                steady = ", ".join(f"{k} {v[-1]['steady']:.0f}" for k, v in runs.items()
                                   if k != "a")
                print(f"repeat {i + 1}/{args.repeats} {key}: model only {runs['a'][-1]:.0f}; "
                      f"steady {steady} cutouts/s", flush=True)

    device = (torch.cuda.get_device_name(0) if args.gpus and torch.cuda.is_available()
              else None)
    record = {"device": device, "configs": results,
              "driver_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    publish("infer_throughput", args, record, render, started=t0)


def render(record: dict) -> str:
    """The Markdown section of ``docs/results.md`` for these raw results."""
    a, r = record["args"], record["results"]
    lines = [
        "## Inference throughput (`benchmarks/infer_throughput.py`)", "",
        f"{a['size']}x{a['size']} cutouts (4 bands), batch {a['batch_size']}, one actor "
        f"(`cpus_per_actor` {a['cpus_per_actor']}) whose models use the torch threads in the "
        "table; model only runs the actor's estimator in a Ray worker with the same "
        "resources and threads. With 2 threads the models take both cores and the "
        "pipeline's own work (reading, checks, normalisation, Parquet) competes with them; "
        "with 1 the models have one core and the pipeline the other, as a GPU node "
        "gives a fast model an accelerator and the host work CPU cores. Width 64 is "
        "ResNet-18; width 16 runs about 10x faster here (see model only), a stand-in for a "
        "model a GPU "
        "makes that fast. Seeded, untrained weights. \"Steady\" = objects / the actor's busy "
        "time; \"end to end\" adds starting the actor and loading its models. Model only "
        "is measured again just before each pipeline run and each ratio takes that pair "
        "(this machine's speed drifts by tens of percent over minutes). Configs "
        f"interleaved, {len(next(iter(r['configs'].values()))['a'])} repeats; figures are "
        "medians, ratios to model only per repeat as median (min-max).", "",
        describe(record["machine"]) + (f" Device: {r['device']}." if r["device"] else ""), "",
        "| models (width) | threads | store | objects | model only | steady | ratio "
        "| end to end | ratio | outside busy | actor peak RSS | before: steady ratio "
        "| before: end to end |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    pipelined = _pipelined()
    for key, runs in r["configs"].items():
        names, width, threads = key.split(":")
        for where_n, rows in runs.items():
            if where_n == "a":
                continue
            model = _paired(rows, runs["a"])
            where, n = where_n.split(":")
            steady = [p["steady"] for p in rows]
            ends = [p["end_to_end"] for p in rows]
            lines.append(
                f"| {names.replace('+', ' + ')} ({width}) | {threads} | "
                f"{'local' if where == 'local' else 'loopback S3'} | {int(n):,} | "
                f"{spread(model)['median']:.0f} | {spread(steady)['median']:.0f} | "
                f"{_ratio(steady, model)} | {spread(ends)['median']:.0f} | "
                f"{_ratio(ends, model)} | "
                f"{spread([p['seconds'] - p['busy'] for p in rows])['median']:.1f} s | "
                f"{spread([p['actor_mb'] for p in rows])['median']:,.0f} MB | "
                f"{' | '.join(pipelined.get((key, where_n), ('', '')))} |")
    lines += ["", "A ratio above 1 is not a gain: the pipeline cannot run faster than its "
              "models, so it is the spread between repeats. *Outside busy*: end-to-end "
              "seconds less the busy ones, mostly the actor's start-up (its worker, imports, "
              "models) before the first shard. *Before*: the same benchmark "
              f"on the same machine with the code of commit {PIPELINED_COMMIT} (the actor "
              "loop already a pipeline, but the training-domain check measuring every "
              "cutout, zstd stores), from "
              "`docs/results/before/infer_throughput_pipelined.json`.", "",
              *_acceptance(r["configs"]), *_before()]
    return "\n".join(lines)


#: The code whose figures ``_before`` shows: the actor loop before it became a pipeline
BEFORE_COMMIT = "2c25223"
#: The code whose figures ``_pipelined`` shows: the pipelined loop before the store kept
#: pixel measures and compressed with Blosc
PIPELINED_COMMIT = "8d9ff29"


def _pipelined() -> dict[tuple[str, str], tuple[str, str]]:
    """Steady and end-to-end ratios of :data:`PIPELINED_COMMIT`'s run, per (config, store:size),
    from ``docs/results/before/infer_throughput_pipelined.json`` (written by this script)."""
    path = RESULTS / "before" / "infer_throughput_pipelined.json"
    if not path.exists():
        return {}
    out = {}
    for key, runs in json.loads(path.read_text())["results"]["configs"].items():
        for where_n, rows in runs.items():
            if where_n != "a":
                out[key, where_n] = (_ratio([p["steady"] for p in rows], runs["a"]),
                                     _ratio([p["end_to_end"] for p in rows], runs["a"]))
    return out


def _before() -> list[str]:
    """The same measurement with the code of :data:`BEFORE_COMMIT` (the baseline of the
    pipeline work), from ``docs/results/before/infer_throughput_w*.json``: files written by
    that commit's version of this script, whose commands they hold."""
    files = sorted((RESULTS / "before").glob("infer_throughput_w*.json"))
    if not files:
        return []
    lines = [f"Before (the code of commit {BEFORE_COMMIT}: one shard at a time per actor, "
             "chunks re-cut into batches, checks and normalisation between the model's "
             "batches), same machine, SFNet alone, 4,096 objects, 3 interleaved repeats; "
             "commands in `docs/results/before/infer_throughput_w*.json`:", "",
             "| models (width) | threads | store | model only | steady | ratio | end to end "
             "| ratio |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for path in sorted(files, key=lambda p: -int(p.stem.rsplit("w", 1)[1])):
        record = json.loads(path.read_text())
        model = record["results"]["repeats"]["a"]
        for key, label in (("b", "local"), ("c", "loopback S3")):
            rows = record["results"]["repeats"][key]
            steady = [p["steady"] for p in rows]
            ends = [p["end_to_end"] for p in rows]
            lines.append(f"| sfnet ({record['args']['width']}) | "
                         f"{record['args']['threads']} | {label} | "
                         f"{spread(model)['median']:.0f} | {spread(steady)['median']:.0f} | "
                         f"{_ratio(steady, model)} | {spread(ends)['median']:.0f} | "
                         f"{_ratio(ends, model)} |")
    return lines


#: The targets of the inference-overhead work: (config, store:objects, measure, minimum
#: median ratio to model only)
TARGETS = [("sfnet:64:2", "local:16384", "steady", 0.9),
           ("sfnet:64:2", "local:16384", "end_to_end", 0.85),
           ("sfnet:64:2", "s3:16384", "steady", 0.85),
           ("sfnet:16:2", "local:16384", "steady", 0.7),
           ("sfnet:16:1", "local:16384", "steady", 0.7)]


def _acceptance(configs: dict) -> list[str]:
    """One line per target this run measured: its median ratio and whether it is met."""
    lines = []
    for key, where_n, measure, target in TARGETS:
        rows = configs.get(key, {}).get(where_n)
        if not rows:
            continue
        ratio = spread([p[measure] / m for p, m in
                        zip(rows, _paired(rows, configs[key]["a"]), strict=True)])
        names, width, threads = key.split(":")
        where, n = where_n.split(":")
        verdict = "met" if ratio["median"] >= target else "not met"
        lines.append(f"- {names} (width {width}, {threads} thread(s)), "
                     f"{'local' if where == 'local' else 'loopback S3'}, {int(n):,} objects, "
                     f"{measure.replace('_', ' ')} >= {target}x model only: "
                     f"{ratio['median']:.2f}x -> {verdict}")
    return ["Targets (median of the repeats' ratios):", "", *lines, ""] if lines else []


def _paired(rows: list[dict], model: list[float]) -> list[float]:
    """The model-only speed each pipeline run is compared with: the one measured just
    before it, or (results recorded before runs kept one) the config's repeat's."""
    return [p.get("model_only", m) for p, m in zip(rows, model, strict=True)]


def _ratio(values: list[float], model: list[float]) -> str:
    return ratio_text(spread([v / m for v, m in zip(values, model, strict=True)]))


if __name__ == "__main__":
    main()
