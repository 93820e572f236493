"""Redis is a cache of the results topic: a lost block log is rebuilt from the compacted topic."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from whoiscrawl import queue
from whoiscrawl.cli import app
from whoiscrawl.records import NetworkRecord
from whoiscrawl.store.redis_admin import STAGED_TTL_S, RedisCrawlAdmin
from whoiscrawl.store.redis_blocks import RedisBlockStore

LEAF = NetworkRecord("apnic", "193.0.1.0 - 193.0.1.255", "193.0.1.0", "193.0.1.255", ["193.0.1.0/24"],
                     type="ASSIGNED NON-PORTABLE")  # APNIC's server takes children under any status
PARENT = NetworkRecord("ripencc", "193.0.0.0 - 193.0.255.255", "193.0.0.0", "193.0.255.255",
                       ["193.0.0.0/16"], type="ALLOCATED PA")
SMALL = NetworkRecord("ripencc", "193.0.9.0 - 193.0.9.7", "193.0.9.0", "193.0.9.7", ["193.0.9.0/29"],
                      type="ASSIGNED PA")  # smaller than a grid cell, not worth listing: a leaf
CHILDLESS = NetworkRecord("ripencc", "193.0.2.0 - 193.0.2.255", "193.0.2.0", "193.0.2.255", ["193.0.2.0/24"],
                          type="ASSIGNED PA")  # RIPE NCC's server refuses children under it: a leaf


async def test_a_wiped_block_log_is_rebuilt_from_the_results_topic(services, unique_name):
    queue.ensure_topics(services.kafka_bootstrap, "t.", unique_name, partitions=3)
    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", unique_name)
    for record in (LEAF, PARENT, SMALL, CHILDLESS, LEAF):  # the leaf twice: compaction has not run yet
        await sink.emit(record)
    assert sink.close() == 0
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    admin.client.hset(admin.keys.counters, mapping={"shards_total": 7, "lookups": 5})
    admin.client.xadd(admin.keys.blocks, {"b": "1:2:1"})  # a stale log is replaced, not extended

    result = CliRunner().invoke(
        app,
        ["rebuild-store", "--crawl", unique_name, "--topic-prefix", "t.",
         "--kafka-bootstrap", services.kafka_bootstrap, "--redis-url", services.redis_url],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"crawl": unique_name, "blocks": 4, "shards": 0, "done": 0}

    worker = RedisBlockStore(services.redis_url, unique_name)
    try:
        await worker.sync()
        # An assignment worth listing may have been listed part way when Redis lost it: a parent
        # again, listed again by whoever meets it. One not worth listing stays a leaf.
        assert worker.index.terminal_end(LEAF.first + 9) is None and worker.index.knows(LEAF.first, LEAF.last)
        assert worker.index.terminal_end(SMALL.first) == SMALL.last  # skipped without a lookup
        assert worker.index.terminal_end(CHILDLESS.first + 9) == CHILDLESS.last
        assert worker.index.knows(PARENT.first, PARENT.last)  # never emitted twice
        assert worker.index.terminal_end(PARENT.first + 5000) is None  # its gaps are still probed
        assert worker.index.terminal_end(1) is None
        progress = await worker.progress()
        assert (progress.blocks, progress.shards_total) == (4, 0)  # totals from the (empty) work topic
        assert progress.lookups == 5  # what the topics cannot tell stays
    finally:
        await worker.close()
        admin.delete_crawl()
        queue.delete_topics(services.kafka_bootstrap, "t.", unique_name)


def test_staged_rebuild_keys_expire_and_landed_ones_do_not(services, unique_name):
    """Staged keys expire (a rebuilder killed between staging and landing left them for the life of
    the crawl: a whole block log); the landed state does not inherit their expiry."""
    admin = RedisCrawlAdmin(services.redis_url, unique_name)
    try:
        assert admin.stage_blocks("killed", [LEAF, PARENT]) == 2
        staged = admin.keys.staged("killed", "blocks")
        assert 0 < admin.client.ttl(staged) <= STAGED_TTL_S

        owner = "lands"
        admin.client.set(admin.keys.rebuilding, owner)  # the lease, as the rebuild holds it
        admin.stage_blocks(owner, [LEAF])
        copies = {"sources": {"f": "1"}}
        assert admin.restore_plan(owner, {"s1": (1, 2)}, {"s1": 2}, {}, blocks=1, copies=copies)
        for key in (admin.keys.blocks, admin.keys.done, admin.keys.planned, admin.keys.sources):
            assert admin.client.exists(key) and admin.client.ttl(key) == -1, key
    finally:
        admin.delete_crawl()
