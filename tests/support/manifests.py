"""Offline validation of Kubernetes manifests: core kinds against the Kubernetes schemas
(``kubernetes-validate``), KubeRay kinds against the CRDs' openAPIV3Schema (jsonschema).

Both are strict: an unknown field is an error, as ``kubectl apply --validate=strict``
makes it (a CRD's structural schema would otherwise prune it silently).
"""

from __future__ import annotations

import copy
import functools
import gzip
import subprocess
from pathlib import Path
from typing import Any

import yaml

KUBERAY = Path(__file__).resolve().parents[1] / "data" / "kuberay"
KUBERNETES_VERSION = "1.32"
#: Kinds whose schema is not available offline here (the Prometheus Operator's CRDs).
UNCHECKED_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


def _strict(node: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that lists its
    properties and does not keep unknown fields."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@functools.cache
def crd_validator(kind: str) -> Any:
    """A compiled validator of :func:`crd_schema` (compiling takes seconds: done once)."""
    import jsonschema

    return jsonschema.Draft7Validator(crd_schema(kind))


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    """The strict openAPIV3Schema of KubeRay's ``kind`` at its stored version (ray.io/v1)."""
    name = {"RayCluster": "ray.io_rayclusters", "RayJob": "ray.io_rayjobs"}[kind]
    with gzip.open(KUBERAY / f"{name}.yaml.gz", "rt") as f:
        crd = yaml.safe_load(f)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    # metadata is the API server's ObjectMeta: checked for being a mapping only
    schema["properties"]["metadata"] = {"type": "object"}
    return _strict(schema)


def validate(document: dict[str, Any]) -> None:
    """Raise (jsonschema or kubernetes_validate's ValidationError) if ``document`` is not
    a valid object of its kind; kinds in :data:`UNCHECKED_KINDS` are skipped."""
    kind = document.get("kind")
    if kind in UNCHECKED_KINDS:
        return
    if kind in ("RayCluster", "RayJob"):
        assert document.get("apiVersion") == "ray.io/v1", document.get("apiVersion")
        crd_validator(kind).validate(document)
        return
    import kubernetes_validate

    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The documents ``kubectl kustomize`` builds from ``directory`` (offline)."""
    built = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True,
                           text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(built) if d]
