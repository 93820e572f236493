"""A scheduled crawl's generations: when the next one is due, and what starts it (pure).

CronJob's semantics, as platform engineers know them: `spec.schedule` in cron syntax (five fields,
or @hourly, @daily ...) read in `spec.timeZone` (UTC when unset); `spec.suspend` starts nothing
new; a generation still running when its next time comes is not doubled (concurrencyPolicy
Forbid); slots missed while the operator was down, or while a generation ran, run once, not once
each; with `spec.startingDeadlineSeconds`, a slot missed by more than that is skipped (a
Warning Event `MissSchedule`, as a CronJob posts) rather than run late. The first generation is
the crawl itself; slots count from the first pass that saw the
schedule (`status.schedule.since`: the crawl's creation, or when a schedule was added to it), as a
CronJob's count from its creation, so adding a schedule to a crawl finished long ago waits for
the next slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from whoiscrawl.operator.status import iso, parse_time

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# The CRD's check of an expression's shape (five fields or a macro); spec.py checks its values.
SCHEDULE_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+( +\S+){4})$"
TIME_ZONE_PATTERN = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"
# Status fields a new generation starts without: its plan, counters, rate and times are its own.
PER_GENERATION = ("plan", "shards", "addresses", "lookups", "blocks", "rateLimited", "errors",
                  "progress", "rate", "sample", "eta", "etaSeconds", "lag", "startTime",
                  "completionTime", "scaling", "refresh")


def schedule_problem(text: str) -> str | None:
    """Why a cron expression is refused (CronJob's five fields, or a macro), None if fine."""
    expr = text.strip()
    if expr.startswith("@"):
        if expr not in MACROS:
            return f"must be five cron fields or one of {', '.join(MACROS)}; got {text!r}"
        return None
    if len(expr.split()) != 5:
        return (f"must be five cron fields (minute hour day-of-month month day-of-week, e.g. "
                f"'0 3 * * *'), got {len(expr.split())} in {text!r}")
    if not croniter.is_valid(expr):
        return f"{text!r} is not a valid cron expression (e.g. '0 3 * * *': 03:00 every day)"
    return None


def time_zone_problem(text: str) -> str | None:
    """Why a time zone is refused (an IANA name such as Europe/Amsterdam), None if fine."""
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        return f"{text!r} is not an IANA time zone name (e.g. Europe/Amsterdam, America/New_York, UTC)"
    return None


@dataclass(frozen=True)
class Schedule:
    """A crawl's schedule, checked (spec.py) before it gets here."""

    expression: str
    time_zone: str | None = None
    suspend: bool = False
    starting_deadline_seconds: int | None = None  # a slot later than this is skipped (None: never)

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone or "UTC")

    def next_after(self, t: datetime) -> datetime:
        """The first slot strictly after `t`."""
        nxt: datetime = croniter(self.expression, t.astimezone(self._zone())).get_next(datetime)
        return nxt

    def latest_at(self, t: datetime) -> datetime:
        """The last slot at or before `t`."""
        local = t.astimezone(self._zone())
        if croniter.match(self.expression, local) and local.second == 0 and not local.microsecond:
            return local
        prev: datetime = croniter(self.expression, local).get_prev(datetime)
        return prev


@dataclass(frozen=True)
class Step:
    """What a pass does about the schedule: start generation `start` (else None), and the status."""

    start: int | None
    scheduled_for: datetime | None  # the slot the new generation answers (lastScheduleTime)
    next_time: datetime | None  # nextScheduleTime (None while suspended)
    reason: str  # why nothing starts, or Scheduled
    missed: datetime | None = None  # a slot skipped: past startingDeadlineSeconds (lastMissedTime)


@dataclass(frozen=True)
class State:
    """The schedule's state as status keeps it (`status.schedule`)."""

    generation: int = 1
    last_schedule: datetime | None = None
    since: datetime | None = None  # the first pass that saw the schedule (None: this one)
    completed: bool = False  # the current generation is Completed
    last_missed: datetime | None = None  # the last slot skipped as too late

    @classmethod
    def of(cls, status: Mapping[str, Any]) -> State:
        sched = status.get("schedule") or {}
        done = any(c.get("type") == "Completed" and c.get("status") == "True"
                   for c in status.get("conditions") or [])
        return cls(generation=max(1, int(sched.get("generation") or 1)),
                   last_schedule=parse_time(sched.get("lastScheduleTime")),
                   since=parse_time(sched.get("since")), completed=done,
                   last_missed=parse_time(sched.get("lastMissedTime")))


def step(schedule: Schedule, state: State, now: datetime) -> Step:
    """Whether this pass starts the next generation, and when the next slot is (pure).

    The slots counted are those after the last one answered or skipped (else after the schedule
    was first seen); however many were missed, the newest starts one generation. With a starting
    deadline, the newest slot passed by more than it is skipped (CronJob's tooLate, checked before
    concurrency as CronJob does): recorded as missed, so it is reported once and never run.
    """
    answered = [t for t in (state.last_schedule, state.last_missed) if t is not None]
    anchor = max(answered) if answered else (state.since or now)
    if schedule.suspend:
        return Step(None, None, None, "Suspended")
    slot, next_time = schedule.latest_at(now), schedule.next_after(now)
    if slot <= anchor:
        return Step(None, None, next_time, "NotDue")
    deadline = schedule.starting_deadline_seconds
    if deadline is not None and (now - slot).total_seconds() > deadline:
        return Step(None, None, next_time, "MissedSchedule", missed=slot)
    if not state.completed:
        # Forbid: the running generation is not doubled; the slot runs once it completes.
        return Step(None, None, next_time, "GenerationRunning")
    return Step(state.generation + 1, slot, next_time, "Scheduled")


def kept(status: Mapping[str, Any], generation: int) -> list[int]:
    """The generations whose data (topics, Redis keys) exist: those status lists, and `generation`."""
    listed = (status.get("schedule") or {}).get("generations") or []
    return sorted({int(g) for g in listed if isinstance(g, int) and g >= 1} | {generation})


def to_prune(generations: list[int], keep: int, running: int | None = None) -> list[int]:
    """The completed generations beyond the newest `keep`, oldest first. The generation `running`
    (not yet Completed) is not counted, as a CronJob's history limit counts finished Jobs only: the
    newest complete map is never deleted while the one to replace it is still being made."""
    done = sorted(g for g in generations if g != running)
    return done[:-keep] if keep < len(done) else []


def feed_due(status: Mapping[str, Any], completed: bool, kept_generations: list[int]) -> int | None:
    """The generation whose change feed this pass publishes (docs/operator.md, A generation's
    change feed), or None. The feeds go out in order, one a pass, from generation 1 (its map
    whole: the history's first map): the one after the last published
    (`schedule.changes.generation`), once it is completed (the current generation when Completed,
    else the one before it). Its data and its predecessor's are held from pruning until it is out
    (`held_for_feed`), so a publish that fails is tried again next pass and a generation started
    meanwhile loses none. If it is gone anyway (pruned before this rule, or deleted by hand) the
    newest completed one is published (`feed_base`: whole, when its predecessor is gone too)."""
    current = State.of(status).generation
    newest = current if completed else current - 1
    last = ((status.get("schedule") or {}).get("changes") or {}).get("generation")
    due = 1 if not isinstance(last, int) else last + 1
    if newest < 1 or due > newest:
        return None
    if due not in kept_generations:
        due = newest  # those between are gone: their changes cannot be told
    return due if due in kept_generations else None


def feed_base(status: Mapping[str, Any], due: int, kept_generations: list[int]) -> bool:
    """Is generation `due`'s feed its map whole (against nothing) rather than its changes against
    the one before? Yes for generation 1; for one whose predecessor's data is gone or whose
    predecessor's feed is not the last on the topic (generations skipped); and for the first feed
    of a crawl whose topic holds no whole map yet (`schedule.changes.base` unset: published before
    the topic was a history). The topic's history goes on from it (`history.topic`)."""
    changes = (status.get("schedule") or {}).get("changes") or {}
    return (due - 1 not in kept_generations or changes.get("generation") != due - 1
            or not isinstance(changes.get("base"), int))


def held_for_feed(prune: list[int], due: int | None, published: bool) -> list[int]:
    """The generations to delete, less those a change feed still needs: the due generation and its
    predecessor, and every later one (if it was published this pass, its predecessor is free)."""
    if due is None:
        return prune
    return [g for g in prune if g < (due if published else due - 1)]


def history_start_due(changes: Mapping[str, Any], kept_generations: list[int]) -> int | None:
    """The generation the change feed's history is to begin at, or None: the oldest generation the
    crawl keeps (`history.keep`), once it is later than where the topic's history begins
    (`changes.base`) and its feed is on the topic (`changes.generation`, this pass's included).
    The topic then holds the history the crawl keeps, as a local store's `prune` does
    (`history.topic.rebase`); until then (failed: tried again next pass) it holds more."""
    base, published = changes.get("base"), changes.get("generation")
    if not kept_generations or not isinstance(base, int) or not isinstance(published, int):
        return None
    oldest = min(kept_generations)
    return oldest if base < oldest <= published else None


def feed_day(status: Mapping[str, Any], generation: int, now: datetime) -> str:
    """When generation `generation` was made, the time its feed carries (UTC, to the second; its
    lines' `date` is its day): the slot it answered (the current one's), its start (generation 1's,
    or the one before the current, published while the next runs)."""
    sched = status.get("schedule") or {}
    if generation == State.of(status).generation:
        when = parse_time(sched.get("lastScheduleTime") if generation > 1 else status.get("startTime"))
    else:
        when = parse_time((sched.get("lastGeneration") or {}).get("startTime"))
    return (when or now).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def last_result(status: Mapping[str, Any], generation: int) -> dict[str, Any]:
    """The finished generation's result as status keeps it once the next one starts (with its
    change feed's counts, once published)."""
    feed = (status.get("schedule") or {}).get("changes") or {}
    return {"generation": generation, "result": "Completed",
            "startTime": status.get("startTime"), "completionTime": status.get("completionTime"),
            "blocks": status.get("blocks"), "lookups": status.get("lookups"),
            "addresses": (status.get("addresses") or {}).get("done"),
            **({"changes": feed.get("counts")} if feed.get("generation") == generation else {})}


def started_status(status: Mapping[str, Any], s: Step) -> dict[str, Any]:
    """The status a new generation starts from: the previous one's fields of its own dropped,
    its result kept as `schedule.lastGeneration`."""
    assert s.start is not None and s.scheduled_for is not None
    sched = dict(status.get("schedule") or {})
    sched.update({"generation": s.start, "lastScheduleTime": iso(s.scheduled_for),
                  "lastGeneration": last_result(status, s.start - 1),
                  "generations": sorted({*kept(status, s.start - 1), s.start})})
    out = {k: v for k, v in status.items() if k not in PER_GENERATION}
    # The finished generation's Completed is not the new one's (its own pass sets it again).
    out["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "Completed"]
    return out | {"schedule": sched}
