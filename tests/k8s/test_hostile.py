"""One tenant cannot break the others: bad WhoisCrawls beside a good one, on a real API server.

A spec the CRD can refuse is refused by the API server with a message naming the field; one it
cannot (a Redis URL redis-py cannot parse) is reported on its own crawl with a condition and an
Event, while the operator's liveness probe stays healthy and the good crawl runs to Completed.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from opsupport_api import until
from whoiscrawl.operator.builders import crawl_id
from whoiscrawl.operator.spec import parse_spec

from whoiscrawl.bench.common import Simulator

from .conftest import WC, K8s
from .test_operator import condition, crawl_doc, drop_data, operator_release

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow, pytest.mark.services]


def healthz(port: int) -> int:
    """The HTTP status of the operator's liveness endpoint (what the kubelet probes)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_bad_crawl_beside_a_good_one(k8s: K8s, crd: dict, shared_pool: str, services: Any,
                                       quick_sim: Simulator, namespace: str, tmp_path: Path) -> None:
    good = f"g{uuid.uuid4().hex[:6]}"
    doc = crawl_doc(good, services, quick_sim, shared_pool)
    bad = crawl_doc(f"b{uuid.uuid4().hex[:6]}", services, quick_sim, shared_pool)
    bad["spec"]["redis"]["url"] = "redis://127.0.0.1:notaport/0"  # the CRD's pattern checks the scheme only
    bad["spec"]["cleanup"] = {"topics": "Retain", "redis": "Retain"}  # nothing to clean: deleted at once
    shaped = crawl_doc("affinity", services, quick_sim, shared_pool)
    shaped["spec"]["scheduling"]["affinity"] = {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": "heavy"}]}}
    prefix, ident = parse_spec(doc["spec"]).kafka.queue_prefix, crawl_id(namespace, good)
    bad_name = bad["metadata"]["name"]
    try:
        with operator_release(k8s, tmp_path, [namespace], shared_pool, [namespace]) as release:
            refused = k8s.apply(shaped, check=False)
            k8s.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(bad))
            k8s.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc))
            probes: list[int] = []

            def completed() -> bool:
                probes.append(healthz(release.liveness_port))
                return condition(k8s, namespace, good, "Completed") == ("True", "AllShardsDone")

            until(lambda: condition(k8s, namespace, bad_name, "Degraded") is not None, 60, "bad reported")
            until(completed, 240, "the good crawl Completed", every=1.0)
            degraded = next(c for c in (k8s.api.get(*WC, namespace, bad_name) or {})["status"]["conditions"]
                        if c["type"] == "Degraded")
            warnings = [e for e in k8s.api.list("v1", "events", namespace)
                        if e["involvedObject"]["name"] == bad_name and e["type"] == "Warning"]
            operator_exits = [e for e in release.kubelet.exits if e[0].startswith("wc-")]
            for name in (good, bad_name):
                k8s.kubectl("delete", "wc", name, "-n", namespace, "--timeout=120s")
    finally:
        drop_data(services, prefix, ident)
    print(f"\nliveness probes during the crawl: {len(probes)}, non-200: {[p for p in probes if p != 200]}")
    assert refused.returncode != 0 and "nodeAffinity" in refused.stderr, refused.stderr
    assert "preferredDuringSchedulingIgnoredDuringExecution[0].preference: Required" in refused.stderr
    assert (degraded["status"], degraded["reason"]) == ("True", "BackendUnavailable"), degraded
    assert "Port could not be cast to integer" in degraded["message"], degraded
    assert any("Port could not be cast" in e["message"] for e in warnings), warnings
    assert probes and set(probes) == {200}, "the operator's liveness failed while one crawl was bad"
    assert operator_exits == []
