"""Why the workers cannot run: Deployment and pod failure reasons, each naming what to fix (pure).

Kubernetes says it on objects the crawl's owner rarely reads: a quota or an admission webhook on
the Deployment's `ReplicaFailure` condition, an image pull or a crash loop on a pod's container
state, the scheduler's reason on `PodScheduled`. `problem` turns the worst of them into one
(reason, message) for the crawl's Degraded condition (and, through its transition, a Warning Event).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from whoiscrawl.operator.spot import PodView

# A container waiting for one of these will not start until something outside the pod changes.
PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                          "ErrImageNeverPull", "RegistryUnavailable", "SignatureValidationFailed"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError",
                            "RunContainerError", "PreCreateHookError", "PreStartHookError"})
CRASH_REASON = "CrashLoopBackOff"
MESSAGE_CHARS = 300  # of the API's own text, so a condition stays readable


@dataclass(frozen=True)
class Fleet:
    """What one pass saw of the workers: their Deployments and pods, and how it asked for them."""

    deployments: tuple[Mapping[str, Any], ...]
    pods: tuple[PodView, ...]
    image: str
    capacity_type: str
    pending_timeout_seconds: float
    namespace: str = ""


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 3] + "..."


def _condition(deployment: Mapping[str, Any], ctype: str) -> Mapping[str, Any]:
    for c in (deployment.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return {}


def not_created(fleet: Fleet) -> tuple[str, str] | None:
    """A Deployment whose pods the API server refuses (quota, LimitRange, admission, PSS)."""
    for d in fleet.deployments:
        failure = _condition(d, "ReplicaFailure")
        if failure.get("status") == "True":
            name = (d.get("metadata") or {}).get("name", "")
            return ("PodsNotCreated",
                    f"Deployment {name} cannot create worker pods: {_short(failure.get('message', ''))}"
                    " (fix the namespace's ResourceQuota, LimitRange or admission policy, or lower "
                    "spec.workers.resources or spec.workers.max)")
    return None


def _first(pods: Iterable[PodView], reasons: frozenset[str]) -> PodView | None:
    return next((p for p in pods if p.waiting and p.waiting[0] in reasons and not p.terminating),
                None)


def containers(fleet: Fleet) -> tuple[str, str] | None:
    """A worker container that cannot be pulled, configured or kept running."""
    if pod := _first(fleet.pods, PULL_REASONS):
        reason, message = pod.waiting or ("", "")
        return ("ImagePullFailed",
                f"pod {pod.name}: {reason}: {_short(message)} (check spec.workers.image "
                f"{fleet.image!r} exists and the nodes may pull it from its registry)")
    if pod := _first(fleet.pods, CONFIG_REASONS):
        reason, message = pod.waiting or ("", "")
        return ("WorkerConfigError",
                f"pod {pod.name}: {reason}: {_short(message)} (check the Secrets the spec names: "
                "kafka.credentialsSecret, redis.urlSecretRef; and spec.workers.env)")
    if pod := _first(fleet.pods, frozenset({CRASH_REASON})):
        ended = f", last {pod.last_exit}" if pod.last_exit else ""
        return ("WorkersCrashLooping",
                f"pod {pod.name} restarted {pod.restarts} times{ended} (read why with kubectl "
                f"logs -n {fleet.namespace} {pod.name} --previous; often Kafka or Redis "
                "unreachable from the pods, or spec.workers.env)")
    return None


def stuck_rollout(fleet: Fleet) -> tuple[str, str] | None:
    for d in fleet.deployments:
        progressing = _condition(d, "Progressing")
        if progressing.get("status") == "False" and progressing.get(
                "reason") == "ProgressDeadlineExceeded":
            name = (d.get("metadata") or {}).get("name", "")
            return ("RolloutStuck", f"Deployment {name}: {_short(progressing.get('message', ''))}")
    return None


def unschedulable(fleet: Fleet, now: datetime) -> tuple[str, str] | None:
    """On-demand pods (capacity on-demand, or the overflow) the scheduler cannot place.

    Spot pods are the spot policy's (spot.decide): `any` covers them with the overflow, `spot`
    reports SpotCapacityUnavailable.
    """
    stuck = [p for p in fleet.pods
             if (p.overflow or fleet.capacity_type == "on-demand") and not p.terminating
             and p.unschedulable_since is not None
             and (now - p.unschedulable_since).total_seconds() >= fleet.pending_timeout_seconds]
    if not stuck:
        return None
    return ("WorkersUnschedulable",
            f"{len(stuck)} on-demand worker pod(s) Unschedulable for over "
            f"{int(fleet.pending_timeout_seconds)}s: {_short(stuck[0].unschedulable_message)} "
            "(check spec.scheduling: nodeSelector, affinity, tolerations; and spec.workers.resources "
            "and spec.workers.scratch, the disk each worker asks for, against the nodes)")


def problem(fleet: Fleet, now: datetime) -> tuple[str, str] | None:
    """The one reason the workers cannot run that most needs fixing, or None."""
    return (not_created(fleet) or containers(fleet) or stuck_rollout(fleet)
            or unschedulable(fleet, now))
