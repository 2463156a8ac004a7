"""Training throughput: one process, and Ray Train with 1 and 2 workers, reading the store.

    python benchmarks/train_scaling.py [--n 4096] [--size 32] [--width 32] [--epochs 2]

Trains SFNet-4 (metallicity) on a synthetic store three ways, with the same global
batch and data: (1) `surveyproc train`'s single process; (2) Ray Train, 1 worker;
(3) Ray Train, N workers (DDP, gloo on CPU), the CPUs split between them.  Every
worker streams its own shards from the store each epoch.  Prints training
samples/s (all workers together, best epoch) and wall time.  On a GPU machine pass
``--gpu`` (one GPU per worker, bf16, channels_last), e.g. with ``--size 144``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

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
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    os.environ.setdefault("SURVEYPROC_PROGRESS", "0")
    cpus = os.cpu_count() or 1
    root = Path(args.workdir or tempfile.mkdtemp(prefix="surveyproc-train-bench-"))
    rows = []
    with ray_runtime():
        store = synthesize(str(root / "s.zarr"), SynthConfig(n=args.n, size=args.size, seed=0))
        cases = [("single process", None, float(cpus), cpus),
                 ("Ray Train, 1 worker", 1, float(cpus), cpus),
                 (f"Ray Train, {args.workers} workers", args.workers, cpus / args.workers,
                  max(1, cpus // args.workers))]
        for label, workers, cpu_share, threads in cases:
            job = _job(root, label.split(",")[0].replace(" ", "_") + str(workers), args,
                       workers, cpu_share, threads)
            t0 = time.perf_counter()
            trained = train_job(job, store, force=True)[0]
            wall = time.perf_counter() - t0
            per_worker = trained.metrics["train_samples_per_s"]
            rows.append((label, threads, per_worker * (workers or 1), wall,
                         trained.metrics["val"]["rmse_metallicity"]))
            print(f"{label}: {rows[-1][2]:.1f} samples/s", flush=True)
    print(f"\nmachine: {platform.machine()}, {cpus} CPUs; torch {torch.__version__}; "
          f"{args.n} galaxies {args.size}x{args.size}, SFNet-4 width {args.width}, "
          f"global batch {args.batch_size}, {args.epochs} epochs\n")
    print(f"{'setup':24} {'threads/worker':>14} {'samples/s':>10} {'wall s':>8} "
          f"{'val RMSE':>9}")
    for label, threads, rate, wall, rmse in rows:
        print(f"{label:24} {threads:>14} {rate:>10.1f} {wall:>8.1f} {rmse:>9.4f}")
    print(f"\n{args.workers} workers / 1 worker: x{rows[2][2] / rows[1][2]:.2f} samples/s")


if __name__ == "__main__":
    main()
