"""One active operator among replicas: the Lease election on a real API server.

Two candidates with short timings: the first takes the Lease, the second waits while it is renewed,
a write on a stale resourceVersion is refused (409: two candidates never both win), the second
takes over once the holder stops renewing, and the old holder learns it lost within its deadline.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from opsupport_api import until
from whoiscrawl.operator.kube import KubeClient, KubeError
from whoiscrawl.operator.leader import API, PLURAL, Elector, Timing

from .conftest import K8s

pytestmark = pytest.mark.timeout(120)
FAST = Timing(lease_seconds=2.0, renew_deadline_seconds=1.5, retry_seconds=0.2)


def test_one_holder_at_a_time_and_a_takeover_when_it_stops(k8s: K8s, namespace: str) -> None:
    kube = KubeClient(kubeconfig=str(k8s.cluster.kubeconfig))
    name = f"lead-{uuid.uuid4().hex[:6]}"
    a, b = (Elector(kube, namespace, name, who, FAST) for who in ("a", "b"))
    assert a.acquire()
    stop_a, lost_a = threading.Event(), threading.Event()
    keeper = threading.Thread(target=a.keep, args=(lost_a.set, stop_a), daemon=True)
    keeper.start()
    try:
        # Renewed by `a`: `b` never gets it, however long past the lease duration it tries.
        deadline = time.monotonic() + FAST.lease_seconds * 2
        while time.monotonic() < deadline:
            assert b.attempt() == "other"
            time.sleep(FAST.retry_seconds)
        assert not lost_a.is_set()

        # A write on a resourceVersion someone has moved past is refused by the API server.
        stale = kube.get(API, PLURAL, namespace, name) or {}
        until(lambda: (kube.get(API, PLURAL, namespace, name) or {})["metadata"][
            "resourceVersion"] != stale["metadata"]["resourceVersion"], 10, "a renewal")
        with pytest.raises(KubeError) as refused:
            kube.patch(API, PLURAL, namespace, name, {
                "metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]},
                "spec": {"holderIdentity": "b"}})
        assert refused.value.status == 409

        stop_a.set()  # `a` stops renewing (frozen, partitioned, killed)
        keeper.join()
        assert b.acquire()
        lease = (kube.get(API, PLURAL, namespace, name) or {})["spec"]
        assert lease["holderIdentity"] == "b" and lease["leaseTransitions"] == 1

        # `a` comes back: it finds a live rival and stops at once rather than reconcile beside it.
        lost_again = threading.Event()
        a.keep(lost_again.set)
        assert lost_again.is_set()
    finally:
        stop_a.set()
