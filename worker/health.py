"""A fleet worker's liveness: stuck when its event loop, its consumer or its lanes stop moving."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Longer than any wait a healthy worker sits out with work in hand and nothing ending: a 429's
# pause (at most 300 s), a help query's pauses while a registry is down (30 s each, requests
# between), a slot of a budget the fleet shares (LACNIC's 10/m over a fleet sized to it).
STUCK_AFTER_S = 600.0


@dataclass
class Liveness:
    """When the worker last moved, kept by its event loop and read by `/healthz` (another thread).

    Stuck, once armed (the worker takes shards; loading the published files before is not
    watched), when for longer than `stuck_after` the event loop has not run its tick, the Kafka
    consumer has not returned from a poll (its thread hangs, or a commit it serves does), or work
    is in hand (a shard walked or queued) and the lanes' progress (Crawler.progress) has not
    grown. Idle lanes are not stuck: the clock starts when work arrives. A restart is what such
    a worker needs; its shards go to the others meanwhile."""

    stuck_after: float = STUCK_AFTER_S
    clock: Callable[[], float] = time.monotonic
    armed: bool = False
    loop_at: float = field(init=False)  # the event loop's last tick
    polled_at: float = field(init=False)  # the consumer's last poll returned
    moved_at: float = field(init=False)  # the lanes' progress last grew, or work arrived
    busy: bool = False
    progress: int = 0

    def __post_init__(self) -> None:
        self.loop_at = self.polled_at = self.moved_at = self.clock()

    def arm(self) -> None:
        """Start watching (the worker takes shards from now on)."""
        self.loop_at = self.polled_at = self.moved_at = self.clock()
        self.armed = True

    def polled(self) -> None:
        """The consumer returned from a poll."""
        self.polled_at = self.clock()

    def tick(self, busy: bool, progress: int) -> None:
        """The event loop ran: whether work is in hand, and the lanes' progress now."""
        now = self.loop_at = self.clock()
        if progress != self.progress or (busy and not self.busy):
            self.moved_at = now
        self.busy, self.progress = busy, progress

    def stuck(self) -> str | None:
        """Why the worker is stuck, or None while it is not."""
        if not self.armed:
            return None
        now, bound = self.clock(), self.stuck_after
        if now - self.loop_at > bound:
            return f"the event loop has not run for {now - self.loop_at:.0f}s"
        if now - self.polled_at > bound:
            return f"the Kafka consumer has not returned from a poll for {now - self.polled_at:.0f}s"
        if self.busy and now - self.moved_at > bound:
            return f"no lane has moved for {now - self.moved_at:.0f}s with work in hand"
        return None
