"""In-memory fake of the operator's Backend Protocol (never of Kafka or Redis themselves)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from whoiscrawl.operator.backend import BackendError, Plan, Target
from whoiscrawl.operator.spec import CrawlSpec
from whoiscrawl.operator.status import Progress


@dataclass
class FakeBackend:
    """Progress and lag are set by the test; calls are recorded."""

    lag_of: dict[str, int] = field(default_factory=dict)
    counters_of: dict[str, Progress] = field(default_factory=dict)
    partitions_of: int = 12
    shards_per_plan: int = 16
    addresses_per_plan: int = 1 << 20
    broken: str | None = None  # set: every call raises BackendError(broken)
    topics: dict[str, int] = field(default_factory=dict)
    plans: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    cleanups: list[tuple[str, bool, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self) -> None:
        if self.broken:
            raise BackendError(self.broken)

    def ensure_topics(self, t: Target, partitions: int) -> None:
        self._check()
        self.topics[f"{t.prefix}{t.crawl}"] = partitions

    def publish_plan(self, t: Target, spec: CrawlSpec) -> Plan:
        self._check()
        with self.lock:
            self.plans.append((t.crawl, spec.ranges))
        return Plan(self.shards_per_plan, self.addresses_per_plan)

    def set_totals(self, t: Target, shards: int, addresses: int) -> None:
        self._check()
        with self.lock:
            old = self.counters_of.get(t.crawl, Progress())
            self.counters_of[t.crawl] = replace(old, shards_total=shards,
                                                addresses_total=addresses)

    def counters(self, t: Target) -> Progress:
        self._check()
        with self.lock:
            return self.counters_of.get(t.crawl, Progress())

    def lag(self, t: Target) -> int:
        self._check()
        return self.lag_of.get(t.crawl, 0)

    def partitions(self, t: Target) -> int:
        self._check()
        return self.partitions_of

    def cleanup(self, t: Target, topics: bool, redis: bool) -> str:
        self._check()
        self.cleanups.append((t.crawl, topics, redis))
        return f"fake cleanup topics={topics} redis={redis}"

    def finish(self, crawl: str) -> None:
        """Pretend every shard is done and the work topic is drained."""
        with self.lock:
            c = self.counters_of.get(crawl, Progress())
            self.counters_of[crawl] = replace(c, shards_done=c.shards_total, blocks=1234,
                                              lookups=1300, addresses_done=c.addresses_total)
            self.lag_of[crawl] = 0
