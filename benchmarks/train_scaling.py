"""Training throughput: one process, and Ray Train with 1 and 2 workers, reading the store.

    python benchmarks/train_scaling.py [--n 4096] [--size 32] [--width 32] [--epochs 2]
        [--repeats 3]

Trains SFNet-4 (metallicity) on a synthetic store three ways, with the same global
batch and data: (1) `surveyproc train`'s single process; (2) Ray Train, 1 worker;
(3) Ray Train, N workers (DDP, gloo on CPU), the CPUs split between them.  Every
worker streams its own shards from the store each epoch.  The three are
interleaved ``--repeats`` times; prints training samples/s (all workers
together, best epoch; median over repeats), wall time and the per-repeat ratios
as median and range.  On a GPU machine pass
``--gpu`` (one GPU per worker, bf16, channels_last), e.g. with ``--size 144``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchlib import describe, publish, ratio_text, spread

from surveyproc.jobs import JobSpec
from surveyproc.ops.ray_runtime import ray_runtime
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.train import train_job


def _job(root: Path, name: str, args, workers: int | None, cpus: float, threads: int):
    return JobSpec.model_validate({
        "name": name, "store": {"url": str(root / "s.zarr")}, "output": {"dir": str(root / name)},
        "models": [{"name": "sf", "kind": "sfnet", "k": 4, "width": args.width,
                    "targets": ["metallicity"]}],
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": 0.002,
                  "patience": 10, "workers": workers, "cpus_per_worker": cpus,
                  "threads": threads, "use_gpu": args.gpu},
        "metrics": {"enabled": False},
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="raw results (default docs/results/)")
    args = parser.parse_args()
    os.environ.setdefault("SURVEYPROC_PROGRESS", "0")
    cpus = os.cpu_count() or 1
    root = Path(args.workdir or tempfile.mkdtemp(prefix="surveyproc-train-bench-"))
    started = time.perf_counter()
    cases = [("single process", None, float(cpus), cpus),
             ("Ray Train, 1 worker", 1, float(cpus), cpus),
             (f"Ray Train, {args.workers} workers", args.workers, cpus / args.workers,
              max(1, cpus // args.workers))]
    runs: dict[str, list[dict]] = {label: [] for label, *_ in cases}
    with ray_runtime():
        store = synthesize(str(root / "s.zarr"), SynthConfig(n=args.n, size=args.size, seed=0))
        for _ in range(args.repeats):
            for label, workers, cpu_share, threads in cases:
                job = _job(root, label.split(",")[0].replace(" ", "_") + str(workers), args,
                           workers, cpu_share, threads)
                t0 = time.perf_counter()
                trained = train_job(job, store, force=True)[0]
                runs[label].append({
                    "workers": workers, "threads": threads,
                    "samples_per_s": trained.metrics["train_samples_per_s"] * (workers or 1),
                    "wall_s": time.perf_counter() - t0,
                    "val_rmse": trained.metrics["val"]["rmse_metallicity"]})
                print(f"{label}: {runs[label][-1]['samples_per_s']:.1f} samples/s", flush=True)
    record = {"runs": runs}
    publish("train_scaling", args, record, render, started=started)


def render(record: dict) -> str:
    """The Markdown section of ``docs/results.md`` for these raw results."""
    a, runs = record["args"], record["results"]["runs"]
    labels = list(runs)
    lines = [
        "## Training throughput (`benchmarks/train_scaling.py`)", "",
        f"SFNet-4 (metallicity), ResNet-18 width {a['width']}, {a['n']:,} synthetic galaxies "
        f"at {a['size']}x{a['size']}, global batch {a['batch_size']}, {a['epochs']} epochs, "
        "data streamed from the store by every worker; samples/s of the best epoch, all "
        f"workers together. The three set-ups interleaved, {a['repeats']} repeats: medians, "
        "and ratios per repeat as median (min-max).", "", describe(record["machine"]), "",
        "| setup | torch threads per worker | samples/s | wall (incl. start-up) | val RMSE |",
        "|---|---:|---:|---:|---:|"]
    for label in labels:
        r = runs[label]
        lines.append(f"| {label} | {r[0]['threads']} | "
                     f"{spread([x['samples_per_s'] for x in r])['median']:,.1f} | "
                     f"{spread([x['wall_s'] for x in r])['median']:.1f} s | "
                     f"{spread([x['val_rmse'] for x in r])['median']:.4f} |")

    def ratio(top: str, bottom: str) -> str:
        return ratio_text(spread([t["samples_per_s"] / b["samples_per_s"]
                                  for t, b in zip(runs[top], runs[bottom], strict=True)]))

    lines += ["", f"{labels[2]} / {labels[1]}: {ratio(labels[2], labels[1])} samples/s; "
              f"{labels[1]} / {labels[0]}: {ratio(labels[1], labels[0])}.", "",
              f"With {record['machine']['cpus']} CPUs, N workers have no more CPU than one: "
              "the workers' ratio is the cost of DDP's all-reduce on a shared CPU, not a "
              "scaling figure (a multi-GPU node is still to be measured). The gap between "
              "one Ray Train worker and the single process with the same threads is not yet "
              "explained (a suspect, not measured here: Ray Train V2 runs the training "
              "function in a thread beside the worker's own, polled by its controller)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
