"""Spot capacity: notice Unschedulable spot pods and size the on-demand overflow (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from whoiscrawl.operator.builders import COMPONENT_LABEL, OVERFLOW_COMPONENT
from whoiscrawl.operator.status import parse_time


@dataclass(frozen=True)
class PodView:
    """The few facts about a worker pod that matter here."""

    name: str
    phase: str
    created: datetime | None
    scheduled: bool
    ready: bool
    node: str | None
    terminating: bool = False
    unschedulable_since: datetime | None = None  # PodScheduled=False, reason Unschedulable
    overflow: bool = False  # a pod of the on-demand overflow Deployment
    unschedulable_message: str = ""  # the scheduler's why (PodScheduled's message)
    waiting: tuple[str, str] | None = None  # a container's (reason, message) while it waits
    restarts: int = 0  # of the worker container
    last_exit: str = ""  # how its last run ended: "exit code 1 (Error)"


def _container(status: Mapping[str, Any]) -> tuple[tuple[str, str] | None, int, str]:
    """(waiting reason and message, restarts, last exit) of the worker's container."""
    for c in status.get("containerStatuses") or []:
        state = c.get("state") or {}
        waiting = state.get("waiting")
        ended = (c.get("lastState") or {}).get("terminated") or {}
        last = (f"exit code {ended.get('exitCode')} ({ended.get('reason') or 'no reason'})"
                if ended else "")
        return ((str(waiting.get("reason") or ""), str(waiting.get("message") or ""))
                if waiting else None), int(c.get("restartCount") or 0), last
    return None, 0, ""


def pod_view(raw: Mapping[str, Any]) -> PodView:
    meta = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    sched = conds.get("PodScheduled") or {}
    created = parse_time(meta.get("creationTimestamp"))
    unschedulable = sched.get("status") == "False" and sched.get("reason") == "Unschedulable"
    waiting, restarts, last_exit = _container(status)
    return PodView(
        name=str(meta.get("name", "")),
        phase=str(status.get("phase") or "Pending"),
        created=created,
        scheduled=bool(spec.get("nodeName")) or sched.get("status") == "True",
        ready=(conds.get("Ready") or {}).get("status") == "True",
        node=spec.get("nodeName"),
        terminating=bool(meta.get("deletionTimestamp")),
        unschedulable_since=(parse_time(sched.get("lastTransitionTime")) or created)
        if unschedulable else None,
        overflow=(meta.get("labels") or {}).get(COMPONENT_LABEL) == OVERFLOW_COMPONENT,
        unschedulable_message=str(sched.get("message") or "") if unschedulable else "",
        waiting=waiting, restarts=restarts, last_exit=last_exit,
    )


def unschedulable(pods: Iterable[PodView], now: datetime, timeout_seconds: float) -> list[str]:
    """Names of spot-fleet pods the scheduler has called Unschedulable for over the timeout."""
    out = []
    for pod in pods:
        if pod.terminating or pod.overflow or pod.scheduled or pod.unschedulable_since is None:
            continue
        if (now - pod.unschedulable_since).total_seconds() >= timeout_seconds:
            out.append(pod.name)
    return sorted(out)


@dataclass(frozen=True)
class SpotDecision:
    """How many on-demand overflow workers to run, and what to tell the user."""

    overflow: int  # replicas of the on-demand overflow Deployment (capacityType any)
    since: datetime | None  # when spot pods were last seen Unschedulable (the cool-down clock)
    pending_message: str | None  # stuck pods and no overflow allowed: a Degraded message


def decide(capacity_type: str, pods: Iterable[PodView], now: datetime, timeout_seconds: float,
           previous: int = 0, since: datetime | None = None) -> SpotDecision:
    """Spot pods Unschedulable past the timeout -> as many on-demand overflow workers (`any`).

    The spot Deployment is never touched. The overflow follows the stuck count while there is
    one, and is held for one more timeout (the cool-down) once spot schedules again, then 0.
    With `spot` the stuck pods are only reported.
    """
    if capacity_type == "on-demand":
        return SpotDecision(0, None, None)
    stuck = unschedulable(pods, now, timeout_seconds)
    if capacity_type == "spot":
        what = (f"{len(stuck)} worker pod(s) Unschedulable on spot for over "
                f"{int(timeout_seconds)}s: {', '.join(stuck[:5])}{' ...' if len(stuck) > 5 else ''}"
                " (capacityType: spot, no fallback)")
        return SpotDecision(0, None, what if stuck else None)
    if stuck:
        return SpotDecision(len(stuck), now, None)
    if previous and since is not None and (now - since).total_seconds() < timeout_seconds:
        return SpotDecision(previous, since, None)  # cool-down: spot may be gone again soon
    return SpotDecision(0, None, None)


def distinct_nodes(pods: Iterable[PodView]) -> int:
    return len({p.node for p in pods if p.node and not p.terminating})
