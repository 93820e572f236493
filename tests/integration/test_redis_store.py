"""The Redis store shared by workers: block log, claims, checkpoints, idempotent completion."""

from __future__ import annotations

import asyncio

import pytest

from whoiscrawl import redis_client
from whoiscrawl.records import Shard
from whoiscrawl.space import plan_crawl
from whoiscrawl.store import Lease, LeaseLost
from whoiscrawl.store.redis_admin import RedisCrawlAdmin
from whoiscrawl.store.redis_blocks import RedisBlockStore
from whoiscrawl.strategy import Answer


async def test_blocks_reach_other_workers_and_count_once(services, unique_name):
    a = RedisBlockStore(services.redis_url, unique_name)
    b = RedisBlockStore(services.redis_url, unique_name)
    try:
        assert await a.record_step("s1", "300", Answer(0, 255, True))
        assert await a.record_step("s1", "600/299/255:-1", Answer(0, 65535, False))
        await b.sync()
        assert b.index.terminal_end(10) == 255
        assert b.index.knows(0, 65535)
        # b looks up the same leaf again (a race): not new, counted as wasted
        assert not await b.record_step("s2", "256", Answer(0, 255, True))
        progress = await a.progress()
        assert (progress.blocks, progress.lookups, progress.wasted) == (2, 3, 1)
        assert await b.cursor("s1") == "600/299/255:-1"  # the walk's whole state
    finally:
        await a.close()
        await b.close()


async def test_claims_exclude_each_other_and_release(services, unique_name):
    a = RedisBlockStore(services.redis_url, unique_name)
    try:
        assert await a.claim(0x08080801, "w1")
        assert not await a.claim(0x08080877, "w2")  # same /24 cell
        assert await a.claim(0x08080901, "w2")  # next cell
        await a.release(0x08080801, "w2")  # not the owner: nothing happens
        assert not await a.claim(0x08080801, "w2")
        await a.release(0x08080801, "w1")
        assert await a.claim(0x08080801, "w2")
    finally:
        await a.close()


async def test_shard_done_is_idempotent_and_admin_view_matches(services, unique_name):
    a = RedisBlockStore(services.redis_url, unique_name)
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    try:
        admin.add_plan(plan_crawl(crawl=unique_name, ranges=["41.0.0.0/15"], shard_prefix=16).shards)
        await a.record_step("s1", "5", None)
        await a.shard_done("s1", 65536)
        await a.shard_done("s1", 65536)  # a redelivered shard is not counted twice
        assert await a.is_done("s1") and not await a.is_done("s2")
        assert await a.cursor("s1") is None
        progress = admin.progress()
        assert (progress.shards_total, progress.shards_done, progress.addresses_done) == (2, 1, 65536)
        assert admin.delete_crawl() >= 2
        assert admin.progress().shards_total == 0
    finally:
        await a.close()


def _calls(admin: RedisCrawlAdmin, command: str) -> int:
    return int((admin.client.info("commandstats").get(f"cmdstat_{command}") or {}).get("calls", 0))


def test_deleting_a_crawl_unlinks_its_keys_in_batches_and_leaves_the_others(services, unique_name):
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    other = RedisCrawlAdmin(services.redis_url, f"{unique_name}-other")
    try:
        keys = [f"{admin.keys.prefix}cursor:{i}" for i in range(1200)]
        admin.client.mset(dict.fromkeys(keys, "1"))
        other.client.set(f"{other.keys.prefix}cursor:0", "1")
        dels, unlinks = _calls(admin, "del"), _calls(admin, "unlink")
        assert admin.delete_crawl() == 1200
        assert admin.client.exists(*keys[:100]) == 0
        assert other.client.exists(f"{other.keys.prefix}cursor:0") == 1
        # No one command over every key: ceil(1200 / DELETE_BATCH) UNLINKs, no DEL.
        assert (_calls(admin, "del") - dels, _calls(admin, "unlink") - unlinks) == (0, 3)
    finally:
        other.delete_crawl()


async def test_a_parent_is_listed_by_one_worker_and_a_cut_one_never_again(services, unique_name):
    a = RedisBlockStore(services.redis_url, unique_name)
    b = RedisBlockStore(services.redis_url, unique_name)
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    try:
        assert await a.first_to_list(0, 65535, "w1") == "mine"
        assert await b.first_to_list(0, 65535, "w2") == "busy"  # w1 is listing it
        assert await b.first_to_list(65536, 131071, "w2") == "mine"  # another parent
        await b.listed(65536, 131071, "w2", False)  # its list was cut short: the lease ends with it
        assert admin.client.get(admin.keys.listing(65536, 131071)) is None
        assert await a.first_to_list(65536, 131071, "w1") == "partly"
        assert await a.renew_listing(0, 65535, "w1")  # w1 lists on: its lease is renewed
        assert not await b.renew_listing(0, 65535, "w2")  # only by its owner
        admin.client.delete(admin.keys.listing(0, 65535))  # w1 died: its lease lapses
        assert await b.first_to_list(0, 65535, "w2") == "mine"
        assert not await a.renew_listing(0, 65535, "w1")
        admin.add_plan([Shard(unique_name, "a", 0, 99, "sweep", 24, 0),
                        Shard(unique_name, "b", 200, 299, "sweep", 24, 0)])
        scope = await b.scope()
        assert scope is not None and scope.overlaps(250, 400) and not scope.overlaps(100, 199)
    finally:
        await a.close()
        await b.close()
        admin.delete_crawl()


async def test_a_shard_taken_back_by_its_own_worker_fences_the_older_walk(services, unique_name):
    """Each walk of a shard has its own fencing token, even one this same worker takes back (its
    partition revoked and given back to it in a rebalance) while its older walk still winds down:
    the older walk's lane (in its last step) and its listing (going on under its own lease) had
    their checkpoints taken as the newer walk's, its ownership being per worker and shard; and the
    older lane leaving after the newer walk began dropped every checkpoint of the newer one."""
    store = RedisBlockStore(services.redis_url, unique_name)
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    listing = Lease.listing(0, 65535)
    try:
        older = await store.take_shard("s", "a")
        assert await store.first_to_list(0, 65535, "a") == "mine"  # the older walk's listing
        assert await store.claim(256, "a")
        await store.record_step("s", "100", None, walk=older)
        newer = await store.take_shard("s", "a")  # the partition came back to this worker
        await store.record_step("s", "300", None, walk=newer)
        with pytest.raises(LeaseLost):  # the older lane's last step: its walk stops
            await store.record_step("s", "200", None, under=Lease.cell(256), walk=older)
        # Its listing goes on: its block is kept, its checkpoint refused (and none from now on).
        assert await store.record_step("s", "100", Answer(0, 255, True), lookups=0, under=listing, walk=older)
        assert await store.cursor("s") == "300"
        store.leave_shard(older)  # the older lane unwinds after the newer walk began
        await store.record_step("s", "400", None, walk=newer)
        assert await store.record_step("s", "100", Answer(256, 511, True), lookups=0, under=listing,
                                       walk=older)
        assert await store.cursor("s") == "400"
        progress = admin.progress()
        assert (progress.blocks, progress.stale_writes_refused, progress.checkpoints_backwards) == (2, 2, 0)
    finally:
        admin.delete_crawl()
        await store.close()


async def test_after_a_store_loss_only_the_newest_walk_of_a_shard_here_owns_it(services, unique_name):
    """Redis lost the crawl's state while two walks of a shard were under way here (the older
    winding down): the walks are owned again under new tokens, the newer one only, and its first
    write after the loss is taken (it carried the token from before the loss, and was refused)."""
    store = RedisBlockStore(services.redis_url, unique_name)
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    try:
        older = await store.take_shard("s", "a")
        newer = await store.take_shard("s", "a")
        await store.record_step("s", "100", None, walk=newer)
        admin.client.delete(admin.keys.epoch, admin.keys.owners, admin.keys.cursors)  # Redis lost it
        await store.record_step("s", "200", None, walk=newer)
        assert await store.cursor("s") == "200"
        with pytest.raises(LeaseLost):
            await store.record_step("s", "150", None, walk=older)
        assert await store.cursor("s") == "200" and store.losses == 1
    finally:
        admin.delete_crawl()
        await store.close()


async def test_a_task_cancelled_while_it_waits_on_redis_is_cancelled(services, unique_name):
    """redis-py finishes the command and returns its answer, dropping the cancellation: a lease
    keeper cancelled mid-renewal went on renewing a lease its holder had released."""
    store = RedisBlockStore(services.redis_url, unique_name)
    assert await store.claim(0x08080801, "w1")
    ran_on = 0

    async def keep_renewing() -> None:
        nonlocal ran_on
        while True:
            await store.renew_claim(0x08080801, "w1")
            await store.sync()  # a pipeline
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                ran_on += 1
                return

    try:
        for delay_ms in range(0, 30):
            keeper = asyncio.create_task(keep_renewing())
            await asyncio.sleep(0.001 + delay_ms / 10_000)
            keeper.cancel()
            await asyncio.wait({keeper}, timeout=2)
            assert keeper.done()
        assert ran_on == 0
    finally:
        await store.close()


async def test_a_lease_taken_as_its_task_is_cancelled_is_given_back(services, unique_name):
    """Redis runs the SET of a claim (or a listing's lease) whose task is cancelled meanwhile; kept,
    it would shut every other worker out of the cell for the lease's 12 s."""
    store = RedisBlockStore(services.redis_url, unique_name)
    cancelled = 0
    try:
        for delay_us in range(0, 3000, 100):
            for take, key in ((store.claim(0x08080801, "w1"), store.keys.claim(0x080808)),
                              (store.first_to_list(1, 2, "w1"), store.keys.listing(1, 2))):
                taking = asyncio.create_task(take)
                await asyncio.sleep(delay_us / 1e6)
                taking.cancel()
                await asyncio.gather(taking, return_exceptions=True)
                if taking.cancelled():
                    cancelled += 1
                    assert await store.client.get(key) is None
                await store.client.delete(key)
        assert cancelled > 0
    finally:
        await store.close()


async def test_the_workers_client_waits_for_a_free_connection_rather_than_fail(services, unique_name):
    """More commands at once than the worker's pool holds (a worker waking from a pause: its lanes'
    probes cancelled, their leases given back, renewed and synced at once) wait for a connection;
    redis-py's own pool failed the 101st (MaxConnectionsError) and stopped the worker."""
    store = RedisBlockStore(services.redis_url, unique_name)
    n = 2 * redis_client.POOL_CONNECTIONS  # each command below holds its connection 0.2 s
    try:
        waits = (store.client.blpop([f"{unique_name}:nothing"], timeout=0.2) for _ in range(n))
        assert await asyncio.wait_for(asyncio.gather(*waits), 30) == [None] * n
    finally:
        await store.close()
