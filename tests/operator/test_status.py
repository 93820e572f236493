"""Status computation: conditions and their transition times, counters, progress, ETA, Events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from whoiscrawl.operator import builders, metrics
from whoiscrawl.operator.scaling import Recommendation
from whoiscrawl.operator.spec import parse_spec
from whoiscrawl.operator.status import (
    Observation,
    Progress,
    Rate,
    compute_status,
    eta_seconds,
    is_complete,
    next_rate,
    progress_percent,
    transitions,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)
RUNNING = Progress(shards_total=10, shards_done=4, lookups=100, blocks=80,
                   addresses_total=1000, addresses_done=400)


def obs(**kw: Any) -> Observation:
    base: dict[str, Any] = {"now": T0, "generation": 3, "counters": RUNNING, "lag": 6,
                            "planned": True, "workers_desired": 3, "workers_ready": 3,
                            "workers_current": 3, "recommendation": Recommendation(3, "Lag")}
    base.update(kw)
    return Observation(**base)


def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


@pytest.mark.parametrize(("kw", "phase", "expected"), [
    ({}, "Running", {"Ready": ("True", "WorkersReady"), "Progressing": ("True", "Crawling"),
                     "Completed": ("False", "InProgress"), "Degraded": ("False", "AsExpected")}),
    ({"workers_ready": 1}, "Running", {"Ready": ("False", "WorkersNotReady")}),
    ({"planned": False}, "Pending", {"Ready": ("False", "Planning"),
                                     "Progressing": ("True", "Planning")}),
    ({"paused": True}, "Paused", {"Ready": ("True", "Paused"), "Progressing": ("False", "Paused")}),
    ({"completed": True}, "Completed", {"Ready": ("True", "Completed"),
                                        "Completed": ("True", "AllShardsDone"),
                                        "Progressing": ("False", "Completed")}),
    ({"spec_error": "spec.workers.max: must be >= 0"}, "Invalid",
     {"Ready": ("False", "InvalidSpec"), "Degraded": ("True", "InvalidSpec")}),
    ({"backend_error": "reading Redis counters: refused", "counters": None}, "Running",
     {"Ready": ("False", "BackendUnavailable"), "Degraded": ("True", "BackendUnavailable")}),
    ({"pending_message": "2 pods Pending"}, "Running",
     {"Degraded": ("True", "SpotCapacityUnavailable")}),
    ({"overflow": 2, "unschedulable_time": T0}, "Running",
     {"Degraded": ("True", "FallbackToOnDemand")}),
])
def test_conditions_and_phase(kw: dict[str, Any], phase: str,
                              expected: dict[str, tuple[str, str]]) -> None:
    s = compute_status(None, obs(**kw)).status
    assert s["phase"] == phase
    got = conds(s)
    for ctype, want in expected.items():
        assert got[ctype] == want
    assert all(c["observedGeneration"] == 3 and c["lastTransitionTime"] for c in s["conditions"])


def test_last_transition_time_kept_while_status_holds() -> None:
    first = compute_status(None, obs()).status
    later = compute_status(first, obs(now=T0 + timedelta(minutes=5), workers_ready=3)).status
    assert [c["lastTransitionTime"] for c in later["conditions"]] == \
        [c["lastTransitionTime"] for c in first["conditions"]]
    flipped = compute_status(later, obs(now=T0 + timedelta(minutes=6), workers_ready=0)).status
    ready = next(c for c in flipped["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2030-01-01T00:06:00Z"


def test_events_on_transitions_only() -> None:
    first = compute_status(None, obs(planned=False, counters=None))
    assert ("Normal", "Planning", "creating topics and publishing the plan") in first.events
    running = compute_status(first.status, obs(now=T0 + timedelta(seconds=5)))
    reasons = {r for _, r, _ in running.events}
    assert {"WorkersReady", "Crawling"} <= reasons
    again = compute_status(running.status, obs(now=T0 + timedelta(seconds=10)))
    assert again.events == []
    bad = compute_status(again.status, obs(spec_error="spec.x: unknown field"))
    assert ("Warning", "InvalidSpec", "spec.x: unknown field") in bad.events
    done = compute_status(again.status, obs(completed=True, lag=0))
    assert any(r == "AllShardsDone" and k == "Normal" for k, r, _ in done.events)


@pytest.mark.parametrize(("c", "lag", "planned", "done"), [
    (Progress(shards_total=10, shards_done=10), 0, True, True),
    (Progress(shards_total=10, shards_done=10), 1, True, False),
    (Progress(shards_total=10, shards_done=9), 0, True, False),
    (Progress(shards_total=0, shards_done=0), 0, True, False),
    (Progress(shards_total=10, shards_done=10), 0, False, False),
    (None, 0, True, False),
    (Progress(shards_total=10, shards_done=10), None, True, False),
])
def test_is_complete(c: Progress | None, lag: int | None, planned: bool, done: bool) -> None:
    assert is_complete(c, lag, planned) == done


@pytest.mark.parametrize(("c", "pct"), [
    (Progress(addresses_total=1000, addresses_done=333), 33.3),
    (Progress(shards_total=8, shards_done=2), 25.0),
    (Progress(), 0.0),
    (Progress(addresses_total=10, addresses_done=20), 100.0),
])
def test_progress_percent(c: Progress, pct: float) -> None:
    assert progress_percent(c) == pct


def test_rate_and_eta() -> None:
    sample = {"time": "2030-01-01T00:00:00Z", "addressesDone": 0, "lookups": 0}
    c = Progress(addresses_total=1000, addresses_done=100, lookups=50)
    first = next_rate(sample, c, T0 + timedelta(seconds=10))
    assert first == Rate(10.0, 5.0)
    prev = {"time": "2030-01-01T00:00:10Z", "addressesDone": 100, "lookups": 50,
            "addressesPerSecond": 10.0, "lookupsPerSecond": 5.0}
    smoothed = next_rate(prev, Progress(addresses_total=1000, addresses_done=300, lookups=50),
                         T0 + timedelta(seconds=20))
    assert smoothed.addresses_per_second == pytest.approx(0.3 * 20 + 0.7 * 10)
    assert eta_seconds(c, Rate(10.0, 5.0)) == 90.0
    assert eta_seconds(c, Rate()) is None
    assert eta_seconds(Progress(addresses_total=5, addresses_done=5), Rate()) == 0.0


def test_status_counters_eta_and_deadline_risk() -> None:
    prev = compute_status(None, obs()).status
    later = obs(now=T0 + timedelta(seconds=10),
                counters=Progress(shards_total=10, shards_done=5, lookups=120, blocks=90,
                                  addresses_total=1000, addresses_done=500),
                deadline=T0 + timedelta(seconds=20))
    s = compute_status(prev, later).status
    assert s["shards"] == {"total": 10, "done": 5} and s["blocks"] == 90 and s["progress"] == 50.0
    assert s["rate"]["addressesPerSecond"] == 10.0 and s["etaSeconds"] == 50
    assert s["eta"] == "2030-01-01T00:01:00Z"
    assert conds(s)["Degraded"] == ("True", "DeadlineAtRisk")
    assert s["startTime"] == prev["startTime"]


def test_completion_keeps_summary() -> None:
    prev = compute_status(None, obs()).status
    done = compute_status(prev, obs(completed=True, lag=0, now=T0 + timedelta(hours=1))).status
    assert done["completionTime"] == "2030-01-01T01:00:00Z" and done["progress"] == 100.0
    assert done["startTime"] == "2030-01-01T00:00:00Z" and done["blocks"] == 80
    again = compute_status(done, obs(completed=True, lag=0, now=T0 + timedelta(hours=2))).status
    assert again["completionTime"] == done["completionTime"]


def test_transitions_table() -> None:
    old = [{"type": "Degraded", "status": "True", "reason": "BackendUnavailable"}]
    new = [{"type": "Degraded", "status": "False", "reason": "AsExpected", "message": ""}]
    assert transitions(old, new) == [("Normal", "DegradedFalse", "Degraded is False")]


def test_a_grace_longer_than_the_spot_notice_is_a_condition_and_a_warning() -> None:
    base = {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r"}}
    assert builders.notice_overrun(parse_spec(base)) is None  # the default grace fits
    long = parse_spec({**base, "workers": {"gracePeriodSeconds": 20}})
    overrun = builders.notice_overrun(long)
    assert overrun is not None and "23 s" in overrun and "15 s" in overrun
    on_demand = parse_spec({**base, "workers": {"gracePeriodSeconds": 20},
                            "scheduling": {"capacityType": "on-demand"}})
    assert builders.notice_overrun(on_demand) is None  # no spot notice to fit
    fits = compute_status({}, obs())
    assert conds(fits.status)["SpotNoticeFits"] == ("True", "GraceFitsSpotNotice")
    assert not [e for e in fits.events if e[1].startswith("Grace")]
    late = compute_status(fits.status, obs(notice_overrun=overrun))
    assert conds(late.status)["SpotNoticeFits"] == ("False", "GraceExceedsSpotNotice")
    assert ("Warning", "GraceExceedsSpotNotice", overrun) in late.events


def test_conditions_are_exported_for_alerts_and_forgotten_with_the_crawl() -> None:
    """whoiscrawl_operator_crawl_condition carries each condition (the Degraded alert reads it)."""
    status = compute_status(None, obs(backend_error="redis down")).status
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    metrics.observe("ns1", "c1", status)

    def value(ctype: str) -> float | None:
        return REGISTRY.get_sample_value("whoiscrawl_operator_crawl_condition",
                                         {"namespace": "ns1", "crawl": "c1", "type": ctype})

    assert value("Degraded") == (1.0 if degraded["status"] == "True" else 0.0) == 1.0
    assert value("Completed") == 0.0
    metrics.forget("ns1", "c1")
    assert value("Degraded") is None
