"""End to end: the operator (kopf on kmock) runs a crawl of `quick` through real worker processes."""

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

from opsupport_cluster import CRAWLS, running_cluster  # noqa: E402
from opsupport_runner import process_runner  # noqa: E402
from whoiscrawl.operator.backend import LiveBackend  # noqa: E402
from whoiscrawl.operator.spec import parse_spec  # noqa: E402

from whoiscrawl import queue  # noqa: E402
from whoiscrawl.store import Progress, RedisStore  # noqa: E402

from .conftest import COVERAGE_FLOOR, score  # noqa: E402

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.slow,
    pytest.mark.services,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:kmock"),
]


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


async def test_operator_crawls_quick_with_real_workers(services, quick_sim, unique_name, tmp_path):
    crawl = unique_name
    raw_spec = {
        "ranges": quick_sim.ranges,
        "kafka": {"bootstrapServers": services.kafka_bootstrap},
        "redis": {"url": services.redis_url},
        # The simulator's time-scaled limits per source address; the workers pace themselves by them.
        "registries": {r: {"rate": f"{lim.rate_per_s:g}/s"} for r, lim in quick_sim.limits().items()},
        "workers": {
            "min": 0,
            "max": 3,
            "scaleDownStabilizationSeconds": 0,
            "gracePeriodSeconds": 10,
            "bootstrapUrl": quick_sim.bootstrap_url,
            "env": {"WHOISCRAWL_WHOIS": quick_sim.whois},
        },
        "cleanup": {"topics": "Delete", "redis": "Delete"},
    }
    prefix = parse_spec(raw_spec).kafka.queue_prefix

    def topics_left() -> list[str]:
        listed = AdminClient({"bootstrap.servers": services.kafka_bootstrap}).list_topics(timeout=10).topics
        return [t for t in queue.topic_names(prefix, crawl) if t in listed]

    store = RedisStore(services.redis_url, crawl)
    results = tmp_path / "results.jsonl"
    started = time.monotonic()
    try:
        async with (
            running_cluster(backend=LiveBackend(), toy_controller=False) as cluster,
            process_runner(cluster, f"{crawl}-worker", tmp_path) as runner,
        ):
            code, body = await cluster.create(crawl, raw_spec)
            assert code == 201, body

            # Mid-crawl, one worker dies without a goodbye; the runner replaces it.
            at_kill = await until(lambda: (p := store.progress()).lookups > 1500 and p, 90, "lookups")
            assert runner.pods, "no worker running mid-crawl"
            killed = runner.kill()
            killed_after = time.monotonic() - started
            workers_at_kill = len(runner.pods)

            def completed() -> bool:
                return cluster.condition(crawl, "Completed") == ("True", "AllShardsDone")

            try:
                await cluster.until(completed, timeout=90, label="Completed")
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}\nstatus: {cluster.crawl(crawl).get('status')}\n{runner.tail()}"
                ) from None
            wall = time.monotonic() - started
            await cluster.until(lambda: not runner.pods and not runner.terminating, 30, "workers gone")
            status = cluster.crawl(crawl)["status"]
            deployment = cluster.get("apps/v1", "deployments", f"{crawl}-worker")

            def export() -> int:
                records = queue.read_results(services.kafka_bootstrap, prefix, crawl)
                with results.open("w") as fh:
                    fh.writelines(r.to_json().decode() + "\n" for r in records)
                return len(records)

            exported = await asyncio.to_thread(export)
            progress = await asyncio.to_thread(store.progress)

            # Deleting the crawl runs the finalizer: the real backend drops the topics and keys.
            code, _ = await cluster.request("DELETE", f"{CRAWLS}/{crawl}")
            assert code == 200
            await cluster.until(
                lambda: cluster.get("whoiscrawl.io/v1alpha1", "whoiscrawls", crawl) is None, 30, "deleted"
            )
            await until(lambda: store.progress() == Progress(), 10, "Redis keys deleted")
            await until(lambda: not topics_left(), 30, "topics deleted")
    finally:
        with contextlib.suppress(Exception):
            queue.delete_topics(services.kafka_bootstrap, prefix, crawl)
        with contextlib.suppress(Exception):
            store.delete_crawl()

    figures = score(results)
    print(
        f"\ne2e: wall {wall:.1f}s to Completed, {exported} results, lookups {progress.lookups}, "
        f"blocks {progress.blocks}, wasted {progress.wasted}, errors {progress.errors}, "
        f"killed {killed} at {killed_after:.1f}s, {at_kill.lookups} lookups ({workers_at_kill} workers), "
        f"replicas seen {runner.replicas_seen}, processes started {runner.started}, "
        f"exits {[code for _, code in runner.exits]}, recall {figures['recall_resolution']}, "
        f"coverage {figures['address_coverage']}"
    )
    replicas = [n for _, n in runner.replicas_seen]
    assert max(replicas) > 0 and replicas[-1] == 0
    assert deployment is not None and deployment["spec"]["replicas"] == 0
    assert status["phase"] == "Completed" and status["shards"]["done"] == status["shards"]["total"]
    assert (killed, -9) in runner.exits and runner.started > max(replicas)
    assert progress.shards_done >= progress.shards_total > 0
    assert figures["recall_resolution"] == 1.0
    assert figures["address_coverage"] >= COVERAGE_FLOOR
