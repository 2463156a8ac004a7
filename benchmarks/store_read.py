"""Store reader throughput against plain zarr on the same chunks, locally and on loopback S3.

    python benchmarks/store_read.py [--n 16384] [--size 64] [--chunk 256] [--repeats 3]

For each backend (a local directory; an S3-compatible moto server in its own
process on 127.0.0.1, unsharded and with Zarr v3 shards) the same store is read
chunk by chunk twice, alternating, ``--repeats`` times:

* baseline: plain ``zarr`` — ``images[start:stop]`` for every chunk, in order;
* surveyproc: ``SurveyStore.iter_batches`` over the same chunk ranges, which
  also returns ids, coordinates, flags, photometry and every label column.

It prints the best-of-repeats MB/s (decompressed image bytes) and cutouts/s
of each and their ratio (surveyproc / zarr); the target is >= 0.9.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import zarr
from support import moto_server

from surveyproc.fs import zarr_store
from surveyproc.store import open_store
from surveyproc.store.synth import SynthConfig, synthesize


def _plain_zarr(url: str, options: dict | None):
    group = zarr.open_group(store=zarr_store(url, options, read_only=True), mode="r")
    images = group["images"]

    def read(ranges) -> int:
        return sum(images[start:stop].nbytes for start, stop in ranges)

    return read


def _surveyproc(url: str, options: dict | None):
    store = open_store(url, options, check_ids=False)

    def read(ranges) -> int:
        store.drop_cache()  # no help from the previous repeat's column cache
        return sum(batch.images.nbytes for batch in store.iter_batches(ranges, prefetch=2))

    return read


def _measure(label: str, url: str, options: dict | None, n: int, repeats: int) -> dict:
    store = open_store(url, options)
    ranges = [(s.start, s.stop) for s in store.chunk_ranges()]
    # Opened once, outside the timing: this measures reading, not metadata requests.
    readers = {"zarr": _plain_zarr(url, options), "surveyproc": _surveyproc(url, options)}
    best = {"zarr": float("inf"), "surveyproc": float("inf")}
    nbytes = 0
    for _ in range(repeats):
        for name, read in readers.items():
            t0 = time.perf_counter()
            nbytes = read(ranges)
            best[name] = min(best[name], time.perf_counter() - t0)
    mb = nbytes / 1e6
    row = {"backend": label, "chunks": len(ranges)}
    for name, seconds in best.items():
        row[f"{name}_MBps"] = mb / seconds
        row[f"{name}_cutouts_per_s"] = n / seconds
    row["ratio"] = best["zarr"] / best["surveyproc"]
    return row


def _copy_to_s3(local: str, bucket_url: str, options: dict) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    fs.mkdir(bucket_url.split("/")[2])
    fs.put(local, bucket_url[5:], recursive=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16384)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # moto accepts any credentials; set dummy ones before Ray starts so workers inherit them.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = SynthConfig(n=args.n, size=args.size)
        plain = str(Path(tmp) / "plain.zarr")
        sharded = str(Path(tmp) / "sharded.zarr")
        print(f"writing {args.n} synthetic cutouts ({args.size}x{args.size}, 4 bands) ...")
        synthesize(plain, config, chunk_objects=args.chunk)
        synthesize(sharded, config, chunk_objects=args.chunk, shard_chunks=4)
        rows.append(_measure("local", plain, None, args.n, args.repeats))
        with moto_server() as endpoint:
            options = {"endpoint_url": endpoint}
            for name, local in (("s3", plain), ("s3 sharded x4", sharded)):
                url = f"s3://bench-{name.split()[0]}{'-sh' if 'sharded' in name else ''}/s.zarr"
                _copy_to_s3(local, url, options)
                rows.append(_measure(f"loopback {name}", url, options, args.n, args.repeats))

    print(f"\nmachine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"python {platform.python_version()}, zarr {zarr.__version__}")
    print(f"{args.n} cutouts of 4x{args.size}x{args.size} float32, {args.chunk} per chunk, "
          f"best of {args.repeats}\n")
    header = (f"{'backend':<20} {'zarr MB/s':>10} {'ours MB/s':>10} {'zarr cut/s':>11} "
              f"{'ours cut/s':>11} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['backend']:<20} {row['zarr_MBps']:>10.0f} {row['surveyproc_MBps']:>10.0f} "
              f"{row['zarr_cutouts_per_s']:>11.0f} {row['surveyproc_cutouts_per_s']:>11.0f} "
              f"{row['ratio']:>6.2f}")


if __name__ == "__main__":
    main()
