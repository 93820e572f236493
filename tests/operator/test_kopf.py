"""kopf-driven tests over HTTP against kmock with a realism shim: the operator's whole behaviour."""

from __future__ import annotations

from typing import Any

import pytest
from opsupport_cluster import CRAWLS, Cluster, running_cluster

pytestmark = pytest.mark.timeout(60)

SPEC: dict[str, Any] = {
    "ranges": ["41.0.0.0/8"],
    "kafka": {"bootstrapServers": "127.0.0.1:9092"},
    "redis": {"url": "redis://127.0.0.1:6379/0"},
    "workers": {"max": 10, "lagThreshold": 2, "scaleDownStabilizationSeconds": 0},
}


@pytest.fixture
async def cluster() -> Any:
    async with running_cluster() as c:
        yield c


async def test_create_scale_and_complete(cluster: Cluster) -> None:
    cluster.backend.lag_of["demo"] = 8
    code, body = await cluster.create("demo", SPEC)
    assert code == 201, body
    uid = body["metadata"]["uid"]
    await cluster.until(lambda: cluster.replicas("demo") == 4, label="4 workers for lag 8")
    for api, plural, name in [("v1", "serviceaccounts", "demo-worker"),
                              ("v1", "configmaps", "demo-worker-config"),
                              ("policy/v1", "poddisruptionbudgets", "demo-worker"),
                              ("apps/v1", "deployments", "demo-worker")]:
        obj = cluster.get(api, plural, name)
        assert obj is not None, name
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
    assert cluster.backend.topics == {"whoiscrawl.demo": 12}
    assert len(cluster.backend.plans) == 1
    await cluster.until(lambda: cluster.condition("demo", "Ready") == ("True", "WorkersReady"))
    status = cluster.crawl("demo")["status"]
    assert status["phase"] == "Running" and status["shards"]["total"] == 16
    assert status["selector"].startswith("app.kubernetes.io/name=whoiscrawl")
    assert cluster.events("Planned")

    # Scale through the spec, then through the scale subresource (kubectl scale / HPA).
    await cluster.patch_spec("demo", {"workers": {"replicas": 2}})
    await cluster.until(lambda: cluster.replicas("demo") == 2, label="manual 2")
    code, scale = await cluster.request("PATCH", f"{CRAWLS}/demo/scale", {"spec": {"replicas": 3}})
    assert code == 200 and scale["spec"]["replicas"] == 3, scale
    assert cluster.crawl("demo")["spec"]["workers"]["replicas"] == 3
    await cluster.until(lambda: cluster.replicas("demo") == 3, label="scaled to 3")
    code, scale = await cluster.request("GET", f"{CRAWLS}/demo/scale")
    await cluster.until(lambda: cluster.crawl("demo")["status"]["replicas"] == 3)
    await cluster.patch_spec("demo", {"workers": {"replicas": None}})
    await cluster.until(lambda: cluster.replicas("demo") == 4, label="back to lag-based")

    # Completion: every shard done, nothing lagging -> 0 workers, Completed, summary kept.
    cluster.backend.finish("demo")
    await cluster.until(lambda: cluster.condition("demo", "Completed") == ("True", "AllShardsDone"))
    await cluster.until(lambda: cluster.replicas("demo") == 0, label="scaled to 0")
    status = cluster.crawl("demo")["status"]
    assert status["phase"] == "Completed" and status["blocks"] == 1234
    assert status["progress"] == 100.0 and status["completionTime"]
    assert cluster.events("AllShardsDone")
