"""Where an inference actor's time goes: the actor loop's stages, one model, in one process.

    python benchmarks/infer_profile.py [--n 4096] [--widths 64,16] [--batch-size 256]
        [--threads 2] [--repeats 3] [--compressions blosc,zstd]

For each network width (64: ResNet-18; 16: about 10x faster here, a
stand-in on this CPU for a model as fast as a GPU makes ResNet-18), the same
:class:`~surveyproc.infer.shard.ShardProcessor` an actor holds runs over a local
synthetic store of ``--n`` objects, in the same process (no Ray, so nothing
but the loop is measured), three ways, interleaved ``--repeats`` times:

- model only: the forward passes and output handling on tensors already in memory;
- serial: no read-ahead, one shard at a time, so every stage runs in turn in
  one thread and the stage seconds add up to the wall time: the profile;
- pipelined: as an actor runs it (reads and checks on reader threads, two
  shards in flight, one shard's assembly and commit beside the other's models).

The loop runs on a store of the first of ``--compressions`` (the default of new
stores); for each of them, reading alone (fetch and decode, the kept pixel
measures included, one read unit after another) is timed as well, since stores
written before Blosc became the default hold zstd.  The stage table shows beside
each stage its serial figure from ``docs/results/before/infer_profile_pipelined.json``
(the code of commit :data:`BEFORE_COMMIT`, before the store kept pixel measures).

Stages (``surveyproc.infer.shard.STAGES``): read (fetch and decode), checks
(per-pixel flags, training-domain test), wait, prepare (tensor, normalisation),
forward, outputs (the kind's columns), assemble (Arrow table), encode (Parquet),
commit (part and record).  Seeded, untrained weights: speed does not depend on
what a network has learned.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchlib import RESULTS, describe, publish, spread
from infer_throughput import _checkpoints, _job

from surveyproc.infer import plan_inference
from surveyproc.infer.shard import STAGES, ShardProcessor, ShardReport
from surveyproc.store import SurveyStore
from surveyproc.store.shards import Shard
from surveyproc.store.synth import SynthConfig, synthesize


def _processor(store: SurveyStore, width: int, root: Path, args, prefetch: int,
               catalog: str) -> tuple[ShardProcessor, list[Shard]]:
    """The processor an actor would build for one SFNet of ``width`` (``catalog``: fresh)."""
    out = str(root / f"w{width}")
    if not Path(out, "checkpoints", "sfnet.pt").exists():
        _checkpoints(store, ["sfnet"], width, out)
    # the resources section does not matter in one process: the actor's defaults
    job = _job(store, ["sfnet"], width, out, catalog,
               argparse.Namespace(**vars(args), cpus_per_actor=1.0, gpus=0.0))
    plan = plan_inference(job, store)
    processor = ShardProcessor(
        store_url=store.url, store_options=None, checkpoints=plan.checkpoints,
        schema=plan.schema.describe(), catalog_url=catalog, catalog_options=None,
        run_id="profile", batch_size=args.batch_size, prefetch=prefetch)
    return processor, plan.shards


def model_only(store: SurveyStore, width: int, root: Path, args, pixels: np.ndarray) -> float:
    """Cutouts/s of the actor's own estimator (forward passes and the kind's outputs) on a
    batch already normalised in memory: the ceiling of the loop."""
    processor, _ = _processor(store, width, root, args, 0, str(root / "unused"))
    processor.close()
    inputs = processor.estimator.prepare(pixels)
    for _ in range(2):
        processor.estimator.run(inputs)
    batches = max(8, args.n // len(pixels))
    started = time.perf_counter()
    for _ in range(batches):
        processor.estimator.run(inputs)
    return batches * len(pixels) / (time.perf_counter() - started)


def run_loop(store: SurveyStore, width: int, root: Path, args, *, pipelined: bool,
             tag: str) -> dict[str, Any]:
    """All shards through one processor; stage seconds summed and the wall time."""
    processor, shards = _processor(store, width, root, args, 2 if pipelined else 0,
                                   str(root / f"catalog-{tag}"))
    started = time.perf_counter()
    if pipelined:  # the actor's arrangement: two shards in flight at once
        with ThreadPoolExecutor(max_workers=2) as pool:
            reports: list[ShardReport] = list(pool.map(processor.process, shards))
    else:
        reports = [processor.process(shard) for shard in shards]
    wall = time.perf_counter() - started
    processor.close()
    stages = {stage: sum(r.stages.get(stage, 0.0) for r in reports) for stage in STAGES}
    objects = sum(r.rows for r in reports)
    return {"objects": objects, "wall": wall, "rate": objects / wall, "stages": stages,
            "shards": len(shards)}


def read_only(store: SurveyStore, args) -> float:
    """Seconds to read every unit of ``store`` in turn as the actor's reader does (pixels,
    kept measures, ids and flags), no checks or models."""
    started = time.perf_counter()
    for start in range(0, store.n_objects, args.batch_size):
        store.read(start, min(start + args.batch_size, store.n_objects), labels=False,
                   photometry=False, measures=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--widths", default="64,16")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compressions", default="blosc,zstd",
                        help="stores to read; the loop runs on the first")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="raw results (default docs/results/)")
    args = parser.parse_args()
    os.environ.setdefault("SURVEYPROC_PROGRESS", "0")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="surveyproc-profile-"))
    compressions = args.compressions.split(",")
    stores = {c: synthesize(str(root / f"store-{c}.zarr"),
                            SynthConfig(n=args.n, size=args.size, seed=0, compression=c))
              for c in compressions}
    store = stores[compressions[0]]
    reads: dict[str, list[float]] = {c: [] for c in compressions}
    pixels = store.read(0, args.batch_size, labels=False, photometry=False).images
    widths = [int(w) for w in args.widths.split(",")]
    results: dict[str, dict[str, list]] = {str(w): {"model": [], "serial": [], "pipelined": []}
                                           for w in widths}
    run_loop(store, widths[0], root, args, pipelined=True, tag="warmup")  # caches settle
    for i in range(args.repeats):
        for compression, other in stores.items():
            reads[compression].append(read_only(other, args))
        for width in widths:
            runs = results[str(width)]
            runs["model"].append(model_only(store, width, root, args, pixels))
            runs["serial"].append(run_loop(store, width, root, args, pipelined=False,
                                           tag=f"s{width}-{i}"))
            runs["pipelined"].append(run_loop(store, width, root, args, pipelined=True,
                                              tag=f"p{width}-{i}"))
            print(f"repeat {i + 1}/{args.repeats}, width {width}: model only "
                  f"{runs['model'][-1]:.0f}, serial {runs['serial'][-1]['rate']:.0f}, "
                  f"pipelined {runs['pipelined'][-1]['rate']:.0f} cutouts/s", flush=True)
    publish("infer_profile", args, {"widths": results, "read_only": reads}, render,
            started=t0)


def render(record: dict) -> str:
    """The Markdown section of ``docs/results.md`` for these raw results."""
    a, r = record["args"], record["results"]
    lines = ["## The actor loop's profile (`benchmarks/infer_profile.py`)", "",
             f"One SFNet, {a['n']:,} local synthetic cutouts ({a['size']}x{a['size']}, 4 bands), "
             f"batch {a['batch_size']}, {a['threads']} torch threads, in one process (no Ray). "
             "*Serial*: no read-ahead, one shard at a time: every stage in turn, so their "
             "seconds add up to the wall time. *Pipelined*: as an actor runs (reads and checks "
             "on reader threads, two shards in flight). Medians of "
             f"{a['repeats']} interleaved repeats; ratios per repeat, median (min-max).", "",
             describe(record["machine"]), ""]
    before = _before()
    for width, runs in r["widths"].items():
        serial = runs["serial"]
        total = np.median([s["wall"] for s in serial])
        per_k = 1000 / serial[0]["objects"]
        label = "ResNet-18" if width == "64" else f"ResNet-18 at width {width}"
        lines += [f"**{label}**: model only {spread(runs['model'])['median']:.0f} cutouts/s; "
                  f"serial loop {spread([s['rate'] for s in serial])['median']:.0f} "
                  f"({_ratio(serial, runs['model'])}); pipelined "
                  f"{spread([p['rate'] for p in runs['pipelined']])['median']:.0f} "
                  f"({_ratio(runs['pipelined'], runs['model'])} of model only)"
                  + (f"; before (commit {BEFORE_COMMIT}): serial {before[width]['serial']}, "
                     f"pipelined {before[width]['pipelined']}" if width in before else "")
                  + ".", "",
                  "| stage | serial: ms per 1,000 cutouts | share of the serial wall time "
                  "| pipelined: ms per 1,000 cutouts | before: serial ms per 1,000 |",
                  "|---|---:|---:|---:|---:|"]
        for stage in STAGES:
            seconds = float(np.median([s["stages"][stage] for s in serial]))
            piped = float(np.median([p["stages"][stage] for p in runs["pipelined"]]))
            share = "(the three above)" if stage == "wait" else f"{seconds / total:.1%}"
            was = before.get(width, {}).get("stages", {}).get(stage)
            lines.append(f"| {stage} | {1000 * seconds * per_k:.1f} | {share} | "
                         f"{1000 * piped * per_k:.1f} | "
                         f"{'' if was is None else f'{was:.1f}'} |")
        lines += ["", "Serially, the models wait for each read in their own thread, so *wait* "
                  "is read + checks + prepare; pipelined, those run on reader threads (their "
                  "seconds there are stretched by sharing the cores with the models) and "
                  "*wait* is what the models still wait. *Before*: the serial figures of "
                  f"the code of commit {BEFORE_COMMIT} (the training-domain check measured "
                  "every cutout's sky, noise and flux; zstd store; non-finite values "
                  "replaced in every batch), same benchmark and machine, from "
                  "`docs/results/before/infer_profile_pipelined.json`.", ""]
    if r.get("read_only"):
        per_k = 1e6 / a["n"]
        lines += ["Reading alone (fetch and decode, kept measures included, one "
                  f"{a['batch_size']}-object unit after another), median (min-max) of "
                  "the repeats: " + "; ".join(
                      f"{c} store {spread(v)['median'] * per_k:.1f} ms per 1,000 cutouts "
                      f"({min(v) * per_k:.1f}-{max(v) * per_k:.1f})"
                      for c, v in r["read_only"].items()) + ".", ""]
    return "\n".join(lines)


#: The code whose profile :func:`_before` shows: the pipelined loop before the store kept
#: pixel measures and compressed with Blosc
BEFORE_COMMIT = "8d9ff29"


def _before() -> dict[str, dict[str, Any]]:
    """Per width, :data:`BEFORE_COMMIT`'s serial ms per 1,000 cutouts per stage and its
    serial and pipelined ratios to model only."""
    path = RESULTS / "before" / "infer_profile_pipelined.json"
    if not path.exists():
        return {}
    record = json.loads(path.read_text())
    out: dict[str, dict[str, Any]] = {}
    for width, runs in record["results"]["widths"].items():
        serial = runs["serial"]
        per_k = 1e6 / serial[0]["objects"]
        out[width] = {"stages": {stage: float(np.median([s["stages"][stage] for s in serial]))
                                 * per_k for stage in STAGES},
                      "serial": _ratio(serial, runs["model"]),
                      "pipelined": _ratio(runs["pipelined"], runs["model"])}
    return out


def _ratio(runs: list[dict], model: list[float]) -> str:
    values = spread([run["rate"] / m for run, m in zip(runs, model, strict=True)])
    return f"{values['median']:.2f}x ({values['min']:.2f}-{values['max']:.2f})"


if __name__ == "__main__":
    main()
