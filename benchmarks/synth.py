"""Synthesis wall time: ``surveyproc synth`` into a local directory and into loopback S3.

    python benchmarks/synth.py [--n 10000] [--size 64] [--repeats 3]

Runs the command a user runs (a new process each time, embedded local Ray on
every CPU), into a local directory and into ``s3://`` on a moto server in its own
process on 127.0.0.1 (``AWS_ENDPOINT_URL``), interleaved ``--repeats`` times.
Prints the median wall time of each and the stored size; raw timings go to
``docs/results/synth.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import describe, moto_server, publish, spread

SURVEYPROC = str(Path(sys.executable).with_name("surveyproc"))


def _synth(url: str, args, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([SURVEYPROC, "synth", "--n", str(args.n), "--size", str(args.size),
                    "--overwrite", url], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="raw results (default docs/results/)")
    args = parser.parse_args()
    started = time.perf_counter()
    # moto accepts any credentials; dummy ones, for this process and the commands it runs
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
    env = {**os.environ, "SURVEYPROC_PROGRESS": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    seconds: dict[str, list[float]] = {"local": [], "s3": []}
    with tempfile.TemporaryDirectory() as tmp, moto_server() as endpoint:
        import s3fs

        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir("bench")
        local = str(Path(tmp) / "s.zarr")
        for _ in range(args.repeats):
            seconds["local"].append(_synth(local, args, env))
            seconds["s3"].append(_synth("s3://bench/s.zarr", args,
                                        {**env, "AWS_ENDPOINT_URL": endpoint}))
            print(f"local {seconds['local'][-1]:.1f} s, s3 {seconds['s3'][-1]:.1f} s",
                  flush=True)
        stored = sum(f.stat().st_size for f in Path(local).rglob("*") if f.is_file())
        shutil.rmtree(local)
    record = {"seconds": seconds, "stored_mb": stored / 1e6}
    publish("synth", args, record, render, started=started)


def render(record: dict) -> str:
    """The Markdown section of ``docs/results.md`` for these raw results."""
    a, r = record["args"], record["results"]
    local, s3 = spread(r["seconds"]["local"]), spread(r["seconds"]["s3"])
    command = f"surveyproc synth --n {a['n']} --size {a['size']}"
    return "\n".join([
        "## Synthesis (`benchmarks/synth.py`)", "",
        f"`{command}` as a user runs it (a new process, embedded local Ray on every CPU); "
        f"{a['repeats']} interleaved repeats, median (min-max) wall time. 4 bands, "
        f"{r['stored_mb']:,.0f} MB stored.", "", describe(record["machine"]), "",
        "| destination | wall time |", "|---|---:|",
        f"| local directory | {local['median']:.1f} s ({local['min']:.1f}-{local['max']:.1f}) |",
        f"| `s3://` on a loopback moto server (`AWS_ENDPOINT_URL`) | {s3['median']:.1f} s "
        f"({s3['min']:.1f}-{s3['max']:.1f}) |"])


if __name__ == "__main__":
    main()
