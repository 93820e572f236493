"""The fleet: real workers, real Kafka and Redis, the simulator. Complete, and nothing lost to kills."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from whoiscrawl import queue
from whoiscrawl.bench.fleet import Fleet, FleetShape, crawl_with_fleet
from whoiscrawl.publish import publish_plan
from whoiscrawl.queue import group_name
from whoiscrawl.space import plan_crawl
from whoiscrawl.store.redis_admin import RedisCrawlAdmin

from .conftest import COVERAGE_FLOOR, score

pytestmark = pytest.mark.slow


def fleet_blocks(results: Path) -> set[tuple[str, str]]:
    return {(r["start_address"], r["end_address"]) for r in map(json.loads, results.open())}


def test_three_workers_find_every_block_at_resolution(services, quick_sim, calm_quick, tmp_path):
    """Without faults, timing decides only who finds what: the fleet finds exactly the blocks of
    the session's calm local crawl (whose one lane's order never changes)."""
    run = crawl_with_fleet(
        quick_sim, services.kafka_bootstrap, services.redis_url, tmp_path, shape=FleetShape(workers=3),
        timeout=600,
    )
    assert run.finished
    assert run.progress.errors == 0
    figures = score(run.results)
    assert figures["recall_resolution"] == 1.0
    assert figures["address_coverage"] >= COVERAGE_FLOOR
    assert fleet_blocks(run.results) == calm_quick.blocks


def test_sigkill_mid_shard_loses_nothing(services, quick_sim, calm_quick, tmp_path):
    killed: list[int] = []

    def kill_one_busy_worker(fleet, progress):
        if not killed and progress.lookups > 1500:
            fleet.kill(0)  # no goodbye: its shards are redone from the checkpointed cursors
            killed.append(progress.lookups)

    run = crawl_with_fleet(
        quick_sim,
        services.kafka_bootstrap,
        services.redis_url,
        tmp_path,
        shape=FleetShape(workers=3),
        during=kill_one_busy_worker,
        timeout=600,
    )
    assert killed and run.finished
    assert fleet_blocks(run.results) == calm_quick.blocks  # exactly the calm crawl's blocks
    # Redone work: the calm crawl's own share of leaves fetched twice (under 1%, shards whose walks
    # meet, test_local_crawl.py) and the lookups the dead worker made after its last checkpoint,
    # which its successor makes again; half a percent more on quick bounds those.
    print(f"wasted {run.progress.wasted} of {run.progress.lookups} lookups")
    assert run.progress.wasted <= 0.015 * run.progress.lookups


def _members(bootstrap: str, group: str) -> list[str | None]:
    """The group.instance.id of each member the coordinator lists in the group now."""
    return list(_assigned(bootstrap, group))


def _assigned(bootstrap: str, group: str) -> dict[str | None, int]:
    """How many partitions each member (by group.instance.id) holds now."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    [description] = [f.result(timeout=10) for f in admin.describe_consumer_groups([group]).values()]
    return {m.group_instance_id: len(m.assignment.topic_partitions) for m in description.members}


def test_a_drained_static_member_hands_its_partitions_on(services, quick_sim, tmp_path):
    """A worker with a group.instance.id (static membership) that drains leaves the group for now
    (the consumer protocol): its partitions wait the session timeout for a replacement under its
    name, then go to the others; none is left to no member (the classic protocol's cooperative
    rebalance with static members stranded 5 of 32 partitions in a chaos run)."""
    crawl = f"static-{os.getpid()}-{random.randrange(1 << 30):x}"
    plan = plan_crawl(crawl=crawl, ranges=quick_sim.ranges, strategy="sweep", resolution=24, samples=0)
    admin = RedisCrawlAdmin(services.redis_url, crawl)
    publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="whoiscrawl.", store=admin, partitions=32)
    fleet = Fleet(
        crawl, services.kafka_bootstrap, services.redis_url, quick_sim, tmp_path, workers=2, static=True
    )
    group = group_name("whoiscrawl.", crawl)
    both = [f"{crawl}-worker-0", f"{crawl}-worker-1"]
    try:
        fleet.start(2)
        deadline = time.monotonic() + 90
        logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
        while not all(b"assigned partitions" in log.read_bytes() for log in logs):
            assert time.monotonic() < deadline, "the workers never got partitions"
            time.sleep(0.2)
        while sorted(_members(services.kafka_bootstrap, group), key=str) != both:
            assert time.monotonic() < deadline, "the group never listed both workers"
            time.sleep(0.2)
        code, seconds = fleet.terminate(0, timeout=60)
        # The worker's own record of its drain (its log), against the grace it was given.
        assert code == 0 and seconds <= fleet.grace_seconds, seconds
        assert sorted(_members(services.kafka_bootstrap, group), key=str) == both  # kept for its name
        while _assigned(services.kafka_bootstrap, group) != {f"{crawl}-worker-1": 32}:
            assert time.monotonic() < deadline + 60, "the drained member's partitions never moved"
            time.sleep(0.2)
    finally:
        fleet.stop()
        queue.delete_topics(services.kafka_bootstrap, "whoiscrawl.", crawl)
        admin.delete_crawl()
