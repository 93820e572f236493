"""The reconciler: read the world, ask the pure policies, apply owned objects, return status."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from whoiscrawl.operator import builders, scaling, scheduling, spot
from whoiscrawl.operator import status as st
from whoiscrawl.operator.backend import Backend, BackendError, Target
from whoiscrawl.operator.kube import Kube, KubeError, apply, secret_data, secret_value
from whoiscrawl.operator.spec import CrawlSpec, SpecError, parse_spec, validate_name

from whoiscrawl.records import Progress

log = logging.getLogger("whoiscrawl.operator")
Event = tuple[str, str, str]  # (Normal | Warning, reason, message)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    """What the reconciler talks to; handlers build one from kopf's memo."""

    kube: Kube
    backend: Backend
    now: Callable[[], datetime] = utcnow


@dataclass(frozen=True)
class Crawl:
    """The identity and raw state of one WhoisCrawl object."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]


@dataclass
class Result:
    """The status to merge-patch and the Events to post."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    workers: int = 0


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def lock_for(uid: str) -> threading.Lock:
    """One reconcile at a time per crawl (create, update and the timer may overlap in kopf)."""
    with _locks_guard:
        return _locks.setdefault(uid, threading.Lock())


def forget(uid: str) -> None:
    with _locks_guard:
        _locks.pop(uid, None)


def target(kube: Kube, crawl: Crawl, spec: CrawlSpec) -> Target:
    url = spec.redis.url
    if url is None and spec.redis.url_secret is not None:
        ref = spec.redis.url_secret
        url = secret_value(kube, crawl.namespace, ref.name, ref.key)
    kafka_config: tuple[tuple[str, str], ...] = ()
    if spec.kafka.credentials_secret:
        # The keys workers get through envFrom (WHOISCRAWL_KAFKA_SASL_USERNAME, ...), read the same way.
        from whoiscrawl.queue import kafka_config_from

        data = secret_data(kube, crawl.namespace, spec.kafka.credentials_secret)
        kafka_config = tuple(sorted(kafka_config_from(data).items()))
    return Target(crawl=crawl.name, bootstrap=spec.kafka.bootstrap_servers,
                  prefix=spec.kafka.queue_prefix, redis_url=url or "", kafka_config=kafka_config)


def plan_key(spec: CrawlSpec) -> str:
    return builders.stable_hash(list(spec.plan_key()))


def ensure_plan(backend: Backend, t: Target, spec: CrawlSpec, plan: Mapping[str, Any],
                now: datetime) -> tuple[dict[str, Any], list[Event]]:
    """Topics + the plan on the work topic, once per distinct plan (ranges, strategy, ...).

    A re-plan after a live edit publishes the new plan on top; totals add up, so progress stays
    honest (shards of the old plan already done are skipped quickly by the known-block check).
    """
    key = plan_key(spec)
    if plan.get("key") == key:
        return dict(plan), []
    backend.ensure_topics(t, spec.kafka.partitions)
    published = backend.publish_plan(t, spec)
    shards = int(plan.get("shards", 0)) + published.shards
    addresses = int(plan.get("addresses", 0)) + published.addresses
    backend.set_totals(t, shards, addresses)
    verb = "Replanned" if plan.get("key") else "Planned"
    msg = (f"published {published.shards} shards ({published.addresses} addresses) to "
           f"{t.prefix}{t.crawl}.work")
    return ({"key": key, "shards": shards, "addresses": addresses, "time": st.iso(now),
             "revision": int(plan.get("revision", 0)) + 1}, [("Normal", verb, msg)])


def _history(raw: Any) -> tuple[scaling.Point, ...]:
    out = []
    for item in raw or []:
        t = st.parse_time(item.get("time")) if isinstance(item, Mapping) else None
        if t is not None:
            out.append(scaling.Point(t, int(item.get("workers", 0))))
    return tuple(out)


def _history_raw(points: tuple[scaling.Point, ...]) -> list[dict[str, Any]]:
    return [{"time": st.iso(p.time), "workers": p.workers} for p in points]


def egress_addresses(spec: CrawlSpec, pods: list[spot.PodView]) -> int | None:
    """Distinct egress addresses the fleet has (None: every worker brings its own)."""
    if spec.egress.mode == "nat":
        return spec.egress.addresses
    if spec.scheduling.one_per_node:
        return None
    # Shared nodes: the nodes in use now, plus one so the fleet can grow onto a new node.
    return spot.distinct_nodes(pods) + 1


def invalid(crawl: Crawl, error: str, now: datetime) -> Result:
    obs = st.Observation(now=now, generation=crawl.generation, spec_error=error,
                         planned=bool((crawl.status.get("plan") or {}).get("key")),
                         selector=builders.selector_string(crawl.name))
    res = st.compute_status(crawl.status, obs)
    return Result(res.status, res.events)


def reconcile(deps: Deps, crawl: Crawl) -> Result:
    """One level-based pass; safe to repeat at any time."""
    with lock_for(crawl.uid):
        return _reconcile(deps, crawl)


def _reconcile(deps: Deps, crawl: Crawl) -> Result:
    now = deps.now()
    name_problem = validate_name(crawl.name)
    if name_problem:
        return invalid(crawl, name_problem, now)
    try:
        spec = parse_spec(crawl.spec)
    except SpecError as exc:
        return invalid(crawl, str(exc), now)

    prev = crawl.status
    events: list[Event] = []
    plan = dict(prev.get("plan") or {})
    backend_error = None
    counters: Progress | None = None
    lag: int | None = None
    partitions = spec.kafka.partitions
    try:
        t = target(deps.kube, crawl, spec)
        plan, plan_events = ensure_plan(deps.backend, t, spec, plan, now)
        events += plan_events
        counters = deps.backend.counters(t)
        lag = deps.backend.lag(t)
        partitions = deps.backend.partitions(t) or partitions
    except (BackendError, KubeError) as exc:
        backend_error = str(exc)
    planned = plan.get("key") == plan_key(spec)

    owner = builders.Owner(crawl.name, crawl.namespace, crawl.uid,
                           builders.image_version(spec.workers.image))
    selector = builders.selector_labels(crawl.name)
    pods = [spot.pod_view(p) for p in deps.kube.list("v1", "pods", crawl.namespace, selector)]
    sched_prev = dict(prev.get("scheduling") or {})
    fallback_time = st.parse_time(sched_prev.get("fallbackTime"))
    if spec.scheduling.capacity_type != "any":
        fallback_time = None  # an edit away from `any` resets the fallback
    decision = spot.decide(spec.scheduling.capacity_type, fallback_time is not None, pods, now,
                           spec.scheduling.spot_pending_timeout_seconds)
    if decision.fall_back:
        fallback_time = now
        events.append(("Warning", "SpotFallback",
                       "worker pods stayed Pending on spot for over "
                       f"{spec.scheduling.spot_pending_timeout_seconds}s; "
                       "falling back to on-demand capacity"))
    capacity = scheduling.effective_capacity(spec.scheduling.capacity_type,
                                             fallback_time is not None)

    live = deps.kube.get("apps/v1", "deployments", crawl.namespace,
                         builders.worker_name(crawl.name))
    current = int(((live or {}).get("spec") or {}).get("replicas") or 0)
    dstatus = (live or {}).get("status") or {}
    was_complete = any(c.get("type") == "Completed" and c.get("status") == "True"
                       for c in prev.get("conditions") or [])
    completed = st.is_complete(counters, lag, planned) or (
        was_complete and planned and backend_error is not None)

    remaining = None
    seconds_left = None
    per_worker = None
    if counters is not None:
        remaining = max(0, counters.addresses_total - counters.addresses_done)
        rate = st.next_rate(prev.get("sample"), counters, now)
        ready = int(dstatus.get("readyReplicas") or 0)
        if ready and rate.addresses_per_second > 0:
            per_worker = rate.addresses_per_second / ready
    if spec.deadline is not None:
        seconds_left = (spec.deadline - now).total_seconds()
    rec = scaling.recommend(scaling.ScalingInputs(
        lag=lag or 0, partitions=partitions, min_workers=spec.workers.min,
        max_workers=spec.workers.max, lag_threshold=spec.workers.lag_threshold,
        replicas=spec.workers.replicas, paused=spec.paused, completed=completed,
        address_budget=spec.address_budget(), egress_addresses=egress_addresses(spec, pods),
        worker_rate=spec.workers.lookups_per_second, remaining_addresses=remaining,
        seconds_to_deadline=seconds_left, worker_address_rate=per_worker))
    if backend_error is not None and not (spec.paused or completed):
        # Blind: keep the fleet as it is rather than scale on missing data.
        rec = scaling.Recommendation(current, "BackendUnavailable")
    history = _history((prev.get("scaling") or {}).get("history"))
    if rec.reason in ("Completed", "Paused", "Manual", "BackendUnavailable"):
        stable = scaling.Stabilized(rec.workers, history)
    else:
        stable = scaling.stabilize(current, rec.workers, history, now,
                                   spec.workers.scale_down_stabilization_seconds)
    desired = stable.workers

    for obj in builders.owned_objects(owner, spec, desired, capacity):
        what, _ = apply(deps.kube, obj)
        if what != "unchanged":
            log.info("%s %s %s/%s", what, obj["kind"], crawl.namespace, obj["metadata"]["name"])
        if obj["kind"] == "Deployment" and what in ("scaled", "created", "updated") and (
                current != desired):
            events.append(("Normal", "Scaled",
                           f"workers {current} -> {desired}: {rec.message}"))

    obs = st.Observation(
        now=now, generation=crawl.generation, counters=counters, lag=lag, planned=planned,
        completed=completed, paused=spec.paused, backend_error=backend_error,
        workers_desired=desired, workers_current=int(dstatus.get("replicas") or 0),
        workers_ready=int(dstatus.get("readyReplicas") or 0), recommendation=rec,
        deadline=spec.deadline, capacity=capacity, fallback_time=fallback_time,
        pending_message=decision.pending_message, selector=builders.selector_string(crawl.name))
    res = st.compute_status(prev, obs)
    res.status["plan"] = plan or None
    res.status["scaling"] = {"history": _history_raw(stable.history),
                             "heldBack": stable.held_back}
    return Result(res.status, events + res.events, desired)


def cleanup(deps: Deps, crawl: Crawl) -> str:
    """On delete: Redis keys and topics per the cleanup policy (owned objects go by GC)."""
    spec = parse_spec(crawl.spec)
    t = target(deps.kube, crawl, spec)
    return deps.backend.cleanup(t, topics=spec.cleanup.topics == "Delete",
                                redis=spec.cleanup.redis == "Delete")


def status_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Patch only when something other than the clock-driven fields moved."""
    keys = set(new)
    before = {k: old.get(k) for k in keys}
    return st.strip_volatile(before) != st.strip_volatile(new)
