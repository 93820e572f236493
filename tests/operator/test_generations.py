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
    done = control.cleanup(control.Deps(kube=EmptyKube(), backend=backend), crawl)  # type: ignore[arg-type]
    assert backend.cleanups == [("ns.demo.g2", True, True), ("ns.demo.g3", True, True)]
    # ... and the change feed of its generations, named by the crawl (generation 1's id)
    assert ("delete_changes", "ns.demo") in backend.calls and "ns.demo.changes" in str(done)


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
    # said before its load read anything: a refresh if it can be one, which status.refresh tells
    assert "refreshes generation 3 from the registries' newest files if its load can" in message
    assert "else crawls anew; status.refresh says which" in message
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
    # the start's Event did not promise the refresh its Warning then refuses
    [started] = [e[2] for e in first.events if e[1] == "GenerationStarted"]
    assert "a refresh of generation 3" not in started and "else crawls anew" in started, started
    [warning] = [e for e in first.events if e[1] == "RefreshRefused"]
    assert warning[0] == "Warning" and "this generation crawls anew" in warning[2]
    again = _pass(backend, first.status, at("2026-01-01T10:05:20"))
    assert not [e for e in again.events if e[1] == "RefreshRefused"]  # said once
    # generation 5 starts: generation 4's refresh is not its own
    done = again.status | COMPLETED_STATUS
    assert "refresh" not in generations.started_status(done, generations.Step(
        start=5, scheduled_for=at("2026-01-01T10:06:00"), next_time=None, reason="Scheduled"))


DONE, RUNNING = True, False


@pytest.mark.parametrize(("generation", "completed", "kept", "published", "due"), [
    # the first generation is the crawl itself: once complete, its map whole (the history's first)
    (1, RUNNING, [1], None, None),
    (1, DONE, [1], None, 1),
    # generation 2 running: generation 1 is the newest complete
    (2, RUNNING, [1, 2], None, 1),
    # generation 2 completed: 1's map first, then 2's changes against it
    (2, DONE, [1, 2], None, 1),
    (2, DONE, [1, 2], 1, 2),
    # ... once: status holds it as published
    (2, DONE, [1, 2], 2, None),
    # generation 3 started before 2's feed went out (it failed): 2's first, while 3 runs
    (3, RUNNING, [1, 2, 3], 1, 2),
    (3, RUNNING, [1, 2, 3], None, 1),
    # then in order, one a pass: 3's once 3 completes
    (3, DONE, [1, 2, 3], 1, 2),
    (3, DONE, [1, 2, 3], 2, 3),
    # the generations between were deleted (before this rule, or by hand): the newest completed
    (5, DONE, [4, 5], 2, 5),
    # the one before it is gone too: it is published whole, the history going on from it
    (5, DONE, [5], 2, 5),
    (5, DONE, [5], None, 5),
])
def test_feed_due(generation: int, completed: bool, kept: list[int], published: int | None,
                  due: int | None) -> None:
    status = {"schedule": {"generation": generation,
                           **({"changes": {"generation": published}} if published else {})}}
    assert generations.feed_due(status, completed, kept) == due


@pytest.mark.parametrize(("due", "kept", "last", "whole"), [
    (1, [1], None, True),  # generation 1: the first map
    (2, [1, 2], {"generation": 1, "base": 1}, False),  # its changes against 1
    (3, [2, 3], {"generation": 2, "base": 1}, False),
    (5, [4, 5], {"generation": 2, "base": 1}, True),  # 3 and 4 never published: 5 whole
    (5, [5], {"generation": 4, "base": 1}, True),  # 4 gone: 5 whole
    (3, [2, 3], {"generation": 2}, True),  # a topic from before it held a first map: 3 whole
])
def test_feed_base(due: int, kept: list[int], last: dict[str, Any] | None, whole: bool) -> None:
    status = {"schedule": {"generation": due, **({"changes": last} if last else {})}}
    assert generations.feed_base(status, due, kept) is whole


@pytest.mark.parametrize(("prune", "due", "published", "deleted"), [
    ([1], None, False, [1]),
    ([1], 2, True, [1]),  # 2's feed is out: 1 goes
    ([1], 2, False, []),  # not yet: 1 (what 2 is compared with) stays
    ([1, 2], 2, False, []),  # 3 started meanwhile: 2 and 1 both stay for 2's feed
    ([1, 2], 2, True, [1]),  # 2's out: 3's feed needs 2
    ([1, 2, 3], 3, False, [1]),
])
def test_held_for_feed(prune: list[int], due: int | None, published: bool, deleted: list[int]) -> None:
    assert generations.held_for_feed(prune, due, published) == deleted


KEEP_1 = parse_spec(SCHEDULED | {"history": {"keep": 1}})
GENERATION_2_RUNNING: dict[str, Any] = {
    "plan": {"key": control.plan_key(KEEP_1), "revision": 1},
    "schedule": {"generation": 2, "generations": [1, 2], "lastScheduleTime": "2026-01-01T10:03:00Z",
                 "changes": {"generation": 1, "base": 1, "topic": "whoiscrawl.ns.demo.changes"}}}
ALL_DONE = Progress(shards_total=16, shards_done=16)


def _settled(backend: FakeBackend, status: dict[str, Any], now: datetime) -> control.Result:
    """One pass of a keep-1 scheduled crawl with its generation writes (feed, prune) done as act does."""
    spec = KEEP_1
    deps = control.Deps(kube=None, backend=backend, now=lambda: now)  # type: ignore[arg-type]
    crawl, s = control.scheduled(crawl_with(status), spec, now)
    snap = control.Snapshot(now=now, prev=crawl.status, step=s, **control._data_plane(deps, crawl, spec, now))
    decision = control.decide(spec, snap)
    return control.report(crawl, spec, snap, decision, control.settle_generations(deps, crawl, spec, snap,
                                                                                   decision))


def test_a_completed_generations_change_feed_is_published_once_then_its_predecessor_pruned() -> None:
    status = GENERATION_2_RUNNING
    backend = FakeBackend(counters_of={"ns.demo.g2": ALL_DONE}, default_lag=0)
    first = _settled(backend, status, at("2026-01-01T10:03:30"))
    assert backend.feeds == {("ns.demo", 2): backend.feed_counts}  # on <prefix>ns.demo.changes
    sched = first.status["schedule"]
    assert sched["changes"] == {"generation": 2, "topic": "whoiscrawl.ns.demo.changes",
                                "base": 2,  # generation 1 pruned: the topic's history begins at 2 now
                                "counts": backend.feed_counts, "published": 4}
    assert sched["generations"] == [2] and backend.cleanups == [("ns.demo", True, True)]
    assert backend.histories == {"ns.demo": 2}
    [published] = [e for e in first.events if e[1] == "ChangesPublished"]
    assert published[0] == "Normal" and "1 added, 0 removed, 2 changed, 0 transferred" in published[2]
    [kept] = [e for e in first.events if e[1] == "HistoryPruned"]
    assert kept[0] == "Normal" and "begins at generation 2" in kept[2]
    again = _settled(backend, first.status, at("2026-01-01T10:03:40"))
    assert [m for m, _ in backend.calls].count("publish_changes") == 1  # status holds it: not again
    assert [m for m, _ in backend.calls].count("keep_history") == 1
    assert not {"ChangesPublished", "HistoryPruned"} & {e[1] for e in again.events}
    # the next generation carries the counts in lastGeneration once it starts
    started = _settled(backend, again.status, at("2026-01-01T10:04:10"))
    assert started.status["schedule"]["lastGeneration"]["changes"] == backend.feed_counts


def test_a_change_feed_that_fails_is_a_warning_keeps_what_it_needs_and_is_tried_again() -> None:
    status = GENERATION_2_RUNNING

    class FeedDown(FakeBackend):
        down = True

        def publish_changes(self, *args: Any) -> dict[str, Any]:
            if self.down:
                raise BackendError("publishing generation 2's change feed: KafkaException: broker down")
            return super().publish_changes(*args)

    backend = FeedDown(counters_of={"ns.demo.g2": ALL_DONE}, default_lag=0)
    failed = _settled(backend, status, at("2026-01-01T10:03:30"))
    [warning] = [e for e in failed.events if e[1] == "ChangeFeedFailed"]
    assert warning[0] == "Warning" and "broker down" in warning[2] and "tried again next pass" in warning[2]
    assert failed.status["schedule"]["changes"]["generation"] == 1  # 2 not yet
    assert failed.status["schedule"]["generations"] == [1, 2] and backend.cleanups == []  # 1 kept for it
    # generation 3 starts meanwhile: 2's feed is still due, and 1 and 2 are kept for it
    running = _settled(backend, failed.status | {"conditions": COMPLETED_STATUS["conditions"]},
                       at("2026-01-01T10:04:10"))
    assert running.status["schedule"]["generation"] == 3
    assert running.status["schedule"]["generations"] == [1, 2, 3] and backend.cleanups == []
    backend.down = False
    recovered = _settled(backend, running.status, at("2026-01-01T10:04:20"))
    assert recovered.status["schedule"]["changes"]["generation"] == 2
    assert backend.feeds == {("ns.demo", 2): backend.feed_counts}
    assert recovered.status["schedule"]["generations"] == [2, 3]
    assert backend.cleanups == [("ns.demo", True, True)]


@pytest.mark.parametrize(("generation", "current", "when"), [
    (3, 3, "2026-01-03T00:00:00Z"),  # the current generation's: its slot
    (2, 3, "2026-01-02T00:00:10Z"),  # the one before, published while 3 runs: its start
    (1, 1, "2026-01-01T09:00:05Z"),  # generation 1 (the crawl itself, no slot): its start
])
def test_feed_day(generation: int, current: int, when: str) -> None:
    status = {"startTime": "2026-01-01T09:00:05Z",
              "schedule": {"generation": current, "lastScheduleTime": "2026-01-03T00:00:00Z",
                           "lastGeneration": {"generation": 2, "startTime": "2026-01-02T00:00:10Z"}}}
    assert generations.feed_day(status, generation, at("2026-01-04T10:00:00")) == when


def test_a_change_feed_still_being_published_holds_what_it_needs_and_says_nothing_yet() -> None:
    """The backend publishes off the pass: a pass that finds it running prunes nothing it needs."""

    class Slow(FakeBackend):
        def publish_changes(self, *args: Any) -> dict[str, Any] | None:
            self._check("publish_changes", args[1])
            return None

    backend = Slow(counters_of={"ns.demo.g2": ALL_DONE}, default_lag=0)
    running = _settled(backend, GENERATION_2_RUNNING, at("2026-01-01T10:03:30"))
    assert backend.cleanups == [] and running.status["schedule"]["generations"] == [1, 2]
    assert running.status["schedule"]["changes"]["generation"] == 1  # 2 not yet
    assert not {"ChangesPublished", "ChangeFeedFailed"} & {e[1] for e in running.events}


@pytest.mark.parametrize(("changes", "kept", "due"), [
    ({"generation": 3, "base": 1}, [2, 3], 2),  # 1 pruned: the history begins at 2
    ({"generation": 3, "base": 2}, [2, 3], None),  # it does already
    ({"generation": 3, "base": 1}, [1, 2, 3], None),  # nothing pruned
    ({"generation": 2, "base": 1}, [3, 4], None),  # 3's feed not on the topic yet
    ({"generation": 3}, [2, 3], None),  # no first map on the topic (a feed begun before it was one)
    ({}, [2, 3], None),  # no feed yet
    ({"generation": 7, "base": 1}, [5, 6, 7], 5),  # several pruned at once
])
def test_history_start_due(changes: dict[str, Any], kept: list[int], due: int | None) -> None:
    assert generations.history_start_due(changes, kept) == due


def test_a_history_prune_that_fails_is_a_warning_and_is_tried_again() -> None:
    """The topic keeps the older generations until the prune of its history succeeds."""

    class HistoryDown(FakeBackend):
        down = True

        def keep_history(self, *args: Any) -> dict[str, Any]:
            if self.down:
                raise BackendError("pruning the change feed's history: KafkaException: broker down")
            return super().keep_history(*args)

    backend = HistoryDown(counters_of={"ns.demo.g2": ALL_DONE}, default_lag=0)
    failed = _settled(backend, GENERATION_2_RUNNING, at("2026-01-01T10:03:30"))
    [warning] = [e for e in failed.events if e[1] == "HistoryPruneFailed"]
    assert warning[0] == "Warning" and "broker down" in warning[2] and "tried again next pass" in warning[2]
    assert failed.status["schedule"]["changes"]["base"] == 1
    assert failed.status["schedule"]["generations"] == [2]
    backend.down = False
    recovered = _settled(backend, failed.status, at("2026-01-01T10:03:40"))
    assert recovered.status["schedule"]["changes"]["base"] == 2 and backend.histories == {"ns.demo": 2}
    assert "HistoryPruned" in [e[1] for e in recovered.events]
