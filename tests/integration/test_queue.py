"""The crawl's topics: shards keyed by region, results acknowledged by the broker, lag."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaException
from netaddr import IPNetwork

from whoiscrawl import queue
from whoiscrawl.publish import publish_plan
from whoiscrawl.records import NetworkRecord, Shard
from whoiscrawl.space import Scope, plan_crawl
from whoiscrawl.store.redis_admin import RedisCrawlAdmin


def test_plan_publishes_every_shard_once_and_keeps_its_order_within_a_partition(services, unique_name):
    shards = plan_crawl(crawl=unique_name, ranges=["8.0.0.0/14", "41.0.0.0/14"], shard_prefix=16).shards
    queue.ensure_topics(services.kafka_bootstrap, "t.", unique_name, partitions=4)
    queue.ensure_topics(services.kafka_bootstrap, "t.", unique_name, partitions=4)  # idempotent
    assert queue.publish_shards(services.kafka_bootstrap, "t.", unique_name, shards) == 8
    assert queue.partition_count(services.kafka_bootstrap, "t.", unique_name) == 4
    assert queue.consumer_lag(services.kafka_bootstrap, "t.", unique_name) == 8

    work, _ = queue.topic_names("t.", unique_name)
    consumer = Consumer(
        {
            "bootstrap.servers": services.kafka_bootstrap,
            "auto.offset.reset": "earliest",
            "group.id": queue.group_name("t.", unique_name),
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([work])
    by_partition: dict[int, list[Shard]] = {}
    got = 0
    for _ in range(40):
        for msg in consumer.consume(10, 0.5):
            if msg.error() is None:
                by_partition.setdefault(msg.partition() or 0, []).append(Shard.from_json(msg.value() or b""))
                got += 1
                consumer.commit(message=msg, asynchronous=False)
        if got == 8:
            break
    consumer.close()
    assert sorted(s.shard_id for lst in by_partition.values() for s in lst) == sorted(
        s.shard_id for s in shards
    )
    assert len(by_partition) > 1  # spread over partitions, so over workers and egress addresses
    planned = [s.shard_id for s in shards]
    for lst in by_partition.values():  # each partition delivers its shards in the plan's order
        assert [s.shard_id for s in lst] == sorted((s.shard_id for s in lst), key=planned.index)
    assert queue.consumer_lag(services.kafka_bootstrap, "t.", unique_name) == 0
    queue.delete_topics(services.kafka_bootstrap, "t.", unique_name)


async def test_sink_returns_after_the_broker_acknowledged(services, unique_name):
    queue.ensure_topics(services.kafka_bootstrap, "t.", unique_name, partitions=2)
    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", unique_name)
    record = NetworkRecord("arin", "NET-8-8-8-0-1", "8.8.8.0", "8.8.8.255", ["8.8.8.0/24"], name="LVLT")
    await sink.emit(record)
    await sink.emit(record)  # compaction key: the same block twice is one block
    assert sink.close() == 0
    got = queue.read_results(services.kafka_bootstrap, "t.", unique_name)
    assert [r.handle for r in got] == ["NET-8-8-8-0-1", "NET-8-8-8-0-1"]
    queue.delete_topics(services.kafka_bootstrap, "t.", unique_name)


def test_publish_plan_sends_shards_and_writes_totals_and_scope(services, unique_name):
    plan = plan_crawl(crawl=unique_name, ranges=["41.0.0.0/15"], shard_prefix=16)
    store = RedisCrawlAdmin(services.redis_url, unique_name)
    try:
        sent, totals = publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="t.", store=store,
                                    partitions=2)
        assert sent == len(plan.shards) == 2 and totals == (2, 2 * 65536)
        assert queue.consumer_lag(services.kafka_bootstrap, "t.", unique_name) == 2
        progress = store.progress()
        assert (progress.shards_total, progress.addresses_total) == (2, 2 * 65536)
        assert store.client.get(store.keys.scope).decode() == plan.scope.encode()
        # A plan on top: the shard both hold counts once, the scope is both plans'.
        more = plan_crawl(crawl=unique_name, ranges=["41.1.0.0/16", "41.8.0.0/16"], shard_prefix=16)
        sent, totals = publish_plan(more, bootstrap=services.kafka_bootstrap, prefix="t.", store=store)
        assert sent == 2 and totals == (3, 3 * 65536)
        union = Scope.of([(int(IPNetwork("41.0.0.0/15").first), int(IPNetwork("41.0.0.0/15").last)),
                          (int(IPNetwork("41.8.0.0/16").first), int(IPNetwork("41.8.0.0/16").last))])
        assert store.client.get(store.keys.scope).decode() == union.encode()
    finally:
        store.delete_crawl()
        queue.delete_topics(services.kafka_bootstrap, "t.", unique_name)


def test_topics_take_the_replication_factor_and_settings_asked_for(services, unique_name):
    """Unset, the broker's default (one broker here: 1); set, the broker is asked for exactly it:
    two replicas on a one-broker cluster are refused by the broker, not hard-coded away."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    queue.ensure_topics(services.kafka_bootstrap, "t.", unique_name, partitions=2,
                        topic_config={"min.insync.replicas": "1", "max.message.bytes": "2000000"})
    admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap})
    work, results = queue.topic_names("t.", unique_name)
    meta = admin.list_topics(work, timeout=10).topics[work]
    assert {len(p.replicas) for p in meta.partitions.values()} == {1}
    for topic in (work, results):
        configs = admin.describe_configs([ConfigResource("topic", topic)])
        found = next(iter(configs.values())).result(timeout=10)
        assert found["max.message.bytes"].value == "2000000"
        assert found["min.insync.replicas"].value == "1"
    compacted = admin.describe_configs([ConfigResource("topic", results)])
    assert next(iter(compacted.values())).result(timeout=10)["cleanup.policy"].value == "compact"
    # The broker's own refusal is the point: the factor asked for reaches it.
    with pytest.raises(KafkaException, match=r"(?i)replication"):
        queue.ensure_topics(services.kafka_bootstrap, "t.", f"{unique_name}-rf2", partitions=1,
                            replication_factor=2)


def test_the_plan_command_creates_topics_as_asked(services, unique_name):
    from confluent_kafka.admin import AdminClient, ConfigResource
    from typer.testing import CliRunner

    from whoiscrawl.cli import app

    args = ["plan", "41.0.0.0/16", "--crawl", unique_name, "--kafka-bootstrap", services.kafka_bootstrap,
            "--redis-url", services.redis_url, "--topic-prefix", "t.", "--partitions", "2"]
    runner = CliRunner()
    refused = runner.invoke(app, [*args, "--topic-config", "min.insync.replicas"])
    assert refused.exit_code == 2 and "KEY=VALUE" in refused.output
    too_many = runner.invoke(app, [*args, "--replication-factor", "2"])
    assert too_many.exit_code != 0 and "replication" in too_many.output.lower()  # one line, no traceback
    done = runner.invoke(app, [*args, "--topic-config", "max.message.bytes=2000000"])
    assert done.exit_code == 0, done.output
    work, _ = queue.topic_names("t.", unique_name)
    admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap})
    found = next(iter(admin.describe_configs([ConfigResource("topic", work)]).values())).result(timeout=10)
    assert found["max.message.bytes"].value == "2000000"
