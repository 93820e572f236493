"""A fleet crawl on topics replicated 3 times over a three-broker KRaft cluster loses nothing when
one broker dies mid-crawl: the one it kills coordinates the workers' group and leads a third of
every topic's partitions."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from whoiscrawl.bench.fleet import Fleet, FleetShape, crawl_with_fleet
from whoiscrawl.dev import services as dev_services
from whoiscrawl.queue import group_name, topic_names
from whoiscrawl.settings import CrawlSettings

from ..conftest import RUN_ROOT

pytestmark = pytest.mark.slow
REPLICAS = 3  # the CRD's kafka.replicationFactor on a production cluster (min.insync.replicas=2)


@pytest.fixture(scope="module")
def cluster() -> Iterator[dev_services.Services]:
    """Three brokers (one controller quorum, min.insync.replicas=2) and a Redis of their own."""
    with dev_services.session(RUN_ROOT, ("redis", "kafka"), brokers=3) as running:
        yield running


def _coordinator(bootstrap: str, crawl: str) -> tuple[int, set[str], set[int]]:
    """The node coordinating the crawl's worker group, the crawl topics it leads partitions of, and
    how many replicas those topics' partitions have."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group_name("whoiscrawl.", crawl)])
    [group] = [f.result(timeout=10) for f in described.values()]
    topics = admin.list_topics(timeout=10).topics
    led = {name for name in topic_names("whoiscrawl.", crawl)
           if any(p.leader == group.coordinator.id for p in topics[name].partitions.values())}
    replicas = {len(p.replicas) for name in topic_names("whoiscrawl.", crawl)
                for p in topics[name].partitions.values()}
    return group.coordinator.id, led, replicas


def test_a_broker_killed_mid_crawl_loses_nothing_on_replicated_topics(cluster, quick_sim, calm_quick,
                                                                      tmp_path):
    killed: list[dict[str, Any]] = []

    def kill_the_coordinator(fleet: Fleet, progress: Any) -> None:
        if killed or progress.shards_done * 3 < progress.shards_total:
            return
        node, led, replicas = _coordinator(cluster.kafka_bootstrap, fleet.crawl)
        dev_services.kill(cluster.services[f"kafka-{node}"])  # SIGKILL: no leadership handed over
        print(f"killed kafka-{node} at {progress.shards_done} of {progress.shards_total} shards done; "
              f"it led partitions of {sorted(led)}")
        killed.append({"node": node, "leads": led, "replicas": replicas, "shards_done": progress.shards_done})

    run = crawl_with_fleet(
        quick_sim, cluster.kafka_bootstrap, cluster.redis_url, tmp_path,
        settings=CrawlSettings(topic_replication_factor=REPLICAS), shape=FleetShape(workers=3),
        during=kill_the_coordinator, timeout=600,
    )
    print(f"{run.progress.lookups} lookups, {run.progress.wasted} wasted")
    # It died while the crawl ran on it: the group's coordinator, leading work and results partitions.
    assert killed and killed[0]["leads"] == set(topic_names("whoiscrawl.", run.crawl)), killed
    assert killed[0]["shards_done"] < run.shards and killed[0]["replicas"] == {REPLICAS}
    assert run.finished and run.progress.errors == 0, run.unfinished
    # The results were read back with the broker still dead: from the replicas it left.
    rows = [(r["start_address"], r["end_address"]) for r in map(json.loads, run.results.open())]
    assert set(rows) == calm_quick.blocks
    # Nothing done twice beyond what the crawl already allows for a worker's loss (test_fleet.py's
    # 1.5%), for lookups and for records delivered again alike (the results topic is compacted
    # and readers keep a block's last record). The workers all lived: the broker's loss only moved
    # partitions, their leaders and the group's coordinator. A run without the kill on this
    # cluster delivered as many blocks more than once (26; 25 with it).
    repeated = sum(n - 1 for n in collections.Counter(rows).values())
    print(f"{len(rows)} results, {repeated} delivered again")
    assert run.progress.wasted <= 0.015 * run.progress.lookups
    assert repeated <= 0.015 * len(set(rows))
