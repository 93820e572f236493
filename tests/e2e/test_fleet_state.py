"""The fleet's state in Redis: walks resumed by another worker, listing leases, partly listed parents."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from whoiscrawl.bench.common import Simulator, simulator
from whoiscrawl.crawl import Crawler, Member, run_shards
from whoiscrawl.local import FileSink, LocalCrawl
from whoiscrawl.ratelimit import RedisRateLimiter
from whoiscrawl.records import Shard
from whoiscrawl.registry import Egress, RegistryClient
from whoiscrawl.rirs import REGISTRIES
from whoiscrawl.settings import CrawlSettings
from whoiscrawl.space import fetch_bootstrap, plan_crawl
from whoiscrawl.store.redis_admin import RedisCrawlAdmin
from whoiscrawl.store.redis_blocks import RedisBlockStore

from .conftest import TIME_SCALE
from .test_resume import RANGES, blocks

# An ARIN reassignment whose registry lists 22 sub-assignments, all smaller than the /24 grid: a
# probe anywhere outside them answers the reassignment itself, a leaf by its type. (RIPE NCC's
# server refuses children under an assignment, so none of its assignments can serve here.)
PARENT = "63.0.28.0/22"
LACNIC, LACNIC_CELL = "186.0.0.0/22", int.from_bytes(bytes([186, 0, 2, 0]))  # assignments inside
PARENT_SPAN = (int.from_bytes(bytes([63, 0, 28, 0])), int.from_bytes(bytes([63, 0, 31, 255])))


@contextlib.asynccontextmanager
async def worker(
    services, sim: Simulator, crawl: str, out: Path | FileSink, owner: str, *, egress: Egress | None = None,
    mirror: Callable[[str, str | None], None] | None = None, lease_ms: int | None = None,
) -> AsyncIterator[Crawler]:
    """One fleet worker's crawler, in this process: shared state in Redis, results to a file (or a
    sink of the test's). `lease_ms`: its leases lapse that soon, though renewed only every 4 s (a
    stall); `mirror`: where its store copies each checkpoint it takes."""
    store = RedisBlockStore(services.redis_url, crawl, mirror=mirror)
    if lease_ms is not None:
        store.LEASE_MS = lease_ms
    limiter = RedisRateLimiter(store.client, sim.limits(), owner)
    whois = dict.fromkeys(REGISTRIES, sim.whois)
    client = RegistryClient(
        await fetch_bootstrap(sim.bootstrap_url), limiter, [egress or Egress(owner)], whois
    )
    sink = out if isinstance(out, FileSink) else FileSink(out)
    try:
        yield Crawler(store, sink, client, Member(owner, crawl), scope=await store.scope())
    finally:
        sink.close()
        await client.close()
        await store.close()


def planned(services, crawl: str, ranges: list[str]) -> list[Shard]:
    plan = plan_crawl(crawl=crawl, ranges=ranges)
    RedisCrawlAdmin(services.redis_url, crawl).add_plan(plan.shards)
    return list(plan.shards)


async def local_blocks(sim: Simulator, ranges: list[str], out: Path) -> set[tuple[str, str]]:
    """What a local crawl of the ranges finds, never interrupted."""
    whois = dict.fromkeys(REGISTRIES, sim.whois)
    job = LocalCrawl(ranges, out, await fetch_bootstrap(sim.bootstrap_url), sim.limits(),
                     CrawlSettings(whois_servers=whois))
    assert (await job.run())["complete"]
    return blocks(out)


async def revoked_again_and_again(services, sim: Simulator, crawl: str, out: Path, seed: int) -> int:
    """Workers take the crawl over from each other, each revoked at a random moment (its lanes
    cancelled mid-lookup; a listing it started goes on, as in a worker that lost a partition),
    until one finishes it. Returns how many were revoked."""
    shards = planned(services, crawl, RANGES)
    rng = random.Random(seed)
    async with contextlib.AsyncExitStack() as workers:
        for n in range(100):
            crawler = await workers.enter_async_context(worker(services, sim, crawl, out, f"w{n}"))
            walking = asyncio.create_task(run_shards(crawler, shards, 16))
            # The first three windows are short whatever the machine's speed: at least 3 revocations.
            window = rng.uniform(0.05, 0.15) if n < 3 else rng.uniform(0.05, 0.5)
            done, _ = await asyncio.wait({walking}, timeout=window)
            if done:
                assert walking.result()
                return n
            walking.cancel()
            # And stopped, as a revoked worker is (`until`, besides the cancellation): redis-py 8.1
            # dropped cancellations (lanes walked on 3 s after theirs; `whoiscrawl/redis_client.py`
            # re-raises them now), and a lane that missed one would crawl on behind the others' backs.
            crawler.stopping.set()
            await asyncio.gather(walking, return_exceptions=True)
    raise AssertionError("never finished")


async def test_walks_revoked_anywhere_and_resumed_by_others_lose_nothing(services, unique_name, tmp_path):
    with simulator("quick", TIME_SCALE, tmp_path / "requests.jsonl") as sim:
        whole = await local_blocks(sim, RANGES, tmp_path / "local.jsonl")
        out = tmp_path / "fleet.jsonl"
        revoked = await revoked_again_and_again(services, sim, unique_name, out, seed=14)
    RedisCrawlAdmin(services.redis_url, unique_name).delete_crawl()
    print(f"revoked {revoked} times; blocks {len(blocks(out))} of {len(whole)}")
    assert revoked >= 3  # 3-16 seen, depending on how busy the machine is
    assert blocks(out) == whole


async def test_a_parent_being_listed_is_waited_for_and_never_stored_as_a_leaf(
    services, unique_name, tmp_path
):
    """Another worker lists the assignment (its lease alive) while a lane probes inside it: the
    probe answers the assignment, a leaf by its type. Stored so, the lister would take its other
    children for known; the lane waits instead, and takes the listing over when it is given up."""
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    lease = admin.keys.listing(*PARENT_SPAN)
    out = tmp_path / "fleet.jsonl"
    with simulator("quick", TIME_SCALE, tmp_path / "requests.jsonl") as sim:
        whole = await local_blocks(sim, [PARENT], tmp_path / "local.jsonl")
        shards = planned(services, unique_name, [PARENT])
        admin.client.set(lease, "lister", px=5000)
        async with worker(services, sim, unique_name, out, "prober") as prober:
            walking = asyncio.create_task(run_shards(prober, shards, 4))
            for _ in range(12):  # 3 s of a live lister renewing its lease
                await asyncio.sleep(0.25)
                admin.client.set(lease, "lister", px=5000)
            assert not prober.store.index.covers(*PARENT_SPAN), "a partly listed parent looks known"
            assert not walking.done(), "a lane gave up on a parent another worker is listing"
            assert prober.lookups_by_registry["arin"] > 0  # it did meet the assignment
            admin.client.delete(lease)  # the lister stops before it is done
            assert await asyncio.wait_for(walking, 60)
    admin.delete_crawl()
    assert blocks(out) == whole


async def test_a_dead_listers_lease_lapses_and_its_listing_is_taken_over(services, unique_name, tmp_path):
    """A worker killed mid-listing never releases its claim: another lists the parent once the
    claim lapses, rather than fall back to the grid and mark the shards done without its children."""
    out = tmp_path / "fleet.jsonl"
    with simulator("quick", TIME_SCALE, tmp_path / "requests.jsonl") as sim:
        whole = await local_blocks(sim, [PARENT], tmp_path / "local.jsonl")
        shards = planned(services, unique_name, [PARENT])
        dead = RedisBlockStore(services.redis_url, unique_name)
        await dead.first_to_list(*PARENT_SPAN, "dead")  # and then it was SIGKILLed
        await dead.close()
        async with worker(services, sim, unique_name, out, "next") as survivor:
            started = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(run_shards(survivor, shards, 4), 60)
            print(f"taken over and done in {asyncio.get_running_loop().time() - started:.1f}s")
    RedisCrawlAdmin(services.redis_url, unique_name).delete_crawl()
    assert blocks(out) == whole


async def test_a_dead_workers_cell_claim_lapses_within_its_lease(services, unique_name, tmp_path):
    """A worker killed mid-lookup leaves its claim on the cell: the next lane to reach the cell
    waits only for the claim's short lease (renewed while its owner lives), not for a minute.
    LACNIC lists no children, so only a probe in that cell can find what it holds."""
    out = tmp_path / "fleet.jsonl"
    with simulator("quick", TIME_SCALE, tmp_path / "requests.jsonl") as sim:
        whole = await local_blocks(sim, [LACNIC], tmp_path / "local.jsonl")
        shards = planned(services, unique_name, [LACNIC])
        dead = RedisBlockStore(services.redis_url, unique_name)
        assert await dead.claim(LACNIC_CELL, "dead")  # and then it was SIGKILLed
        await dead.close()
        async with worker(services, sim, unique_name, out, "next") as survivor:
            assert await asyncio.wait_for(run_shards(survivor, shards, 4), 40)  # claims once lasted 60 s
    RedisCrawlAdmin(services.redis_url, unique_name).delete_crawl()
    assert blocks(out) == whole
