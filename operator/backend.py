"""The one adapter between the operator and the data plane (Kafka topics, the plan, Redis counters).

Everything the operator asks of whoiscrawl.space / .queue / .store goes through `Backend`; unit
tests inject a fake of this Protocol, never of Kafka or Redis. Imports are lazy so the operator
loads even where the data plane is missing.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from whoiscrawl.operator.spec import CrawlSpec

from whoiscrawl.records import Progress


@dataclass(frozen=True)
class Target:
    """Where one crawl's data lives."""

    crawl: str  # the crawl's identity in Kafka and Redis: "<namespace>.<name>"
    bootstrap: str
    prefix: str
    redis_url: str
    kafka_config: tuple[tuple[str, str], ...] = ()  # librdkafka settings from the credentials Secret

    @property
    def config(self) -> dict[str, str] | None:
        return dict(self.kafka_config) or None


@dataclass(frozen=True)
class Plan:
    """What publishing a plan put on the work topic."""

    shards: int
    addresses: int
    fresh: bool = True  # False: published earlier (its marker was found), nothing sent now


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise BackendError(f"data plane module {name} is not available: {exc}") from exc


class BackendError(RuntimeError):
    """The data plane could not be reached or refused; the message says which part."""


PENDING = b"publishing"
CLAIM_SECONDS = 900  # a pass that died while publishing frees its claim after this long


class Backend(Protocol):
    """What the operator needs from the data plane."""

    def ensure_topics(self, t: Target, partitions: int) -> None: ...

    def publish_plan(self, t: Target, spec: CrawlSpec, marker: str) -> Plan: ...

    def set_totals(self, t: Target, shards: int, addresses: int) -> None: ...

    def counters(self, t: Target) -> Progress: ...

    def lag(self, t: Target) -> int: ...

    def partitions(self, t: Target) -> int: ...

    def cleanup(self, t: Target, topics: bool, redis: bool) -> str: ...


class LiveBackend:
    """The real data plane: whoiscrawl.space, whoiscrawl.queue and whoiscrawl.store."""

    def ensure_topics(self, t: Target, partitions: int) -> None:
        queue = _module("whoiscrawl.queue")
        self._call("creating topics", queue.ensure_topics, t.bootstrap, t.prefix, t.crawl,
                   partitions, t.config)

    def publish_plan(self, t: Target, spec: CrawlSpec, marker: str) -> Plan:
        """Publish the plan once per marker: claimed with SET NX before anything is sent.

        A marker already recorded returns what was sent then (`fresh=False`); one still being
        published by another pass is a BackendError, so this pass retries later. A failed publish
        frees its claim (the next pass publishes again; workers skip what they already know).
        """
        store = self._store(t)
        client, key = store.client, store.keys.plan(marker)
        if not self._call("claiming the plan",
                          lambda: client.set(key, PENDING, nx=True, ex=CLAIM_SECONDS)):
            found = self._call("reading the plan marker", client.get, key)
            if found is None or found == PENDING:
                raise BackendError(f"plan {marker} is being published by another pass")
            return Plan(**json.loads(found), fresh=False)
        try:
            plan = self._send_plan(t, spec)
        except BackendError:
            self._call("freeing the plan claim", client.delete, key)
            raise
        record = json.dumps({"shards": plan.shards, "addresses": plan.addresses})
        self._call("recording the plan", client.set, key, record)
        return plan

    def _send_plan(self, t: Target, spec: CrawlSpec) -> Plan:
        queue, space = _module("whoiscrawl.queue"), _module("whoiscrawl.space")
        shards = self._call("planning", space.plan_shards, t.crawl, list(spec.ranges),
                            list(spec.excludes), spec.strategy, spec.resolution,
                            spec.shard_prefix, spec.samples)
        sent = self._call("publishing shards", queue.publish_shards, t.bootstrap, t.prefix,
                          t.crawl, shards, t.config)
        self._call("writing the scope", self._store(t).set_scope, space.Scope.of_shards(shards))
        return Plan(shards=int(sent), addresses=sum(s.last - s.first + 1 for s in shards))

    def set_totals(self, t: Target, shards: int, addresses: int) -> None:
        store = self._store(t)
        self._call("writing totals", store.set_shards_total, shards)
        self._call("writing totals", store.set_addresses_total, addresses)

    def counters(self, t: Target) -> Progress:
        return self._call("reading Redis counters", self._store(t).progress)

    def lag(self, t: Target) -> int:
        queue = _module("whoiscrawl.queue")
        return int(self._call("reading consumer lag", queue.consumer_lag, t.bootstrap, t.prefix,
                              t.crawl, t.config))

    def partitions(self, t: Target) -> int:
        queue = _module("whoiscrawl.queue")
        return int(self._call("reading partitions", queue.partition_count, t.bootstrap,
                              t.prefix, t.crawl, t.config))

    def cleanup(self, t: Target, topics: bool, redis: bool) -> str:
        queue = _module("whoiscrawl.queue")
        done = []
        if redis:
            keys = self._call("deleting Redis keys", self._store(t).delete_crawl)
            done.append(f"deleted {keys} Redis keys")
        if topics:
            self._call("deleting topics", queue.delete_topics, t.bootstrap, t.prefix, t.crawl,
                       t.config)
            done.append("deleted topics")
        return "; ".join(done) or "retained topics and Redis keys"

    def _store(self, t: Target) -> Any:
        return _module("whoiscrawl.store").RedisStore(t.redis_url, t.crawl)

    @staticmethod
    def _call(what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # the data plane raises its clients' own errors
            raise BackendError(f"{what}: {type(exc).__name__}: {exc}") from exc
