"""The scaling policy: lag like KEDA, bounded by min/max, partitions and the registry rate budget,
sized for a deadline, with HPA-style scale-down stabilisation (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

EPS = 1e-9


@dataclass(frozen=True)
class ScalingInputs:
    """Everything the policy looks at; no I/O, no clocks."""

    lag: int  # work messages not yet committed by the worker group
    partitions: int  # of the work topic: more consumers than partitions sit idle
    min_workers: int
    max_workers: int
    lag_threshold: int = 2
    replicas: int | None = None  # manual size (spec.workers.replicas / kubectl scale)
    paused: bool = False
    completed: bool = False
    address_budget: float = 0.0  # lookups/s ONE egress address may make (sum of registries)
    egress_addresses: int | None = None  # None: each worker brings its own address
    worker_rate: float = 20.0  # lookups/s one worker sustains when nothing throttles it
    remaining_addresses: int | None = None
    seconds_to_deadline: float | None = None
    worker_address_rate: float | None = None  # observed addresses/s covered per worker


@dataclass(frozen=True)
class Recommendation:
    """How many workers, why, and which bounds cut the number down."""

    workers: int
    reason: str  # Completed | Paused | Manual | Lag | Deadline | MinWorkers | Idle
    limited_by: tuple[str, ...] = ()
    budget_cap: int | None = None
    deadline_workers: int | None = None

    @property
    def message(self) -> str:
        text = f"{self.workers} workers ({self.reason})"
        if self.limited_by:
            text += f", limited by {', '.join(self.limited_by)}"
        return text


def budget_cap(address_budget: float, egress_addresses: int | None,
               worker_rate: float) -> int | None:
    """Most workers the egress addresses' registry limits can feed; None when unbounded.

    workers <= ceil(allowed lookups/s of all egress addresses / lookups/s one worker sustains).
    """
    if egress_addresses is None:
        return None
    if worker_rate <= 0:
        return 1
    return max(1, math.ceil(address_budget * egress_addresses / worker_rate - EPS))


def deadline_workers(remaining: int | None, seconds: float | None,
                     per_worker_rate: float | None) -> int | None:
    """Workers needed so remaining work / fleet rate meets the deadline; None if unknowable."""
    if remaining is None or seconds is None or not per_worker_rate or per_worker_rate <= 0:
        return None
    if remaining <= 0:
        return 0
    if seconds <= 0:
        return 1_000_000  # already late: as many as allowed
    return math.ceil(remaining / (seconds * per_worker_rate) - EPS)


def recommend(i: ScalingInputs) -> Recommendation:
    """The desired worker count before stabilisation."""
    if i.completed:
        return Recommendation(0, "Completed")
    if i.paused:
        return Recommendation(0, "Paused")
    cap = budget_cap(i.address_budget, i.egress_addresses, i.worker_rate)
    need = deadline_workers(i.remaining_addresses, i.seconds_to_deadline, i.worker_address_rate)
    limited: list[str] = []
    if i.replicas is not None:
        want, reason = i.replicas, "Manual"
    else:
        want = math.ceil(i.lag / max(1, i.lag_threshold)) if i.lag > 0 else 0
        reason = "Lag" if want else "Idle"
        if need is not None and need > want and i.lag > 0:
            want, reason = need, "Deadline"
        if want < i.min_workers:
            want, reason = i.min_workers, "MinWorkers"
        if want > i.max_workers:
            want = i.max_workers
            limited.append("max")
    bounds = [("partitions", i.partitions), ("rateBudget", cap)]
    if i.lag > 0 and i.replicas is None:
        bounds.append(("lag", i.lag))  # a consumer needs a message of its own
    for name, bound in bounds:
        if bound is not None and want > bound:
            want = bound
            limited.append(name)
    return Recommendation(max(0, want), reason, tuple(limited), cap, need)


@dataclass(frozen=True)
class Point:
    """A recommendation that held from `time` until the next point."""

    time: datetime
    workers: int


@dataclass(frozen=True)
class Stabilized:
    workers: int
    history: tuple[Point, ...] = field(default=())
    held_back: bool = False  # True when a scale-down is being delayed


def stabilize(current: int, recommended: int, history: tuple[Point, ...], now: datetime,
              window_seconds: float) -> Stabilized:
    """Scale up at once; scale down to the highest recommendation seen within the window.

    `history` holds change points only, so it stays small. A point stays relevant while the
    value it set was still in force at some time inside the window.
    """
    points = list(history)
    if not points or points[-1].workers != recommended:
        points.append(Point(now, recommended))
    start = now - timedelta(seconds=window_seconds)
    kept = [p for k, p in enumerate(points)
            if k == len(points) - 1 or points[k + 1].time > start]
    if recommended >= current or window_seconds <= 0:
        return Stabilized(recommended, tuple(kept))
    peak = max(p.workers for p in kept)
    target = min(current, max(peak, recommended))
    return Stabilized(target, tuple(kept), held_back=target > recommended)
