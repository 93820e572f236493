"""Deletion always ends on a real API server: its Secret gone, its Kafka unreachable, its namespace deleted.

The chart's operator runs (namespaced) under the chart's RBAC; worker pods are not run as processes
(none of these crawls can reach a backend). Each crawl sets `cleanup.timeoutSeconds: 5`: the
deletion retries, then gives up with a Warning Event `CleanupAbandoned` and drops the finalizer.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from opsupport_api import until

from whoiscrawl.dev.services import free_port

from .conftest import POOL, WC, K8s
from .test_operator import operator_release

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
BOUND = 90  # seconds: the 5 s timeout plus a retry interval (10 s) and a 10 s Kafka call, with slack


def doomed_crawl(name: str, pool: str, case: str) -> dict[str, Any]:
    """A crawl whose cleanup cannot reach its data: its Redis URL in a Secret (to be deleted), or
    a Kafka bootstrap nothing listens on."""
    spec: dict[str, Any] = {
        "ranges": ["41.0.0.0/16"],
        "kafka": {"bootstrapServers": f"127.0.0.1:{free_port()}"},
        "redis": {"urlSecretRef": {"name": f"{name}-redis"}},
        "scheduling": {"nodeSelector": {POOL: pool}},
        "cleanup": {"topics": "Delete", "redis": "Retain", "timeoutSeconds": 5},
    }
    if case == "secret-gone":
        spec["cleanup"] = {"topics": "Retain", "redis": "Delete", "timeoutSeconds": 5}
    return {"apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl", "metadata": {"name": name},
            "spec": spec}


def events_of(k8s: K8s, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in k8s.api.list("v1", "events", namespace) if e.get("reason") == reason]


@pytest.mark.parametrize("case", ["secret-gone", "kafka-unreachable"])
def test_a_crawl_whose_data_cannot_be_reached_is_deleted_within_the_bound(
        k8s: K8s, crd: dict, shared_pool: str, namespace: str, tmp_path: Path, case: str) -> None:
    crawl = f"d{uuid.uuid4().hex[:6]}"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{crawl}-redis"},
              "data": {"url": base64.b64encode(f"redis://127.0.0.1:{free_port()}/0".encode()).decode()}}
    with operator_release(k8s, tmp_path, [namespace], shared_pool, []):
        k8s.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(secret))
        k8s.kubectl("apply", "-n", namespace, "-f", "-",
                    stdin=yaml.safe_dump(doomed_crawl(crawl, shared_pool, case)))
        until(lambda: "whoiscrawl.io/cleanup" in ((k8s.api.get(*WC, namespace, crawl) or {})
                                                  .get("metadata") or {}).get("finalizers", []),
              60, "the operator's finalizer")
        if case == "secret-gone":
            k8s.api.delete("v1", "secrets", namespace, f"{crawl}-redis")
        k8s.kubectl("delete", "wc", crawl, "-n", namespace, "--wait=false")
        until(lambda: k8s.api.get(*WC, namespace, crawl) is None, BOUND, "the crawl deleted")
        abandoned = until(lambda: events_of(k8s, namespace, "CleanupAbandoned"), 20, "the Event")
    assert abandoned[0]["type"] == "Warning"
    expected = "not found" if case == "secret-gone" else "deleting topics"
    assert expected in abandoned[0]["message"], abandoned[0]["message"]


def test_deleting_a_watched_namespace_finishes(k8s: K8s, crd: dict, shared_pool: str,
                                               tmp_path: Path) -> None:
    """The namespace's Role goes with it; the operator keeps the right to drop its finalizer."""
    watched = k8s.namespace(f"t-{uuid.uuid4().hex[:8]}")
    crawl = f"n{uuid.uuid4().hex[:6]}"
    try:
        with operator_release(k8s, tmp_path, [watched], shared_pool, []):
            k8s.kubectl("apply", "-n", watched, "-f", "-",
                        stdin=yaml.safe_dump(doomed_crawl(crawl, shared_pool, "kafka-unreachable")))
            until(lambda: "whoiscrawl.io/cleanup" in ((k8s.api.get(*WC, watched, crawl) or {})
                                                      .get("metadata") or {}).get("finalizers", []),
                  60, "the operator's finalizer")
            k8s.api.delete("v1", "namespaces", None, watched)
            until(lambda: k8s.api.get("v1", "namespaces", None, watched) is None, BOUND + 60,
                  "the namespace gone")
    finally:
        k8s.api.delete("v1", "namespaces", None, watched)
