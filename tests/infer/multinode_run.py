"""Run inference on a three-node Ray cluster in one machine (``ray.cluster_utils.Cluster``).

Started by ``test_multinode.py`` in its own process, because a process holds
one Ray connection and the test session already has its local Ray.  Prints a
JSON line with the nodes that processed shards.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["SURVEYPROC_PROGRESS"] = "0"


def main(job_json: str) -> None:
    from ray.cluster_utils import Cluster

    from surveyproc.infer import run_inference
    from surveyproc.jobs import JobSpec
    from surveyproc.store import open_store

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(2):  # one CPU each: the two actors must land on different nodes
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        spec = json.loads(job_json)
        spec["ray"] = {"address": cluster.address}
        job = JobSpec.model_validate(spec)
        result = run_inference(job, open_store(job.store.url))
        print(json.dumps({"complete": result.complete,
                          "nodes": sorted({r.node for r in result.reports})}))
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
