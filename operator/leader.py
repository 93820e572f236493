"""One active operator among replicas: a coordination.k8s.io Lease, held and renewed (client-go's rules).

A candidate takes the Lease when nobody holds it or its holder has not renewed it for
`lease_seconds`; the holder renews it every `retry_seconds`; every write carries the
resourceVersion it read, so two candidates can never both win (the API server answers the second
with 409). A holder that cannot renew within `renew_deadline_seconds` stops (the process exits
and restarts as a candidate) well before anyone else may take the Lease: two operators never
reconcile at once, even across a partition.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from whoiscrawl.operator.kube import Kube, KubeError

log = logging.getLogger("whoiscrawl.operator.leader")
API = "coordination.k8s.io/v1"
PLURAL = "leases"


@dataclass(frozen=True)
class Timing:
    """client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry."""

    lease_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0


def _micro(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # a Lease's MicroTime


def verdict(spec: Mapping[str, Any] | None, me: str, unchanged_for: float) -> str:
    """What a candidate may do with a Lease's spec: renew (ours), take (free, or its record has
    not changed for its whole duration as this candidate saw it), or wait.

    Like client-go, expiry is judged on the candidate's own clock (how long it has seen the same
    record), never by comparing the holder's renewTime with it: clocks of two nodes may differ.
    """
    spec = spec or {}
    holder = spec.get("holderIdentity") or ""
    if holder == me:
        return "renew"
    if not holder or unchanged_for >= float(spec.get("leaseDurationSeconds") or 0):
        return "take"
    return "wait"


def claimed(spec: Mapping[str, Any] | None, me: str, now: datetime,
            lease_seconds: float) -> dict[str, Any]:
    """The Lease spec after `me` renews or takes it."""
    spec = dict(spec or {})
    ours = spec.get("holderIdentity") == me
    out = {"holderIdentity": me, "leaseDurationSeconds": int(lease_seconds),
           "renewTime": _micro(now),
           "acquireTime": spec.get("acquireTime") if ours else _micro(now),
           "leaseTransitions": int(spec.get("leaseTransitions") or 0)
           + (0 if ours or not spec.get("holderIdentity") else 1)}
    return out


class Elector:
    """Acquire, then keep, one Lease for this process."""

    def __init__(self, kube: Kube, namespace: str, name: str, me: str,
                 timing: Timing | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.kube, self.namespace, self.name, self.me = kube, namespace, name, me
        self.timing = timing or Timing()
        self.now = now
        self._seen: tuple[Any, float] | None = None  # the record last read, and since when

    def _unchanged_for(self, spec: Mapping[str, Any]) -> float:
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("acquireTime"))
        if self._seen is None or self._seen[0] != record:
            self._seen = (record, time.monotonic())
        return time.monotonic() - self._seen[1]

    def attempt(self) -> str:
        """One attempt to take or renew the Lease: "held", "other" (a live rival holds it) or
        "error" (the API refused or was not reached: we may still hold it until it expires)."""
        try:
            live = self.kube.get(API, PLURAL, self.namespace, self.name)
            now = self.now()
            if live is None:
                self.kube.create(API, PLURAL, self.namespace, {
                    "apiVersion": API, "kind": "Lease", "metadata": {"name": self.name},
                    "spec": claimed(None, self.me, now, self.timing.lease_seconds)})
                return "held"
            spec = live.get("spec") or {}
            if verdict(spec, self.me, self._unchanged_for(spec)) == "wait":
                return "other"
            # The resourceVersion read is a precondition: a rival's write in between is a 409.
            self.kube.patch(API, PLURAL, self.namespace, self.name, {
                "metadata": {"resourceVersion": live["metadata"]["resourceVersion"]},
                "spec": claimed(spec, self.me, now, self.timing.lease_seconds)})
            return "held"
        except KubeError as exc:
            log.info("lease %s/%s not held: %s", self.namespace, self.name, exc)
            return "other" if exc.status == 409 else "error"

    def try_hold(self) -> bool:
        return self.attempt() == "held"

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until the Lease is ours (False if `stop` is set first)."""
        stop = stop or threading.Event()
        log.info("waiting to lead as %s (lease %s/%s)", self.me, self.namespace, self.name)
        while not stop.is_set():
            if self.try_hold():
                log.info("leading as %s", self.me)
                return True
            stop.wait(self.timing.retry_seconds)
        return False

    def keep(self, lost: Callable[[], None], stop: threading.Event | None = None) -> None:
        """Renew every retry interval; call `lost` when no renewal succeeded within the deadline."""
        stop = stop or threading.Event()
        last = time.monotonic()
        while not stop.wait(self.timing.retry_seconds):
            got = self.attempt()
            if got == "held":
                last = time.monotonic()
            elif got == "other" or time.monotonic() - last > self.timing.renew_deadline_seconds:
                log.critical("lost the lease %s/%s (%s): stopping", self.namespace, self.name,
                             "a rival holds it" if got == "other" else "not renewed in time")
                lost()
                return

    def keep_in_background(self, lost: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=self.keep, args=(lost,), name="leader-lease", daemon=True)
        thread.start()
        return thread


def _standby_health(port: int) -> ThreadingHTTPServer | None:
    """Answer the liveness probe while waiting (kopf serves it only once it runs)."""
    if not port:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"standby": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    return server


def lead(lease: str, liveness_port: int, kube: Kube) -> None:
    """Block until this process holds `lease` ("namespace/name"), then keep it in a thread; the
    process exits (code 1) when it is lost, and its restart waits as a candidate again."""
    namespace, _, name = lease.partition("/")
    me = f"{os.environ.get('WHOISCRAWL_POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    elector = Elector(kube, namespace, name, me)
    health = _standby_health(liveness_port)
    try:
        elector.acquire()
    finally:
        if health is not None:
            health.shutdown()
            health.server_close()
    elector.keep_in_background(lambda: os._exit(1))
