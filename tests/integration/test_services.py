"""The real services the suite runs on: Kafka with consumer groups and commits, Redis, Prometheus."""

from __future__ import annotations

import json
import urllib.request

import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def test_kafka_produce_consume_commit(services, unique_name):
    topic = f"{unique_name}.t"
    admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=30)

    producer = Producer({"bootstrap.servers": services.kafka_bootstrap, "acks": "all"})
    for i in range(10):
        producer.produce(topic, key=str(i % 2), value=json.dumps({"i": i}))
    assert producer.flush(30) == 0

    def consumer() -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": services.kafka_bootstrap,
                "group.id": unique_name,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )

    first = consumer()
    first.subscribe([topic])
    seen: list[int] = []
    while len(seen) < 6:
        msg = first.poll(5)
        if msg is not None and msg.error() is None:
            seen.append(json.loads(msg.value())["i"])
            if len(seen) == 6:
                first.commit(message=msg, asynchronous=False)
    first.close()

    # A new member of the group resumes from the committed offsets, not from the start.
    committed = consumer().committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    assert sum(tp.offset for tp in committed if tp.offset >= 0) >= 1
    second = consumer()
    second.subscribe([topic])
    rest: list[int] = []
    for _ in range(50):
        msg = second.poll(1)
        if msg is not None and msg.error() is None:
            rest.append(json.loads(msg.value())["i"])
        if len(seen) + len(rest) >= 10 and not msg:
            break
    second.close()
    assert sorted(set(seen) | set(rest)) == list(range(10))
    assert len(rest) < 10  # it did not start over


def test_redis_roundtrip(services, unique_name):
    client = redis.Redis.from_url(services.redis_url)
    client.hset(unique_name, mapping={"blocks": 3})
    assert client.hincrby(unique_name, "blocks", 2) == 5
    client.delete(unique_name)


def test_prometheus_ready(services):
    with urllib.request.urlopen(f"{services.prometheus_url}/-/ready", timeout=10) as resp:
        assert resp.status == 200
