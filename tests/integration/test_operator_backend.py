"""The operator's LiveBackend against real Kafka and Redis: a plan is published once per marker, and
a re-plan on top counts each shard once."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from whoiscrawl.operator.backend import CLAIM_SECONDS, PENDING, BackendError, LiveBackend, Target
from whoiscrawl.operator.control import ensure_plan
from whoiscrawl.operator.spec import parse_spec

from whoiscrawl import queue
from whoiscrawl.keys import Keys
from whoiscrawl.space import Scope, plan_crawl
from whoiscrawl.store.redis_admin import RedisCrawlAdmin

pytestmark = pytest.mark.services


def sent(t: Target) -> int:
    """Messages on the crawl's work topic (high watermarks: no consumer group involved)."""
    work, _ = queue.topic_names(t.prefix, t.crawl)
    consumer = Consumer({"bootstrap.servers": t.bootstrap, "group.id": "count"})
    try:
        parts = consumer.list_topics(work, timeout=10).topics[work].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(work, p), timeout=10)[1]
                   for p in parts)
    finally:
        consumer.close()


def test_a_plan_is_published_once_per_marker(services, unique_name):
    t = Target(crawl=f"ns.{unique_name}", bootstrap=services.kafka_bootstrap, prefix="t.",
               redis_url=services.redis_url)
    spec = parse_spec({"ranges": ["41.0.0.0/16"], "kafka": {"bootstrapServers": "x"},
                       "redis": {"url": "redis://x"}})
    backend, store = LiveBackend(), RedisCrawlAdmin(services.redis_url, t.crawl)
    try:
        backend.ensure_topics(t, replace(spec.kafka, partitions=2))
        first = backend.publish_plan(t, spec, "uid:key:0")
        # A stale pass with the same marker sends nothing and learns what was sent.
        again = backend.publish_plan(t, spec, "uid:key:0")
        assert first.fresh and first.shards > 0
        assert not again.fresh and (again.shards, again.addresses) == (first.shards, first.addresses)
        assert sent(t) == first.shards

        # A marker another pass has claimed but not recorded: back off, send nothing.
        store.client.set(Keys(t.crawl).plan("uid:key:1"), PENDING)
        with pytest.raises(BackendError, match="being published by another pass"):
            backend.publish_plan(t, spec, "uid:key:1")
        assert sent(t) == first.shards

        # The crawl's cleanup takes its markers along with its other keys.
        backend.cleanup(t, topics=True, redis=True)
        assert list(store.client.scan_iter(match=Keys(t.crawl).prefix + "*")) == []
    finally:
        queue.delete_topics(t.bootstrap, t.prefix, t.crawl)
        store.delete_crawl()


def test_a_replan_on_top_counts_each_shard_of_the_ranges_it_kept_once(services, unique_name):
    """A live edit that adds a range re-plans on top: the kept range's shards are the same shards
    (ids), done once. Totals that added the plans up (before: 3 of a possible 2 shards) kept the
    crawl from ever completing."""
    t = Target(crawl=f"ns.{unique_name}", bootstrap=services.kafka_bootstrap, prefix="t.",
               redis_url=services.redis_url)
    specs = [parse_spec({"ranges": ranges, "kafka": {"bootstrapServers": "x"}, "redis": {"url": "redis://x"}})
             for ranges in (["41.0.0.0/16"], ["41.0.0.0/16", "196.0.0.0/16"])]
    backend, store = LiveBackend(), RedisCrawlAdmin(services.redis_url, t.crawl)
    now = datetime.now(UTC)
    try:
        plan, _ = ensure_plan(backend, t, specs[0], {}, "uid:first:0", now)
        plan, events = ensure_plan(backend, t, specs[1], plan, "uid:both:1", now)
        before, expected = (plan_crawl(crawl=t.crawl, ranges=s.ranges, strategy=s.strategy,
                                       resolution=s.resolution, shard_prefix=s.shard_prefix) for s in specs)
        assert [e[1] for e in events] == ["Replanned"]
        assert sent(t) == len(before.shards) + len(expected.shards) > len(expected.shards)
        progress = store.progress()
        assert (progress.shards_total, progress.addresses_total) == (len(expected.shards), expected.addresses)
        assert (plan["shards"], plan["addresses"]) == (len(expected.shards), expected.addresses)
        assert Scope.decode(store.client.get(store.keys.scope).decode()) == expected.scope
    finally:
        queue.delete_topics(t.bootstrap, t.prefix, t.crawl)
        store.delete_crawl()


def test_the_live_backend_reads_and_cleans_up_what_kafka_and_redis_hold(services, unique_name):
    """Each Backend call against the real broker and Redis (this test replaced one whose Kafka and
    Redis were mocks answering canned figures): partitions, lag before any worker, the counters of
    the published plan, and a cleanup that leaves neither topics nor keys."""
    t = Target(crawl=f"ns.{unique_name}", bootstrap=services.kafka_bootstrap, prefix="t.",
               redis_url=services.redis_url)
    spec = parse_spec({"ranges": ["41.0.0.0/16"], "excludes": ["41.0.128.0/17"], "resolution": 20,
                       "kafka": {"bootstrapServers": "x"}, "redis": {"url": "redis://x"}})
    expected = plan_crawl(crawl=t.crawl, ranges=spec.ranges, excludes=spec.excludes,
                          strategy=spec.strategy, resolution=spec.resolution, shard_prefix=spec.shard_prefix)
    backend, store = LiveBackend(), RedisCrawlAdmin(services.redis_url, t.crawl)
    try:
        assert backend.partitions(t) == 0 and backend.lag(t) == 0  # nothing there yet
        backend.ensure_topics(t, replace(spec.kafka, partitions=3))
        assert backend.partitions(t) == 3
        plan = backend.publish_plan(t, spec, "uid:key:0")
        assert expected.addresses == 2**15  # a /16 less its upper /17
        assert (plan.shards, plan.addresses) == (len(expected.shards), expected.addresses)
        assert backend.lag(t) == sent(t) == len(expected.shards)  # no worker has committed any
        counters = backend.counters(t)
        assert (counters.shards_total, counters.addresses_total) == (len(expected.shards), 2**15)
        assert (counters.shards_done, counters.blocks) == (0, 0)
        keys = len(list(store.client.scan_iter(match=Keys(t.crawl).prefix + "*")))
        assert backend.cleanup(t, topics=True, redis=True) == f"deleted {keys} Redis keys; deleted topics"
        assert backend.partitions(t) == 0
        assert list(store.client.scan_iter(match=Keys(t.crawl).prefix + "*")) == []
        assert backend.cleanup(t, topics=False, redis=False) == "retained topics and Redis keys"
    finally:
        queue.delete_topics(t.bootstrap, t.prefix, t.crawl)
        store.delete_crawl()


def test_the_live_backend_hands_kafka_the_credentials_and_names_what_failed(services, unique_name):
    """The Secret's settings reach the Kafka client (an unknown one is refused by librdkafka
    itself), and the failure comes back as a BackendError naming the step."""
    t = Target(crawl=f"ns.{unique_name}", bootstrap=services.kafka_bootstrap, prefix="t.",
               redis_url=services.redis_url, kafka_config=(("no.such.setting", "x"),))
    named = r"(creating topics|reading consumer lag): .*no\.such\.setting"
    kafka = replace(parse_spec({"ranges": ["41.0.0.0/16"], "kafka": {"bootstrapServers": "x"},
                                "redis": {"url": "redis://x"}}).kafka, partitions=1)
    for call in (lambda: LiveBackend().ensure_topics(t, kafka), lambda: LiveBackend().lag(t)):
        with pytest.raises(BackendError, match=named):
            call()
    assert queue.partition_count(t.bootstrap, t.prefix, t.crawl) == 0  # nothing was created


class _Dies(BaseException):
    """An operator killed mid-publish: nothing after it runs, its claim is never freed."""


def test_a_plan_claim_is_renewed_while_publishing_and_short_once_its_pass_is_gone(
        services, unique_name):
    """A publish slower than its claim keeps it (renewed), so no other pass publishes the plan
    twice; a pass that dies mid-publish leaves a claim that frees within CLAIM_SECONDS (it was
    900 s: the crawl stalled 15 minutes after an operator died publishing)."""
    t = Target(crawl=f"ns.{unique_name}", bootstrap=services.kafka_bootstrap, prefix="t.",
               redis_url=services.redis_url)
    spec = parse_spec({"ranges": ["41.0.0.0/16"], "kafka": {"bootstrapServers": "x"},
                       "redis": {"url": "redis://x"}})
    store, others = RedisCrawlAdmin(services.redis_url, t.crawl), []

    class Slow(LiveBackend):
        def _send_plan(self, t: Target, spec: Any) -> Any:
            time.sleep(self.claim_seconds * 2.5)  # a publish that outlasts its claim
            try:
                LiveBackend().publish_plan(t, spec, "uid:key:0")
            except BackendError as exc:
                others.append(str(exc))
            return super()._send_plan(t, spec)

    class Dying(LiveBackend):
        def _send_plan(self, t: Target, spec: Any) -> Any:
            raise _Dies

    try:
        LiveBackend().ensure_topics(t, replace(spec.kafka, partitions=2))
        first = Slow(claim_seconds=1.0).publish_plan(t, spec, "uid:key:0")
        assert first.fresh and first.shards > 0
        assert others and "being published by another pass" in others[0], others
        assert sent(t) == first.shards  # once

        with pytest.raises(_Dies):
            Dying().publish_plan(t, spec, "uid:key:1")
        left = store.client.pttl(Keys(t.crawl).plan("uid:key:1"))
        assert 0 < left <= CLAIM_SECONDS * 1000, left
    finally:
        queue.delete_topics(t.bootstrap, t.prefix, t.crawl)
        store.delete_crawl()
