"""Soak: repeated runs under randomly chosen faults; nothing missing, nothing twice.

    python benchmarks/soak.py [--runs 20] [--seed 2026] [--max-minutes 20]

A multi-node local Ray (``ray.cluster_utils.Cluster``: a head with no CPUs and
three one-CPU worker nodes, two actors) and a loopback S3 server (moto)
behind the fault proxy of ``tests/support/fault_proxy.py``, all on
127.0.0.1.  Each run is ``surveyproc infer`` in its own driver process (as a
user runs it) on a store of 1,200 objects in 4 shards of 3 chunks, into a fresh
catalog, with 1-3 faults drawn (seeded) from:

- ``transient``: 5xx answers, slow answers and connection resets on 6 % of
  requests (the S3 client's own retries off, so surveyproc's meet every one);
- ``corrupt``: one image chunk answers 500 on every request (quarantined);
- ``actor_kill``: an actor of this run killed (SIGKILL, by the PID Ray's state
  API of this cluster reports) after the first commit;
- ``node_loss``: the node of one of this run's actors removed after the first
  commit, a fresh node added in its place;
- ``driver_kill``: the driver killed (SIGKILL) after the first commit, and the
  same command run again.

After each run the catalog is read back: objects expected, written,
duplicated, missing, and flagged UNREADABLE against the corrupt chunk's objects.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import yaml
from benchlib import describe, moto_server, publish

from tests.support.fault_proxy import FaultRates, fault_proxy

N, CHUNK, PER_SHARD = 1200, 100, 300
FAULTS = ("transient", "corrupt", "actor_kill", "node_loss", "driver_kill")
NO_CLIENT_RETRIES = {"config_kwargs": {"retries": {"max_attempts": 1}}}


def _first_commit(fs, catalog: str, driver: subprocess.Popen, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        fs.invalidate_cache()
        try:
            if fs.ls(f"{catalog}/_committed"):
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    return False


def _actor_of_this_run(cluster):
    from ray.util.state import list_actors

    actors = list_actors(filters=[("class_name", "=", "InferenceActor"),
                                  ("state", "=", "ALIVE")], address=cluster.gcs_address)
    return actors[0] if actors else None


def _one_run(index: int, faults: list[str], rng: random.Random, cluster, proxy, bucket: str,
             options: dict, workdir: Path) -> dict:
    import s3fs

    from surveyproc.catalog import read_catalog
    from surveyproc.flags import Flag

    fs = s3fs.S3FileSystem(endpoint_url=proxy.upstream)  # the checker reads past the proxy
    catalog = f"{bucket}/soak/run-{index:03d}/catalog"
    spec = {"name": f"soak-{index:03d}",
            "store": {"url": f"s3://{bucket}/survey.zarr", "storage_options": options},
            "output": {"dir": f"s3://{bucket}/soak/out", "storage_options": options},
            "ray": {"address": cluster.address},
            "resources": {"actors": 2, "cpus_per_actor": 1, "batch_size": 100},
            "models": [{"name": "sf", "kind": "sfnet", "k": 3, "width": 8,
                        "targets": ["metallicity"]}],
            "infer": {"objects_per_shard": PER_SHARD, "catalog": f"s3://{catalog}"},
            "metrics": {"enabled": False}}
    job_file = workdir / f"run-{index:03d}.yaml"
    job_file.write_text(yaml.safe_dump(spec))
    broken = None
    proxy.rates = FaultRates(error=0.03, reset=0.02, slow=0.01, slow_seconds=0.3) \
        if "transient" in faults else FaultRates()
    if "corrupt" in faults:
        broken = rng.randrange(N // CHUNK)
        proxy.broken = {f"/survey.zarr/images/c/{broken}/"}
    command = [sys.executable, "-m", "surveyproc", "-q", "infer", str(job_file)]
    env = {**os.environ, "SURVEYPROC_PROGRESS": "0"}
    started = time.perf_counter()
    log = (workdir / f"run-{index:03d}.log").open("w")
    driver = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    injected = []
    if {"actor_kill", "node_loss", "driver_kill"} & set(faults) and _first_commit(fs, catalog,
                                                                                  driver):
        if "actor_kill" in faults and (actor := _actor_of_this_run(cluster)) is not None:
            os.kill(actor.pid, signal.SIGKILL)
            injected.append("actor_kill")
        if "node_loss" in faults and (actor := _actor_of_this_run(cluster)) is not None:
            for node in list(cluster.worker_nodes):
                if node.node_id == actor.node_id:  # the node and its processes go together
                    os.kill(actor.pid, signal.SIGKILL)
                    cluster.remove_node(node, allow_graceful=False)
                    cluster.add_node(num_cpus=1)
                    injected.append("node_loss")
                    break
        if "driver_kill" in faults and driver.poll() is None:
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait()
            injected.append("driver_kill")
            driver = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    code = driver.wait(timeout=600)
    log.close()
    seconds = time.perf_counter() - started
    injected += [f for f in faults if f in ("transient", "corrupt")]
    proxy.rates, proxy.broken = FaultRates(), set()
    table = read_catalog(f"s3://{catalog}", {"endpoint_url": proxy.upstream},
                         columns=["object_id", "flags"])
    ids = table.column("object_id").to_numpy()
    counts = np.bincount(ids, minlength=N)
    unreadable = (table.column("flags").to_numpy() & Flag.UNREADABLE) != 0
    expected = (set(range(broken * CHUNK, (broken + 1) * CHUNK)) if broken is not None
                else set())
    return {"run": index, "faults": injected, "exit_code": code, "seconds": round(seconds, 1),
            "expected": N, "written": len(ids), "duplicated": int((counts > 1).sum()),
            "missing": int((counts == 0).sum()), "flagged": int(unreadable.sum()),
            "flagged_as_expected": set(ids[unreadable].tolist()) == expected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--max-minutes", type=float, default=20.0)
    parser.add_argument("--out", help="results JSON (default docs/results/soak.json)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "soak")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "soak")
    from ray.cluster_utils import Cluster

    from surveyproc.models import save_checkpoint
    from surveyproc.store.synth import SynthConfig, synthesize
    from surveyproc.testing import seeded_checkpoint

    started = time.perf_counter()
    rng = random.Random(args.seed)
    runs = []
    with moto_server() as endpoint, fault_proxy(endpoint, seed=args.seed) as proxy, \
            tempfile.TemporaryDirectory(prefix="surveyproc-soak-") as workdir:
        import s3fs

        bucket = "soak-bucket"
        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir(bucket)
        options = {"endpoint_url": proxy.endpoint, **NO_CLIENT_RETRIES}
        with proxy.paused():
            store = synthesize(f"s3://{bucket}/survey.zarr", SynthConfig(n=N, size=16, seed=11),
                               chunk_objects=CHUNK, storage_options=options)
            save_checkpoint(seeded_checkpoint(store, "sfnet", ["metallicity"], k=3, seed=1),
                            f"s3://{bucket}/soak/out/checkpoints/sf.pt", options)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        try:
            for _ in range(3):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            for index in range(args.runs):
                if time.perf_counter() - started > args.max_minutes * 60:
                    break
                faults = rng.sample(FAULTS, rng.randint(1, 3))
                result = _one_run(index, faults, rng, cluster, proxy, bucket, options,
                                  Path(workdir))
                print(json.dumps(result), flush=True)
                runs.append(result)
        finally:
            cluster.shutdown()
    injected = Counter(f for r in runs for f in r["faults"])
    results = {"seed": args.seed, "runs": runs, "faults": dict(injected),
               "totals": {key: sum(r[key] for r in runs)
                          for key in ("expected", "written", "duplicated", "missing",
                                      "flagged")},
               "failed_runs": sum(r["exit_code"] != 0 for r in runs),
               "flags_as_expected": all(r["flagged_as_expected"] for r in runs),
               "proxy_faults": dict(proxy.faults)}
    publish("soak", args, results, render, started=started)


def render(record: dict) -> str:
    """The soak section of docs/results.md."""
    res = record["results"]
    t = res["totals"]
    faults = ", ".join(f"{k} {v}" for k, v in sorted(res["faults"].items()))
    proxy = ", ".join(f"{k} {v}" for k, v in sorted(res["proxy_faults"].items()))
    return "\n".join([
        "## Soak: runs under random faults", "",
        f"`python benchmarks/soak.py --runs {record['args']['runs']} --seed {res['seed']}`. "
        f"{describe(record['machine'])}", "",
        f"{len(res['runs'])} runs of 1,200 objects on a 3-node local Ray and loopback S3 behind "
        f"the fault proxy; faults injected by kind: {faults} (requests the proxy spoiled: "
        f"{proxy}).", "",
        "| objects expected | written | duplicated | missing | flagged UNREADABLE | "
        "runs failed | corrupt chunks' objects all flagged |", "|---|---|---|---|---|---|---|",
        f"| {t['expected']:,} | {t['written']:,} | {t['duplicated']} | {t['missing']} | "
        f"{t['flagged']:,} | {res['failed_runs']} | {res['flags_as_expected']} |", ""])


if __name__ == "__main__":
    main()
