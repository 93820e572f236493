"""kopf-driven tests over HTTP against kmock with a realism shim: the operator's whole behaviour."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opsupport_cluster import CRAWLS, Cluster, running_cluster

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:kmock")]

SPEC: dict[str, Any] = {
    "ranges": ["41.0.0.0/8"],
    "kafka": {"bootstrapServers": "127.0.0.1:9092"},
    "redis": {"url": "redis://127.0.0.1:6379/0"},
    "egress": {"mode": "nat", "addresses": 10},  # a rate budget of 13 workers: not the cap here
    "workers": {"max": 10, "lagThreshold": 2, "scaleDownStabilizationSeconds": 0},
}


@pytest.fixture
async def cluster() -> Any:
    async with running_cluster() as c:
        yield c


async def test_create_scale_and_complete(cluster: Cluster) -> None:
    cluster.backend.lag_of["crawls.demo"] = 8
    code, body = await cluster.create("demo", SPEC)
    assert code == 201, body
    uid = body["metadata"]["uid"]
    await cluster.until(lambda: cluster.replicas("demo") == 4, label="4 workers for lag 8")
    for api, plural, name in [("v1", "serviceaccounts", "demo-worker"),
                              ("v1", "configmaps", "demo-worker-config"),
                              ("apps/v1", "deployments", "demo-worker")]:
        obj = cluster.get(api, plural, name)
        assert obj is not None, name
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
    assert cluster.get("policy/v1", "poddisruptionbudgets", "demo-worker") is None  # none by default
    assert cluster.backend.topics == {"whoiscrawl.crawls.demo": 12}
    assert len(cluster.backend.plans) == 1
    await cluster.until(lambda: cluster.condition("demo", "Ready") == ("True", "WorkersReady"))
    status = cluster.crawl("demo")["status"]
    assert status["phase"] == "Running" and status["shards"]["total"] == 16
    assert status["selector"].startswith("app.kubernetes.io/name=whoiscrawl")
    await cluster.until(lambda: cluster.events("Planned"), label="Planned event")

    # Scale through the spec, then through the scale subresource (kubectl scale / HPA).
    await cluster.patch_spec("demo", {"workers": {"mode": "manual", "replicas": 2}})
    await cluster.until(lambda: cluster.replicas("demo") == 2, label="manual 2")
    code, scale = await cluster.request("PATCH", f"{CRAWLS}/demo/scale", {"spec": {"replicas": 3}})
    assert code == 200 and scale["spec"]["replicas"] == 3, scale
    assert cluster.crawl("demo")["spec"]["workers"]["replicas"] == 3
    await cluster.until(lambda: cluster.replicas("demo") == 3, label="scaled to 3")
    await cluster.until(lambda: cluster.crawl("demo")["status"]["replicas"] == 3)
    # What an HPA reads back: the replicas asked for and running, and the selector to count pods by.
    code, scale = await cluster.request("GET", f"{CRAWLS}/demo/scale")
    assert code == 200, scale
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (3, 3), scale
    assert scale["status"]["selector"] == cluster.crawl("demo")["status"]["selector"] != ""
    await cluster.patch_spec("demo", {"workers": {"mode": "auto", "replicas": None}})
    await cluster.until(lambda: cluster.replicas("demo") == 4, label="back to lag-based")

    # Completion: every shard done, nothing lagging -> 0 workers, Completed, summary kept.
    cluster.backend.finish("crawls.demo")
    await cluster.until(lambda: cluster.condition("demo", "Completed") == ("True", "AllShardsDone"))
    await cluster.until(lambda: cluster.replicas("demo") == 0, label="scaled to 0")
    status = cluster.crawl("demo")["status"]
    assert status["phase"] == "Completed" and status["blocks"] == 1234
    assert status["progress"] == 100.0 and status["completionTime"]
    await cluster.until(lambda: cluster.events("AllShardsDone"), label="AllShardsDone event")


def handled(cluster: Cluster, name: str, **spec: Any) -> bool:
    """kopf has finished handling the crawl with these spec values (its last-handled record):
    a change made before that folds into the one being handled, and its handlers never run."""
    annotations = cluster.crawl(name)["metadata"].get("annotations") or {}
    last = json.loads(annotations.get("whoiscrawl.io/last-handled-configuration") or "null")
    return last is not None and all(last["spec"].get(k) == v for k, v in spec.items())


async def test_pause_and_resume(cluster: Cluster) -> None:
    cluster.backend.lag_of["crawls.p"] = 6
    await cluster.create("p", SPEC)
    await cluster.until(lambda: cluster.replicas("p") == 3, label="3 workers")
    await cluster.until(lambda: handled(cluster, "p"), label="creation handled")
    await cluster.patch_spec("p", {"paused": True})
    await cluster.until(lambda: cluster.replicas("p") == 0, label="paused -> 0")
    await cluster.until(lambda: cluster.condition("p", "Ready") == ("True", "Paused"))
    assert cluster.condition("p", "Progressing") == ("False", "Paused")
    assert cluster.crawl("p")["status"]["phase"] == "Paused"
    # The handler's own Event, not the Ready condition's (reason Paused too): until kopf has
    # handled the pause, un-pausing could fold into the same change and post no Resumed.
    await cluster.until(lambda: any("spec.paused is true" in e.get("message", "")
                                    for e in cluster.events("Paused")), label="Paused event")
    await cluster.until(lambda: handled(cluster, "p", paused=True), label="pause handled")
    await cluster.patch_spec("p", {"paused": False})
    await cluster.until(lambda: cluster.replicas("p") == 3, label="resumed")
    await cluster.until(lambda: cluster.events("Resumed"), label="Resumed event")
    assert len(cluster.backend.plans) == 1  # pausing does not re-plan


async def test_live_spec_edits(cluster: Cluster) -> None:
    cluster.backend.lag_of["crawls.e"] = 20
    await cluster.create("e", SPEC)
    await cluster.until(lambda: cluster.replicas("e") == 10, label="max 10")

    def limits() -> str:
        cm = cluster.get("v1", "configmaps", "e-worker-config")
        return "" if cm is None else str(cm["data"]["WHOISCRAWL_RATE_LIMITS"])

    assert limits().startswith("arin=10/s,")
    hash_before = cluster.get("apps/v1", "deployments", "e-worker")["spec"]["template"][
        "metadata"]["annotations"]["whoiscrawl.io/config-hash"]
    await cluster.patch_spec("e", {"registries": {"arin": {"rate": "3/s"}},
                                   "workers": {"max": 6}})
    await cluster.until(lambda: limits().startswith("arin=3/s,"), label="new limits")
    await cluster.until(lambda: cluster.replicas("e") == 6, label="new max")
    hash_after = cluster.get("apps/v1", "deployments", "e-worker")["spec"]["template"][
        "metadata"]["annotations"]["whoiscrawl.io/config-hash"]
    assert hash_after != hash_before  # the pods roll to pick up the new limits

    # A NAT egress of 2 addresses feeds ceil(2 x 25.17/s / 20/s) = 3 workers at most.
    await cluster.patch_spec("e", {"egress": {"mode": "nat", "addresses": 2}})
    await cluster.until(lambda: cluster.replicas("e") == 3, label="rate budget cap")
    # The status is patched after the Deployment is scaled: wait for it, do not race it.
    await cluster.until(
        lambda: "rateBudget" in cluster.crawl("e")["status"]["workers"]["limitedBy"], label="limitedBy"
    )

    # New ranges re-plan on top; totals add up.
    await cluster.patch_spec("e", {"ranges": ["41.0.0.0/8", "196.0.0.0/8"]})
    await cluster.until(lambda: len(cluster.backend.plans) == 2, label="re-plan")
    await cluster.until(lambda: cluster.crawl("e")["status"]["shards"]["total"] == 32)
    assert cluster.crawl("e")["status"]["plan"]["revision"] == 2
    await cluster.until(lambda: cluster.events("Replanned"), label="Replanned event")


async def test_bad_spec_is_rejected_with_condition_and_event(cluster: Cluster) -> None:
    # The schema (422 from the API server) catches what it can ...
    code, body = await cluster.create("x", {**SPEC, "strategy": "random"})
    assert code == 422 and "strategy" in body["message"]
    # ... the operator catches the rest, and says so where people look.
    code, _ = await cluster.create("bad", {**SPEC, "strategy": "sample"})
    assert code == 201
    await cluster.until(lambda: cluster.condition("bad", "Degraded") == ("True", "InvalidSpec"))
    status = cluster.crawl("bad")["status"]
    assert status["phase"] == "Invalid"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "spec.samples" in ready["message"]
    warnings = await cluster.until(lambda: cluster.events("InvalidSpec"), label="event")
    assert warnings[0]["type"] == "Warning" and "spec.samples" in warnings[0]["message"]
    assert cluster.get("apps/v1", "deployments", "bad-worker") is None
    assert cluster.backend.plans == []
    # Fixing the spec lets it start.
    await cluster.patch_spec("bad", {"samples": 4})
    await cluster.until(lambda: cluster.get("apps/v1", "deployments", "bad-worker"),
                        label="deployment after fix")
    await cluster.until(lambda: cluster.condition("bad", "Degraded") == ("False", "AsExpected"))


async def test_delete_cleans_up(cluster: Cluster) -> None:
    cluster.backend.lag_of["crawls.d"] = 2
    await cluster.create("d", {**SPEC, "cleanup": {"topics": "Delete"}})
    await cluster.until(lambda: cluster.replicas("d") == 1, label="1 worker")
    assert "whoiscrawl.io/cleanup" in cluster.crawl("d")["metadata"]["finalizers"]
    code, _ = await cluster.request("DELETE", f"{CRAWLS}/d")
    assert code == 200
    await cluster.until(lambda: cluster.get("whoiscrawl.io/v1alpha1", "whoiscrawls", "d") is None,
                        label="crawl gone")
    assert cluster.backend.cleanups == [("crawls.d", True, True)]
    for api, plural, name in [("apps/v1", "deployments", "d-worker"),
                              ("v1", "configmaps", "d-worker-config"),
                              ("policy/v1", "poddisruptionbudgets", "d-worker")]:
        assert cluster.get(api, plural, name) is None, name  # garbage-collected via ownerRefs
    await cluster.until(lambda: cluster.events("CleanedUp"), label="CleanedUp event")


async def test_spot_overflow_on_demand(cluster: Cluster) -> None:
    cluster.pending_pods = True  # no spot capacity: spot pods stay Unschedulable
    cluster.backend.lag_of["crawls.s"] = 4
    await cluster.create("s", {**SPEC, "scheduling": {"capacityType": "any",
                                                      "spotPendingTimeoutSeconds": 60}})
    await cluster.until(lambda: cluster.replicas("s") == 2, label="2 workers")

    def capacity(name: str) -> str:
        dep = cluster.get("apps/v1", "deployments", name)
        return str(dep["spec"]["template"]["metadata"]["annotations"]["whoiscrawl.io/capacity"])

    assert capacity("s-worker") == "spot"
    # Both pods' statuses written before they are backdated: a status written after would be new.
    await cluster.until(lambda: len(cluster.unschedulable_pods()) >= 2, label="2 unschedulable pods")
    cluster.age_pods(120)  # Unschedulable on spot for two minutes: past the 60 s timeout
    # An on-demand overflow sized to the unschedulable pods; the spot fleet is left as it is.
    await cluster.until(lambda: cluster.get("apps/v1", "deployments", "s-worker-overflow")[
        "spec"]["replicas"] == 2, label="overflow")
    assert capacity("s-worker-overflow") == "on-demand" and capacity("s-worker") == "spot"
    assert cluster.replicas("s") == 2
    await cluster.until(lambda: cluster.condition("s", "Degraded") == ("True",
                                                                      "FallbackToOnDemand"))
    events = await cluster.until(lambda: cluster.events("SpotFallback"), label="event")
    assert events[0]["type"] == "Warning" and "overflow" in events[0]["message"]
    status = cluster.crawl("s")["status"]
    assert status["scheduling"]["overflow"] == 2


async def test_backend_outage_keeps_workers_and_reports(cluster: Cluster) -> None:
    cluster.backend.lag_of["crawls.o"] = 4
    await cluster.create("o", SPEC)
    await cluster.until(lambda: cluster.replicas("o") == 2, label="2 workers")
    cluster.backend.broken = "reading Redis counters: ConnectionError: refused"
    await cluster.until(lambda: cluster.condition("o", "Degraded") == ("True",
                                                                      "BackendUnavailable"))
    assert cluster.replicas("o") == 2  # blind: never scale on missing data
    cluster.backend.broken = None
    await cluster.until(lambda: cluster.condition("o", "Degraded") == ("False", "AsExpected"))


async def test_delete_with_the_backend_down_gives_up_after_the_timeout(cluster: Cluster) -> None:
    """Kafka or Redis gone for good: deletion retries for cleanup.timeoutSeconds, then says so
    in a Warning Event and drops the finalizer."""
    await cluster.create("h", {**SPEC, "cleanup": {"topics": "Delete", "timeoutSeconds": 1}})
    await cluster.until(lambda: cluster.get("apps/v1", "deployments", "h-worker"), label="workers")
    cluster.backend.broken = "deleting topics: KafkaException: broker down"
    assert await cluster.delete("h") == 200
    await cluster.until(lambda: cluster.get("whoiscrawl.io/v1alpha1", "whoiscrawls", "h") is None,
                        timeout=30, label="crawl gone")
    abandoned = cluster.events("CleanupAbandoned")
    assert abandoned and abandoned[0]["type"] == "Warning", cluster.events()
    assert "broker down" in abandoned[0]["message"]
    assert cluster.events("CleanupFailed")  # it did retry first


@pytest.mark.parametrize("how", ["retain", "annotation"])
async def test_delete_that_deletes_no_data_never_touches_the_backend(cluster: Cluster,
                                                                      how: str) -> None:
    """Both policies Retain, or the skip-cleanup annotation: nothing to delete outside Kubernetes,
    so a broken backend (or a missing Secret) cannot hold the deletion."""
    cleanup = {"topics": "Retain", "redis": "Retain" if how == "retain" else "Delete"}
    await cluster.create("r", {**SPEC, "cleanup": cleanup})
    await cluster.until(lambda: cluster.get("apps/v1", "deployments", "r-worker"), label="workers")
    if how == "annotation":
        code, _ = await cluster.request("PATCH", f"{CRAWLS}/r", {"metadata": {"annotations": {
            "whoiscrawl.io/skip-cleanup": "true"}}})
        assert code == 200
    cluster.backend.broken = "every call fails"
    assert await cluster.delete("r") == 200
    await cluster.until(lambda: cluster.get("whoiscrawl.io/v1alpha1", "whoiscrawls", "r") is None,
                        label="crawl gone")
    assert cluster.backend.cleanups == []
    done = await cluster.until(lambda: cluster.events("CleanedUp"), label="CleanedUp event")
    assert "retained topics and Redis keys" in done[0]["message"]


async def test_unsetting_max_unavailable_deletes_the_pdb(cluster: Cluster) -> None:
    """A PDB left behind would still hold spot drains, which the default (no PDB) exists to avoid."""
    cluster.backend.lag_of["crawls.b"] = 2
    await cluster.create("b", {**SPEC, "workers": {**SPEC["workers"], "maxUnavailable": 1}})
    await cluster.until(lambda: cluster.get("policy/v1", "poddisruptionbudgets", "b-worker"), label="PDB")
    await cluster.patch_spec("b", {"workers": {"maxUnavailable": None}})
    await cluster.until(lambda: cluster.get("policy/v1", "poddisruptionbudgets", "b-worker") is None,
                        label="PDB deleted")
    assert cluster.get("apps/v1", "deployments", "b-worker") is not None
