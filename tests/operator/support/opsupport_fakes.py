"""In-memory fake of the operator's Backend Protocol (never of Kafka or Redis themselves)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from whoiscrawl.operator.backend import BackendError, Plan, Target
from whoiscrawl.operator.spec import CrawlSpec, Kafka
from whoiscrawl.operator.status import Progress


class EmptyKube:
    """A Kube with no objects at all (no worker Deployment, no pods left): all cleanup needs to see."""

    def get(self, *_: Any) -> None:
        return None

    def list(self, *_: Any) -> list[dict[str, Any]]:
        return []


@dataclass
class FakeBackend:
    """Progress and lag are set by the test; calls are recorded (in `calls`, in order)."""

    lag_of: dict[str, int] = field(default_factory=dict)
    default_lag: int = 0  # the lag of a crawl missing from lag_of
    counters_of: dict[str, Progress] = field(default_factory=dict)
    refresh_of: dict[str, dict[str, Any]] = field(default_factory=dict)  # the loads' refresh figures
    partitions_of: int = 12
    shards_per_range: int = 16
    addresses_per_range: int = 1 << 20
    broken: str | None = None  # set: every call raises BackendError(broken)
    delays: dict[str, float] = field(default_factory=dict)  # method -> seconds it takes
    topics: dict[str, int] = field(default_factory=dict)
    plans: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    markers: dict[tuple[str, str], Plan] = field(default_factory=dict)  # (crawl, marker) -> sent
    planned: dict[str, set[tuple[str, int]]] = field(default_factory=dict)  # crawl -> its shards
    cleanups: list[tuple[str, bool, bool]] = field(default_factory=list)
    feeds: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)  # on the topic: counts
    histories: dict[str, int] = field(default_factory=dict)  # where each feed's history begins (keep_history)
    feed_counts: dict[str, int] = field(default_factory=lambda: {"added": 1, "removed": 0, "changed": 2,
                                                                 "transferred": 0})
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, t.crawl)
    on_cleanup: Callable[[Target], None] | None = None  # runs first thing in cleanup
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self, method: str, t: Target) -> None:
        with self.lock:
            self.calls.append((method, t.crawl))
        if self.delays.get(method):
            time.sleep(self.delays[method])
        if self.broken:
            raise BackendError(self.broken)

    def ensure_topics(self, t: Target, kafka: Kafka) -> None:
        self._check("ensure_topics", t)
        self.topics[f"{t.prefix}{t.crawl}"] = kafka.partitions

    def publish_plan(self, t: Target, spec: CrawlSpec, marker: str = "") -> Plan:
        with self.lock:
            done = self.markers.get((t.crawl, marker)) if marker else None
        if done is not None:
            return replace(done, fresh=False)
        self._check("publish_plan", t)
        with self.lock:
            # `shards_per_range` shards a range; a range of an earlier plan holds the same ones.
            shards = self.planned.setdefault(t.crawl, set())
            shards.update((r, i) for r in spec.ranges for i in range(self.shards_per_range))
            per_shard = self.addresses_per_range // self.shards_per_range
            plan = Plan(self.shards_per_range * len(spec.ranges), self.addresses_per_range * len(spec.ranges),
                        len(shards), per_shard * len(shards))
            old = self.counters_of.get(t.crawl, Progress())
            self.counters_of[t.crawl] = replace(old, shards_total=plan.shards_total,
                                                addresses_total=plan.addresses_total)
            self.plans.append((t.crawl, spec.ranges))
            if marker:
                self.markers[(t.crawl, marker)] = plan
        return plan

    def counters(self, t: Target) -> Progress:
        self._check("counters", t)
        with self.lock:
            return self.counters_of.get(t.crawl, Progress())

    def refresh(self, t: Target) -> dict[str, Any] | None:
        self._check("refresh", t)
        return self.refresh_of.get(t.crawl)

    def publish_changes(self, before: Target | None, after: Target, feed: str, generation: int,
                        when: str) -> dict[str, Any]:
        """Records what went on `feed`'s topic; a generation already there is not sent again."""
        self._check("publish_changes", after)
        topic = f"{after.prefix}{feed}.changes"
        with self.lock:
            if (feed, generation) in self.feeds:
                return {"topic": topic, "generation": generation, "published": 0, "base": before is None,
                        "counts": self.feeds[(feed, generation)], "already_on_topic": True}
            self.feeds[(feed, generation)] = dict(self.feed_counts)
        return {"topic": topic, "generation": generation, "published": sum(self.feed_counts.values()) + 1,
                "base": before is None, "counts": dict(self.feed_counts), "already_on_topic": False}

    def keep_history(self, t: Target, feed: str, generation: int) -> dict[str, Any]:
        """Records where `feed`'s history begins now; once (a second call publishes nothing)."""
        self._check("keep_history", t)
        topic = f"{t.prefix}{feed}.changes"
        with self.lock:
            again = self.histories.get(feed) == generation
            self.histories[feed] = generation
        return {"topic": topic, "generation": generation, "date": "2026-01-01",
                "published": 0 if again else 5, "start": 100}

    def lag(self, t: Target) -> int:
        self._check("lag", t)
        return self.lag_of.get(t.crawl, self.default_lag)

    def partitions(self, t: Target) -> int:
        self._check("partitions", t)
        return self.partitions_of

    def cleanup(self, t: Target, topics: bool, redis: bool) -> str:
        if self.on_cleanup is not None:
            self.on_cleanup(t)
        self._check("cleanup", t)
        self.cleanups.append((t.crawl, topics, redis))
        with self.lock:
            if topics:
                self.topics.pop(f"{t.prefix}{t.crawl}", None)
            if redis:
                self.counters_of.pop(t.crawl, None)
                self.markers = {k: v for k, v in self.markers.items() if k[0] != t.crawl}
        return f"fake cleanup topics={topics} redis={redis}"

    def delete_changes(self, t: Target) -> str:
        self._check("delete_changes", t)
        with self.lock:
            self.feeds = {k: v for k, v in self.feeds.items() if k[0] != t.crawl}
        return f"fake deleted {t.prefix}{t.crawl}.changes"

    def calls_after_cleanup(self, crawl: str) -> list[str]:
        """Every call for `crawl` made after its cleanup (nothing may touch it then)."""
        with self.lock:
            mine = [m for m, c in self.calls if c == crawl]
        return mine[mine.index("cleanup") + 1:] if "cleanup" in mine else []

    def finish(self, crawl: str) -> None:
        """Pretend every shard is done and the work topic is drained."""
        with self.lock:
            c = self.counters_of.get(crawl, Progress())
            self.counters_of[crawl] = replace(c, shards_done=c.shards_total, blocks=1234,
                                              lookups=1300, addresses_done=c.addresses_total)
            self.lag_of[crawl] = 0
