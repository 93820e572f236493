"""Liveness bookkeeping: the operator is alive while every crawl's reconcile passes keep finishing."""

from __future__ import annotations

import threading

STALE_INTERVALS = 6  # the probe fails when a crawl's passes have not finished for this many intervals


class Liveness:
    """When each crawl's oldest unfinished pass started (monotonic seconds); thread-safe.

    A pass that returns or raises (its failure is reported on its crawl) finishes; one that hangs
    leaves its start behind, so a crawl whose passes never end shows.
    """

    def __init__(self) -> None:
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()

    def started(self, uid: str, now: float) -> None:
        with self._lock:
            self._pending.setdefault(uid, now)

    def finished(self, uid: str) -> None:
        with self._lock:
            self._pending.pop(uid, None)

    def stuck(self, now: float, limit: float) -> list[str]:
        """The crawls (uids) with no pass finished for longer than `limit` seconds."""
        with self._lock:
            return sorted(uid for uid, since in self._pending.items() if now - since > limit)


LIVENESS = Liveness()
