"""Status of a WhoisCrawl: conditions, counters, progress, rate, ETA and phase (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from whoiscrawl.operator.scaling import Recommendation

from whoiscrawl.records import Progress

CONDITION_TYPES = ("Ready", "Progressing", "Completed", "Degraded", "SpotNoticeFits")
RATE_SMOOTHING = 0.3  # weight of the newest sample in the EWMA of the crawl rate
# A stalled crawl's EWMA decays towards 0 without reaching it; past this the ETA is unknown
# (and now + ETA would overflow datetime, failing every reconcile).
MAX_ETA_SECONDS = 10 * 365 * 86400


def iso(t: datetime) -> str:
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        stamp = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Observation:
    """What the reconciler saw and decided this round."""

    now: datetime
    generation: int
    counters: Progress | None = None  # None: the backend could not be read
    lag: int | None = None
    planned: bool = False
    completed: bool = False
    paused: bool = False
    spec_error: str | None = None
    backend_error: str | None = None
    api_error: tuple[str, str] | None = None  # (Forbidden | ApplyFailed, the API's message)
    workers_desired: int = 0
    workers_current: int = 0
    workers_ready: int = 0
    recommendation: Recommendation | None = None
    deadline: datetime | None = None
    capacity: str = "spot"
    overflow: int = 0  # on-demand overflow workers standing in for Unschedulable spot pods
    unschedulable_time: datetime | None = None
    pending_message: str | None = None  # spot pods Pending with no fallback allowed
    workload_problem: tuple[str, str] | None = None  # why workers cannot run (failures.problem)
    notice_overrun: str | None = None  # the pods' grace is longer than the shortest spot notice
    selector: str = ""


@dataclass(frozen=True)
class Rate:
    addresses_per_second: float = 0.0
    lookups_per_second: float = 0.0


def is_complete(counters: Progress | None, lag: int | None, planned: bool) -> bool:
    """Every planned shard is done and nothing is left in the work topic."""
    return bool(planned and counters is not None and lag == 0 and counters.shards_total > 0
                and counters.shards_done >= counters.shards_total)


def progress_percent(c: Progress) -> float:
    if c.addresses_total > 0:
        return round(min(100.0, 100.0 * c.addresses_done / c.addresses_total), 1)
    if c.shards_total > 0:
        return round(min(100.0, 100.0 * c.shards_done / c.shards_total), 1)
    return 0.0


def next_rate(previous: Mapping[str, Any] | None, c: Progress, now: datetime) -> Rate:
    """EWMA of addresses/s and lookups/s from the previous sample in status."""
    prev = previous or {}
    then = parse_time(prev.get("time"))
    old = Rate(float(prev.get("addressesPerSecond", 0.0)), float(prev.get("lookupsPerSecond", 0.0)))
    if then is None:
        return old
    dt = (now - then).total_seconds()
    if dt <= 0:
        return old
    a = max(0, c.addresses_done - int(prev.get("addressesDone", 0))) / dt
    n = max(0, c.lookups - int(prev.get("lookups", 0))) / dt
    if old.addresses_per_second == 0 and old.lookups_per_second == 0:
        return Rate(a, n)
    w = RATE_SMOOTHING
    return Rate(w * a + (1 - w) * old.addresses_per_second,
                w * n + (1 - w) * old.lookups_per_second)


def eta_seconds(c: Progress, rate: Rate) -> float | None:
    remaining = max(0, c.addresses_total - c.addresses_done)
    if remaining == 0:
        return 0.0 if c.addresses_total else None
    if rate.addresses_per_second <= 0 or remaining / rate.addresses_per_second > MAX_ETA_SECONDS:
        return None
    return remaining / rate.addresses_per_second


def condition(ctype: str, ok: bool, reason: str, message: str, generation: int, now: datetime,
              previous: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """A condition whose lastTransitionTime moves only when its status flips."""
    status = "True" if ok else "False"
    ltt = iso(now)
    for old in previous:
        if old.get("type") == ctype and old.get("status") == status and old.get(
                "lastTransitionTime"):
            ltt = str(old["lastTransitionTime"])
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": ltt, "observedGeneration": generation}


def _conditions(o: Observation, deadline_late: bool, previous: list[Mapping[str, Any]],
                summary: str) -> list[dict[str, Any]]:
    rec = o.recommendation.message if o.recommendation else f"{o.workers_desired} workers"
    if o.spec_error:
        ready = (False, "InvalidSpec", o.spec_error)
        progressing = (False, "InvalidSpec", "fix the spec to continue")
    elif o.api_error:
        ready = (False, *o.api_error)
        progressing = (o.planned, "Crawling" if o.planned else "Planning", summary)
    elif o.completed:
        ready = (True, "Completed", summary)
        progressing = (False, "Completed", "every shard is done")
    elif o.paused:
        ready = (True, "Paused", "paused by spec.paused; workers scaled to 0")
        progressing = (False, "Paused", "paused by spec.paused")
    elif o.backend_error:
        ready = (False, "BackendUnavailable", o.backend_error)
        progressing = (o.planned, "Crawling" if o.planned else "Planning", summary)
    elif not o.planned:
        ready = (False, "Planning", "creating topics and publishing the plan")
        progressing = (True, "Planning", "creating topics and publishing the plan")
    elif o.workers_ready >= o.workers_desired:
        ready = (True, "WorkersReady", f"{o.workers_ready}/{o.workers_desired} workers ready")
        progressing = (True, "Crawling", f"{summary}; {rec}")
    else:
        why = f": {o.workload_problem[1]}" if o.workload_problem else ""
        ready = (False, "WorkersNotReady",
                 f"{o.workers_ready}/{o.workers_desired} workers ready{why}")
        progressing = (True, "Crawling", f"{summary}; {rec}")

    if o.spec_error:
        degraded = (True, "InvalidSpec", o.spec_error)
    elif o.api_error:
        degraded = (True, *o.api_error)
    elif o.backend_error:
        degraded = (True, "BackendUnavailable", o.backend_error)
    elif o.workload_problem and not o.completed and not o.paused:
        degraded = (True, *o.workload_problem)
    elif o.pending_message and not o.completed and not o.paused:
        degraded = (True, "SpotCapacityUnavailable", o.pending_message)
    elif o.overflow and not o.completed:
        degraded = (True, "FallbackToOnDemand",
                    f"{o.overflow} on-demand overflow worker(s) stand in for spot pods that are "
                    "Unschedulable")
    elif deadline_late and not o.completed and not o.paused:
        degraded = (True, "DeadlineAtRisk", f"ETA is after the deadline; {rec}")
    else:
        degraded = (False, "AsExpected", "")

    completed = ((True, "AllShardsDone", summary) if o.completed
                 else (False, "InProgress", "not every shard is done"))
    notice = ((False, "GraceExceedsSpotNotice", o.notice_overrun) if o.notice_overrun
              else (True, "GraceFitsSpotNotice", "workers drain within the shortest spot notice"))
    out = []
    for ctype, (ok, reason, message) in zip(CONDITION_TYPES,
                                            (ready, progressing, completed, degraded, notice),
                                            strict=True):
        out.append(condition(ctype, ok, reason, message, o.generation, o.now, previous))
    return out


def phase(o: Observation) -> str:
    if o.spec_error:
        return "Invalid"
    if o.completed:
        return "Completed"
    if o.paused:
        return "Paused"
    if not o.planned:
        return "Pending"
    return "Running"


@dataclass(frozen=True)
class StatusResult:
    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def compute_status(previous: Mapping[str, Any] | None, o: Observation) -> StatusResult:
    """The new status (our fields only) and the Events its condition transitions deserve."""
    prev = dict(previous or {})
    prev_conditions = list(prev.get("conditions") or [])
    status: dict[str, Any] = {"observedGeneration": o.generation, "phase": phase(o),
                              "selector": o.selector, "replicas": o.workers_current}
    c = o.counters
    late = False
    if c is not None:
        rate = next_rate(prev.get("sample"), c, o.now)
        eta = eta_seconds(c, rate)
        status.update({
            "shards": {"total": c.shards_total, "done": c.shards_done},
            "addresses": {"total": c.addresses_total, "done": c.addresses_done},
            "lookups": c.lookups, "blocks": c.blocks, "rateLimited": c.rate_limited,
            "errors": c.errors, "progress": progress_percent(c),
            "rate": {"addressesPerSecond": round(rate.addresses_per_second, 3),
                     "lookupsPerSecond": round(rate.lookups_per_second, 3)},
            "sample": {"time": iso(o.now), "addressesDone": c.addresses_done,
                       "lookups": c.lookups,
                       "addressesPerSecond": rate.addresses_per_second,
                       "lookupsPerSecond": rate.lookups_per_second},
        })
        if o.completed:
            status["progress"] = 100.0
            status["etaSeconds"] = 0
            status["eta"] = prev.get("eta") or iso(o.now)
        elif eta is not None and not o.paused:
            status["etaSeconds"] = int(eta)
            status["eta"] = iso(o.now + timedelta(seconds=eta))
            late = o.deadline is not None and o.now + timedelta(seconds=eta) > o.deadline
        else:
            status["etaSeconds"] = None
            status["eta"] = None
    if o.lag is not None:
        status["lag"] = o.lag
    status["workers"] = {
        "desired": o.workers_desired, "current": o.workers_current, "ready": o.workers_ready,
        "reason": o.recommendation.reason if o.recommendation else "",
        "limitedBy": list(o.recommendation.limited_by) if o.recommendation else [],
        "rateBudgetCap": o.recommendation.budget_cap if o.recommendation else None,
        "deadlineWorkers": o.recommendation.deadline_workers if o.recommendation else None,
    }
    status["scheduling"] = {"capacity": o.capacity, "overflow": o.overflow,
                            "unschedulableTime": iso(o.unschedulable_time)
                            if o.unschedulable_time else None}
    status["startTime"] = prev.get("startTime") or (iso(o.now) if o.planned else None)
    status["completionTime"] = (prev.get("completionTime") or iso(o.now)) if o.completed else None
    summary = ("no counters yet" if c is None else
               f"{c.shards_done}/{c.shards_total} shards, {c.blocks} blocks, {c.lookups} lookups, "
               f"{progress_percent(c) if not o.completed else 100.0}% of addresses")
    status["conditions"] = _conditions(o, late, prev_conditions, summary)
    return StatusResult(status, transitions(prev_conditions, status["conditions"]))


def transitions(old: Iterable[Mapping[str, Any]],
                new: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """Events for conditions that changed status or reason: Warning when things get worse."""
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in old}
    events = []
    for cond in new:
        ctype, status, reason = cond["type"], cond["status"], cond["reason"]
        if before.get(ctype) == (status, reason):
            continue
        if ctype == "Degraded" and status == "False" and ctype not in before:
            continue  # "not degraded" at birth is not news
        if ctype == "Completed" and status == "False":
            continue
        bad = ((ctype == "Degraded" and status == "True")
               or (ctype == "Ready" and status == "False" and reason != "Planning")
               or (ctype == "SpotNoticeFits" and status == "False"))
        if ctype == "SpotNoticeFits" and status == "True" and ctype not in before:
            continue  # fitting at birth is not news
        kind = "Warning" if bad else "Normal"
        message = cond["message"] or f"{ctype} is {status}"
        events.append((kind, f"{ctype}{status}" if reason == "AsExpected" else reason, message))
    return events


REFRESH_KINDS = ("carried", "unchanged", "changed", "added", "removed", "delegations_changed")


def refresh_status(figures: Mapping[str, Any]) -> dict[str, Any]:
    """`status.refresh`: the generation refreshed from (`previous`), and either why that was refused
    (`refused`: it crawls anew) or what the load carried, and what changed, in all and per registry;
    `asked`: the networks carried that were asked again live (the freshness sample)."""
    out: dict[str, Any] = {"previous": figures.get("previous")}
    if figures.get("refused"):
        return out | {"refused": figures["refused"]}
    by_registry = {r: dict(f) for r, f in (figures.get("by_registry") or {}).items()}
    for registry, asked in (figures.get("asked") or {}).items():
        by_registry.setdefault(registry, {})["asked"] = int(asked.get("asked") or 0)
    totals = {k: sum(int(f.get(k) or 0) for f in by_registry.values()) for k in (*REFRESH_KINDS, "asked")}
    return out | {_camel(k): v for k, v in totals.items()} | {"byRegistry": {
        r: {_camel(k): v for k, v in f.items()} for r, f in sorted(by_registry.items())}}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def refresh_events(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """A Warning Event the first pass that sees a generation's refresh refused (it crawls anew)."""
    if not now.get("refused") or (before or {}).get("refused") == now["refused"]:
        return []
    return [("Warning", "RefreshRefused", f"not a refresh of {now.get('previous')}: {now['refused']}; "
             "this generation crawls anew (a first crawl's requests)")]


def strip_volatile(status: Mapping[str, Any]) -> dict[str, Any]:
    """Status minus what changes every round by itself, to decide whether a patch is needed."""
    out = {k: v for k, v in status.items() if k not in ("sample", "eta", "etaSeconds", "rate")}
    return out
