"""A worker that stalls past its leases and wakes: its writes are refused, its work under them stops."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from whoiscrawl.bench.common import simulator
from whoiscrawl.crawl import run_shards
from whoiscrawl.local import FileSink
from whoiscrawl.records import NetworkRecord, Shard
from whoiscrawl.registry import Egress
from whoiscrawl.sim.render import LOOKUP_PROTOCOLS
from whoiscrawl.store.redis_admin import RedisCrawlAdmin
from whoiscrawl.store.redis_blocks import RedisBlockStore

from .conftest import TIME_SCALE
from .test_fleet_state import PARENT, PARENT_SPAN, local_blocks, planned, worker
from .test_resume import blocks


class FrozenSink(FileSink):
    """Results to a file, and a way to freeze the worker as it delivers a result (as a SIGSTOP
    would): the first for which `freeze(record, results before it)` holds waits there, holding its
    leases without renewing them, until thawed."""

    def __init__(self, path: Path, freeze: Callable[[NetworkRecord, int], bool]) -> None:
        super().__init__(path)
        self.freeze = freeze
        self.frozen = asyncio.Event()
        self.thawed = asyncio.Event()

    async def emit(self, record: NetworkRecord) -> None:
        if not self.frozen.is_set() and self.freeze(record, self.count):
            self.frozen.set()
            await self.thawed.wait()
        await super().emit(record)


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


# LACNIC lists no children: its shard is walked cell by cell, a checkpoint a step.
LACNIC_SHARD = (int.from_bytes(bytes([186, 0, 0, 0])), int.from_bytes(bytes([186, 0, 15, 255])))


async def test_a_former_owners_checkpoint_is_refused(services, unique_name, tmp_path):
    """A worker frozen mid-shard (its claim lapsed, Kafka gave its partition to another) wakes and
    writes its step: a checkpoint behind the new owner's. It is refused and counted, and the frozen
    walk stops; the shard's cursor never moves back (it went back 32-63 times a chaos run)."""
    shard = Shard(unique_name, "lacnic-0", *LACNIC_SHARD, "sweep", 24)
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    admin.add_plan([shard])
    written: list[tuple[str, int]] = []  # (who, cursor) of every checkpoint the store took, in order

    def mirror(who: str) -> Callable[[str, str | None], None]:
        def took(_: str, checkpoint: str | None) -> None:
            if checkpoint:
                written.append((who, int(checkpoint.split("/")[0])))

        return took

    with simulator("quick", TIME_SCALE, tmp_path / "requests.jsonl") as sim:
        frozen_sink = FrozenSink(tmp_path / "a.jsonl", lambda _, before: before == 1)
        async with (
            worker(services, sim, unique_name, frozen_sink, "a", mirror=mirror("a"), lease_ms=300) as a,
            worker(services, sim, unique_name, tmp_path / "b.jsonl", "b", mirror=mirror("b")) as b,
        ):
            a_stop, b_stop = asyncio.Event(), asyncio.Event()
            walking_a = asyncio.create_task(a.run_shard(shard, until=a_stop))
            await asyncio.wait_for(frozen_sink.frozen.wait(), 20)
            await asyncio.sleep(0.4)  # its claim lapses
            walking_b = asyncio.create_task(b.run_shard(shard, until=b_stop))
            await until(lambda: sum(who == "b" for who, _ in written) >= 2)
            b_stop.set()
            await asyncio.wait_for(walking_b, 20)
            a_stop.set()
            frozen_sink.thawed.set()  # it wakes, and finishes the step it was in
            assert not await asyncio.wait_for(walking_a, 20)
    progress = admin.progress()
    cursor = await_cursor(admin, shard.shard_id)
    admin.delete_crawl()
    took_over = next(i for i, (who, _) in enumerate(written) if who == "b")
    assert all(who == "b" for who, _ in written[took_over:]), written  # nothing of a's after b's
    cursors = [c for _, c in written]
    assert cursors == sorted(cursors), written
    assert cursor == written[-1][1]
    assert progress.stale_writes_refused >= 1 and progress.checkpoints_backwards == 0


def await_cursor(admin: RedisCrawlAdmin, shard_id: str) -> int:
    value = admin.client.hget(admin.keys.cursors, shard_id)
    assert isinstance(value, bytes)
    return int(value.decode().split("/")[0])


async def test_a_listing_whose_lease_was_taken_over_stops_at_once(services, unique_name, tmp_path):
    """A worker frozen mid-listing while its lease lapses and another worker takes the listing
    over: on waking it lists no further beside the new owner (it once went on for 4 s and more),
    and takes the listing again once the new owner lets it go, so nothing is lost."""
    with simulator("quick", TIME_SCALE, tmp_path / "requests.jsonl") as sim:
        whole = await local_blocks(sim, [PARENT], tmp_path / "local.jsonl")
        shards = planned(services, unique_name, [PARENT])
        out = tmp_path / "a.jsonl"
        listed: list[int] = []  # results delivered before the assignment: its children follow

        def third_child(record: NetworkRecord, before: int) -> bool:
            if (record.first, record.last) == PARENT_SPAN:
                listed.append(before)
            return bool(listed) and before == listed[0] + 3

        sink = FrozenSink(out, third_child)
        other = RedisBlockStore(services.redis_url, unique_name)
        admin = RedisCrawlAdmin(services.redis_url, unique_name)
        async with worker(services, sim, unique_name, sink, "a", lease_ms=300) as a:
            walking = asyncio.create_task(run_shards(a, shards, 1))  # one lane: the lister alone
            await asyncio.wait_for(sink.frozen.wait(), 20)
            lease = other.keys.listing(*PARENT_SPAN)
            assert "a" in (await other.client.get(lease) or b"").decode().split("/")  # a lists it
            async with asyncio.timeout(10):  # its lease lapses; the other worker takes the listing
                while await other.first_to_list(*PARENT_SPAN, "b") != "mine":
                    await asyncio.sleep(0.05)
            at_thaw = sink.count
            sink.thawed.set()
            await until(lambda: a.store.index.covers(*PARENT_SPAN)
                        or admin.progress().stale_writes_refused >= 1 or sink.count > 8)
            assert sink.count <= at_thaw + 1, "it listed on beside the listing's new owner"
            await other.listed(*PARENT_SPAN, "b", None)  # the new owner stops, unfinished
            assert await asyncio.wait_for(walking, 60)
        await other.close()
    admin.delete_crawl()
    assert blocks(out) == whole




def frozen_while_listing(out: Path) -> FrozenSink:
    """A sink that freezes its worker as it delivers the assignment's second child: the worker lists
    the parent its probe answered, and its walk's step past that probe is not written yet."""
    listed: list[int] = []  # results delivered before the assignment: its children follow

    def second_child(record: NetworkRecord, before: int) -> bool:
        if (record.first, record.last) == PARENT_SPAN:
            listed.append(before)
        return bool(listed) and before == listed[0] + 2

    return FrozenSink(out, second_child)


async def test_a_listing_going_on_after_its_walk_was_revoked_writes_no_stale_checkpoint(
    services, unique_name, tmp_path
):
    """A lane revoked while its walk waits on a listing it started (the start-up rebalance moves
    most partitions a second after the first worker took them all): the listing goes on under its
    own lease, and the shard's next walk waits for it. Nobody stalled, so nothing is refused: the
    listing's steps write their blocks and not the ended walk's checkpoint. Each such step was
    refused and counted as a stale write before (16,614 in a calm run of standard, 48 in one of
    quick, every one a listing's step under a shard its walk had left in the rebalance)."""
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    with simulator("quick", TIME_SCALE, tmp_path / "requests.jsonl") as sim:
        whole = await local_blocks(sim, [PARENT], tmp_path / "local.jsonl")
        shards = planned(services, unique_name, [PARENT])
        shard = next(s for s in shards if s.first <= PARENT_SPAN[0] <= s.last)
        sink = frozen_while_listing(tmp_path / "a.jsonl")
        async with (
            worker(services, sim, unique_name, sink, "a") as a,
            worker(services, sim, unique_name, tmp_path / "b.jsonl", "b") as b,
        ):
            walking_a = asyncio.create_task(a.run_shard(shard))
            await asyncio.wait_for(sink.frozen.wait(), 20)  # a lists the assignment
            walking_a.cancel()  # revoked: the lane cancels its walk, the listing goes on
            await asyncio.gather(walking_a, return_exceptions=True)
            walking_b = asyncio.create_task(run_shards(b, shards, 4))  # the partitions' next owner

            def b_owns() -> bool:
                owner: Any = admin.client.hget(admin.keys.owners, shard.shard_id)
                return owner is not None and owner.decode().endswith("/b")

            await until(b_owns)
            sink.thawed.set()
            assert await asyncio.wait_for(walking_b, 60)
        progress = admin.progress()
    admin.delete_crawl()
    assert progress.stale_writes_refused == 0 and progress.checkpoints_backwards == 0
    assert blocks(tmp_path / "a.jsonl") | blocks(tmp_path / "b.jsonl") == whole


def answered_twice(log: Path, since: float) -> dict[str, int]:
    """Addresses the simulator answered more than once by lookup (RDAP, WHOIS) since a moment, as the
    chaos bench counts its duplicate lookups."""
    answered = Counter(
        entry["address"] for entry in map(json.loads, log.open())
        if entry["t"] >= since and entry["outcome"] == "ok" and entry["protocol"] in LOOKUP_PROTOCOLS
    )
    return {address: n for address, n in answered.items() if n > 1}


async def test_a_walk_cut_off_while_its_parent_is_listed_leaves_no_lookup_to_ask_again(
    services, unique_name, tmp_path
):
    """A worker whose probe answered a parent stalls while it lists the parent, and its shard
    moves on (a kill, a pause past its leases, a drain or a revocation leave the same: the probe
    never reached the walk's checkpoint). The shard's next walk meets the address again: it reads
    the answer the store kept, takes the listing over, and asks the registry nothing twice. Before,
    it looked the address up again to learn the parent (52 of 58 duplicate lookups of a chaos run
    of quick were such probes, some asked by four walks in turn)."""
    log = tmp_path / "requests.jsonl"
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    with simulator("quick", TIME_SCALE, log) as sim:
        whole = await local_blocks(sim, [PARENT], tmp_path / "local.jsonl")
        shards = planned(services, unique_name, [PARENT])
        shard = next(s for s in shards if s.first <= PARENT_SPAN[0] <= s.last)
        sink = frozen_while_listing(tmp_path / "a.jsonl")
        since = time.time()
        async with (
            worker(services, sim, unique_name, sink, "a", lease_ms=300) as a,
            worker(services, sim, unique_name, tmp_path / "b.jsonl", "b") as b,
        ):
            walking_a = asyncio.create_task(a.run_shard(shard))
            await asyncio.wait_for(sink.frozen.wait(), 20)  # a lists the parent its probe answered
            walking_a.cancel()  # and its shard moves on; its leases lapse
            await asyncio.gather(walking_a, return_exceptions=True)
            assert await asyncio.wait_for(run_shards(b, shards, 4), 60)  # the shards' next owner
            sink.thawed.set()  # a wakes: its listing's next write is refused, and it stops
            await until(lambda: admin.progress().stale_writes_refused >= 1)
        kept = admin.client.hlen(admin.keys.kept_answers)
    admin.delete_crawl()
    assert answered_twice(log, since) == {}
    assert kept == 0  # each answer kept was forgotten once its step was written
    assert blocks(tmp_path / "a.jsonl") | blocks(tmp_path / "b.jsonl") == whole


async def test_two_crawls_through_one_address_keep_the_registry_limit(services, unique_name, tmp_path):
    """Two crawls at once leaving by one source address share the registries' budgets behind it
    (issue 25 thought them keyed per crawl, each spending the whole limit; they are keyed by
    registry and egress address since 2026-12-01): the simulator counts no request over a limit."""
    log = tmp_path / "requests.jsonl"
    ranges = ["186.0.0.0/20", "193.0.0.0/20"]  # LACNIC (1 connection, 10/m) and RIPE NCC (3)
    with simulator("quick", TIME_SCALE, log) as sim:
        async def crawl(name: str) -> bool:
            shards = planned(services, name, ranges)
            nat = Egress("one-nat", "127.0.10.1")
            async with worker(services, sim, name, tmp_path / f"{name}.jsonl", name, egress=nat) as crawler:
                return await run_shards(crawler, shards, 8)

        names = (f"{unique_name}-a", f"{unique_name}-b")
        done = await asyncio.wait_for(asyncio.gather(*(crawl(n) for n in names)), 120)
    for name in names:
        RedisCrawlAdmin(services.redis_url, name).delete_crawl()
    entries = [json.loads(line) for line in log.open()]
    assert all(done)
    assert {e["source"] for e in entries} == {"127.0.10.1"}
    both = {e["registry"] for e in entries}
    assert {"lacnic", "ripencc"} <= both
    over = [e for e in entries if e["outcome"] in ("rate_limited", "blocked")]
    print(f"{len(entries)} requests from one address for two crawls, {len(over)} over a limit")
    assert not over
