"""The fleet's load of the published files (worker/sources.py) on real Redis and Kafka, from the small
files in the registries' formats under tests/data/published: a file older than the one the crawl
already used is refused by name, nothing the crawl has is overwritten, a worker routes no lookup by
such statistics, and a Redis rebuilt after the load goes on from its progress."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from aiohttp import web
from whoiscrawl.worker.runner import Worker, WorkerConfig
from whoiscrawl.worker.sources import FleetLoad, Results

from whoiscrawl import queue, recover, rirs
from whoiscrawl.keys import Keys
from whoiscrawl.publish import publish_plan
from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.registry import RegistryClient
from whoiscrawl.sources import fill
from whoiscrawl.sources.published import SourcesSettings, StatsPlan, load_stats
from whoiscrawl.sources.stats import Delegation
from whoiscrawl.space import Plan, SpaceError, fetch_bootstrap, plan_crawl
from whoiscrawl.store.redis_admin import RedisCrawlAdmin
from whoiscrawl.store.redis_blocks import RedisBlockStore

PUBLISHED = Path(__file__).parent.parent / "data" / "published"
SETTINGS = SourcesSettings(frozenset({"stats", "dumps", "live"}), str(PUBLISHED), frozenset({"ripencc"}))
RIPE_DUMP_SERIAL = "41234567"  # RIPE.CURRENTSERIAL of the files
RIPE_STATS_SERIAL = "1790287199"  # the version line of delegated-ripencc-extended-latest


def _planned(services, crawl: str) -> tuple[Plan, RedisCrawlAdmin]:
    """193.0.0.0/20 planned and published (its topics made), and the crawl's store."""
    plan = plan_crawl(crawl=crawl, ranges=["193.0.0.0/20"], strategy="sweep", resolution=24, samples=0)
    admin = RedisCrawlAdmin(services.redis_url, crawl)
    publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="t.", store=admin, partitions=2)
    return plan, admin


async def _load(services, crawl: str, tmp_path: Path, used: dict[str, dict]) -> tuple[dict, dict[str, str]]:
    """Plan 193.0.0.0/20, write what an earlier loader recorded (`used`: item -> its progress), load
    the files; (the load's figures, its progress in Redis afterwards)."""
    _, admin = _planned(services, crawl)
    for name, progress in used.items():
        admin.client.hset(Keys(crawl).sources, f"item:{name}", json.dumps(progress))
    figures, state, _ = await _loader(services, crawl, tmp_path, "test")
    return figures, state


@contextlib.asynccontextmanager
async def fleet_load(services, crawl: str, owner: str, cache: Path, stats: StatsPlan,
                     checkpoints: queue.CheckpointSink | None = None,
                     settings: SourcesSettings = SETTINGS) -> AsyncIterator[FleetLoad]:
    """A worker's load of the crawl's files (its store, results sink and registry client), closed
    after: the sink with nothing left undelivered."""
    store = RedisBlockStore(services.redis_url, crawl)
    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", crawl)
    client = RegistryClient(await fetch_bootstrap(None), MemoryRateLimiter({}))
    try:
        yield FleetLoad(settings, store, sink, Results(services.kafka_bootstrap, "t.", crawl), client,
                        owner, cache, stats=stats, checkpoints=checkpoints)
    finally:
        assert sink.close() == 0
        await store.close()
        await client.close()


async def _loader(services, crawl: str, tmp_path: Path, owner: str,
                  checkpoints: queue.CheckpointSink | None = None,
                  settings: SourcesSettings = SETTINGS) -> tuple[dict, dict[str, str], set[str]]:
    """One worker's load of the planned crawl's files (copying its progress to `checkpoints`, as a
    worker does); (the load's figures, its progress in Redis afterwards, the registries whose
    statistics the worker may not route by)."""
    stats = await load_stats(SETTINGS.files_base, tmp_path / "stats")
    async with fleet_load(services, crawl, f"{owner}-{crawl}", tmp_path / owner / crawl, stats,
                          checkpoints, settings) as load:
        figures = await load.ready()
    assert figures is not None
    return figures, await _state(services, crawl), load.stale


async def _state(services, crawl: str) -> dict[str, str]:
    raw = RedisCrawlAdmin(services.redis_url, crawl).client.hgetall(Keys(crawl).sources)
    return {k.decode(): v.decode() for k, v in raw.items()}


def _sent(services, crawl: str) -> set[tuple[str, str]]:
    """(registry, source) of every record the load sent to the results topic."""
    return {(r.registry, r.source or "") for r in queue.iter_results(services.kafka_bootstrap, "t.", crawl)}


async def test_files_older_than_the_crawl_used_are_refused_and_nothing_is_overwritten(
    services, unique_name, tmp_path
):
    fresh, _ = await _load(services, f"{unique_name}-a", tmp_path, {})
    assert {("ripencc", "dump"), ("ripencc", "stats")} <= _sent(services, f"{unique_name}-a")
    assert fresh["dumps"]["ripencc"]["serial"] == RIPE_DUMP_SERIAL
    assert not [n for n in fresh["notes"] if "older than" in n]

    # A loader before this one used newer files, then died: this mirror is behind it.
    used = {"dump:ripencc": {"serials": {"ripencc": "41234568"}, "count": 1},
            "stats:ripencc": {"serials": {"ripencc": "1790287200"}, "count": 1}}
    crawl = f"{unique_name}-b"
    figures, state = await _load(services, crawl, tmp_path, used)
    assert any(n.startswith(f"ripencc dump: serial {RIPE_DUMP_SERIAL} is older than 41234568, which this "
                            "crawl already used: refused") for n in figures["notes"]), figures["notes"]
    assert any(n.startswith(f"ripencc statistics: serial {RIPE_STATS_SERIAL} is older than 1790287200")
               for n in figures["notes"]), figures["notes"]
    assert {name: json.loads(state[f"item:{name}"]) for name in used} == used  # nothing overwritten
    assert not {r for r in _sent(services, crawl) if r[0] == "ripencc"}  # nothing of them sent
    assert "done" in state  # the rest loaded: ripencc's space is crawled live
    # A worker whose statistics are those of the stale mirror routes none of ripencc's lookups by
    # them (before: it routed by them unchecked; only the load refused them).
    _, _, stale = await _loader(services, crawl, tmp_path, "late")
    assert stale == {"ripencc"}
    for name in ("a", "b"):
        queue.delete_topics(services.kafka_bootstrap, "t.", f"{unique_name}-{name}")
        RedisCrawlAdmin(services.redis_url, f"{unique_name}-{name}").delete_crawl()


def _keys(services, crawl: str) -> Counter[bytes]:
    """How often each block is on the results topic (compaction has not run in a test's seconds)."""
    return Counter(queue.result_key(r) for r in queue.iter_results(services.kafka_bootstrap, "t.", crawl))


async def test_a_redis_lost_after_the_load_is_rebuilt_with_its_progress_and_nothing_is_sent_twice(
    services, unique_name, tmp_path
):
    """Redis loses the crawl once a worker loaded the files; the rebuild from the topics restores
    the load's progress (copied to the checkpoints topic), so the next worker's load sends nothing
    again (before: it loaded every file again, and every record was twice on the results topic)."""
    crawl = unique_name
    _, admin = _planned(services, crawl)
    checkpoints = queue.CheckpointSink(services.kafka_bootstrap, "t.", crawl)
    try:
        figures, state, _ = await _loader(services, crawl, tmp_path, "first", checkpoints)
        sent = _keys(services, crawl)
        assert sent and set(sent.values()) == {1}
        admin.delete_crawl()  # Redis lost the crawl
        assert recover.rebuild(services.redis_url, services.kafka_bootstrap, "t.", crawl, "rebuilder")
        assert await _state(services, crawl) == state  # the load's progress, as the loader left it
        again, _, _ = await _loader(services, crawl, tmp_path, "second", checkpoints)
        assert again == figures
        after = _keys(services, crawl)
        assert after == sent  # nothing twice
    finally:
        assert checkpoints.close() == 0
        queue.delete_topics(services.kafka_bootstrap, "t.", crawl)
        admin.delete_crawl()


async def test_the_load_publishes_the_fill_as_work_for_every_worker_and_a_redis_lost_after_keeps_it(
    services, unique_name, tmp_path
):
    """The freshness sample (and the fill of redacted fields) is not asked by the loader before
    `done` (the fleet waited for it: LACNIC's fill at `full` was 118 h of one worker asking while
    the others waited): its networks are published to the fill topic as batches any worker asks,
    counted among the shards (the crawl is done once they are answered), and a Redis lost after
    the load is rebuilt with them."""
    crawl = unique_name
    plan, admin = _planned(services, crawl)
    checkpoints = queue.CheckpointSink(services.kafka_bootstrap, "t.", crawl)
    try:
        verified = replace(SETTINGS, verify=0.5)  # every other network of the dump asked again
        figures, state, _ = await _loader(services, crawl, tmp_path, "first", checkpoints, verified)
        batches = [b for _, _, b in queue.iter_fill(services.kafka_bootstrap, "t.", crawl)]
        assert batches and {b.item for b in batches} == {"dump:ripencc"}
        progress = admin.progress()
        assert progress.lookups == 0  # the loader asked nothing
        assert progress.shards_total == len(plan.shards) + len(batches) and progress.shards_done == 0
        published = json.loads(state["fill:dump:ripencc"])
        assert published == figures["dumps"]["ripencc"]["freshness"] == {
            "batches": len(batches), "networks": sum(len(b.networks) for b in batches)}
        loaded = fill.loaded(admin)  # what the workers' batches asked, summed
        assert loaded is not None
        assert loaded["dumps"]["ripencc"]["freshness"]["answered"] == 0  # none answered yet
        admin.delete_crawl()  # Redis lost the crawl
        assert recover.rebuild(services.redis_url, services.kafka_bootstrap, "t.", crawl, "rebuilder")
        assert admin.progress().shards_total == progress.shards_total
        assert {k.decode() for k in admin.client.hkeys(Keys(crawl).fill)} == {b.batch_id for b in batches}
        again, _, _ = await _loader(services, crawl, tmp_path, "second", checkpoints, verified)
        assert again == figures
        assert len(list(queue.iter_fill(services.kafka_bootstrap, "t.", crawl))) == len(batches)  # once
    finally:
        assert checkpoints.close() == 0
        queue.delete_topics(services.kafka_bootstrap, "t.", crawl)
        admin.delete_crawl()


async def test_a_worker_whose_statistics_are_older_than_the_crawl_used_routes_that_registry_by_the_bootstrap(
    services, unique_name, tmp_path
):
    """The worker (`Worker._files_loaded`, as `Worker.run` calls it) drops the routing of the
    registries whose statistics the load found stale: their lookups go where the bootstrap says,
    the others' still by their statistics (before, it routed by stale statistics unchecked)."""
    crawl = unique_name
    newer = {"stats:ripencc": {"serials": {"ripencc": "1790287200"}, "count": 1}}  # a loader's before
    await _load(services, crawl, tmp_path, newer)
    # The stale ripencc statistics also name 41.0.0.0/24 theirs (the bootstrap: AFRINIC's), so a
    # worker routing by them would send its lookup to the wrong registry.
    moved = int(IPv4Address("41.0.0.0"))
    published = await load_stats(SETTINGS.files_base, tmp_path / "stats")
    published = replace(published, delegations=[
        *published.delegations, Delegation("ripencc", "ZA", moved, 256, "20200101", "allocated")])
    client = RegistryClient(await fetch_bootstrap(None), MemoryRateLimiter({}),
                            delegated_by=published.index().registry)
    assert client.route(moved + 1)[0] == "ripencc"  # by the statistics
    worker = Worker(WorkerConfig(crawl, services.kafka_bootstrap, services.redis_url, {}, topic_prefix="t.",
                                 sources=SETTINGS, kafka_config={"log_level": "0"}))
    store = RedisBlockStore(services.redis_url, crawl)
    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", crawl)
    checkpoints = queue.CheckpointSink(services.kafka_bootstrap, "t.", crawl)
    try:
        assert await worker._files_loaded(store, sink, client, published, tmp_path / "worker", checkpoints)
        assert client.route(moved + 1)[0] == "afrinic"  # by the bootstrap
        assert client.delegated_by is not None
        assert client.delegated_by(int(IPv4Address("1.0.1.1"))) == "apnic"  # fresh: still by the statistics
    finally:
        worker.consumer.close()
        worker._kafka.shutdown(wait=True)
        assert sink.close() == 0
        await store.close()
        await client.close()
        assert checkpoints.close() == 0
        queue.delete_topics(services.kafka_bootstrap, "t.", crawl)
        RedisCrawlAdmin(services.redis_url, crawl).delete_crawl()


async def test_a_worker_failing_before_its_load_leaves_no_download_folder(services, tmp_path, monkeypatch):
    # The worker's download folder (`whoiscrawl-sources-*`) was removed only after the load: a
    # worker that could not read its bootstrap (restarted over and over, in a pod) left one a start.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    missing = tmp_path / "none.json"
    worker = Worker(WorkerConfig("folder", services.kafka_bootstrap, services.redis_url, {},
                                 topic_prefix="t.", bootstrap_url=str(missing), sources=SETTINGS,
                                 metrics_port=None, kafka_config={"log_level": "0"}))
    try:
        with pytest.raises(SpaceError, match="does not exist"):
            await worker.run()
    finally:
        worker.consumer.close()
        worker._kafka.shutdown(wait=True)
    assert not list(tmp_path.glob("whoiscrawl-sources-*"))


@contextlib.asynccontextmanager
async def served(folder: Path) -> AsyncIterator[str]:
    """`folder` served over HTTP on loopback, as a mirror of the registries' trees is: its base URL."""
    app = web.Application()
    app.router.add_static("/", folder)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_the_loader_gives_its_disk_back_as_the_load_goes(services, unique_name, tmp_path):
    """The dumps are downloaded into the loader's folder (a worker pod's scratch volume,
    docs/sources.md, Disk): each is deleted once staged, its digest once kept on the topic and its
    staged records once sent; none of them is left when the load is done. Before, the dumps and
    digests stayed until the end of the load (GBs at the whole space: a pod past its volume)."""
    crawl = f"{unique_name}-disk"
    plan = plan_crawl(crawl=crawl, ranges=["193.0.0.0/20"], strategy="sweep", resolution=24, samples=0)
    publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="t.",
                 store=RedisCrawlAdmin(services.redis_url, crawl), partitions=2)
    cache = tmp_path / "loader"
    async with served(PUBLISHED) as base:
        settings = replace(SETTINGS, files_base=base)
        stats = await load_stats(base, tmp_path / "stats")
        async with fleet_load(services, crawl, f"disk-{crawl}", cache, stats, settings=settings) as load:
            figures = await load.ready()
    assert figures is not None and figures["dumps"]["ripencc"]["in_scope"] > 0, figures
    assert (cache / "ftp.ripe.net").is_dir()  # downloaded there, not read from the mirror's folder
    left = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())
    assert not [p for p in left if p.endswith((".gz", ".npz"))], left
    mirrored = [Path(rirs.published_at(u, str(PUBLISHED))) for u in rirs.BY_ID["ripencc"].dump_urls]
    assert all(path.is_file() for path in mirrored)  # the mirror's own: never the loader's to delete
    queue.delete_topics(services.kafka_bootstrap, "t.", crawl)
    RedisCrawlAdmin(services.redis_url, crawl).delete_crawl()


async def stats_listing_as112(tmp_path):
    """The simulator's statistics, with ARIN's AS112 block 192.175.48.0/24 as the real file lists it
    (an `assigned` row in special-purpose space)."""
    published = await load_stats(SETTINGS.files_base, tmp_path / "stats")
    as112 = int(IPv4Address("192.175.48.0"))
    return replace(published, delegations=[
        *published.delegations, Delegation("arin", "US", as112, 256, "19960105", "assigned")])

async def test_a_delegation_the_statistics_list_in_special_purpose_space_is_planned_by_the_load(
    services, unique_name, tmp_path
):
    """The operator plans without the statistics, so a fleet crawl left ARIN's AS112 block
    192.175.48.0/24 (special-purpose, yet an `assigned` row of ARIN's statistics, NET-192-175-48-0-1)
    out where a local crawl asks it. The load plans it before any shard is walked: its shard on the
    work topic and in the plan's totals and scope (a rebuilt Redis keeps it); TEST-NET-1, special
    and no registry's delegation, stays out."""
    crawl = unique_name
    plan = plan_crawl(crawl=crawl, ranges=["192.175.48.0/22", "192.0.2.0/24"], strategy="sweep",
                      resolution=24, samples=0)
    assert {(s.first, s.last) for s in plan.special} == {
        (int(IPv4Address("192.0.2.0")), int(IPv4Address("192.0.2.255"))),
        (int(IPv4Address("192.175.48.0")), int(IPv4Address("192.175.48.255")))}
    admin = RedisCrawlAdmin(services.redis_url, crawl)
    publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="t.", store=admin, partitions=2)
    as112 = int(IPv4Address("192.175.48.0"))
    published = await stats_listing_as112(tmp_path)
    checkpoints = queue.CheckpointSink(services.kafka_bootstrap, "t.", crawl)
    async with fleet_load(services, crawl, f"load-{crawl}", tmp_path / "load", published,
                          checkpoints) as load:
        try:
            assert await load.ready() is not None
            work = [s for _, _, s in queue.iter_work(services.kafka_bootstrap, "t.", crawl)]
            added = [s for s in work if s not in plan.shards]
            assert [(s.shard_id, s.strategy, s.resolution) for s in added] == [
                ("192.175.48.0-192.175.48.255", "sweep", 24)]
            totals = admin.progress()
            assert (totals.shards_total, totals.addresses_total) == (
                len(plan.shards) + 1, plan.addresses + 256)
            scope = await load.store.scope()
            assert scope is not None and scope.overlaps(as112, as112 + 255)
            test_net_1 = int(IPv4Address("192.0.2.0"))
            assert not scope.overlaps(test_net_1, test_net_1 + 255)
            admin.delete_crawl()  # Redis lost the crawl: the rebuild reads the plan from the work topic
            assert recover.rebuild(services.redis_url, services.kafka_bootstrap, "t.", crawl, "rebuilder")
            assert admin.progress().shards_total == len(plan.shards) + 1
        finally:
            assert checkpoints.close() == 0
            queue.delete_topics(services.kafka_bootstrap, "t.", crawl)
            admin.delete_crawl()


async def test_a_redis_lost_before_the_load_keeps_the_special_purpose_space_the_plan_withheld(
    services, unique_name, tmp_path
):
    """Redis loses the crawl after the plan is published and before the load plans the delegations
    the statistics list in special-purpose space: the rebuild brings the space the plan withheld
    back from the checkpoints topic, and the load plans ARIN's AS112 block all the same (before,
    it was gone with Redis, and AS112 dropped out of the crawl)."""
    crawl = unique_name
    plan = plan_crawl(crawl=crawl, ranges=["192.175.48.0/22"], strategy="sweep", resolution=24, samples=0)
    admin = RedisCrawlAdmin(services.redis_url, crawl)
    publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="t.", store=admin, partitions=2)
    admin.delete_crawl()  # Redis lost the crawl before any worker loaded the files
    assert recover.rebuild(services.redis_url, services.kafka_bootstrap, "t.", crawl, "rebuilder")
    published = await stats_listing_as112(tmp_path)
    async with fleet_load(services, crawl, f"load-{crawl}", tmp_path / "load", published) as load:
        try:
            assert await load.ready() is not None
            work = [s for _, _, s in queue.iter_work(services.kafka_bootstrap, "t.", crawl)]
            assert [s.shard_id for s in work if s not in plan.shards] == ["192.175.48.0-192.175.48.255"]
            totals = admin.progress()
            assert (totals.shards_total, totals.addresses_total) == (
                len(plan.shards) + 1, plan.addresses + 256)
        finally:
            queue.delete_topics(services.kafka_bootstrap, "t.", crawl)
            admin.delete_crawl()


async def test_a_worker_keeps_only_the_statistics_rows_its_crawl_s_scope_touches(
    services, unique_name, tmp_path
):
    """A worker reads every statistics file whole and keeps the delegations the planned scope
    touches and every free or reserved row (a run of them is one placeholder past the scope's edge):
    all five files' rows are ~140 MB a worker whatever the crawl's size (before, all were kept)."""
    crawl = unique_name
    _, admin = _planned(services, crawl)
    worker = Worker(WorkerConfig(crawl, services.kafka_bootstrap, services.redis_url, {}, topic_prefix="t.",
                                 sources=SETTINGS, kafka_config={"log_level": "0"}))
    store = RedisBlockStore(services.redis_url, crawl)
    try:
        scope = await store.scope()
        assert scope is not None
        kept = await worker._statistics(tmp_path / "kept", scope)
        everything = await load_stats(SETTINGS.files_base, tmp_path / "all")
        assert kept is not None and kept.serials == everything.serials
        handed_out = [d for d in kept.delegations if d.handed_out]
        assert handed_out and all(scope.overlaps(d.first, d.last) for d in handed_out)
        assert len(handed_out) < sum(d.handed_out for d in everything.delegations)
        assert [d for d in kept.delegations if not d.handed_out] == [
            d for d in everything.delegations if not d.handed_out]
    finally:
        worker.consumer.close()
        worker._kafka.shutdown(wait=True)
        await store.close()
        queue.delete_topics(services.kafka_bootstrap, "t.", crawl)
        admin.delete_crawl()
