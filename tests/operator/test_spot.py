"""Spot overflow decisions: Unschedulable spot pods past the timeout -> on-demand overflow (any)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from whoiscrawl.operator.spot import PodView, decide, distinct_nodes, pod_view, unschedulable

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def pending(name: str, age: float, scheduled: bool = False, phase: str = "Pending",
            terminating: bool = False, unschedulable_for: float | None = None,
            overflow: bool = False) -> PodView:
    since = None if scheduled else NOW - timedelta(seconds=age if unschedulable_for is None
                                                   else unschedulable_for)
    return PodView(name, phase, NOW - timedelta(seconds=age), scheduled, False,
                   "n1" if scheduled else None, terminating, since, overflow)


def waiting(name: str, age: float) -> PodView:
    """Pending but not (yet) called Unschedulable: scheduling, or waiting for a new node."""
    return PodView(name, "Pending", NOW - timedelta(seconds=age), False, False, None)


A_WHILE_AGO = NOW - timedelta(seconds=100)
LONG_AGO = NOW - timedelta(seconds=400)


@pytest.mark.parametrize(("capacity", "pods", "previous", "since", "overflow", "degraded"), [
    ("any", [pending("a", 400), pending("b", 400)], 0, None, 2, False),  # sized to the stuck pods
    ("any", [pending("a", 100)], 0, None, 0, False),  # not yet past 300 s
    ("any", [pending("a", 400, unschedulable_for=100)], 0, None, 0, False),  # old, newly stuck
    ("any", [waiting("a", 400)], 0, None, 0, False),  # Pending, never Unschedulable: not age
    ("spot", [pending("a", 400)], 0, None, 0, True),  # no fallback allowed: say so
    ("on-demand", [pending("a", 400)], 0, None, 0, False),
    ("any", [pending("a", 400, scheduled=True)], 0, None, 0, False),  # pulling the image
    ("any", [pending("a", 400, phase="Running", scheduled=True)], 0, None, 0, False),
    ("any", [pending("a", 400, terminating=True)], 0, None, 0, False),
    ("any", [pending("a", 400, overflow=True)], 0, None, 0, False),  # overflow pods do not count
    ("any", [], 0, None, 0, False),
    # Spot schedules again: the overflow is held for one timeout (cool-down), then back to spot.
    ("any", [], 2, A_WHILE_AGO, 2, False),
    ("any", [], 2, LONG_AGO, 0, False),
    ("any", [pending("a", 400)], 2, LONG_AGO, 1, False),  # follows the stuck count down
])
def test_decide(capacity: str, pods: list[PodView], previous: int, since: datetime | None,
                overflow: int, degraded: bool) -> None:
    d = decide(capacity, pods, NOW, 300, previous, since)
    assert d.overflow == overflow
    assert (d.pending_message is not None) == degraded
    if degraded:
        assert d.pending_message is not None and "a" in d.pending_message
    if overflow and pods:
        assert d.since == NOW


def test_pod_view_and_unschedulable() -> None:
    raw = {"metadata": {"name": "w-1", "creationTimestamp": "2030-01-01T11:50:00Z"},
           "spec": {}, "status": {"phase": "Pending", "conditions": [
               {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "lastTransitionTime": "2030-01-01T11:54:00Z"}]}}
    view = pod_view(raw)
    assert view.phase == "Pending" and not view.scheduled and view.created is not None
    assert view.unschedulable_since == NOW - timedelta(minutes=6)
    assert unschedulable([view], NOW, 300) == ["w-1"]
    assert unschedulable([view], NOW, 400) == []  # Unschedulable for 6 minutes, not 10
    overflow = pod_view({"metadata": {"name": "o-1", "labels": {
        "app.kubernetes.io/component": "worker-overflow"}}, "spec": {}, "status": {}})
    assert overflow.overflow and overflow.unschedulable_since is None
    running = pod_view({"metadata": {"name": "w-2"}, "spec": {"nodeName": "n2"},
                        "status": {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True"}]}})
    assert running.ready and running.scheduled
    assert distinct_nodes([view, running, pending("x", 1, scheduled=True)]) == 2
