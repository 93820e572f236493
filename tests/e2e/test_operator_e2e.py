"""End to end: the operator (kopf on kmock) runs a crawl of `quick` through real worker processes.

Beside it runs a crawl of the same name in another namespace, deleted in the middle; every publish
takes longer than the timer interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

os.environ.setdefault("WHOISCRAWL_OPERATOR_INTERVAL", "1")  # read when the kopf handlers load
SUPPORT = str(Path(__file__).parents[1] / "operator" / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

from opsupport_cluster import NS, running_cluster  # noqa: E402
from opsupport_runner import process_runner  # noqa: E402
from whoiscrawl.operator.backend import LiveBackend, Plan, Target  # noqa: E402
from whoiscrawl.operator.builders import crawl_id  # noqa: E402
from whoiscrawl.operator.spec import CrawlSpec, parse_spec  # noqa: E402

from whoiscrawl import queue  # noqa: E402
from whoiscrawl.store import Progress, RedisStore  # noqa: E402

from .conftest import COVERAGE_FLOOR, score  # noqa: E402

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.slow,
    pytest.mark.services,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:kmock"),
]


OTHER = "crawls-b"  # the namespace of the same-named crawl that is deleted mid-crawl
SLOW_PUBLISH_SECONDS = 2.5  # past the timer interval (1 s)


class SlowPublish(LiveBackend):
    """The real backend, with publishing slowed past the timer interval; counts what it sends."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}

    def _send_plan(self, t: Target, spec: CrawlSpec) -> Plan:
        time.sleep(SLOW_PUBLISH_SECONDS)
        self.sent[t.crawl] = self.sent.get(t.crawl, 0) + 1
        return super()._send_plan(t, spec)


def work_messages(bootstrap: str, prefix: str, crawl: str) -> int:
    """Messages on a crawl's work topic (high watermarks)."""
    from confluent_kafka import Consumer, TopicPartition

    work, _ = queue.topic_names(prefix, crawl)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-count"})
    try:
        parts = consumer.list_topics(work, timeout=10).topics[work].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(work, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


async def until(what: Callable[[], Any], timeout: float, label: str) -> Any:
    """Poll a blocking check (Redis, Kafka) off the event loop that serves kmock."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(what)
        if last:
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {label}: last={last!r}")


def crawl_spec(services, quick_sim, max_workers: int) -> dict:
    return {
        "ranges": quick_sim.ranges,
        "kafka": {"bootstrapServers": services.kafka_bootstrap},
        "redis": {"url": services.redis_url},
        # The simulator's time-scaled limits per source address; the workers pace themselves by them.
        "registries": {r: {"rate": f"{lim.rate_per_s:g}/s"} for r, lim in quick_sim.limits().items()},
        "workers": {
            "min": 0,
            "max": max_workers,
            "scaleDownStabilizationSeconds": 0,
            "gracePeriodSeconds": 10,
            "bootstrapUrl": quick_sim.bootstrap_url,
            "env": {"WHOISCRAWL_WHOIS": quick_sim.whois},
        },
        "cleanup": {"topics": "Delete", "redis": "Delete"},
    }


class Leftovers:
    """What one crawl leaves in Kafka and Redis."""

    def __init__(self, services, prefix: str, ident: str) -> None:
        self.services, self.prefix, self.ident = services, prefix, ident
        self.store = RedisStore(services.redis_url, ident)

    def topics(self) -> list[str]:
        admin = AdminClient({"bootstrap.servers": self.services.kafka_bootstrap})
        listed = admin.list_topics(timeout=10).topics
        return [t for t in queue.topic_names(self.prefix, self.ident) if t in listed]

    def keys(self) -> list[bytes]:
        return list(self.store.client.scan_iter(match=self.store.keys.prefix + "*"))

    def none(self) -> bool:
        return not self.topics() and not self.keys()

    def drop(self) -> None:
        with contextlib.suppress(Exception):
            queue.delete_topics(self.services.kafka_bootstrap, self.prefix, self.ident)
        with contextlib.suppress(Exception):
            self.store.delete_crawl()


async def delete_crawl(cluster, name: str, data: Leftovers, ns: str = NS) -> None:
    """Delete a crawl; the finalizer (the real backend) drops its topics and keys."""
    assert await cluster.delete(name, ns) == 200
    await cluster.until(lambda: cluster.get("whoiscrawl.io/v1alpha1", "whoiscrawls", name, ns) is None,
                        30, f"{ns}/{name} deleted")
    await until(data.none, 30, f"{ns}/{name} topics and keys deleted")


async def delete_mid_crawl(cluster, name: str, other: Leftovers, runner) -> None:
    """Delete the other namespace's crawl once its worker is busy: workers stop, then data goes."""
    await until(lambda: other.store.progress().lookups > 50, 90, f"{OTHER} lookups")
    assert runner.pods, f"no worker of {OTHER}/{name} running"
    await delete_crawl(cluster, name, other, OTHER)
    assert not runner.pods and not runner.terminating  # its workers were gone before the cleanup


async def kill_one(store: RedisStore, runner) -> tuple[str, Progress, int]:
    """Mid-crawl, one worker dies without a goodbye (the runner replaces it)."""
    at_kill = await until(lambda: (p := store.progress()).lookups > 1500 and p, 90, "lookups")
    assert runner.pods, "no worker running mid-crawl"
    workers = len(runner.pods)
    return runner.kill(), at_kill, workers


async def wait_completed(cluster, crawl: str, runner) -> None:
    def completed() -> bool:
        return cluster.condition(crawl, "Completed") == ("True", "AllShardsDone")

    try:
        await cluster.until(completed, timeout=120, label="Completed")
    except AssertionError as exc:
        status = cluster.crawl(crawl).get("status")
        raise AssertionError(f"{exc}\nstatus: {status}\n{runner.tail()}") from None


def export(crawl: Leftovers, results: Path) -> int:
    """The crawl's results topic as JSON lines, for the scorer."""
    records = queue.read_results(crawl.services.kafka_bootstrap, crawl.prefix, crawl.ident)
    with results.open("w") as fh:
        fh.writelines(r.to_json().decode() + "\n" for r in records)
    return len(records)


async def test_operator_crawls_quick_with_real_workers(services, quick_sim, unique_name, tmp_path):
    crawl = unique_name
    raw_spec = crawl_spec(services, quick_sim, 3)
    prefix = parse_spec(raw_spec).kafka.queue_prefix
    mine = Leftovers(services, prefix, crawl_id(NS, crawl))
    other = Leftovers(services, prefix, crawl_id(OTHER, crawl))
    backend = SlowPublish()
    results = tmp_path / "results.jsonl"
    logs_a, logs_b = tmp_path / "a", tmp_path / "b"
    logs_a.mkdir(), logs_b.mkdir()
    started = time.monotonic()
    try:
        async with (
            running_cluster(backend=backend, toy_controller=False) as cluster,
            process_runner(cluster, f"{crawl}-worker", logs_a) as runner,
            process_runner(cluster, f"{crawl}-worker", logs_b, OTHER, slot_base=10) as runner_b,
        ):
            for ns, spec in ((NS, raw_spec), (OTHER, crawl_spec(services, quick_sim, 1))):
                assert (await cluster.create(crawl, spec, ns))[0] == 201
            await delete_mid_crawl(cluster, crawl, other, runner_b)

            killed, at_kill, workers_at_kill = await kill_one(mine.store, runner)
            killed_after = time.monotonic() - started
            await wait_completed(cluster, crawl, runner)
            wall = time.monotonic() - started
            await cluster.until(lambda: not runner.pods and not runner.terminating, 30, "workers gone")
            status = cluster.crawl(crawl)["status"]
            deployment = cluster.get("apps/v1", "deployments", f"{crawl}-worker")
            published = await asyncio.to_thread(work_messages, services.kafka_bootstrap, prefix, mine.ident)
            recreated = await asyncio.to_thread(lambda: (other.topics(), other.keys()))

            exported = await asyncio.to_thread(export, mine, results)
            progress = await asyncio.to_thread(mine.store.progress)
            await delete_crawl(cluster, crawl, mine)
    finally:
        mine.drop()
        other.drop()

    figures = score(results)
    print(
        f"\ne2e: wall {wall:.1f}s to Completed, {exported} results, lookups {progress.lookups}, "
        f"blocks {progress.blocks}, wasted {progress.wasted}, errors {progress.errors}, "
        f"killed {killed} at {killed_after:.1f}s, {at_kill.lookups} lookups ({workers_at_kill} workers), "
        f"replicas seen {runner.replicas_seen}, processes started {runner.started}, "
        f"exits {[code for _, code in runner.exits]}, recall {figures['recall_resolution']}, "
        f"coverage {figures['address_coverage']}, published {backend.sent}"
    )
    replicas = [n for _, n in runner.replicas_seen]
    assert max(replicas) > 0 and replicas[-1] == 0
    assert deployment is not None and deployment["spec"]["replicas"] == 0
    assert status["phase"] == "Completed" and status["shards"]["done"] == status["shards"]["total"]
    # Each plan went out once, though publishing took longer than the timer interval.
    assert backend.sent == {mine.ident: 1, other.ident: 1}
    assert published == status["shards"]["total"] == progress.shards_total
    assert recreated == ([], [])  # nothing of the deleted crawl came back while this one ran
    assert (killed, -9) in runner.exits and runner.started > max(replicas)
    assert progress.shards_done >= progress.shards_total > 0
    assert figures["recall_resolution"] == 1.0
    assert figures["address_coverage"] >= COVERAGE_FLOOR
