"""Pod Security on the real API server: the plain manifests' namespace enforces the restricted
standard, and every pod whoiscrawl makes (operator, serve, spot and overflow workers) is admitted
there, while a pod that breaks it is refused (so enforcement is on)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import yaml
from whoiscrawl.operator import builders
from whoiscrawl.operator.spec import parse_spec

from .conftest import CHART, ROOT, K8s

pytestmark = [pytest.mark.timeout(120)]
ENFORCE = "pod-security.kubernetes.io/enforce"


def _manifest_namespace() -> dict[str, Any]:
    docs = yaml.safe_load_all((ROOT / "manifests" / "whoiscrawl.yaml").read_text())
    return next(d for d in docs if d and d["kind"] == "Namespace")


def _pod(namespace: str, template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p{uuid.uuid4().hex[:6]}", "namespace": namespace,
                         "labels": (template.get("metadata") or {}).get("labels") or {}},
            "spec": template["spec"]}


def _chart_pods(k8s: K8s, namespace: str) -> dict[str, dict[str, Any]]:
    """The chart's own pod templates (the operator's, and the map server's when it is on)."""
    values = ["--set", "serve.enabled=true", "--set", "serve.crawl=c", "--set", "serve.kafkaBootstrap=k:9092"]
    out = k8s.helm("template", "r", str(CHART), "-n", namespace, *values).stdout
    deployments = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    return {d["metadata"]["name"]: _pod(namespace, d["spec"]["template"]) for d in deployments}


def _worker_pods(namespace: str) -> dict[str, dict[str, Any]]:
    owner = builders.Owner("c", namespace, str(uuid.uuid4()), "0.1.0")
    spec = parse_spec({"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r:6379"}})
    objects = builders.owned_objects(owner, spec, 1, "any", overflow=1)
    return {o["metadata"]["name"]: _pod(namespace, o["spec"]["template"])
            for o in objects if o["kind"] == "Deployment"}


def _accounts(k8s: K8s, namespace: str, pods: dict[str, dict[str, Any]]) -> None:
    """The ServiceAccounts the pods run as (the chart's and the crawl's, which the release and the
    operator make beside them): without them the ServiceAccount admission plugin refuses a pod
    before Pod Security rules on it. The namespace's `default` comes from the controller-manager."""
    for name in {p["spec"].get("serviceAccountName") or "default" for p in pods.values()} - {"default"}:
        k8s.api.create("v1", "serviceaccounts", namespace, {"metadata": {"name": name}})


def _admitted(k8s: K8s, pod: dict[str, Any]) -> tuple[bool, str]:
    done = k8s.kubectl("create", "--dry-run=server", "-o", "name", "-f", "-", stdin=json.dumps(pod),
                       check=False)
    return done.returncode == 0, done.stderr


def test_every_whoiscrawl_pod_is_admitted_where_the_restricted_standard_is_enforced(k8s: K8s) -> None:
    labels = _manifest_namespace()["metadata"].get("labels") or {}
    assert labels.get(ENFORCE) == "restricted", labels
    ns = k8s.namespace(f"pss-{uuid.uuid4().hex[:6]}", labels)
    try:
        pods = {**_chart_pods(k8s, ns), **_worker_pods(ns)}
        _accounts(k8s, ns, pods)
        got = {name: _admitted(k8s, pod) for name, pod in pods.items()}
        root = _pod(ns, {"spec": {"containers": [{"name": "c", "image": "busybox:1"}]}})
        refused = _admitted(k8s, root)
    finally:
        k8s.api.delete("v1", "namespaces", None, ns)
    assert set(pods) == {"r-whoiscrawl", "r-whoiscrawl-serve", "c-worker", "c-worker-overflow"}
    assert {name: why for name, (ok, why) in got.items() if not ok} == {}
    assert not refused[0] and 'violates PodSecurity "restricted' in refused[1], refused
