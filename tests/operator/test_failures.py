"""Why workers cannot run, read from the Deployment and pod status shapes Kubernetes writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from whoiscrawl.operator import status as st
from whoiscrawl.operator.failures import Fleet, problem
from whoiscrawl.operator.spot import pod_view

NOW = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
LONG_AGO = (NOW - timedelta(seconds=900)).isoformat()
IMAGE = "registry.example/whoiscrawl:9.9"


def pod(name: str = "demo-worker-7d9f-abcde", *, waiting: tuple[str, str] | None = None,
        restarts: int = 0, last: dict[str, Any] | None = None, overflow: bool = False,
        unschedulable: str | None = None) -> dict[str, Any]:
    """A worker pod as the API server returns it (kubelet-written container status)."""
    container: dict[str, Any] = {"name": "worker", "image": IMAGE, "ready": False,
                                 "restartCount": restarts, "state": {"running": {}}}
    if waiting:
        container["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    if last:
        container["lastState"] = {"terminated": last}
    conditions = [{"type": "PodScheduled", "status": "True"}]
    if unschedulable is not None:
        conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                       "message": unschedulable, "lastTransitionTime": LONG_AGO}]
    component = "worker-overflow" if overflow else "worker"
    return {"metadata": {"name": name, "creationTimestamp": LONG_AGO,
                         "labels": {"app.kubernetes.io/component": component}},
            "spec": {} if unschedulable is not None else {"nodeName": "n1"},
            "status": {"phase": "Pending" if unschedulable is not None or waiting else "Running",
                       "conditions": conditions,
                       "containerStatuses": [] if unschedulable is not None else [container]}}


def deployment(**conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "demo-worker", "namespace": "crawls"},
            "status": {"conditions": [{"type": t, "status": s, "reason": r, "message": m}
                                      for t, (s, r, m) in conditions.items()]}}


QUOTA = ('pods "demo-worker-7d9f-x2" is forbidden: exceeded quota: crawls-quota, requested: '
         'pods=1, used: pods=2, limited: pods=2')
HEALTHY = deployment(Progressing=("True", "NewReplicaSetAvailable", "ok"))
CASES: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], str, str, list[str]]] = [
    # (id, deployments, pods, capacityType, reason, words the message must hold)
    ("healthy", [HEALTHY], [pod()], "any", "", []),
    ("quota", [deployment(ReplicaFailure=("True", "FailedCreate", QUOTA))], [], "any",
     "PodsNotCreated", ["exceeded quota: crawls-quota", "ResourceQuota", "spec.workers.resources"]),
    ("admission", [deployment(ReplicaFailure=(
        "True", "FailedCreate", 'admission webhook "policy.example" denied the request: no'))],
     [], "spot", "PodsNotCreated", ["denied the request", "admission policy"]),
    ("image pull", [HEALTHY], [pod(waiting=("ImagePullBackOff",
                                            f'Back-off pulling image "{IMAGE}"'))], "any",
     "ImagePullFailed", ["ImagePullBackOff", "spec.workers.image", IMAGE]),
    ("bad image name", [HEALTHY], [pod(waiting=("InvalidImageName", "couldn't parse"))], "any",
     "ImagePullFailed", ["InvalidImageName"]),
    ("missing secret", [HEALTHY], [pod(waiting=("CreateContainerConfigError",
                                                'secret "kafka-creds" not found'))], "any",
     "WorkerConfigError", ['secret "kafka-creds" not found', "kafka.credentialsSecret"]),
    ("crash loop", [HEALTHY], [pod(waiting=("CrashLoopBackOff", "back-off 5m0s restarting"),
                                   restarts=7, last={"exitCode": 1, "reason": "Error"})], "any",
     "WorkersCrashLooping", ["restarted 7 times", "exit code 1 (Error)",
                             "kubectl logs -n crawls demo-worker-7d9f-abcde --previous"]),
    ("rollout stuck", [deployment(Progressing=(
        "False", "ProgressDeadlineExceeded", 'ReplicaSet "demo-worker-7d9f" has timed out'))],
     [pod()], "any", "RolloutStuck", ["has timed out"]),
    ("on-demand unschedulable", [HEALTHY],
     [pod(unschedulable="0/3 nodes are available: 3 Insufficient cpu.")], "on-demand",
     "WorkersUnschedulable", ["Insufficient cpu", "spec.workers.resources"]),
    ("on-demand unschedulable for its disk", [HEALTHY],
     [pod(unschedulable="0/3 nodes are available: 3 Insufficient ephemeral-storage.")], "on-demand",
     "WorkersUnschedulable", ["Insufficient ephemeral-storage", "spec.workers.scratch"]),
    ("overflow unschedulable", [HEALTHY],
     [pod(unschedulable="0/3 nodes are available: 3 node(s) had untolerated taint", overflow=True)],
     "any", "WorkersUnschedulable", ["untolerated taint", "tolerations"]),
    # Spot pods waiting for capacity are the spot policy's (overflow or SpotCapacityUnavailable).
    ("spot unschedulable", [HEALTHY], [pod(unschedulable="0/3 nodes are available")], "spot", "",
     []),
    # The quota outranks what its few pods show.
    ("quota first", [deployment(ReplicaFailure=("True", "FailedCreate", QUOTA))],
     [pod(waiting=("CrashLoopBackOff", "back-off"), restarts=3)], "any", "PodsNotCreated", []),
]


@pytest.mark.parametrize(("deployments", "pods", "capacity", "reason", "words"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_reason_workers_cannot_run_names_what_to_fix(
        deployments: list[dict[str, Any]], pods: list[dict[str, Any]], capacity: str, reason: str,
        words: list[str]) -> None:
    fleet = Fleet(tuple(deployments), tuple(pod_view(p) for p in pods), IMAGE, capacity, 300,
                  "crawls")
    got = problem(fleet, NOW)
    assert (got[0] if got else "") == reason
    for word in words:
        assert got is not None and word in got[1], got


def test_a_long_api_message_is_cut_short() -> None:
    long = deployment(ReplicaFailure=("True", "FailedCreate", "x" * 5000))
    got = problem(Fleet((long,), (), IMAGE, "any", 300), NOW)
    assert got is not None and len(got[1]) < 600


def test_the_reason_is_the_crawls_degraded_condition_and_a_warning_event() -> None:
    why = ("ImagePullFailed", "pod w: ImagePullBackOff: ... (check spec.workers.image ...)")
    obs = st.Observation(now=NOW, generation=1, planned=True, workers_desired=2,
                         workload_problem=why)
    res = st.compute_status({}, obs)
    conds = {c["type"]: c for c in res.status["conditions"]}
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == ("True", "ImagePullFailed")
    assert why[1] in conds["Ready"]["message"]
    assert ("Warning", "ImagePullFailed", why[1]) in res.events
