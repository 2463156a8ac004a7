"""Run inference on a multi-node Ray cluster in one machine (``ray.cluster_utils.Cluster``).

Started by ``test_engine.py`` in its own process, because a process holds one
Ray connection and the test session already has its local Ray.  Three worker
nodes of one CPU each, two one-CPU actors: with ``--remove-node`` the node of
one of this run's actors (found through Ray's state API of this cluster) is
removed once that actor has committed three shards (an actor holds two shards at a
time and gets a third only after the driver has one of their reports, so at least one
report from that node has reached the driver; after two commits both reports could still
be on their way, and the node would then never show in the run's reports), as a lost
Kubernetes pod would be, and the spare node
takes the replacement actor.  A lost pod takes its processes with it;
``Cluster.remove_node`` kills the node's raylet, whose workers notice only
later and meanwhile may finish their tasks (their replies go straight to the
driver), so the actor's own process (its PID from the state API) is killed
with the node.  Prints a JSON line with the
nodes that processed shards, the removed node and the shard retries.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["SURVEYPROC_PROGRESS"] = "0"


def _remove_an_actor_node(cluster, catalog: Path, runner: threading.Thread) -> str:
    """Once one of this run's actors has committed three shards, remove its node and kill
    its process, with its next shard in flight."""
    from ray.util.state import list_actors

    found = None
    while runner.is_alive() and found is None:  # an actor of this run, on this cluster
        actors = list_actors(filters=[("class_name", "=", "InferenceActor"),
                                      ("state", "=", "ALIVE")], address=cluster.gcs_address)
        found = next(((actor, node) for actor in actors for node in cluster.worker_nodes
                      if node.node_id == actor.node_id), None)
        time.sleep(0.05)
    while runner.is_alive() and found is not None:
        actor, victim = found
        records = [json.loads(path.read_text())
                   for path in catalog.glob("_committed/shard-*.json")]
        if sum(record["writer"].endswith(f":{actor.pid}") for record in records) >= 3:
            os.kill(actor.pid, signal.SIGKILL)
            cluster.remove_node(victim, allow_graceful=False)
            return victim.node_id[:12]
        time.sleep(0.01)
    return ""


def main(job_json: str, remove_node: bool) -> None:
    from ray.cluster_utils import Cluster

    from surveyproc.infer import run_inference
    from surveyproc.jobs import JobSpec
    from surveyproc.store import open_store

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(3 if remove_node else 2):  # one CPU each: one actor per node
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        spec = json.loads(job_json)
        spec["ray"] = {"address": cluster.address}
        job = JobSpec.model_validate(spec)
        outcome: dict = {}
        runner = threading.Thread(
            target=lambda: outcome.update(result=run_inference(job, open_store(job.store.url))))
        runner.start()
        removed = (_remove_an_actor_node(cluster, Path(job.outputs.catalog), runner)
                   if remove_node else "")
        runner.join()
        result = outcome["result"]
        print(json.dumps({"complete": result.complete, "removed": removed,
                          "retries": result.retries,
                          "nodes": sorted({r.node for r in result.reports})}))
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], "--remove-node" in sys.argv[2:])
