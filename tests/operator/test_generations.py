"""Tables of a scheduled crawl's generations: the next time, due or not, what a pass starts (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from opsupport_fakes import EmptyKube, FakeBackend
from whoiscrawl.operator import builders, control, generations
from whoiscrawl.operator.backend import BackendError
from whoiscrawl.operator.generations import Schedule, State, step
from whoiscrawl.operator.spec import SpecError, parse_spec

from whoiscrawl.records import Progress


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


EVERY_MINUTE = Schedule("* * * * *")
AMSTERDAM_3AM = Schedule("0 3 * * *", "Europe/Amsterdam")
SEEN = at("2026-01-01T10:00:30")


@pytest.mark.parametrize(("schedule", "state", "now", "start", "slot", "reason", "next_time"), [
    # the first generation is the crawl itself: slots count from the first pass that saw the schedule
    (EVERY_MINUTE, State(1, None, SEEN, completed=True), at("2026-01-01T10:00:50"),
     None, None, "NotDue", at("2026-01-01T10:01:00")),
    # three slots passed (the operator was down): one generation, for the newest
    (EVERY_MINUTE, State(1, None, SEEN, completed=True), at("2026-01-01T10:03:10"),
     2, at("2026-01-01T10:03:00"), "Scheduled", at("2026-01-01T10:04:00")),
    # exactly on a slot: that slot
    (EVERY_MINUTE, State(1, None, SEEN, completed=True), at("2026-01-01T10:03:00"),
     2, at("2026-01-01T10:03:00"), "Scheduled", at("2026-01-01T10:04:00")),
    # Forbid: the generation still running is not doubled
    (EVERY_MINUTE, State(3, at("2026-01-01T10:03:00"), SEEN, completed=False),
     at("2026-01-01T10:07:10"), None, None, "GenerationRunning", at("2026-01-01T10:08:00")),
    # ... and once it completes, the slots it ran through start one generation
    (EVERY_MINUTE, State(3, at("2026-01-01T10:03:00"), SEEN, completed=True),
     at("2026-01-01T10:07:10"), 4, at("2026-01-01T10:07:00"), "Scheduled", at("2026-01-01T10:08:00")),
    # the slot already answered is not answered again
    (EVERY_MINUTE, State(4, at("2026-01-01T10:07:00"), SEEN, completed=True),
     at("2026-01-01T10:07:40"), None, None, "NotDue", at("2026-01-01T10:08:00")),
    # read in the time zone: 03:00 in Amsterdam is 02:00 UTC in winter
    (AMSTERDAM_3AM, State(2, at("2026-01-01T02:00:00"), SEEN, completed=True),
     at("2026-01-01T20:00:00"), None, None, "NotDue", at("2026-01-02T02:00:00")),
    # four days with the operator down: one generation, for the newest slot
    (AMSTERDAM_3AM, State(2, at("2026-01-01T02:00:00"), SEEN, completed=True),
     at("2026-01-05T10:00:00"), 3, at("2026-01-05T02:00:00"), "Scheduled", at("2026-01-06T02:00:00")),
    # ... and 01:00 UTC in summer
    (AMSTERDAM_3AM, State(2, at("2026-07-01T01:00:00"), SEEN, completed=True),
     at("2026-07-02T01:30:00"), 3, at("2026-07-02T01:00:00"), "Scheduled", at("2026-07-03T01:00:00")),
    (Schedule("@hourly"), State(1, None, SEEN, completed=True), at("2026-01-01T11:00:01"),
     2, at("2026-01-01T11:00:00"), "Scheduled", at("2026-01-01T12:00:00")),
    # suspend: nothing new starts, and no next time is promised
    (Schedule("* * * * *", suspend=True), State(1, None, SEEN, completed=True),
     at("2026-01-01T10:03:10"), None, None, "Suspended", None),
    # the first pass to see the schedule (a new crawl, or one finished long ago): the next slot
    (EVERY_MINUTE, State(1, None, None, completed=True), at("2026-01-01T10:03:10"),
     None, None, "NotDue", at("2026-01-01T10:04:00")),
])
def test_step(schedule: Schedule, state: State, now: datetime, start: int | None,
              slot: datetime | None, reason: str, next_time: datetime | None) -> None:
    got = step(schedule, state, now)
    assert (got.start, got.scheduled_for, got.reason, got.next_time) == (start, slot, reason, next_time)


NIGHTLY_1H = Schedule("0 3 * * *", starting_deadline_seconds=3600)
MINUTE_60S = Schedule("* * * * *", starting_deadline_seconds=60)


@pytest.mark.parametrize(("schedule", "state", "now", "start", "reason", "missed"), [
    # within the deadline: run late, once
    (MINUTE_60S, State(1, None, SEEN, completed=True), at("2026-01-01T10:03:10"), 2, "Scheduled", None),
    (NIGHTLY_1H, State(2, at("2026-01-01T03:00:00"), SEEN, completed=True), at("2026-01-05T03:30:00"),
     3, "Scheduled", None),
    # the operator down for days: the newest slot is 7 hours late, past the hour: skipped
    (NIGHTLY_1H, State(2, at("2026-01-01T03:00:00"), SEEN, completed=True), at("2026-01-05T10:00:00"),
     None, "MissedSchedule", at("2026-01-05T03:00:00")),
    # ... and reported once: the skipped slot is answered
    (NIGHTLY_1H, State(2, at("2026-01-01T03:00:00"), SEEN, True, at("2026-01-05T03:00:00")),
     at("2026-01-05T10:00:10"), None, "NotDue", None),
    # ... the next slot runs as usual
    (NIGHTLY_1H, State(2, at("2026-01-01T03:00:00"), SEEN, True, at("2026-01-05T03:00:00")),
     at("2026-01-06T03:00:20"), 3, "Scheduled", None),
    # Forbid: a slot passed within the deadline while a generation runs waits for it ...
    (MINUTE_60S, State(3, at("2026-01-01T10:03:00"), SEEN, completed=False), at("2026-01-01T10:07:30"),
     None, "GenerationRunning", None),
    # ... and starts when it completes within the deadline
    (MINUTE_60S, State(3, at("2026-01-01T10:03:00"), SEEN, completed=True), at("2026-01-01T10:08:59"),
     4, "Scheduled", None),
    # past the deadline, running or not, the slot is skipped (CronJob checks tooLate first)
    (Schedule("0 * * * *", starting_deadline_seconds=60), State(3, at("2026-01-01T09:00:00"), SEEN),
     at("2026-01-01T10:05:00"), None, "MissedSchedule", at("2026-01-01T10:00:00")),
    # a deadline of 0: only a pass on the slot itself starts it
    (Schedule("* * * * *", starting_deadline_seconds=0), State(1, None, SEEN, completed=True),
     at("2026-01-01T10:03:00"), 2, "Scheduled", None),
    (Schedule("* * * * *", starting_deadline_seconds=0), State(1, None, SEEN, completed=True),
     at("2026-01-01T10:03:01"), None, "MissedSchedule", at("2026-01-01T10:03:00")),
    # suspended: nothing is started, nothing reported missed
    (Schedule("* * * * *", suspend=True, starting_deadline_seconds=0), State(1, None, SEEN, completed=True),
     at("2026-01-01T10:03:10"), None, "Suspended", None),
])
def test_a_slot_missed_by_more_than_the_starting_deadline_is_skipped(
        schedule: Schedule, state: State, now: datetime, start: int | None, reason: str,
        missed: datetime | None) -> None:
    got = step(schedule, state, now)
    assert (got.start, got.reason, got.missed) == (start, reason, missed)


BASE: dict[str, Any] = {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r/0"}}


@pytest.mark.parametrize(("fields", "problem"), [
    ({"schedule": "0 3 * * *"}, None),
    ({"schedule": "@daily", "timeZone": "America/New_York", "suspend": True}, None),
    ({"schedule": "*/15 1-5 * * MON-FRI", "history": {"keep": 7}}, None),
    ({"schedule": "61 3 * * *"}, "spec.schedule: '61 3 * * *' is not a valid cron expression"),
    ({"schedule": "0 0 3 * * *"}, "spec.schedule: must be five cron fields"),
    ({"schedule": "@reboot"}, "spec.schedule: must be five cron fields or one of @yearly"),
    ({"schedule": 3}, "spec.schedule: must be a string"),
    ({"schedule": "0 3 * * *", "timeZone": "Mars/Olympus"}, "spec.timeZone: 'Mars/Olympus' is not an IANA"),
    ({"schedule": "0 3 * * *", "timeZone": "../../etc/passwd"}, "spec.timeZone: '../../etc/passwd'"),
    ({"history": {"keep": 0}}, "spec.history.keep: must be >= 1"),
    ({"schedule": "0 3 * * *", "startingDeadlineSeconds": 600}, None),
    ({"schedule": "0 3 * * *", "startingDeadlineSeconds": -1}, "spec.startingDeadlineSeconds: must be >= 0"),
    ({"schedule": "0 3 * * *", "startingDeadlineSeconds": "1h"},
     "spec.startingDeadlineSeconds: must be an integer"),
])
def test_the_spec_names_a_bad_schedule(fields: dict[str, Any], problem: str | None) -> None:
    if problem is None:
        assert parse_spec(BASE | fields).schedule_of() is not None
        return
    with pytest.raises(SpecError) as caught:
        parse_spec(BASE | fields)
    assert problem in str(caught.value)


@pytest.mark.parametrize(("kept", "keep", "running", "pruned"), [
    ([1], 3, None, []), ([1, 2, 3], 3, None, []), ([1, 2, 3, 4], 3, None, [1]),
    ([2, 5, 6, 7, 8], 2, None, [2, 5, 6]), ([4, 5], 1, None, [4]),
    # the generation running is not counted: the newest complete map stays until it completes
    ([4, 5], 1, 5, []), ([1, 2, 3, 4], 3, 4, []), ([1, 2, 3, 4], 2, 4, [1]), ([1], 1, 1, []),
])
def test_completed_generations_beyond_keep_are_pruned_oldest_first(
        kept: list[int], keep: int, running: int | None, pruned: list[int]) -> None:
    assert generations.to_prune(kept, keep, running) == pruned


COMPLETED_STATUS: dict[str, Any] = {
    "phase": "Completed", "startTime": "2026-01-01T10:00:30Z", "completionTime": "2026-01-01T10:02:00Z",
    "blocks": 5923, "lookups": 851, "addresses": {"total": 100, "done": 100}, "progress": 100.0,
    "plan": {"key": "k", "revision": 1}, "shards": {"total": 16, "done": 16}, "lag": 0,
    "conditions": [{"type": "Completed", "status": "True", "reason": "AllShardsDone"},
                   {"type": "Ready", "status": "True", "reason": "Completed"}]}
SCHEDULED = BASE | {"schedule": "* * * * *", "history": {"keep": 2}}


def crawl_with(status: dict[str, Any]) -> control.Crawl:
    return control.Crawl(name="demo", namespace="ns", uid="u-1", generation=1, spec=SCHEDULED,
                         status=status)


def test_a_due_pass_starts_the_next_generation_from_a_clean_slate() -> None:
    status = COMPLETED_STATUS | {"schedule": {"since": "2026-01-01T10:00:30Z"}}
    crawl, s = control.scheduled(crawl_with(status), parse_spec(SCHEDULED), at("2026-01-01T10:03:10"))
    assert s is not None and s.start == 2
    assert control.generation_of(crawl) == 2
    assert not {"plan", "blocks", "lookups", "startTime", "completionTime", "shards"} & set(crawl.status)
    assert [c["type"] for c in crawl.status["conditions"]] == ["Ready"]
    assert crawl.status["schedule"] == {
        "since": "2026-01-01T10:00:30Z", "generation": 2, "lastScheduleTime": "2026-01-01T10:03:00Z",
        "generations": [1, 2],
        "lastGeneration": {"generation": 1, "result": "Completed", "startTime": "2026-01-01T10:00:30Z",
                           "completionTime": "2026-01-01T10:02:00Z", "blocks": 5923, "lookups": 851,
                           "addresses": 100}}
    # the next generation's data is its own: topics, consumer group, Redis keys, workers' crawl
    assert control.target(None, crawl, parse_spec(SCHEDULED)).crawl == "ns.demo.g2"  # type: ignore[arg-type]
    config = next(o for o in builders.owned_objects(
        builders.Owner("demo", "ns", "u-1", generation=2), parse_spec(SCHEDULED), 1, "spot", None)
        if o["kind"] == "ConfigMap")
    assert config["data"]["WHOISCRAWL_CRAWL"] == "ns.demo.g2"


def test_slots_count_from_the_first_pass_that_saw_the_schedule() -> None:
    """A schedule added to a crawl finished long ago waits for its next slot, as a new CronJob."""
    spec = parse_spec(SCHEDULED)
    backend = FakeBackend()
    deps = control.Deps(kube=None, backend=backend, now=lambda: at("2026-03-01T10:03:10"))  # type: ignore[arg-type]
    finished = COMPLETED_STATUS | {"plan": {"key": control.plan_key(spec), "revision": 1}}
    crawl, s = control.scheduled(crawl_with(finished), spec, deps.now())
    snap = control.Snapshot(now=deps.now(), prev=crawl.status, step=s,
                            **control._data_plane(deps, crawl, spec, deps.now()))
    result = control.report(crawl, spec, snap, control.decide(spec, snap), control.Applied())
    sched = result.status["schedule"]
    assert (sched["generation"], sched["since"], sched["state"], sched["nextScheduleTime"]) == (
        1, "2026-03-01T10:03:10Z", "NotDue", "2026-03-01T10:04:00Z")
    assert backend.plans == []  # generation 1's plan is in status: nothing new published


def test_a_crawl_without_a_schedule_runs_once() -> None:
    raw = crawl_with(COMPLETED_STATUS)
    crawl, s = control.scheduled(raw, parse_spec(BASE), at("2026-01-02T10:00:00"))
    assert (crawl, s) == (raw, None)
    assert control.target(None, crawl, parse_spec(BASE)).crawl == "ns.demo"  # type: ignore[arg-type]


def test_the_pass_that_starts_a_generation_plans_it_prunes_and_reports_it() -> None:
    """Generation 4 starts with keep 2: generation 1's data goes (2 and 3 are the two complete
    maps kept while 4 runs), in the act phase (after the pass's reads, as its other writes);
    status and Events say so."""
    spec = parse_spec(SCHEDULED)
    status = COMPLETED_STATUS | {"schedule": {"generation": 3, "generations": [1, 2, 3],
                                              "lastScheduleTime": "2026-01-01T10:03:00Z"}}
    backend = FakeBackend()
    deps = control.Deps(kube=None, backend=backend, now=lambda: at("2026-01-01T10:05:10"))  # type: ignore[arg-type]
    crawl, s = control.scheduled(crawl_with(status), spec, deps.now())
    snap = control.Snapshot(now=deps.now(), prev=crawl.status, step=s,
                            **control._data_plane(deps, crawl, spec, deps.now()))
    assert backend.cleanups == []  # the read phase deletes nothing
    assert backend.plans == [("ns.demo.g4", spec.ranges)]
    decision = control.decide(spec, snap)
    assert (decision.generations, decision.prune) == ((1, 2, 3, 4), (1,))
    pruned = control.prune(deps, crawl, spec, decision.prune)
    assert backend.cleanups == [("ns.demo", True, True)]  # generation 1: topics and keys
    result = control.report(crawl, spec, snap, decision, control.Applied(pruned=pruned))
    sched = result.status["schedule"]
    assert (sched["generation"], sched["generations"], sched["nextScheduleTime"], sched["state"]) == (
        4, [2, 3, 4], "2026-01-01T10:06:00Z", "Scheduled")
    assert sched["lastGeneration"]["generation"] == 3
    assert result.status["completionTime"] is None and result.status["phase"] == "Running"
    reasons = [e[1] for e in result.events]
    assert "GenerationStarted" in reasons and "GenerationsPruned" in reasons


def test_a_generation_the_data_plane_would_not_delete_stays_listed_for_the_next_pass() -> None:
    spec = parse_spec(SCHEDULED)
    status = {"schedule": {"generation": 4, "generations": [1, 2, 3, 4]}}

    def refuse(t: Any) -> None:
        raise BackendError("redis: connection refused")

    backend = FakeBackend(on_cleanup=refuse)
    deps = control.Deps(kube=None, backend=backend, now=lambda: at("2026-01-01T10:05:10"))  # type: ignore[arg-type]
    crawl, s = control.scheduled(crawl_with(status), spec, deps.now())
    snap = control.Snapshot(now=deps.now(), prev=crawl.status, step=s,
                            **control._data_plane(deps, crawl, spec, deps.now()))
    decision = control.decide(spec, snap)
    assert decision.prune == (1,)
    pruned = control.prune(deps, crawl, spec, decision.prune)
    result = control.report(crawl, spec, snap, decision, control.Applied(pruned=pruned))
    assert pruned == () and result.status["schedule"]["generations"] == [1, 2, 3, 4]
    assert "GenerationsPruned" not in [e[1] for e in result.events]


def test_a_running_generation_reports_its_next_time_and_starts_nothing() -> None:
    spec = parse_spec(SCHEDULED)
    status = {"startTime": "2026-01-01T10:00:30Z", "plan": {"key": control.plan_key(spec)},
              "schedule": {"generation": 2, "generations": [1, 2],
                           "lastScheduleTime": "2026-01-01T10:03:00Z"}}
    backend = FakeBackend(counters_of={"ns.demo.g2": Progress(shards_total=16, shards_done=3)}, default_lag=5)
    deps = control.Deps(kube=None, backend=backend, now=lambda: at("2026-01-01T10:05:10"))  # type: ignore[arg-type]
    crawl, s = control.scheduled(crawl_with(status), spec, deps.now())
    snap = control.Snapshot(now=deps.now(), prev=crawl.status, step=s,
                            **control._data_plane(deps, crawl, spec, deps.now()))
    result = control.report(crawl, spec, snap, control.decide(spec, snap), control.Applied())
    assert backend.plans == [] and backend.cleanups == []
    assert result.status["schedule"]["state"] == "GenerationRunning"
    assert result.status["schedule"]["nextScheduleTime"] == "2026-01-01T10:06:00Z"
    assert result.status["shards"] == {"total": 16, "done": 3}  # generation 2's own counters


def test_deleting_a_scheduled_crawl_deletes_every_generation_kept() -> None:
    crawl = control.Crawl(name="demo", namespace="ns", uid="u-gens", generation=1,
                          spec=SCHEDULED | {"cleanup": {"topics": "Delete"}},
                          status={"schedule": {"generation": 3, "generations": [2, 3]}})
    backend = FakeBackend()
    control.cleanup(control.Deps(kube=EmptyKube(), backend=backend), crawl)  # type: ignore[arg-type]
    assert backend.cleanups == [("ns.demo.g2", True, True), ("ns.demo.g3", True, True)]


def test_a_skipped_slot_is_reported_once_and_recorded() -> None:
    """The pass that finds the slot too late posts one Warning MissSchedule and records the slot
    (status.schedule.lastMissedTime); the next pass, reading that status, posts nothing."""
    spec = parse_spec(SCHEDULED | {"schedule": "0 3 * * *", "startingDeadlineSeconds": 3600})
    status = COMPLETED_STATUS | {"plan": {"key": control.plan_key(spec), "revision": 1},
                                 "schedule": {"generation": 2, "generations": [1, 2],
                                              "lastScheduleTime": "2026-01-01T03:00:00Z"}}
    backend = FakeBackend(default_lag=0)
    reasons, now = [], at("2026-01-05T10:00:00")
    for _ in range(2):
        deps = control.Deps(kube=None, backend=backend, now=lambda: now)  # type: ignore[arg-type]
        crawl, s = control.scheduled(crawl_with(status), spec, now)
        snap = control.Snapshot(now=now, prev=crawl.status, step=s,
                                **control._data_plane(deps, crawl, spec, now))
        result = control.report(crawl, spec, snap, control.decide(spec, snap), control.Applied())
        reasons.append([e[1] for e in result.events if e[1] in ("MissSchedule", "GenerationStarted")])
        status = result.status
    assert reasons == [["MissSchedule"], []]
    sched = status["schedule"]
    assert (sched["generation"], sched["lastMissedTime"], sched["state"], sched["nextScheduleTime"]) == (
        2, "2026-01-05T03:00:00Z", "NotDue", "2026-01-06T03:00:00Z")
    assert backend.plans == []  # nothing started


@pytest.mark.parametrize(("finished", "pruned", "listed"), [(False, (), [1, 2]), (True, (1,), [2])])
def test_with_keep_1_the_last_complete_map_stays_until_the_next_completes(
        finished: bool, pruned: tuple[int, ...], listed: list[int]) -> None:
    """keep 1: generation 1 (the only complete map) is kept while generation 2 runs, and deleted
    by the pass that sees generation 2 complete (before, by the pass that started generation 2)."""
    spec = parse_spec(SCHEDULED | {"history": {"keep": 1}})
    status = {"plan": {"key": control.plan_key(spec), "revision": 1},
              "schedule": {"generation": 2, "generations": [1, 2],
                           "lastScheduleTime": "2026-01-01T10:03:00Z"}}
    backend = FakeBackend(counters_of={"ns.demo.g2": Progress(shards_total=16, shards_done=3)}, default_lag=5)
    if finished:
        backend.finish("ns.demo.g2")
    deps = control.Deps(kube=None, backend=backend, now=lambda: at("2026-01-01T10:03:30"))  # type: ignore[arg-type]
    crawl, s = control.scheduled(crawl_with(status), spec, deps.now())
    snap = control.Snapshot(now=deps.now(), prev=crawl.status, step=s,
                            **control._data_plane(deps, crawl, spec, deps.now()))
    decision = control.decide(spec, snap)
    assert (decision.completed, decision.prune) == (finished, pruned)
    done = control.prune(deps, crawl, spec, decision.prune)
    result = control.report(crawl, spec, snap, decision, control.Applied(pruned=done))
    assert result.status["schedule"]["generations"] == listed
    assert backend.cleanups == [("ns.demo", True, True)] * len(pruned)


def _pass(backend: FakeBackend, status: dict[str, Any], now: datetime) -> control.Result:
    """One pass of the scheduled crawl (observe's data plane, decide, report), the backend's figures."""
    spec = parse_spec(SCHEDULED)
    deps = control.Deps(kube=None, backend=backend, now=lambda: now)  # type: ignore[arg-type]
    crawl, s = control.scheduled(crawl_with(status), spec, now)
    snap = control.Snapshot(now=now, prev=crawl.status, step=s, **control._data_plane(deps, crawl, spec, now))
    return control.report(crawl, spec, snap, control.decide(spec, snap), control.Applied())


def test_a_generation_says_it_refreshes_the_previous_one_and_status_shows_what_its_load_carried() -> None:
    status = COMPLETED_STATUS | {"schedule": {"generation": 3, "generations": [1, 2, 3],
                                              "lastScheduleTime": "2026-01-01T10:03:00Z"}}
    backend = FakeBackend()
    started = _pass(backend, status, at("2026-01-01T10:05:10"))
    [message] = [e[2] for e in started.events if e[1] == "GenerationStarted"]
    assert "a refresh of generation 3 from the registries' newest files" in message
    assert started.status.get("refresh") is None  # its load not done yet (the last one's removed)

    backend.refresh_of["ns.demo.g4"] = {"previous": "ns.demo.g3", "by_registry": {
        "arin": {"carried": 900, "delegations_changed": 2},
        "lacnic": {"carried": 40, "unchanged": 300, "changed": 3, "added": 1, "removed": 2}},
        "asked": {"arin": {"asked": 1, "agreed": 1}}}
    running = _pass(backend, started.status, at("2026-01-01T10:05:20"))
    refresh = running.status["refresh"]
    assert refresh["previous"] == "ns.demo.g3"
    totals = [refresh[k] for k in ("carried", "changed", "added", "removed", "asked")]
    assert totals == [940, 3, 1, 2, 1]
    assert refresh["byRegistry"]["arin"] == {"carried": 900, "delegationsChanged": 2, "asked": 1}
    assert not [e for e in running.events if e[1] == "RefreshRefused"]


def test_a_refused_refresh_is_one_warning_and_the_next_generation_starts_without_it() -> None:
    status = COMPLETED_STATUS | {"schedule": {"generation": 3, "generations": [1, 2, 3],
                                              "lastScheduleTime": "2026-01-01T10:03:00Z"}}
    backend = FakeBackend()
    backend.refresh_of["ns.demo.g4"] = {"previous": "ns.demo.g3",
                                        "refused": "ns.demo.g3 mapped another scope"}
    first = _pass(backend, status, at("2026-01-01T10:05:10"))
    assert first.status["refresh"] == {"previous": "ns.demo.g3", "refused": "ns.demo.g3 mapped another scope"}
    [warning] = [e for e in first.events if e[1] == "RefreshRefused"]
    assert warning[0] == "Warning" and "this generation crawls anew" in warning[2]
    again = _pass(backend, first.status, at("2026-01-01T10:05:20"))
    assert not [e for e in again.events if e[1] == "RefreshRefused"]  # said once
    # generation 5 starts: generation 4's refresh is not its own
    done = again.status | COMPLETED_STATUS
    assert "refresh" not in generations.started_status(done, generations.Step(
        start=5, scheduled_for=at("2026-01-01T10:06:00"), next_time=None, reason="Scheduled"))
