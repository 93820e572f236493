"""The operator's LiveBackend against real Kafka and Redis: a plan is published once per marker."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition
from whoiscrawl.operator.backend import PENDING, BackendError, LiveBackend, Target
from whoiscrawl.operator.spec import parse_spec

from whoiscrawl import queue
from whoiscrawl.keys import Keys
from whoiscrawl.store import RedisStore

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
    backend, store = LiveBackend(), RedisStore(services.redis_url, t.crawl)
    try:
        backend.ensure_topics(t, 2)
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
