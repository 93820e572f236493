"""The data-plane adapter maps onto the documented whoiscrawl API; the CLI parses its options."""

from __future__ import annotations

import types
from dataclasses import replace
from typing import Any

import pytest
from typer.testing import CliRunner
from whoiscrawl.operator import backend
from whoiscrawl.operator.backend import BackendError, LiveBackend, Target
from whoiscrawl.operator.cli import app
from whoiscrawl.operator.spec import Kafka, parse_spec

from whoiscrawl import queue
from whoiscrawl.space import plan_crawl

T = Target(crawl="c1", bootstrap="127.0.0.1:9092", prefix="wc", redis_url="redis://127.0.0.1/0")
SPEC = parse_spec({"kafka": {"bootstrapServers": "x"}, "redis": {"url": "redis://x"},
                   "ranges": ["41.0.0.0/8"], "excludes": ["41.1.0.0/16"], "resolution": 20})


@pytest.fixture
def modules(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Kafka and Redis calls recorded instead of made; planning (pure) runs for real."""
    calls: dict[str, list[Any]] = {}

    def rec(name: str, result: Any = None) -> Any:
        def fn(*args: Any, **kwargs: Any) -> Any:
            calls.setdefault(name, []).append(args)
            return result
        return fn

    monkeypatch.setattr(queue, "ensure_topics", rec("ensure_topics"))
    monkeypatch.setattr(queue, "publish_shards", rec("publish_shards", 2))
    monkeypatch.setattr(queue, "consumer_lag", rec("consumer_lag", 7))
    monkeypatch.setattr(queue, "partition_count", rec("partition_count", 12))
    monkeypatch.setattr(queue, "delete_topics", rec("delete_topics"))

    class Store:
        def __init__(self, url: str, crawl: str, client: Any = None) -> None:
            calls.setdefault("store", []).append((url, crawl))

        def progress(self) -> Any:
            return types.SimpleNamespace(shards_total=4, shards_done=1, lookups=9, blocks=8,
                                         addresses_total=512, addresses_done=256,
                                         rate_limited=1, errors=0, wasted=0)

        add_plan = rec("add_plan", (40, 512))
        mark_epoch = rec("mark_epoch")
        delete_crawl = rec("delete_crawl", 42)

    monkeypatch.setattr(backend, "RedisStore", Store)
    return calls


def test_live_backend_calls_the_documented_api(modules: dict[str, list[Any]]) -> None:
    b = LiveBackend()
    b.ensure_topics(T, Kafka(bootstrap_servers="x", partitions=24))
    assert modules["ensure_topics"] == [("127.0.0.1:9092", "wc", "c1", 24, None, None, {})]
    # Replication and topic settings from the spec reach the topics' creation.
    kafka = parse_spec({"kafka": {"bootstrapServers": "x", "replicationFactor": 3,
                                  "topicConfig": {"min.insync.replicas": "2"}},
                        "redis": {"url": "redis://r"}}).kafka
    b.ensure_topics(T, kafka)
    assert modules["ensure_topics"][-1][-3:] == (None, 3, {"min.insync.replicas": "2"})
    # What publishing sends; the publish-once claim around it runs against real Redis in
    # tests/integration/test_operator_backend.py.
    plan = b._send_plan(T, SPEC)
    expected = plan_crawl(crawl="c1", ranges=["41.0.0.0/8"], excludes=["41.1.0.0/16"],
                          resolution=20, shard_prefix=16)
    assert plan.shards == 2 and plan.addresses == expected.addresses == 255 * 65536  # 2: acked
    assert (plan.shards_total, plan.addresses_total) == (40, 512)  # the store's union of the plans
    assert modules["publish_shards"] == [("127.0.0.1:9092", "wc", "c1", expected.shards, None)]
    assert [args[1:] for args in modules["add_plan"]] == [(expected.shards,)]  # (the store, the shards)
    assert b.lag(T) == 7 and b.partitions(T) == 12
    c = b.counters(T)
    assert (c.shards_total, c.addresses_done, c.rate_limited) == (4, 256, 1)
    assert b.cleanup(T, topics=True, redis=True) == "deleted 42 Redis keys; deleted topics"
    assert modules["delete_topics"] == [("127.0.0.1:9092", "wc", "c1", None)]


def test_live_backend_passes_kafka_credentials(modules: dict[str, list[Any]]) -> None:
    secured = replace(T, kafka_config=(("sasl.password", "p"), ("sasl.username", "u")))
    LiveBackend().ensure_topics(secured, Kafka(bootstrap_servers="x", partitions=24))
    assert modules["ensure_topics"][-1][4] == {"sasl.password": "p", "sasl.username": "u"}


def test_live_backend_wraps_failures(monkeypatch: pytest.MonkeyPatch,
                                     modules: dict[str, list[Any]]) -> None:
    def boom(*_: Any) -> int:
        raise ConnectionError("broker down")

    monkeypatch.setattr(queue, "consumer_lag", boom)
    with pytest.raises(BackendError, match="reading consumer lag: ConnectionError: broker down"):
        LiveBackend().lag(T)


def test_cli_requires_a_scope() -> None:
    runner = CliRunner()
    assert "--all-namespaces" in runner.invoke(app, ["--help"]).output
    result = runner.invoke(app, [])
    assert result.exit_code != 0 and "--namespace" in result.output
    result = runner.invoke(app, ["-n", "a", "--all-namespaces"])
    assert result.exit_code != 0
