"""deploy/: every kustomization builds offline and every object validates strictly
against the Kubernetes and KubeRay schemas; secrets are referenced, never written;
pods run non-root without privilege escalation, with requests equal to limits."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import jsonschema
import pytest

from surveyproc.jobs import load_job
from tests.support.manifests import UNCHECKED_KINDS, kustomize, validate
from tests.support.servers import require_program

pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUSTOMIZATIONS = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    require_program("kubectl (for kubectl kustomize)", shutil.which("kubectl") is not None)
    return {str(d.relative_to(DEPLOY)): kustomize(d) for d in KUSTOMIZATIONS}


def _pod_specs(document: dict) -> list[dict]:
    spec = document.get("spec", {})
    if document["kind"] == "RayJob":
        cluster = spec["rayClusterSpec"]
        pods = [spec["submitterPodTemplate"]["spec"]]
    elif document["kind"] == "RayCluster":
        cluster, pods = spec, []
    else:
        return []
    pods.append(cluster["headGroupSpec"]["template"]["spec"])
    pods += [group["template"]["spec"] for group in cluster.get("workerGroupSpecs", [])]
    return pods


def test_every_kustomization_builds_and_validates(built):
    assert set(built) == {".", "rayjob", "rayjob-train", "rayjob-infer", "rayjob-aggregate"}
    kinds = set()
    for documents in built.values():
        for document in documents:
            validate(document)
            kinds.add(document["kind"])
    assert {"RayCluster", "RayJob", "ConfigMap", "PodMonitor"} <= kinds
    # the stage overlays change the entrypoint only (and aggregate drops the GPU workers)
    entry = {name: next(d for d in docs if d["kind"] == "RayJob")["spec"]["entrypoint"]
             for name, docs in built.items() if name != "."}
    assert entry == {"rayjob": "surveyproc run /etc/surveyproc/job.yaml",
                     **{f"rayjob-{s}": f"surveyproc {s} /etc/surveyproc/job.yaml"
                        for s in ("train", "infer", "aggregate")}}


def test_the_validators_reject_what_the_api_server_would(built):
    """A misspelt field in a worker group and in a container, and a wrong type, fail."""
    cluster = next(d for d in built["."] if d["kind"] == "RayCluster")
    for path, value in ((("spec", "workerGroupSpecs", 0, "minReplica"), 0),
                        (("spec", "headGroupSpec", "template", "spec", "containers", 0,
                          "imagePullPolice"), "Always"),
                        (("spec", "workerGroupSpecs", 0, "maxReplicas"), "eight")):
        bad = copy.deepcopy(cluster)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            validate(bad)
    config_map = next(d for d in built["rayjob"] if d["kind"] == "ConfigMap")
    import kubernetes_validate

    with pytest.raises(kubernetes_validate.ValidationError):
        validate({**config_map, "datas": {}})


def test_workloads_and_their_guarantees(built):
    cluster = next(d for d in built["."] if d["kind"] == "RayCluster")
    gpu = cluster["spec"]["workerGroupSpecs"][0]
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert gpu["minReplicas"] == 0 < gpu["maxReplicas"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    job = next(d for d in built["rayjob"] if d["kind"] == "RayJob")["spec"]
    assert job["shutdownAfterJobFinishes"] is True
    assert job["activeDeadlineSeconds"] > 0 and job["backoffLimit"] >= 1
    head = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert {"name": "job", "configMap": {"name": "surveyproc-job"}} in head["volumes"]


def test_secrets_are_referenced_never_written_and_pods_are_locked_down(built):
    for documents in built.values():
        assert not [d for d in documents if d["kind"] == "Secret"]
        for document in documents:
            for pod in _pod_specs(document):
                assert pod["securityContext"]["runAsNonRoot"] is True
                for container in pod["containers"]:
                    security = container["securityContext"]
                    assert security["allowPrivilegeEscalation"] is False
                    assert security["readOnlyRootFilesystem"] is True
                    assert security["capabilities"]["drop"] == ["ALL"]
                    resources = container["resources"]
                    assert resources["requests"] == resources["limits"], container["name"]
                    for env in container.get("env", []):
                        if any(w in env["name"] for w in SECRET_WORDS):
                            assert "value" not in env, env["name"]
                            assert "secretKeyRef" in env["valueFrom"], env["name"]


def test_the_cluster_job_file_is_a_valid_job():
    text = (DEPLOY / "rayjob" / "survey-job.yaml").read_text()
    job = load_job(str(DEPLOY / "rayjob" / "survey-job.yaml"), [])
    assert job.ray.address == "auto" and job.metrics.export == "ray"
    assert job.store.url.startswith("s3://")
    assert not any(w.lower() in text.lower() for w in ("aws_secret", "password"))


def test_unchecked_kinds_are_only_the_prometheus_operators(built):
    unchecked = {d["kind"] for docs in built.values() for d in docs} & UNCHECKED_KINDS
    assert unchecked <= {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
    monitor = next(d for d in built["."] if d["kind"] == "PodMonitor")
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    cluster = next(d for d in built["."] if d["kind"] == "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert ports <= {p["name"] for p in head["ports"]}  # the monitor scrapes real ports
    selector = monitor["spec"]["selector"]["matchLabels"]
    labels = cluster["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
