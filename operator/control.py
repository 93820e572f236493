"""The reconciler: observe the world, decide with pure policies, act on owned objects, report."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from whoiscrawl.operator import builders, failures, generations, scaling, scheduling, spot
from whoiscrawl.operator import status as st
from whoiscrawl.operator.backend import Backend, BackendError, Target
from whoiscrawl.operator.kube import (
    Kube,
    KubeError,
    apply,
    merge_patched,
    secret_data,
    secret_value,
)
from whoiscrawl.operator.spec import (
    GROUP,
    PLURAL,
    SKIP_CLEANUP_ANNOTATION,
    VERSION,
    Cleanup,
    CrawlSpec,
    SpecError,
    parse_spec,
    validate_name,
)

from whoiscrawl.queue import kafka_config_from
from whoiscrawl.records import Progress

log = logging.getLogger("whoiscrawl.operator")
Event = tuple[str, str, str]  # (Normal | Warning, reason, message)
API = f"{GROUP}/{VERSION}"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    """What the reconciler talks to; handlers build one from kopf's memo."""

    kube: Kube
    backend: Backend
    now: Callable[[], datetime] = utcnow
    worker_image: str | None = None  # for crawls that name none ($WHOISCRAWL_WORKER_IMAGE)


@dataclass(frozen=True)
class Crawl:
    """The identity and raw state of one WhoisCrawl object."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Result:
    """The status to merge-patch and the Events to post."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    workers: int = 0
    api_error: tuple[str, str] | None = None  # the API refused a call: retry after a delay


def crawl_of(body: Mapping[str, Any]) -> Crawl:
    """The Crawl of a WhoisCrawl object (kopf's body, or one read from the API)."""
    meta = body.get("metadata") or {}
    return Crawl(name=str(meta.get("name")), namespace=str(meta.get("namespace")),
                 uid=str(meta.get("uid")), generation=int(meta.get("generation") or 0),
                 spec=dict(body.get("spec") or {}), status=dict(body.get("status") or {}),
                 annotations=dict(meta.get("annotations") or {}))


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
# uid -> what its cleanup did. kopf may run the delete handler again after it succeeded (a
# conflict on the patch that removes the finalizer): the data is deleted once, and only once.
_cleaned: OrderedDict[str, str] = OrderedDict()
CLEANED_REMEMBERED = 1000


def lock_for(uid: str) -> threading.Lock:
    """One reconcile at a time per crawl (create, update and the timer may overlap in kopf)."""
    with _locks_guard:
        return _locks.setdefault(uid, threading.Lock())


def forget(uid: str) -> None:
    with _locks_guard:
        _locks.pop(uid, None)


def generation_of(crawl: Crawl) -> int:
    """The crawl's current generation (1 unless its schedule started later ones)."""
    return generations.State.of(crawl.status).generation


def target(kube: Kube, crawl: Crawl, spec: CrawlSpec, generation: int | None = None) -> Target:
    """Where the crawl's data lives (its current generation's, unless `generation` is given)."""
    url = spec.redis.url
    if url is None and spec.redis.url_secret is not None:
        ref = spec.redis.url_secret
        url = secret_value(kube, crawl.namespace, ref.name, ref.key)
    kafka_config: tuple[tuple[str, str], ...] = ()
    if spec.kafka.credentials_secret:
        # The keys workers get through envFrom (WHOISCRAWL_KAFKA_SASL_USERNAME, ...), read the same way.
        data = secret_data(kube, crawl.namespace, spec.kafka.credentials_secret)
        kafka_config = tuple(sorted(kafka_config_from(data).items()))
    gen = generation_of(crawl) if generation is None else generation
    return Target(crawl=builders.crawl_id(crawl.namespace, crawl.name, gen),
                  bootstrap=spec.kafka.bootstrap_servers,
                  prefix=spec.kafka.queue_prefix, redis_url=url or "", kafka_config=kafka_config)


def plan_key(spec: CrawlSpec) -> str:
    return builders.stable_hash(list(spec.plan_key()))


def plan_marker(crawl: Crawl, plan: Mapping[str, Any], spec: CrawlSpec) -> str:
    """Names one publish: this crawl object, this plan, on top of this revision.

    A stale pass (same revision read) finds the marker of the pass that published and sends
    nothing; a crawl re-created under the same name (another uid) plans afresh.
    """
    return f"{crawl.uid}:{plan_key(spec)}:{int(plan.get('revision', 0))}"


def ensure_plan(backend: Backend, t: Target, spec: CrawlSpec, plan: Mapping[str, Any],
                marker: str, now: datetime) -> tuple[dict[str, Any], list[Event]]:
    """Topics + the plan on the work topic, once per distinct plan (ranges, strategy, ...).

    A re-plan after a live edit publishes the new plan on top; the totals are the union of the
    plans' shards (a shard of a range both plans hold is one shard, done once), so progress stays
    honest and the crawl completes (shards of the old plan already done are skipped at once).
    The backend publishes once per `marker`; a pass that finds it published computes the same
    plan and totals (both follow from the revision it read) and sends nothing. It still posts the
    Event: the status it read lacks this plan (else this returns at once), so the pass that
    published never wrote its status, and its Events were never posted (`run`, `write_status`).
    """
    key = plan_key(spec)
    if plan.get("key") == key:
        return dict(plan), []
    backend.ensure_topics(t, spec.kafka)
    published = backend.publish_plan(t, spec, marker)
    new = {"key": key, "shards": published.shards_total, "addresses": published.addresses_total,
           "time": st.iso(now),
           "revision": int(plan.get("revision", 0)) + 1}
    verb = "Replanned" if plan.get("key") else "Planned"
    msg = (f"published {published.shards} shards ({published.addresses} addresses) to "
           f"{t.prefix}{t.crawl}.work")
    if not published.fresh:
        msg += " (by an earlier pass whose status was not written)"
    return new, [("Normal", verb, msg)]


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


def failed(crawl: Crawl, error: str, now: datetime) -> Result:
    """A pass that raised: Degraded/ReconcileError with the error, retried after the interval."""
    problem = ("ReconcileError", error)
    obs = st.Observation(now=now, generation=crawl.generation, api_error=problem,
                         planned=bool((crawl.status.get("plan") or {}).get("key")),
                         selector=builders.selector_string(crawl.name))
    res = st.compute_status(crawl.status, obs)
    return Result(res.status, res.events, api_error=problem)


@dataclass(frozen=True)
class Snapshot:
    """What one pass saw: the data plane (after planning) and the crawl's objects (observe)."""

    now: datetime
    prev: Mapping[str, Any]  # the crawl's status as read inside the lock
    plan: Mapping[str, Any]
    plan_events: tuple[Event, ...] = ()
    counters: Progress | None = None
    lag: int | None = None
    partitions: int = 0
    backend_error: str | None = None
    pods: tuple[spot.PodView, ...] = ()  # every worker pod of the crawl, spot and overflow
    deployment: Mapping[str, Any] | None = None
    overflow_deployment: Mapping[str, Any] | None = None
    read_error: tuple[str, str] | None = None  # a pod or Deployment read the API refused
    step: generations.Step | None = None  # the schedule's verdict (None: the crawl runs once)
    refresh: Mapping[str, Any] | None = None  # the load's refresh of the previous generation (None: none)

    @property
    def current(self) -> int:
        return int(((self.deployment or {}).get("spec") or {}).get("replicas") or 0)

    @property
    def dstatus(self) -> Mapping[str, Any]:
        return (self.deployment or {}).get("status") or {}


@dataclass(frozen=True)
class Decision:
    """What to do this pass (decide, pure)."""

    planned: bool
    completed: bool
    capacity: str
    spot: spot.SpotDecision
    recommendation: scaling.Recommendation
    stable: scaling.Stabilized
    events: tuple[Event, ...] = ()
    workload: tuple[str, str] | None = None  # why the workers cannot run (failures.problem)
    generations: tuple[int, ...] | None = None  # a scheduled crawl's generations with data
    prune: tuple[int, ...] = ()  # of those, the ones past spec.history.keep: act deletes them
    feed: int | None = None  # the generation whose change feed act publishes (generations.feed_due)

    @property
    def desired(self) -> int:
        return self.stable.workers


@dataclass
class Applied:
    """What `act` did: its Events, the API's refusal (if any), the generations it deleted."""

    events: list[Event] = field(default_factory=list)
    api_error: tuple[str, str] | None = None
    pruned: tuple[int, ...] = ()
    feed: dict[str, Any] | None = None  # the change feed published (Backend.publish_changes' answer)
    history: dict[str, Any] | None = None  # the feed's history pruned (Backend.keep_history's answer)


def api_problem(exc: KubeError, what: str) -> tuple[str, str]:
    """(Forbidden | ApplyFailed, message) for a call the API server refused."""
    return ("Forbidden" if exc.status == 403 else "ApplyFailed"), f"{what}: {exc.message}"


def scheduled(crawl: Crawl, spec: CrawlSpec, now: datetime) -> tuple[Crawl, generations.Step | None]:
    """The crawl as this pass sees it: its next generation started when the schedule says so
    (pure). A pass whose status write fails starts the same generation again: its plan's marker
    makes that publish once."""
    schedule = spec.schedule_of()
    if schedule is None:
        return crawl, None
    step = generations.step(schedule, generations.State.of(crawl.status), now)
    if step.start is None:
        return crawl, step
    return replace(crawl, status=generations.started_status(crawl.status, step)), step


def prune(deps: Deps, crawl: Crawl, spec: CrawlSpec, old: tuple[int, ...]) -> tuple[int, ...]:
    """Delete the topics and Redis keys of generations `old` (past `history.keep`): those deleted.
    One the data plane refuses stays listed in status, and the next pass tries it again."""
    done = []
    for gen in old:
        try:
            deps.backend.cleanup(target(deps.kube, crawl, spec, gen), topics=True, redis=True)
        except (BackendError, KubeError) as exc:
            log.warning("pruning generation %d of %s/%s failed (tried again next pass): %s",
                        gen, crawl.namespace, crawl.name, exc)
            continue
        done.append(gen)
    return tuple(done)


def _data_plane(deps: Deps, crawl: Crawl, spec: CrawlSpec, now: datetime) -> dict[str, Any]:
    """Plan (topics + shards, once per plan) and read progress, lag and partitions."""
    plan = dict(crawl.status.get("plan") or {})
    out: dict[str, Any] = {"plan": plan, "partitions": spec.kafka.partitions}
    try:
        t = target(deps.kube, crawl, spec)
        out["plan"], events = ensure_plan(deps.backend, t, spec, plan,
                                          plan_marker(crawl, plan, spec), now)
        out["plan_events"] = tuple(events)
        out["counters"] = deps.backend.counters(t)
        out["refresh"] = deps.backend.refresh(t)
        out["lag"] = deps.backend.lag(t)
        out["partitions"] = deps.backend.partitions(t) or spec.kafka.partitions
    except (BackendError, KubeError) as exc:
        out["backend_error"] = str(exc)
    return out


def observe(deps: Deps, crawl: Crawl, spec: CrawlSpec) -> Snapshot:
    """Everything one pass needs to read; API refusals become `read_error`, not exceptions."""
    now = deps.now()
    crawl, step = scheduled(crawl, spec, now)
    data = _data_plane(deps, crawl, spec, now)
    found: dict[str, Any] = {}
    try:
        pods = deps.kube.list("v1", "pods", crawl.namespace, builders.pod_labels(crawl.name))
        found["pods"] = tuple(spot.pod_view(p) for p in pods)
        found["deployment"] = deps.kube.get("apps/v1", "deployments", crawl.namespace,
                                            builders.worker_name(crawl.name))
        found["overflow_deployment"] = deps.kube.get("apps/v1", "deployments", crawl.namespace,
                                                     builders.overflow_name(crawl.name))
    except KubeError as exc:
        found = {"read_error": api_problem(exc, "reading worker pods and Deployments")}
    return Snapshot(now=now, prev=crawl.status, step=step, **found, **data)


def _spot(spec: CrawlSpec, snap: Snapshot) -> tuple[spot.SpotDecision, list[Event]]:
    """The overflow this pass, and Events when it starts or ends."""
    prev = dict(snap.prev.get("scheduling") or {})
    before = int(prev.get("overflow") or 0)
    timeout = spec.scheduling.spot_pending_timeout_seconds
    decision = spot.decide(spec.scheduling.capacity_type, snap.pods, snap.now, timeout, before,
                           st.parse_time(prev.get("unschedulableTime")))
    if decision.overflow and not before:
        return decision, [("Warning", "SpotFallback",
                           f"{decision.overflow} worker pod(s) Unschedulable on spot for over "
                           f"{timeout}s: {decision.overflow} on-demand overflow worker(s)")]
    if before and not decision.overflow:
        return decision, [("Normal", "SpotRestored",
                           "spot pods schedule again: on-demand overflow back to 0")]
    return decision, []


def _recommend(spec: CrawlSpec, snap: Snapshot, completed: bool) -> scaling.Recommendation:
    remaining = seconds_left = per_worker = None
    if snap.counters is not None:
        remaining = max(0, snap.counters.addresses_total - snap.counters.addresses_done)
        rate = st.next_rate(snap.prev.get("sample"), snap.counters, snap.now)
        ready = int(snap.dstatus.get("readyReplicas") or 0)
        if ready and rate.addresses_per_second > 0:
            per_worker = rate.addresses_per_second / ready
    if spec.deadline is not None:
        seconds_left = (spec.deadline - snap.now).total_seconds()
    rec = scaling.recommend(scaling.ScalingInputs(
        lag=snap.lag or 0, partitions=snap.partitions, min_workers=spec.workers.min,
        max_workers=spec.workers.max, lag_threshold=spec.workers.lag_threshold,
        replicas=spec.workers.manual_replicas, paused=spec.paused, completed=completed,
        address_budget=spec.address_budget(),
        egress_addresses=egress_addresses(spec, list(snap.pods)),
        worker_rate=spec.workers.lookups_per_second, remaining_addresses=remaining,
        seconds_to_deadline=seconds_left, worker_address_rate=per_worker))
    blind = snap.backend_error is not None or snap.read_error is not None
    if blind and not (spec.paused or completed):
        # Blind: keep the fleet as it is rather than scale on missing data.
        return scaling.Recommendation(snap.current, "BackendUnavailable")
    return rec


def decide(spec: CrawlSpec, snap: Snapshot) -> Decision:
    """The pure policy of one pass: capacity, completion, and how many workers."""
    planned = snap.plan.get("key") == plan_key(spec)
    spot_decision, events = _spot(spec, snap)
    was_complete = any(c.get("type") == "Completed" and c.get("status") == "True"
                       for c in snap.prev.get("conditions") or [])
    completed = st.is_complete(snap.counters, snap.lag, planned) or (
        was_complete and planned and snap.backend_error is not None)
    rec = _recommend(spec, snap, completed)
    history = _history((snap.prev.get("scaling") or {}).get("history"))
    if rec.reason in ("Completed", "Paused", "Manual", "BackendUnavailable"):
        stable = scaling.Stabilized(rec.workers, history)
    else:
        stable = scaling.stabilize(snap.current, rec.workers, history, snap.now,
                                   spec.workers.scale_down_stabilization_seconds)
    if completed or spec.paused:
        spot_decision = replace(spot_decision, overflow=0)
    kept, prune = _generations(spec, snap, completed)
    feed = None
    if kept is not None and snap.backend_error is None:
        feed = generations.feed_due(snap.prev, completed, list(kept))
    return Decision(planned=planned, completed=completed,
                    capacity=scheduling.effective_capacity(spec.scheduling.capacity_type),
                    spot=spot_decision, recommendation=rec, stable=stable, events=tuple(events),
                    workload=failures.problem(fleet_of(spec, snap), snap.now),
                    generations=kept, prune=prune, feed=feed)


def _generations(spec: CrawlSpec, snap: Snapshot,
                 completed: bool) -> tuple[tuple[int, ...] | None, tuple[int, ...]]:
    """A scheduled crawl's generations with data, and the completed ones past `history.keep` to
    delete (none while the data plane is unreachable: the deletes would fail too)."""
    if spec.schedule is None:
        return None, ()
    current = generations.State.of(snap.prev).generation
    kept = generations.kept(snap.prev, current)
    if snap.backend_error is not None:
        return tuple(kept), ()
    running = None if completed else current
    return tuple(kept), tuple(generations.to_prune(kept, spec.history.keep, running))


def fleet_of(spec: CrawlSpec, snap: Snapshot) -> failures.Fleet:
    """The workers as failures.problem reads them."""
    namespace = str(((snap.deployment or {}).get("metadata") or {}).get("namespace") or "")
    return failures.Fleet(
        deployments=tuple(d for d in (snap.deployment, snap.overflow_deployment) if d),
        pods=snap.pods, image=spec.workers.image, capacity_type=spec.scheduling.capacity_type,
        pending_timeout_seconds=spec.scheduling.spot_pending_timeout_seconds, namespace=namespace)


def act(deps: Deps, crawl: Crawl, spec: CrawlSpec, snap: Snapshot, decision: Decision) -> Applied:
    """Apply the owned objects one by one (an object the API refuses does not stop the rest),
    then delete the generations past `history.keep`."""
    events: list[Event] = []
    if snap.read_error is not None:
        return Applied(events, snap.read_error)  # blind: change nothing
    error = None
    owner = builders.Owner(crawl.name, crawl.namespace, crawl.uid,
                           builders.image_version(spec.workers.image),
                           generations.State.of(snap.prev).generation)
    has_overflow = spec.scheduling.capacity_type == "any" or snap.overflow_deployment is not None
    for obj in builders.owned_objects(owner, spec, decision.desired, decision.capacity,
                                      decision.spot.overflow if has_overflow else None):
        kind, name = obj["kind"], obj["metadata"]["name"]
        try:
            what, _ = apply(deps.kube, obj)
        except KubeError as exc:
            error = error or api_problem(exc, f"applying {kind} {name}")
            log.warning("%s %s/%s refused: %s", kind, crawl.namespace, name, exc)
            continue
        if what != "unchanged":
            log.info("%s %s %s/%s", what, kind, crawl.namespace, name)
        if name == builders.worker_name(crawl.name) and what in (
                "scaled", "created", "updated") and snap.current != decision.desired:
            events.append(("Normal", "Scaled", f"workers {snap.current} -> {decision.desired}: "
                                               f"{decision.recommendation.message}"))
    if spec.workers.max_unavailable is None:
        error = error or _drop_pdb(deps.kube, crawl)
    applied = settle_generations(deps, crawl, spec, snap, decision)
    return replace(applied, events=events + applied.events, api_error=error)


def settle_generations(deps: Deps, crawl: Crawl, spec: CrawlSpec, snap: Snapshot,
                       decision: Decision) -> Applied:
    """A scheduled crawl's writes about its generations, in order: the change feed due published,
    then the generations past `history.keep` deleted, less those a feed not yet out still needs."""
    feed, problem = publish_feed(deps, crawl, spec, snap, decision.feed, list(decision.generations or ()))
    events: list[Event] = [("Warning", "ChangeFeedFailed", problem)] if problem is not None else []
    held = generations.held_for_feed(list(decision.prune), decision.feed, feed is not None)
    pruned = prune(deps, crawl, spec, tuple(held))
    left = [g for g in decision.generations or () if g not in pruned] if snap.backend_error is None else []
    history, problem = keep_history(deps, crawl, spec, feed_status(snap.prev, feed), left)
    events += [("Warning", "HistoryPruneFailed", problem)] if problem is not None else []
    return Applied(events, pruned=pruned, feed=feed, history=history)


def feed_status(prev: Mapping[str, Any], feed: Mapping[str, Any] | None) -> dict[str, Any]:
    """`status.schedule.changes` once the feed this pass published (if any) is on the topic."""
    changes = dict((prev.get("schedule") or {}).get("changes") or {})
    if feed is None:
        return changes
    since = feed["generation"] if feed.get("base") else changes.get("base")
    return {"generation": feed["generation"], "topic": feed["topic"], "base": since,
            "counts": feed["counts"], "published": feed["published"]}


def keep_history(deps: Deps, crawl: Crawl, spec: CrawlSpec, changes: Mapping[str, Any],
                 kept: list[int]) -> tuple[dict[str, Any] | None, str | None]:
    """The change feed's history pruned to begin at the oldest generation kept, when it is due
    (`generations.history_start_due`): (what was done, None) or (None, why not: tried again next
    pass); (None, None) when not due or still running (off the pass, as a feed)."""
    start = generations.history_start_due(changes, kept)
    if start is None:
        return None, None
    try:
        done = deps.backend.keep_history(target(deps.kube, crawl, spec, 1),
                                         builders.crawl_id(crawl.namespace, crawl.name), start)
    except (BackendError, KubeError) as exc:
        log.warning("pruning the change feed's history of %s/%s to generation %d failed (tried again "
                    "next pass): %s", crawl.namespace, crawl.name, start, exc)
        return None, (f"the change feed's history was not pruned to generation {start} ({exc}); tried "
                      "again next pass, the topic holds the older generations until then")
    return done, None


def publish_feed(deps: Deps, crawl: Crawl, spec: CrawlSpec, snap: Snapshot, generation: int | None,
                 kept: list[int]) -> tuple[dict[str, Any] | None, str | None]:
    """Publish generation `generation`'s change feed (its map against the one before) on the crawl's
    change-feed topic, `<prefix><namespace>.<name>.changes`: (what was published, None) or
    (None, why not; tried again next pass, the generations it needs kept until then); (None, None)
    while it is still being published (the backend publishes off the pass)."""
    if generation is None:
        return None, None
    try:
        base = generations.feed_base(snap.prev, generation, kept)
        before = None if base else target(deps.kube, crawl, spec, generation - 1)
        feed = deps.backend.publish_changes(
            before, target(deps.kube, crawl, spec, generation),
            builders.crawl_id(crawl.namespace, crawl.name), generation,
            generations.feed_day(snap.prev, generation, snap.now))
    except (BackendError, KubeError) as exc:
        log.warning("publishing generation %d's change feed of %s/%s failed (tried again next pass): %s",
                    generation, crawl.namespace, crawl.name, exc)
        return None, (f"generation {generation}'s change feed was not published ({exc}); tried again "
                      f"next pass, generation {generation - 1}'s data kept until then")
    return feed, None


def _drop_pdb(kube: Kube, crawl: Crawl) -> tuple[str, str] | None:
    """maxUnavailable unset after it was set: our PodDisruptionBudget goes, or drains would
    still wait on it (spot reclaims evict through the Eviction API)."""
    name = builders.worker_name(crawl.name)
    try:
        live = kube.get("policy/v1", "poddisruptionbudgets", crawl.namespace, name)
        owners = ((live or {}).get("metadata") or {}).get("ownerReferences") or []
        if live is not None and any(o.get("uid") == crawl.uid for o in owners):
            kube.delete("policy/v1", "poddisruptionbudgets", crawl.namespace, name)
            log.info("deleted PodDisruptionBudget %s/%s: maxUnavailable unset", crawl.namespace, name)
    except KubeError as exc:
        return api_problem(exc, f"deleting PodDisruptionBudget {name}")
    return None


def report(crawl: Crawl, spec: CrawlSpec, snap: Snapshot, decision: Decision,
           applied: Applied) -> Result:
    """The status and Events of one pass (pure)."""
    events, api_error = applied.events, applied.api_error
    obs = st.Observation(
        now=snap.now, generation=crawl.generation, counters=snap.counters, lag=snap.lag,
        planned=decision.planned, completed=decision.completed, paused=spec.paused,
        backend_error=snap.backend_error, api_error=api_error,
        workers_desired=decision.desired, workers_current=int(snap.dstatus.get("replicas") or 0),
        workers_ready=int(snap.dstatus.get("readyReplicas") or 0),
        recommendation=decision.recommendation, deadline=spec.deadline,
        capacity=decision.capacity, overflow=decision.spot.overflow,
        unschedulable_time=decision.spot.since, pending_message=decision.spot.pending_message,
        workload_problem=decision.workload,
        notice_overrun=builders.notice_overrun(spec), selector=builders.selector_string(crawl.name))
    res = st.compute_status(snap.prev, obs)
    if snap.read_error is not None:  # blind: the fleet was not seen, keep what was last seen
        res.status.update({k: snap.prev[k] for k in ("workers", "replicas", "scheduling")
                           if k in snap.prev})
    res.status["plan"] = dict(snap.plan) or None
    res.status["scaling"] = {"history": _history_raw(decision.stable.history),
                             "heldBack": decision.stable.held_back}
    if snap.step is not None:
        res.status["schedule"] = schedule_status(snap, decision, applied.pruned, applied.feed,
                                                 applied.history)
    refresh_events: list[Event] = []
    if snap.refresh is not None:
        res.status["refresh"] = st.refresh_status(snap.refresh)
        refresh_events = st.refresh_events(snap.prev.get("refresh"), res.status["refresh"])
    if snap.step is not None and snap.step.start is not None:
        # Fields of the finished generation this one has none of yet: removed by the merge patch.
        res.status.update({k: None for k in generations.PER_GENERATION if k not in res.status})
    return Result(res.status, [*snap.plan_events, *decision.events,
                               *schedule_events(snap, spec, applied.pruned, applied.feed, applied.history),
                               *refresh_events,
                               *events, *res.events],
                  decision.desired, api_error)


def schedule_status(snap: Snapshot, decision: Decision, pruned: tuple[int, ...],
                    feed: Mapping[str, Any] | None = None,
                    history: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`status.schedule`: the generation, its slot, the next one, the last result, what is kept."""
    assert snap.step is not None
    sched = dict(snap.prev.get("schedule") or {})
    sched.setdefault("generation", 1)
    sched.setdefault("since", st.iso(snap.now))  # slots count from here (generations.State)
    sched["nextScheduleTime"] = st.iso(snap.step.next_time) if snap.step.next_time else None
    sched["state"] = snap.step.reason
    if snap.step.missed is not None:
        sched["lastMissedTime"] = st.iso(snap.step.missed)
    if decision.generations is not None:
        sched["generations"] = [g for g in decision.generations if g not in pruned]
    if feed is not None:
        sched["changes"] = feed_status(snap.prev, feed)
    if history is not None:  # the topic's history begins there now
        sched["changes"] = {**(sched.get("changes") or {}), "base": history["generation"]}
    return sched


def schedule_events(snap: Snapshot, spec: CrawlSpec, pruned: tuple[int, ...],
                    feed: Mapping[str, Any] | None = None,
                    history: Mapping[str, Any] | None = None) -> list[Event]:
    """A generation started, a slot skipped as too late, a change feed published, older generations
    deleted, the feed's history pruned."""
    out: list[Event] = []
    step = snap.step
    if step is not None and step.start is not None and step.scheduled_for is not None:
        # Said before its load has read anything: whether it can refresh is known only then.
        out.append(("Normal", "GenerationStarted",
                    f"generation {step.start} (scheduled for {st.iso(step.scheduled_for)}): refreshes "
                    f"generation {step.start - 1} from the registries' newest files if its load can (what "
                    "they leave unchanged is carried, not asked again), else crawls anew; status.refresh "
                    "says which"))
    if step is not None and step.missed is not None:
        out.append(("Warning", "MissSchedule",
                    f"skipped the slot {st.iso(step.missed)}: missed by more than "
                    f"spec.startingDeadlineSeconds ({spec.starting_deadline_seconds} s); the next "
                    f"is {st.iso(step.next_time) if step.next_time else 'none'}"))
    if feed is not None:
        counts = ", ".join(f"{n} {kind}" for kind, n in feed["counts"].items())
        where = "was on" if feed["already_on_topic"] else "published on"
        out.append(("Normal", "ChangesPublished",
                    f"generation {feed['generation']}'s change feed against generation "
                    f"{feed['generation'] - 1} {where} {feed['topic']}: {counts or 'its counts unknown'}"))
    if pruned:
        out.append(("Normal", "GenerationsPruned",
                    "deleted the topics and Redis keys of generation(s) "
                    f"{', '.join(map(str, pruned))} (spec.history.keep)"))
    if history is not None and history.get("published"):
        out.append(("Normal", "HistoryPruned",
                    f"the change feed's history on {history['topic']} begins at generation "
                    f"{history['generation']} ({history['date']}) now: its map published whole there, the "
                    f"later change sets after it ({history['published']} messages), the records before "
                    f"offset {history['start']} deleted"))
    return out


def reconcile(deps: Deps, crawl: Crawl) -> Result:
    """One level-based pass (the caller holds the crawl's lock): observe, decide, act, report."""
    name_problem = validate_name(crawl.name)
    if name_problem:
        return invalid(crawl, name_problem, deps.now())
    try:
        spec = parse_spec(crawl.spec, deps.worker_image)
    except SpecError as exc:
        return invalid(crawl, str(exc), deps.now())
    try:
        snap = observe(deps, crawl, spec)
        decision = decide(spec, snap)
        return report(crawl, spec, snap, decision, act(deps, crawl, spec, snap, decision))
    except Exception as exc:  # one crawl's failure is reported on it, never on the operator
        log.exception("reconciling %s/%s failed", crawl.namespace, crawl.name)
        return failed(crawl, f"{type(exc).__name__}: {exc}", deps.now())


def run(deps: Deps, ref: Crawl) -> Result | None:
    """The one writer of a crawl: under its lock, re-read it, reconcile, write the status.

    `ref` may be stale (kopf's copy from before another pass); only its identity is used. A crawl
    that is gone, replaced (another uid) or being deleted is left alone: None.
    """
    with lock_for(ref.uid):
        live = deps.kube.get(API, PLURAL, ref.namespace, ref.name)
        meta = (live or {}).get("metadata") or {}
        if live is None or meta.get("uid") != ref.uid or meta.get("deletionTimestamp"):
            return None
        crawl = crawl_of(live)
        result = reconcile(deps, crawl)
        if status_changed(crawl.status, result.status):
            write_status(deps.kube, crawl, result.status)
        return result


def write_status(kube: Kube, crawl: Crawl, status: Mapping[str, Any]) -> None:
    """Merge-patch the crawl's status. A write whose reply is an error is read back: if the API
    holds it (etcd's "request timed out" after a commit), it was written and the pass's Events are
    posted; else the error stands and the next pass does it again. So a generation's start is
    announced once: by the pass whose start the API holds (before, a start whose reply was lost was
    never announced, and a start refused was announced by the pass that redid it)."""
    try:
        kube.patch_status(API, PLURAL, crawl.namespace, crawl.name, status)
    except KubeError:
        held = (kube.get(API, PLURAL, crawl.namespace, crawl.name) or {}).get("status")
        if held is None or merge_patched(held, status) != held:
            raise
        log.warning("the status write of %s/%s answered an error but landed", crawl.namespace,
                    crawl.name)


def stop_workers(kube: Kube, crawl: Crawl) -> int:
    """Scale the worker Deployments to 0; returns how many worker pods are still there."""
    for name in (builders.worker_name(crawl.name), builders.overflow_name(crawl.name)):
        live = kube.get("apps/v1", "deployments", crawl.namespace, name)
        if live is not None and (live.get("spec") or {}).get("replicas") != 0:
            kube.patch("apps/v1", "deployments", crawl.namespace, name, {"spec": {"replicas": 0}})
    return len(kube.list("v1", "pods", crawl.namespace, builders.pod_labels(crawl.name)))


def nothing_to_delete(crawl: Crawl) -> str | None:
    """Why deleting this crawl touches no data outside Kubernetes, None if it deletes some.

    Then cleanup needs neither its Secret nor Kafka nor Redis, and never waits for them.
    """
    if str(crawl.annotations.get(SKIP_CLEANUP_ANNOTATION, "")).lower() == "true":
        return f"{SKIP_CLEANUP_ANNOTATION} is true: retained topics and Redis keys"
    try:
        spec = parse_spec(crawl.spec)
    except SpecError:
        return "spec invalid: nothing to clean up"
    if not spec.cleanup.deletes_data:
        return "cleanup policies are Retain: retained topics and Redis keys"
    return None


def cleanup_timeout(crawl: Crawl) -> float:
    """Seconds deletion may keep retrying (spec.cleanup.timeoutSeconds, else its default)."""
    try:
        return float(parse_spec(crawl.spec).cleanup.timeout_seconds)
    except SpecError:
        return float(Cleanup().timeout_seconds)


def cleanup(deps: Deps, crawl: Crawl) -> str | None:
    """On delete: stop the workers, then delete Redis keys and topics per the cleanup policy.

    None while worker pods are left (call again later). Under the crawl's lock, so no pass is
    in flight; passes after it see the deletionTimestamp and touch nothing. A crawl with no data
    to delete (`nothing_to_delete`) returns at once. Owned objects go by garbage collection.
    """
    with lock_for(crawl.uid):
        with _locks_guard:
            if crawl.uid in _cleaned:
                return _cleaned[crawl.uid]
        done = nothing_to_delete(crawl)
        if done is None:
            if stop_workers(deps.kube, crawl):
                return None
            spec = parse_spec(crawl.spec)
            done = "; ".join(
                deps.backend.cleanup(target(deps.kube, crawl, spec, gen),
                                     topics=spec.cleanup.topics == "Delete",
                                     redis=spec.cleanup.redis == "Delete")
                for gen in generations.kept(crawl.status, generation_of(crawl)))
            if spec.schedule is not None and spec.cleanup.topics == "Delete":  # the generations' feed
                done += "; " + deps.backend.delete_changes(target(deps.kube, crawl, spec, 1))
        with _locks_guard:
            _cleaned[crawl.uid] = done
            while len(_cleaned) > CLEANED_REMEMBERED:
                _cleaned.popitem(last=False)
        return done


def status_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Patch only when something other than the clock-driven fields moved."""
    keys = set(new)
    before = {k: old.get(k) for k in keys}
    return st.strip_volatile(before) != st.strip_volatile(new)
