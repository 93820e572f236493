"""kopf-driven tests of the operator under concurrency, deletion, many tenants and API errors."""

from __future__ import annotations

from typing import Any

import pytest
from opsupport_cluster import NS, Cluster, running_cluster
from whoiscrawl.operator.backend import Target

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:kmock")]

SPEC: dict[str, Any] = {
    "ranges": ["41.0.0.0/8"],
    "kafka": {"bootstrapServers": "127.0.0.1:9092"},
    "redis": {"url": "redis://127.0.0.1:6379/0"},
    "egress": {"mode": "nat", "addresses": 10},  # a rate budget of 13 workers: not the cap here
    "workers": {"max": 10, "lagThreshold": 2, "scaleDownStabilizationSeconds": 0},
}
OTHER = "other"


@pytest.fixture
async def cluster() -> Any:
    async with running_cluster() as c:
        yield c


async def test_slow_publish_is_published_exactly_once(cluster: Cluster) -> None:
    # A re-plan that takes longer than the timer interval (0.4 s): the spec edit's handler and
    # the timer both start a pass with what they read before the other published; the one that
    # waits must not publish (or add the totals) again.
    cluster.backend.default_lag = 2
    code, _ = await cluster.create("slow", SPEC)
    assert code == 201
    await cluster.until(lambda: cluster.replicas("slow") == 1, label="1 worker")
    cluster.backend.delays["publish_plan"] = 1.5
    await cluster.patch_spec("slow", {"ranges": ["41.0.0.0/8", "196.0.0.0/8"]})
    await cluster.until(lambda: cluster.crawl("slow")["status"]["plan"]["revision"] == 2,
                        timeout=15, label="re-planned")
    # Several timer ticks after the plan landed: still two plans, and totals of two plans.
    ticks = len(cluster.backend.calls)
    await cluster.until(lambda: len(cluster.backend.calls) > ticks + 12, timeout=15, label="ticks")
    assert len(cluster.backend.plans) == 2, cluster.backend.plans
    status = cluster.crawl("slow")["status"]
    assert status["plan"]["shards"] == 32 and status["plan"]["revision"] == 2
    assert status["shards"]["total"] == 32
    assert len(cluster.events("Replanned")) == 1


async def test_delete_waits_for_workers_then_cleans_up_once(cluster: Cluster) -> None:
    seen: list[tuple[list[str], int | None]] = []

    def at_cleanup(t: Target) -> None:  # what the cluster looked like when data was deleted
        seen.append((cluster.pods(), cluster.replicas("d")))

    cluster.backend.on_cleanup = at_cleanup
    cluster.backend.default_lag = 6
    await cluster.create("d", {**SPEC, "cleanup": {"topics": "Delete"}})
    await cluster.until(lambda: len(cluster.pods()) == 3, label="3 worker pods")
    cluster.backend.delays["counters"] = 0.5  # a tick is in flight when the delete lands
    assert await cluster.delete("d") == 200
    await cluster.until(lambda: cluster.get("whoiscrawl.io/v1alpha1", "whoiscrawls", "d") is None,
                        timeout=20, label="crawl gone")
    assert seen == [([], 0)], seen  # workers scaled to 0 and gone before any data was deleted
    assert cluster.backend.cleanups == [(f"{NS}.d", True, True)]
    assert cluster.backend.topics == {}
    # Nothing touches the crawl's data after its cleanup (no tick recreates topics or totals).
    await cluster.until(lambda: cluster.events("CleanedUp"), label="CleanedUp event")
    assert cluster.backend.calls_after_cleanup(f"{NS}.d") == []


async def test_same_name_in_two_namespaces_is_two_crawls(cluster: Cluster) -> None:
    for ns in (NS, OTHER):
        cluster.backend.lag_of[f"{ns}.same"] = 4
        code, body = await cluster.create("same", {**SPEC, "cleanup": {"topics": "Delete"}}, ns)
        assert code == 201, body
    for ns in (NS, OTHER):
        await cluster.until(lambda ns=ns: cluster.replicas("same", ns) == 2, label=f"{ns} workers")
        cm = cluster.get("v1", "configmaps", "same-worker-config", ns)
        assert cm is not None and cm["data"]["WHOISCRAWL_CRAWL"] == f"{ns}.same"
    assert cluster.backend.topics == {f"whoiscrawl.{NS}.same": 12, f"whoiscrawl.{OTHER}.same": 12}
    assert sorted(c for c, _ in cluster.backend.plans) == [f"{NS}.same", f"{OTHER}.same"]

    assert await cluster.delete("same", OTHER) == 200
    await cluster.until(
        lambda: cluster.get("whoiscrawl.io/v1alpha1", "whoiscrawls", "same", OTHER) is None,
        timeout=20, label="other/same gone")
    assert cluster.backend.cleanups == [(f"{OTHER}.same", True, True)]
    assert cluster.backend.topics == {f"whoiscrawl.{NS}.same": 12}
    # The crawl in the first namespace goes on as before.
    cluster.backend.finish(f"{NS}.same")
    await cluster.until(lambda: cluster.condition("same", "Completed") == ("True", "AllShardsDone"))
    assert cluster.crawl("same")["status"]["shards"]["total"] == 16


async def test_rejected_apply_is_degraded_with_the_api_message(cluster: Cluster) -> None:
    message = 'Deployment.apps "a-worker" is invalid: spec.template.spec.affinity: Invalid value'
    cluster.kube.faults[("POST", "deployments")] = (422, message)
    cluster.backend.default_lag = 2
    await cluster.create("a", SPEC)
    await cluster.until(lambda: cluster.condition("a", "Degraded") == ("True", "ApplyFailed"),
                        label="Degraded/ApplyFailed")
    status = cluster.crawl("a")["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "spec.template.spec.affinity: Invalid value" in degraded["message"]
    assert cluster.condition("a", "Ready")[0] == "False"
    events = await cluster.until(lambda: cluster.events("ApplyFailed"), label="event")
    assert events[0]["type"] == "Warning" and "affinity" in events[0]["message"]
    # The other objects were applied one by one; the Deployment follows once the API accepts it.
    assert cluster.get("v1", "configmaps", "a-worker-config") is not None
    del cluster.kube.faults[("POST", "deployments")]
    await cluster.until(lambda: cluster.replicas("a") == 1, timeout=15, label="deployment")
    await cluster.until(lambda: cluster.condition("a", "Degraded") == ("False", "AsExpected"))


async def test_forbidden_pod_list_is_degraded(cluster: Cluster) -> None:
    message = 'pods is forbidden: User "system:serviceaccount:x:op" cannot list resource "pods"'
    cluster.backend.default_lag = 4
    await cluster.create("f", SPEC)
    await cluster.until(lambda: cluster.crawl("f")["status"]["workers"]["ready"] == 2,
                        label="2 workers ready")
    cluster.kube.faults[("GET", "pods")] = (403, message)
    cluster.backend.default_lag = 20  # what a pass would scale to, had it seen the fleet
    await cluster.until(lambda: cluster.condition("f", "Degraded") == ("True", "Forbidden"),
                        label="Degraded/Forbidden")
    status = cluster.crawl("f")["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "cannot list resource" in degraded["message"]
    # Blind: nothing is scaled, and status keeps the fleet as last seen.
    assert cluster.replicas("f") == 2 and status["workers"]["desired"] == 2
    events = await cluster.until(lambda: cluster.events("Forbidden"), label="event")
    assert events[0]["type"] == "Warning"
    del cluster.kube.faults[("GET", "pods")]
    await cluster.until(lambda: cluster.condition("f", "Degraded") == ("False", "AsExpected"),
                        timeout=15, label="recovered")
