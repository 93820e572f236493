"""Redis lost a crawl's data: workers notice (the epoch is gone), one rebuilds it from the topics
under a lease while the others' writes wait, and everyone reads the new generation from its start."""

from __future__ import annotations

import asyncio
import functools
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import Consumer, TopicPartition

from whoiscrawl import queue, recover
from whoiscrawl.bench.fleet import unfinished_shards
from whoiscrawl.publish import publish_plan
from whoiscrawl.records import NetworkRecord
from whoiscrawl.space import plan_crawl
from whoiscrawl.store import REBUILD_LEASE_S
from whoiscrawl.store.redis_admin import RedisCrawlAdmin
from whoiscrawl.store.redis_blocks import RedisBlockStore
from whoiscrawl.strategy import Answer

LEAF = NetworkRecord("ripencc", "193.0.1.0 - 193.0.1.127", "193.0.1.0", "193.0.1.127", ["193.0.1.0/25"],
                     type="ASSIGNED PA")
PARENT = NetworkRecord("ripencc", "193.0.0.0 - 193.0.255.255", "193.0.0.0", "193.0.255.255",
                       ["193.0.0.0/16"], type="ALLOCATED PA")


def commit_first(services, crawl: str) -> tuple[str, int]:
    """The worker group commits the first shard of one partition; (its id, its addresses)."""
    for partition, offset, shard in queue.iter_work(services.kafka_bootstrap, "t.", crawl):
        if offset == 0:
            consumer = Consumer({"bootstrap.servers": services.kafka_bootstrap,
                                 "group.id": queue.group_name("t.", crawl), "enable.auto.commit": False})
            work, _ = queue.topic_names("t.", crawl)
            consumer.commit(offsets=[TopicPartition(work, partition, 1)], asynchronous=False)
            consumer.close()
            return shard.shard_id, shard.last - shard.first + 1
    raise AssertionError("no shard at offset 0")


async def test_a_flushed_store_is_rebuilt_once_and_every_worker_goes_on(services, unique_name):
    plan = plan_crawl(crawl=unique_name, ranges=["193.0.0.0/16", "10.0.0.0/15"])
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="t.", store=admin, partitions=3)
    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", unique_name)
    for record in (LEAF, PARENT):
        await sink.emit(record)
    assert sink.close() == 0
    done_id, done_size = commit_first(services, unique_name)
    rebuilds: list[bool] = []

    async def rebuild(owner: str) -> bool:
        rebuilt = await asyncio.to_thread(recover.rebuild, services.redis_url, services.kafka_bootstrap,
                                          "t.", unique_name, owner)
        rebuilds.append(rebuilt is not None)
        return rebuilt is not None

    walking = next(s.shard_id for s in plan.shards if s.shard_id != done_id)
    checkpoints = queue.CheckpointSink(services.kafka_bootstrap, "t.", unique_name)
    a = RedisBlockStore(services.redis_url, unique_name, rebuild=functools.partial(rebuild, "a"),
                        mirror=checkpoints.put)
    b = RedisBlockStore(services.redis_url, unique_name, rebuild=functools.partial(rebuild, "b"))
    try:
        await a.sync()
        await b.sync()
        assert rebuilds == []  # planned: the first generation is there
        await a.record_step(walking, "167772416/167772415/167772159:-1", None)  # a walk's checkpoint
        await a.record_step("s", "1", Answer(0x0A000000, 0x0A0000FF, True))
        assert checkpoints.close() == 0
        await b.sync()
        assert b.index.terminal_end(0x0A000010) == 0x0A0000FF
        old_epoch = admin.epoch()

        admin.client.flushdb()  # Redis lost everything
        assert admin.progress().shards_total == 0
        # Both write at once: one rebuilds (under the lease), the other waits for it.
        await asyncio.gather(
            a.record_step("s", "2", Answer(0x0A000100, 0x0A0001FF, True)),
            b.record_step("t", "3", None),
        )
        assert rebuilds.count(True) == 1
        assert admin.epoch() not in (None, old_epoch)
        assert (a.losses, b.losses) == (1, 1)

        progress = admin.progress()
        assert (progress.shards_total, progress.addresses_total) == (len(plan.shards), plan.addresses)
        assert (progress.shards_done, progress.addresses_done) == (1, done_size)
        assert admin.client.sismember(admin.keys.done, done_id)
        assert admin.client.get(admin.keys.scope).decode() == plan.scope.encode()
        assert await a.cursor(walking) == "167772416/167772415/167772159:-1"  # from the topic
        assert progress.blocks == 3  # the two records on the topic, then a's block after the rebuild

        fresh = RedisBlockStore(services.redis_url, unique_name)  # a worker started after
        await fresh.sync()
        assert fresh.index.terminal_end(LEAF.first + 9) == LEAF.last  # from the results topic
        assert fresh.index.knows(PARENT.first, PARENT.last)
        assert fresh.index.terminal_end(0x0A000110) == 0x0A0001FF  # written after the rebuild
        await fresh.close()
        await a.sync()
        assert a.index.terminal_end(LEAF.first) == LEAF.last
    finally:
        await a.close()
        await b.close()
        admin.delete_crawl()
        queue.delete_topics(services.kafka_bootstrap, "t.", unique_name)


def test_a_killed_rebuilders_lease_lapses_within_seconds(services, unique_name):
    """A worker SIGKILLed while it rebuilds leaves its lease behind; the others wait for it to lapse
    (REBUILD_LEASE_S, never renewed by the dead), then one of them takes it and rebuilds."""
    script = ("import os, signal, sys\nfrom whoiscrawl.store.redis_admin import RedisCrawlAdmin\n"
              "with RedisCrawlAdmin(sys.argv[1], sys.argv[2]).rebuilding('doomed') as mine:\n"
              "    assert mine\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, services.redis_url, unique_name])
    assert proc.returncode == -signal.SIGKILL
    store = RedisCrawlAdmin(services.redis_url, unique_name)
    left = store.client.pttl(store.keys.rebuilding)
    assert 0 < left <= REBUILD_LEASE_S * 1000
    with store.rebuilding("next") as mine:
        assert not mine  # still the dead one's, until it lapses
    # Redis expires the lease on its own clock: wait on that, not on ours. The bound is the lease
    # plus room for a busy machine to come round to asking; it lapses, or the test fails.
    deadline = time.monotonic() + REBUILD_LEASE_S + 10
    while store.client.get(store.keys.rebuilding) == b"doomed" and time.monotonic() < deadline:
        time.sleep(0.05)
    with store.rebuilding("next") as mine:
        assert mine  # lapsed: the next worker rebuilds
        assert store.client.get(store.keys.rebuilding) == b"next"
    assert store.client.get(store.keys.rebuilding) is None  # given back when done


def test_a_rebuild_that_outlived_its_lease_writes_nothing(services, unique_name, monkeypatch):
    """A rebuilder frozen after it read the topics (SIGSTOPped, a long GC) past its lease: another
    rebuilt the store meanwhile, from a shard committed since. The frozen one wakes with its stale
    reading: its plan must not land, or that shard is forgotten as done while its offset is
    committed, and the crawl never finishes (a chaos run of `standard` did that: 1800 s, unfinished)."""
    plan = plan_crawl(crawl=unique_name, ranges=["193.0.0.0/16", "10.0.0.0/15"])
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="t.", store=admin, partitions=3)
    read, wake = threading.Event(), threading.Event()
    reading = recover.plan_state

    def frozen_after_reading(*args: object, **kwargs: object) -> object:
        state = reading(*args, **kwargs)  # type: ignore[arg-type]
        read.set()
        assert wake.wait(60)
        return state

    monkeypatch.setattr(recover, "plan_state", frozen_after_reading)
    admin.delete_crawl()  # Redis lost the crawl
    stale = ThreadPoolExecutor(1).submit(
        recover.rebuild, services.redis_url, services.kafka_bootstrap, "t.", unique_name, "stale")
    try:
        assert read.wait(60)
        admin.client.delete(admin.keys.rebuilding)  # its lease lapsed while it was frozen
        done_id, _ = commit_first(services, unique_name)  # a shard finished meanwhile
        monkeypatch.setattr(recover, "plan_state", reading)
        fresh = recover.rebuild(services.redis_url, services.kafka_bootstrap, "t.", unique_name, "next")
        assert fresh is not None and fresh.done == 1
        epoch = admin.epoch()
        wake.set()
        assert stale.result(60) is None  # its lease was lost: nothing written
        assert admin.epoch() == epoch
        assert admin.client.sismember(admin.keys.done, done_id)
        assert admin.progress().shards_done == 1
        assert not list(admin.client.scan_iter(match=admin.keys.prefix + "rebuild:*"))  # no staging left
    finally:
        wake.set()
        admin.delete_crawl()
        queue.delete_topics(services.kafka_bootstrap, "t.", unique_name)


def test_an_unfinished_crawl_says_which_shards_are_left_and_why(services, unique_name):
    """The bench's account of a crawl that did not finish: each shard not done, with its owner,
    checkpoint and listings held, and whether its work message was committed past (then nobody
    reads it again: the crawl cannot finish)."""
    plan = plan_crawl(crawl=unique_name, ranges=["193.0.0.0/20"])  # 16 shards: all of them shown
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="t.", store=admin, partitions=3)
    try:
        committed_id, _ = commit_first(services, unique_name)  # committed, but not done in the store
        walking = next(s for s in plan.shards if s.shard_id != committed_id)
        admin.client.hset(admin.keys.owners, walking.shard_id, "7/w")
        admin.client.hset(admin.keys.cursors, walking.shard_id, "cp")
        admin.client.set(admin.keys.listing(walking.first, walking.first + 255), "8/w/n")
        admin.client.set(admin.keys.claim(walking.first >> 8), "9/w/m")
        left = {v["shard"]: v for v in unfinished_shards(admin, services.kafka_bootstrap, "t.", unique_name)}
        assert len(left) == len(plan.shards)
        assert left[committed_id]["committed"] is True
        view = left[walking.shard_id]
        assert (view["first"], view["last"], view["owner"], view["checkpoint"], view["committed"]) == (
            walking.first, walking.last, "7/w", "cp", False)
        assert view["listings"] == [{"first": walking.first, "last": walking.first + 255, "holder": "8/w/n"}]
        assert view["claims"] == [{"first": walking.first, "holder": "9/w/m"}]
    finally:
        admin.delete_crawl()
        queue.delete_topics(services.kafka_bootstrap, "t.", unique_name)


async def test_a_shard_found_done_is_marked_done_again_after_a_loss(services, unique_name):
    """A lane that finds its shard done (another worker finished it, then died before it could mark
    it again) commits it next: if Redis loses the crawl before that commit reaches the rebuild's
    reading, the rebuild forgets the shard, and only the lane's process knows it was done."""
    plan = plan_crawl(crawl=unique_name, ranges=["193.0.0.0/16", "10.0.0.0/15"])
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="t.", store=admin, partitions=3)
    shard = plan.shards[0]

    async def rebuild() -> bool:
        return await asyncio.to_thread(recover.rebuild, services.redis_url, services.kafka_bootstrap,
                                       "t.", unique_name, "b") is not None

    finisher = RedisBlockStore(services.redis_url, unique_name)
    lane = RedisBlockStore(services.redis_url, unique_name, rebuild=rebuild)
    try:
        await finisher.sync()
        await finisher.shard_done(shard.shard_id, shard.last - shard.first + 1)
        await finisher.close()  # it dies
        await lane.sync()
        assert await lane.is_done(shard.shard_id)  # its lane commits the offset next, too late
        admin.delete_crawl()  # Redis lost the crawl before the rebuild saw that commit
        await lane.sync()  # meets the loss: rebuilt, then its done shards marked again
        assert admin.client.sismember(admin.keys.done, shard.shard_id)
        progress = admin.progress()
        assert (progress.shards_done, progress.addresses_done) == (1, shard.last - shard.first + 1)
    finally:
        await lane.close()
        admin.delete_crawl()
        queue.delete_topics(services.kafka_bootstrap, "t.", unique_name)


async def test_an_answer_kept_for_a_walks_next_owner_survives_a_redis_loss(services, unique_name):
    """A probe answered with a parent worth listing keeps its answer until its step is written, so
    the shard's next walk (the walk cut off by a kill, a pause, its partition moving) reads it rather
    than ask the registry again. Redis lost meanwhile: the rebuild brings it back from the
    checkpoints topic (before, it was gone, and the next walk asked the registry again: 11-13
    duplicate lookups of a chaos run of quick); one forgotten (its step written) stays forgotten."""
    plan = plan_crawl(crawl=unique_name, ranges=["193.0.0.0/16"])
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="t.", store=admin, partitions=3)
    checkpoints = queue.CheckpointSink(services.kafka_bootstrap, "t.", unique_name)

    async def rebuild() -> bool:
        return await asyncio.to_thread(recover.rebuild, services.redis_url, services.kafka_bootstrap,
                                       "t.", unique_name, "next") is not None

    cut_off = RedisBlockStore(services.redis_url, unique_name, mirror=checkpoints.put)
    next_owner = RedisBlockStore(services.redis_url, unique_name, rebuild=rebuild)
    waiting, stepped = PARENT.first + 5 * 256, PARENT.first + 9 * 256
    try:
        await cut_off.sync()
        await cut_off.keep_answer(waiting, "the answer of a probe cut off")
        await cut_off.keep_answer(stepped, "the answer of a probe that wrote its step")
        await cut_off.forget_answer(stepped)
        assert checkpoints.close() == 0  # the copies delivered, as a running worker's are by now
        admin.client.flushdb()  # Redis lost everything; the cut-off walk's worker is gone
        await next_owner.sync()  # meets the loss: rebuilt from the topics
        assert next_owner.losses == 0 and admin.epoch() is not None
        assert await next_owner.kept_answer(waiting) == "the answer of a probe cut off"
        assert await next_owner.kept_answer(stepped) is None
    finally:
        await cut_off.close()
        await next_owner.close()
        admin.delete_crawl()
        queue.delete_topics(services.kafka_bootstrap, "t.", unique_name)
