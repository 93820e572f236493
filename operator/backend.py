"""The one adapter between the operator and the data plane (Kafka topics, the plan, Redis counters).

Everything the operator asks of whoiscrawl.space / .queue / .store goes through `Backend`; unit
tests inject a fake of this Protocol, never of Kafka or Redis. The plan is cut by
`space.plan_crawl` and published by `publish.publish_plan`, as `whoiscrawl plan` and the bench do.
"""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis
import redis.retry
from redis.backoff import ExponentialBackoff
from whoiscrawl.operator.spec import CrawlSpec, Kafka

from whoiscrawl import queue
from whoiscrawl.history import feed as change_feed
from whoiscrawl.history import topic as history_topic
from whoiscrawl.publish import publish_plan
from whoiscrawl.records import Progress
from whoiscrawl.secrets import redact
from whoiscrawl.sources import fill
from whoiscrawl.space import plan_crawl
from whoiscrawl.store.redis_admin import RedisCrawlAdmin


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
    """What publishing a plan put on the work topic, and what the crawl's plans hold in all (a
    re-plan shares the shards of the ranges it kept)."""

    shards: int
    addresses: int
    shards_total: int = 0
    addresses_total: int = 0
    fresh: bool = True  # False: published earlier (its marker was found), nothing sent now


class BackendError(RuntimeError):
    """The data plane could not be reached or refused; the message says which part."""


PENDING = b"publishing"  # a claim's value starts so; the rest is its holder's token
# A claim lives this long unless its pass renews it (every third of it, while it publishes): an
# operator that dies mid-publish stalls the crawl for at most this, not the 15 minutes a long
# unrenewed claim did, and a publish slower than it keeps its claim.
CLAIM_SECONDS = 30.0
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
          "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end")


@contextmanager
def renewed(client: redis.Redis, key: str, token: bytes, seconds: float) -> Iterator[None]:
    """Keep extending `key` while it still holds `token`, every third of `seconds`, until the
    block ends (a thread: the publish it guards is blocking)."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(seconds / 3):
            try:
                if not client.eval(_RENEW, 1, key, token, int(seconds * 1000)):
                    return  # lost (expired and taken): the holder's record will say so
            except redis.RedisError:
                continue  # Redis away for a moment: the claim lasts `seconds` meanwhile
    thread = threading.Thread(target=renew, name="plan-claim", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class Backend(Protocol):
    """What the operator needs from the data plane."""

    def ensure_topics(self, t: Target, kafka: Kafka) -> None: ...

    def publish_plan(self, t: Target, spec: CrawlSpec, marker: str) -> Plan: ...

    def counters(self, t: Target) -> Progress: ...

    def refresh(self, t: Target) -> dict[str, Any] | None: ...

    def publish_changes(self, before: Target | None, after: Target, feed: str, generation: int,
                        when: str) -> dict[str, Any] | None: ...

    def keep_history(self, t: Target, feed: str, generation: int) -> dict[str, Any] | None: ...

    def lag(self, t: Target) -> int: ...

    def partitions(self, t: Target) -> int: ...

    def cleanup(self, t: Target, topics: bool, redis: bool) -> str: ...

    def delete_changes(self, t: Target) -> str: ...


@dataclass(frozen=True)
class RedisTimeouts:
    """The operator's Redis client: a pass with Redis down must end well inside the liveness
    window (6 intervals, 60 s), so it fails fast and is tried again next pass instead of waiting
    out a restart as workers do (whoiscrawl.store.redis_scripts.REDIS_RETRIES)."""

    connect_seconds: float = 1.0
    read_seconds: float = 3.0
    retries: int = 1

    def worst_case_seconds(self, calls: int = 1) -> float:
        """How long `calls` Redis calls can take against a Redis that never answers."""
        backoff = 1.0  # whoiscrawl.store's backoff cap, per retry
        per_try = self.connect_seconds + self.read_seconds
        return calls * ((self.retries + 1) * per_try + self.retries * backoff)


# How long a pass waits for a change feed it starts before leaving it to run on (a fraction of the
# liveness window; a two-/20 map's takes well under a second).
FEED_WAIT_SECONDS = 5.0


@dataclass
class _Job:
    """A change feed being published off the pass: done, with its answer or its error."""

    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: BackendError | None = None

    def run(self, slot: threading.Semaphore, publish: Callable[[], Any]) -> None:
        try:
            with slot:
                self.result = dict(publish())
        except BackendError as exc:
            self.error = exc
        except Exception as exc:  # a bug must not leave the job undone forever: the pass reports it
            self.error = BackendError(redact(f"publishing the change feed: {type(exc).__name__}: {exc}"))
        finally:
            self.done.set()


class LiveBackend:
    """The real data plane: whoiscrawl.space, whoiscrawl.queue and whoiscrawl.store.

    One Redis client (one connection pool) per Redis URL for the operator's life, not one a call.
    """

    def __init__(self, redis_timeouts: RedisTimeouts | None = None,
                 claim_seconds: float = CLAIM_SECONDS, feed_wait_seconds: float = FEED_WAIT_SECONDS) -> None:
        self.redis_timeouts = redis_timeouts or RedisTimeouts()
        self.claim_seconds = claim_seconds
        self.feed_wait_seconds = feed_wait_seconds
        self._feeds: dict[tuple[str, str, str, int], _Job] = {}  # feeds (and histories) being published
        self.history_cache = Path(tempfile.gettempdir()) / "whoiscrawl-history"  # the /tmp emptyDir
        self._feeds_lock = threading.Lock()
        self._feed_slot = threading.Semaphore(1)
        self._clients: dict[str, redis.Redis] = {}
        self._clients_lock = threading.Lock()

    def ensure_topics(self, t: Target, kafka: Kafka) -> None:
        self._call("creating topics", queue.ensure_topics, t.bootstrap, t.prefix, t.crawl,
                   kafka.partitions, t.config, kafka.replication_factor, kafka.topic_config)

    def publish_plan(self, t: Target, spec: CrawlSpec, marker: str) -> Plan:
        """Publish the plan once per marker: claimed with SET NX before anything is sent.

        A marker already recorded returns what was sent then (`fresh=False`); one still being
        published by another pass is a BackendError, so this pass retries later. A failed publish
        frees its claim (the next pass publishes again; workers skip what they already know).
        """
        store = self._store(t)
        client, key = store.client, store.keys.plan(marker)
        token = PENDING + b":" + uuid.uuid4().hex.encode()
        ttl = int(self.claim_seconds * 1000)
        if not self._call("claiming the plan",
                          lambda: client.set(key, token, nx=True, px=ttl)):
            found = self._call("reading the plan marker", client.get, key)
            if found is None or found.startswith(PENDING):
                raise BackendError(f"plan {marker} is being published by another pass")
            doc = json.loads(found)
            doc.setdefault("shards_total", doc["shards"])  # recorded before totals were (2026-12-06)
            doc.setdefault("addresses_total", doc["addresses"])
            return Plan(**doc, fresh=False)
        try:
            with renewed(client, key, token, self.claim_seconds):
                plan = self._send_plan(t, spec)
        except BackendError:
            self._call("freeing the plan claim", client.delete, key)
            raise
        record = json.dumps({"shards": plan.shards, "addresses": plan.addresses,
                             "shards_total": plan.shards_total, "addresses_total": plan.addresses_total})
        self._call("recording the plan", client.set, key, record)
        return plan

    def _send_plan(self, t: Target, spec: CrawlSpec) -> Plan:
        plan = self._call("planning", plan_crawl, crawl=t.crawl, ranges=spec.ranges,
                          excludes=spec.excludes, strategy=spec.strategy,
                          resolution=spec.resolution, shard_prefix=spec.shard_prefix,
                          samples=spec.samples)
        sent, (shards, addresses) = self._call("publishing the plan", publish_plan, plan,
                                               bootstrap=t.bootstrap, prefix=t.prefix,
                                               store=self._store(t), config=t.config)
        return Plan(int(sent), plan.addresses, shards, addresses)

    def counters(self, t: Target) -> Progress:
        store = self._store(t)
        return self._call("reading Redis counters", store.progress)

    def refresh(self, t: Target) -> dict[str, Any] | None:
        """What the generation's load did as a refresh of the previous one (worker/carry.py), or
        why it was refused; None before the load is done, or for a load that refreshed none."""
        store = self._store(t)
        loaded = self._call("reading the load's figures", fill.loaded, store)
        return (loaded or {}).get("refresh")

    def publish_changes(self, before: Target | None, after: Target, feed: str, generation: int,
                        when: str) -> dict[str, Any] | None:
        """Generation `generation`'s change feed (crawl `after`'s map against `before`'s, or whole
        with no `before`: the history's first map) on crawl
        `feed`'s change-feed topic, unless it is there already (`history.feed.publish_generation`).

        Off the pass: the first call starts it in a thread of its own and waits up to
        `feed_wait_seconds` (a small map's is done by then); a call that finds it still running
        returns None at once, the call that finds it done returns its answer or raises its error
        (BackendError). So a whole-IPv4 map, read and compared for minutes, never holds a pass.
        One feed at a time: each reads two maps."""
        kafka = change_feed.Kafka(after.bootstrap, feed, after.prefix, after.config or {})
        return self._off_pass(
            (after.bootstrap, f"{after.prefix}{feed}", "feed", generation), f"change-feed-{generation}",
            lambda: self._call(f"publishing generation {generation}'s change feed",
                               change_feed.publish_generation, kafka, generation, when,
                               before.crawl if before else None, after.crawl))

    def keep_history(self, t: Target, feed: str, generation: int) -> dict[str, Any] | None:
        """Crawl `feed`'s history on its change-feed topic pruned to begin at `generation`, the
        oldest generation the crawl keeps (`history.topic.rebase`: its map published whole there,
        the later change sets after it, the records before deleted), read through a store under
        the operator's temporary folder (`history_cache`: read again only past what it holds). Off
        the pass as a feed is, and in the same single slot: it reads and writes the topic too."""
        kafka = change_feed.Kafka(t.bootstrap, feed, t.prefix, t.config or {})
        return self._off_pass(
            (t.bootstrap, f"{t.prefix}{feed}", "history", generation), f"history-{generation}",
            lambda: self._call(f"pruning the change feed's history to generation {generation}",
                               history_topic.rebase, history_topic.cache_dir(kafka, self.history_cache),
                               kafka, generation))

    def _off_pass(self, key: tuple[str, str, str, int], name: str,
                  work: Callable[[], Any]) -> dict[str, Any] | None:
        """`work` in a thread of its own, one at a time (`_feed_slot`): the first call starts it and
        waits up to `feed_wait_seconds`; a call that finds it still running gets None at once, the
        call that finds it done its answer or its error (BackendError)."""
        with self._feeds_lock:
            job = self._feeds.get(key)
            if job is None:
                job = self._feeds[key] = _Job()
                threading.Thread(target=job.run, name=name, daemon=True, args=(self._feed_slot, work)).start()
        if not job.done.wait(self.feed_wait_seconds):
            return None
        with self._feeds_lock:
            self._feeds.pop(key, None)
        if job.error is not None:
            raise job.error
        return dict(job.result or {})

    def lag(self, t: Target) -> int:
        return int(self._call("reading consumer lag", queue.consumer_lag, t.bootstrap, t.prefix,
                              t.crawl, t.config))

    def partitions(self, t: Target) -> int:
        return int(self._call("reading partitions", queue.partition_count, t.bootstrap,
                              t.prefix, t.crawl, t.config))

    def cleanup(self, t: Target, topics: bool, redis: bool) -> str:
        done = []
        if redis:
            store = self._store(t)
            keys = self._call("deleting Redis keys", store.delete_crawl)
            done.append(f"deleted {keys} Redis keys")
        if topics:
            self._call("deleting topics", queue.delete_topics, t.bootstrap, t.prefix, t.crawl,
                       t.config)
            done.append("deleted topics")
        return "; ".join(done) or "retained topics and Redis keys"

    def delete_changes(self, t: Target) -> str:
        """Delete crawl `t`'s change-feed topic (a scheduled crawl's, with the crawl)."""
        self._call("deleting the change-feed topic", queue.delete_topics, t.bootstrap, t.prefix, t.crawl,
                   t.config, changes=True)
        return f"deleted {queue.changes_topic(t.prefix, t.crawl)}"

    def _store(self, t: Target) -> RedisCrawlAdmin:
        # A malformed URL raises ValueError here: a BackendError like any other Redis problem.
        client = self._call("connecting to Redis", self._client, t.redis_url)
        return RedisCrawlAdmin(t.redis_url, t.crawl, client)

    def _client(self, url: str) -> redis.Redis:
        with self._clients_lock:
            found = self._clients.get(url)
            if found is None:
                limits = self.redis_timeouts
                found = redis.Redis.from_url(
                    url, socket_connect_timeout=limits.connect_seconds,
                    socket_timeout=limits.read_seconds,
                    retry=redis.retry.Retry(ExponentialBackoff(cap=1.0, base=0.05), limits.retries))
                self._clients[url] = found
            return found

    @staticmethod
    def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # the data plane raises its clients' own errors
            raise BackendError(redact(f"{what}: {type(exc).__name__}: {exc}")) from exc
