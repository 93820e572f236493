"""Rebuilding a crawl's Redis state from its Kafka topics, after Redis lost it (or for an operator)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from whoiscrawl import queue
from whoiscrawl.store.redis_admin import RedisCrawlAdmin
from whoiscrawl.store.redis_scripts import new_epoch

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


def rebuild(
    redis_url: str, bootstrap: str, prefix: str, crawl: str, owner: str,
    config: dict[str, str] | None = None, resolution: int = 24,
) -> Rebuilt | None:
    """Rebuild the store under its lease (None: another process holds it): end the store's
    generation (workers' writes wait), write the block log from the compacted results topic, the
    totals, scope and finished shards from the work topic and the committed offsets, and
    the walks' checkpoints and the published files' load's progress from the checkpoints topic.
    Forgotten: which parents were listed (listed again; a dump's parents made leaves are parents
    again, walked live), the lookup and error counts before the loss."""
    store = RedisCrawlAdmin(redis_url, crawl)
    started = time.monotonic()
    with store.rebuilding(owner) as mine:
        if not mine:
            return None
        store.client.delete(store.keys.epoch)
        with ThreadPoolExecutor(2, thread_name_prefix="rebuild") as pool:  # each read waits on Kafka
            planned = pool.submit(plan_state, bootstrap, prefix, crawl, config, resolution)
            checkpoints = pool.submit(queue.read_checkpoints, bootstrap, prefix, crawl, config)
            shards, done, resolution = planned.result()
            blocks = store.rebuild_blocks(queue.iter_results(bootstrap, prefix, crawl, config), resolution)
            store.restore_plan(shards, done, checkpoints.result())
            progress: dict[Any, Any] = queue.sources_progress(checkpoints.result())
            if progress:  # the files' load goes on from there: nothing of it sent twice
                store.client.hset(store.keys.sources, mapping=progress)
        store.client.set(store.keys.epoch, new_epoch())
    rebuilt = Rebuilt(blocks, len(shards), len(done), round(time.monotonic() - started, 2))
    log.warning("rebuilt the store of %s from its topics: %s", crawl, rebuilt)
    store.client.close()
    return rebuilt
