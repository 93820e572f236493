"""Tables of the reconciler's pure `decide`: what one pass does with what it observed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opsupport_fakes import EmptyKube, FakeBackend
from whoiscrawl.operator import control
from whoiscrawl.operator.control import Snapshot, decide, plan_key
from whoiscrawl.operator.spec import parse_spec
from whoiscrawl.operator.spot import PodView

from whoiscrawl.records import Progress

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RAW: dict[str, Any] = {
    "ranges": ["41.0.0.0/8"],
    "kafka": {"bootstrapServers": "k:9092"},
    "redis": {"url": "redis://r/0"},
    "egress": {"mode": "nat", "addresses": 10},  # a rate budget of 13 workers: never the cap here
    "workers": {"max": 10, "lagThreshold": 2, "scaleDownStabilizationSeconds": 0},
}
HALF = Progress(shards_total=16, shards_done=8, addresses_total=1 << 24, addresses_done=1 << 23)
DONE = replace(HALF, shards_done=16, addresses_done=1 << 24)
COMPLETED = [{"type": "Completed", "status": "True", "reason": "AllShardsDone"}]
STUCK = PodView("w-0", "Pending", NOW - timedelta(seconds=600), scheduled=False, ready=False,
                node=None, unschedulable_since=NOW - timedelta(seconds=600))


def snapshot(spec_raw: dict[str, Any], planned: bool = True, current: int = 3,
             **fields: Any) -> Snapshot:
    plan = {"key": plan_key(parse_spec(spec_raw)), "revision": 1} if planned else {}
    deployment = {"spec": {"replicas": current}, "status": {"replicas": current,
                                                           "readyReplicas": current}}
    base: dict[str, Any] = {"now": NOW, "prev": {}, "plan": plan, "counters": HALF, "lag": 8,
                            "partitions": 12, "deployment": deployment}
    return Snapshot(**{**base, **fields})


@pytest.mark.parametrize(("spec", "fields", "want"), [
    # (spec changes, what was observed) -> (desired workers, reason, completed, capacity)
    ({}, {}, (4, "Lag", False, "spot")),
    ({}, {"lag": 30}, (10, "Lag", False, "spot")),
    ({"paused": True}, {}, (0, "Paused", False, "spot")),
    ({"workers": {"mode": "manual", "replicas": 2}}, {}, (2, "Manual", False, "spot")),
    ({"workers": {"mode": "manual", "min": 1}}, {}, (1, "Manual", False, "spot")),
    ({}, {"counters": DONE, "lag": 0}, (0, "Completed", True, "spot")),
    # Blind (data plane or API refused a read): the fleet stays as it is.
    ({}, {"counters": None, "lag": None, "backend_error": "down"},
     (3, "BackendUnavailable", False, "spot")),
    ({}, {"read_error": ("Forbidden", "pods is forbidden")},
     (3, "BackendUnavailable", False, "spot")),
    # Completed before, backend down now: still completed, no workers come back.
    ({}, {"counters": None, "lag": None, "backend_error": "down", "prev": {"conditions": COMPLETED}},
     (0, "Completed", True, "spot")),
    # Spot pods stuck past the timeout: `any` adds an on-demand overflow, `spot` only reports;
    # the spot fleet stays on spot either way.
    ({"scheduling": {"capacityType": "any"}}, {"pods": (STUCK,)}, (4, "Lag", False, "spot")),
    ({"scheduling": {"capacityType": "spot"}}, {"pods": (STUCK,)}, (4, "Lag", False, "spot")),
])
def test_decide(spec: dict[str, Any], fields: dict[str, Any],
                want: tuple[int, str, bool, str]) -> None:
    raw = {**RAW, **spec, "workers": {**RAW["workers"], **spec.get("workers", {})}}
    got = decide(parse_spec(raw), snapshot(raw, **fields))
    assert (got.desired, got.recommendation.reason, got.completed, got.capacity) == want


def test_decide_reports_fallback_and_planning() -> None:
    raw = {**RAW, "scheduling": {"capacityType": "any"}}
    fell = decide(parse_spec(raw), snapshot(raw, pods=(STUCK,)))
    assert fell.spot.overflow == 1 and fell.spot.since == NOW
    assert [e[1] for e in fell.events] == ["SpotFallback"]
    back = decide(parse_spec(raw), snapshot(raw, prev={"scheduling": {
        "overflow": 1, "unschedulableTime": (NOW - timedelta(seconds=600)).isoformat()}}))
    assert back.spot.overflow == 0 and [e[1] for e in back.events] == ["SpotRestored"]
    paused = {**raw, "paused": True}
    assert decide(parse_spec(paused), snapshot(paused, pods=(STUCK,))).spot.overflow == 0
    spot_only = {**RAW, "scheduling": {"capacityType": "spot"}}
    stuck = decide(parse_spec(spot_only), snapshot(spot_only, pods=(STUCK,)))
    assert stuck.spot.pending_message and "Unschedulable on spot" in stuck.spot.pending_message
    assert not decide(parse_spec(RAW), snapshot(RAW, planned=False)).planned


def test_decide_holds_a_scale_down_within_the_stabilization_window() -> None:
    raw = {**RAW, "workers": {**RAW["workers"], "scaleDownStabilizationSeconds": 300}}
    history = {"history": [{"time": (NOW - timedelta(seconds=60)).isoformat(), "workers": 6}]}
    got = decide(parse_spec(raw), snapshot(raw, current=6, lag=2, prev={"scaling": history}))
    assert got.desired == 6 and got.stable.held_back


def test_a_crawls_data_is_deleted_once_however_often_kopf_runs_the_delete_handler() -> None:
    """kopf ran the handler twice in one CI run (a conflict on the finalizer patch, we think)."""
    backend = FakeBackend()
    crawl = control.Crawl(name="gone", namespace="ns", uid="u-cleaned-once", generation=1,
                          spec={"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r"},
                                "cleanup": {"topics": "Delete"}}, status={})
    deps = control.Deps(kube=EmptyKube(), backend=backend)  # type: ignore[arg-type]
    first = control.cleanup(deps, crawl)
    again = control.cleanup(deps, crawl)
    assert first is not None and again == first
    assert backend.cleanups == [("ns.gone", True, True)]


def test_decide_names_why_the_workers_cannot_run() -> None:
    """A quota refusing the worker pods, as the Deployment controller reports it."""
    refused = {"metadata": {"name": "w", "namespace": "crawls"}, "spec": {"replicas": 3},
               "status": {"conditions": [{"type": "ReplicaFailure", "status": "True",
                                          "reason": "FailedCreate",
                                          "message": "exceeded quota: q, limited: pods=0"}]}}
    got = decide(parse_spec(RAW), snapshot(RAW, deployment=refused))
    assert got.workload is not None and got.workload[0] == "PodsNotCreated"
    assert "exceeded quota: q" in got.workload[1]
    assert decide(parse_spec(RAW), snapshot(RAW)).workload is None
