"""Spot capacity: notice worker pods stuck Pending and decide the on-demand fallback (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


def pod_view(raw: Mapping[str, Any]) -> PodView:
    meta = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return PodView(
        name=str(meta.get("name", "")),
        phase=str(status.get("phase") or "Pending"),
        created=parse_time(meta.get("creationTimestamp")),
        scheduled=bool(spec.get("nodeName")) or conds.get("PodScheduled") == "True",
        ready=conds.get("Ready") == "True",
        node=spec.get("nodeName"),
        terminating=bool(meta.get("deletionTimestamp")),
    )


def stuck_pending(pods: Iterable[PodView], now: datetime, timeout_seconds: float) -> list[str]:
    """Names of unscheduled pods Pending longer than the timeout ("capacity oversubscribed")."""
    out = []
    for pod in pods:
        if pod.terminating or pod.scheduled or pod.phase != "Pending" or pod.created is None:
            continue
        if (now - pod.created).total_seconds() >= timeout_seconds:
            out.append(pod.name)
    return sorted(out)


@dataclass(frozen=True)
class SpotDecision:
    """Whether to widen to any capacity now, and what to tell the user."""

    fall_back: bool  # switch the Deployment to any capacity this round
    pending_message: str | None  # stuck pods and no fallback allowed: a Degraded message


def decide(capacity_type: str, fallen_back: bool, pods: Iterable[PodView], now: datetime,
           timeout_seconds: float) -> SpotDecision:
    """Spot pods Pending past the timeout -> on-demand when capacityType is any; else report."""
    if capacity_type == "on-demand" or fallen_back:
        return SpotDecision(False, None)
    stuck = stuck_pending(pods, now, timeout_seconds)
    if not stuck:
        return SpotDecision(False, None)
    what = (f"{len(stuck)} worker pod(s) Pending on spot for over {int(timeout_seconds)}s: "
            f"{', '.join(stuck[:5])}{' ...' if len(stuck) > 5 else ''}")
    if capacity_type == "any":
        return SpotDecision(True, None)
    return SpotDecision(False, what + " (capacityType: spot, no fallback)")


def distinct_nodes(pods: Iterable[PodView]) -> int:
    return len({p.node for p in pods if p.node and not p.terminating})
