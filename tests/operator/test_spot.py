"""Spot fallback decisions: Pending past the timeout on spot -> on-demand when capacityType any."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from whoiscrawl.operator.spot import PodView, decide, distinct_nodes, pod_view, stuck_pending

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def pending(name: str, age: float, scheduled: bool = False, phase: str = "Pending",
            terminating: bool = False) -> PodView:
    return PodView(name, phase, NOW - timedelta(seconds=age), scheduled, False,
                   "n1" if scheduled else None, terminating)


@pytest.mark.parametrize(("capacity", "fallen_back", "pods", "fall_back", "degraded"), [
    ("any", False, [pending("a", 400)], True, False),
    ("any", False, [pending("a", 100)], False, False),  # not yet past 300 s
    ("any", True, [pending("a", 400)], False, False),  # already fell back
    ("spot", False, [pending("a", 400)], False, True),  # no fallback allowed: say so
    ("on-demand", False, [pending("a", 400)], False, False),
    ("any", False, [pending("a", 400, scheduled=True)], False, False),  # pulling the image
    ("any", False, [pending("a", 400, phase="Running", scheduled=True)], False, False),
    ("any", False, [pending("a", 400, terminating=True)], False, False),
    ("any", False, [], False, False),
])
def test_decide(capacity: str, fallen_back: bool, pods: list[PodView], fall_back: bool,
                degraded: bool) -> None:
    d = decide(capacity, fallen_back, pods, NOW, 300)
    assert d.fall_back == fall_back
    assert (d.pending_message is not None) == degraded
    if degraded:
        assert d.pending_message is not None and "a" in d.pending_message


def test_pod_view_and_stuck() -> None:
    raw = {"metadata": {"name": "w-1", "creationTimestamp": "2030-01-01T11:50:00Z"},
           "spec": {}, "status": {"phase": "Pending", "conditions": [
               {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}}
    view = pod_view(raw)
    assert view.phase == "Pending" and not view.scheduled and view.created is not None
    assert stuck_pending([view], NOW, 300) == ["w-1"]
    running = pod_view({"metadata": {"name": "w-2"}, "spec": {"nodeName": "n2"},
                        "status": {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True"}]}})
    assert running.ready and running.scheduled
    assert distinct_nodes([view, running, pending("x", 1, scheduled=True)]) == 2
