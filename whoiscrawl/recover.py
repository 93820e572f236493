"""Rebuilding a crawl's Redis state from its Kafka topics, after Redis lost it (or for an operator)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from whoiscrawl import queue
from whoiscrawl.store.redis_admin import RedisCrawlAdmin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild wrote: blocks, shards planned and done, and how long it took."""

    blocks: int
    shards: int
    done: int
    seconds: float


def plan_state(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None, resolution: int = 24
) -> tuple[dict[str, tuple[int, int]], dict[str, int], int]:
    """From the work topic and the group's committed offsets: every shard planned (id -> span) and
    every shard committed (id -> addresses), and the shards' resolution (`resolution` when none)."""
    committed = queue.committed_offsets(bootstrap, prefix, crawl, config)
    shards: dict[str, tuple[int, int]] = {}
    done: dict[str, int] = {}
    for partition, offset, shard in queue.iter_work(bootstrap, prefix, crawl, config):
        shards[shard.shard_id] = (shard.first, shard.last)
        resolution = shard.resolution
        if offset < committed.get(partition, 0):
            done[shard.shard_id] = shard.last - shard.first + 1
    return shards, done, resolution


def fill_state(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None
) -> tuple[dict[str, str], dict[str, int]]:
    """From the fill topic and the group's committed offsets: every batch of the fill published (id
    -> its item) and every one committed (id -> 0 addresses, as `plan_state`'s done shards)."""
    committed = queue.committed_offsets(bootstrap, prefix, crawl, config, queue.fill_topic(prefix, crawl))
    published: dict[str, str] = {}
    done: dict[str, int] = {}
    for partition, offset, batch in queue.iter_fill(bootstrap, prefix, crawl, config):
        published[batch.batch_id] = batch.item
        if offset < committed.get(partition, 0):
            done[batch.batch_id] = 0
    return published, done


def rebuild(
    redis_url: str, bootstrap: str, prefix: str, crawl: str, owner: str,
    config: dict[str, str] | None = None, resolution: int = 24,
) -> Rebuilt | None:
    """Rebuild the store under its lease (None: another process holds it, or took it over while
    this one stalled): end the store's generation (workers' writes wait), stage the block log from
    the compacted results topic, the totals, scope and finished shards from the work topic and the
    committed offsets, and the walks' checkpoints and the hashes copied beside them (the published
    files' load's progress, the answers kept, the special-purpose space the plans withheld) from
    the checkpoints topic, the fill's batches published and answered from the fill topic and the
    committed offsets, then land them all at once, under the lease. Forgotten: which parents were
    listed (listed again; a dump's parents made leaves are parents again, walked live), the lookup
    and error counts before the loss."""
    store = RedisCrawlAdmin(redis_url, crawl)
    started = time.monotonic()
    with store.rebuilding(owner) as mine:
        if not mine or not store.end_generation(owner):
            store.client.close()
            return None
        with ThreadPoolExecutor(3, thread_name_prefix="rebuild") as pool:  # each read waits on Kafka
            planned = pool.submit(plan_state, bootstrap, prefix, crawl, config, resolution)
            filling = pool.submit(fill_state, bootstrap, prefix, crawl, config)
            checkpoints = pool.submit(queue.read_checkpoints, bootstrap, prefix, crawl, config)
            shards, done, resolution = planned.result()
            fill, answered = filling.result()
            results = queue.iter_results(bootstrap, prefix, crawl, config)
            blocks = store.stage_blocks(owner, results, resolution)
            # The files' load goes on from its progress (nothing of it sent twice), a walk's next
            # owner reads the answer a probe kept, the load plans the special space withheld.
            copies = queue.copied(checkpoints.result())
            landed = store.restore_plan(owner, shards, {**done, **answered}, checkpoints.result(), blocks,
                                        copies, fill)
        if not landed:
            log.warning("the rebuild of %s outlived its lease (a stall?): another process rebuilt it; "
                        "this one is dropped", crawl)
            store.client.close()
            return None
    rebuilt = Rebuilt(blocks, len(shards), len(done), round(time.monotonic() - started, 2))
    log.warning("rebuilt the store of %s from its topics: %s", crawl, rebuilt)
    store.client.close()
    return rebuilt
