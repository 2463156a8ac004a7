"""Aggregation throughput and memory: rows/s and peak memory against catalog size.

    python benchmarks/aggregate.py [--scalar 1e6,1e7] [--pdf 1e5,1e6] [--workers 2]

Synthetic catalogs are written the way ``surveyproc infer`` writes them (parts
of 4,096 rows), without images, for a labels-only store of the same size
(:func:`surveyproc.testing.synthetic_catalog`, :func:`~surveyproc.testing.label_store`):

* "scalar + sparse": point estimates of redshift and metallicity and SFNet
  activations (k = 4 of 512 features);
* "with PDFs": the same plus a 180-bin redshift PDF per galaxy.

Each is aggregated by ``aggregate_catalog`` (every statistic of the report, no
figures) on a local Dask cluster of ``--workers`` single-threaded worker
processes, restarted before each case.  Peak memory is sampled every 0.1 s:
the largest sum of the workers' resident memory, and the driver's; neither
may grow with rows.  Catalogs are made first (and reused with ``--workdir``).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def _sizes(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scalar", default="1e6,1e7", help="rows of scalar + sparse catalogs")
    parser.add_argument("--pdf", default="1e5,1e6", help="rows of catalogs with PDFs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    os.environ.setdefault("SURVEYPROC_PROGRESS", "0")

    from distributed import Client, LocalCluster
    from support import PeakMemory

    from surveyproc.stats import aggregate_catalog
    from surveyproc.store import open_store
    from surveyproc.testing import label_store, synthetic_catalog

    root = Path(args.workdir or tempfile.mkdtemp(prefix="surveyproc-agg-bench-"))
    cases = [("scalar + sparse", n, None) for n in _sizes(args.scalar)]
    cases += [("with PDFs", n, 1.0) for n in _sizes(args.pdf)]
    started = time.perf_counter()
    made = []
    for kind, n, pdf_scale in cases:  # all data first: the driver's memory then stays ours
        t0 = time.perf_counter()
        store_url, catalog = root / f"labels-{n}.zarr", root / f"catalog-{kind[0]}-{n}"
        if not (catalog / "_manifest.json").exists():
            store = (open_store(str(store_url)) if (store_url / "zarr.json").exists()
                     else label_store(str(store_url), n, chunk=4096))
            synthetic_catalog(str(catalog), store, n_features=512, k=4, pdf_scale=pdf_scale)
        made.append(time.perf_counter() - t0)
        print(f"made {kind} catalog of {n:,} rows in {made[-1]:.0f} s", flush=True)
    results = []
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        for kind, n, _ in cases:
            client.restart()  # fresh workers: each case's peak is its own
            store = open_store(str(root / f"labels-{n}.zarr"))
            catalog = root / f"catalog-{kind[0]}-{n}"
            size = sum(f.stat().st_size for f in catalog.glob("part-*.parquet"))
            with PeakMemory(interval=0.1) as rss:
                t0 = time.perf_counter()
                aggregates = aggregate_catalog(str(catalog), store)
                seconds = time.perf_counter() - t0
            assert aggregates.rows == n, (aggregates.rows, n)
            results.append((kind, n, seconds, rss.children / 2**20, size / 2**20,
                            rss.driver / 2**20))
            print(f"{kind:16} {n:>11,} rows: {n / seconds:>10,.0f} rows/s, workers' peak "
                  f"{rss.children / 2**20:,.0f} MB, driver {rss.driver / 2**20:,.0f} MB",
                  flush=True)

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs; local Dask, "
          f"{args.workers} single-threaded worker processes; total "
          f"{(time.perf_counter() - started) / 60:.1f} min\n")
    print(f"{'catalog':16} {'rows':>11} {'parquet MB':>10} {'seconds':>8} {'rows/s':>10} "
          f"{'workers MB':>10} {'driver MB':>9}")
    for kind, n, seconds, peak, size, driver in results:
        print(f"{kind:16} {n:>11,} {size:>10,.0f} {seconds:>8.1f} {n / seconds:>10,.0f} "
              f"{peak:>10,.0f} {driver:>9,.0f}")
    for kind in ("scalar + sparse", "with PDFs"):
        rows = [r for r in results if r[0] == kind]
        if len(rows) >= 2:
            print(f"{kind}: x{rows[-1][1] / rows[0][1]:.0f} rows -> workers' peak memory "
                  f"x{rows[-1][3] / rows[0][3]:.2f}, driver x{rows[-1][5] / rows[0][5]:.2f} "
                  "(flat = x1.00)")


if __name__ == "__main__":
    main()
