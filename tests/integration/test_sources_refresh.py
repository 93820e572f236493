"""A fleet generation refreshed by difference from the previous one (worker/sources.py, worker/carry.py)
on real Redis and Kafka, from the small files under tests/data/published: what the previous map holds
that the files leave unchanged is carried (ARIN's networks under unchanged delegations, a fill of a
dumped network), logged as leaves; a loader killed mid-carry and the next one end with the map one
load never killed makes, nothing sent twice; a previous generation of another scope, with newer
files, or none at all is refused by name and the generation crawls anew."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from whoiscrawl.operator.backend import LiveBackend, Target
from whoiscrawl.worker import sources
from whoiscrawl.worker.sources import FleetLoad, Results

from whoiscrawl import queue
from whoiscrawl.ipv4 import ip_int
from whoiscrawl.keys import Keys
from whoiscrawl.publish import publish_plan
from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import RegistryClient
from whoiscrawl.sources.difference import PROVENANCE, Previous
from whoiscrawl.sources.published import SourcesSettings, load_stats
from whoiscrawl.sources.stats import Delegation
from whoiscrawl.space import fetch_bootstrap, plan_crawl
from whoiscrawl.store.redis_admin import RedisCrawlAdmin
from whoiscrawl.store.redis_blocks import RedisBlockStore

PUBLISHED = Path(__file__).parent.parent / "data" / "published"
SETTINGS = SourcesSettings(frozenset({"stats", "dumps", "live"}), str(PUBLISHED), frozenset({"ripencc"}))
RANGES = ["193.0.0.0/20", "23.128.0.0/21"]  # RIPE NCC's (its dump read) and ARIN's (no dump)


def _plan(services, crawl: str, ranges: list[str] = RANGES) -> None:
    plan = plan_crawl(crawl=crawl, ranges=ranges, strategy="sweep", resolution=24, samples=0)
    admin = RedisCrawlAdmin(services.redis_url, crawl)
    publish_plan(plan, bootstrap=services.kafka_bootstrap, prefix="t.", store=admin, partitions=2)


def _load(services, crawl: str, tmp_path: Path, owner: str, previous: str | None = None) -> FleetLoad:
    store = RedisBlockStore(services.redis_url, crawl)
    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", crawl)
    checkpoints = queue.CheckpointSink(services.kafka_bootstrap, "t.", crawl)
    return FleetLoad(SETTINGS, store, sink, Results(services.kafka_bootstrap, "t.", crawl), None,  # type: ignore[arg-type]
                     f"{owner}-{crawl}", tmp_path / owner / crawl, checkpoints=checkpoints, previous=previous)


async def _ready(load: FleetLoad, tmp_path: Path, rows: tuple[Delegation, ...] = ()) -> dict:
    """The load run to its end (its statistics read as a worker reads them, with `rows` more)."""
    load.client = RegistryClient(await fetch_bootstrap(None), MemoryRateLimiter({}))
    published = await load_stats(SETTINGS.files_base, tmp_path / "stats")
    load.stats = replace(published, delegations=[*published.delegations, *rows])
    try:
        figures = await load.ready()
    finally:
        await _close(load)
    assert figures is not None
    return figures


async def _close(load: FleetLoad) -> None:
    assert isinstance(load.sink, queue.KafkaSink)
    assert load.sink.close() == 0
    assert load.checkpoints is not None and load.checkpoints.close() == 0
    await load.store.close()
    await load.client.close()


def _live(crawl: str) -> list[NetworkRecord]:
    """What the previous generation's walkers asked ARIN: a direct assignment and its 8 children."""
    def net(first: str, last: str, cidr: str, kind: str) -> NetworkRecord:
        return NetworkRecord("arin", f"NET-{first}", first, last, [cidr], type=kind, registrant="Holder",
                             country="US", abuse_emails=["abuse@example.net"], source="rdap", crawl=crawl)
    children = [net(f"23.128.{n // 2}.{128 * (n % 2)}", f"23.128.{n // 2}.{128 * (n % 2) + 127}",
                    f"23.128.{n // 2}.{128 * (n % 2)}/25", "REASSIGNMENT") for n in range(8)]
    return [net("23.128.0.0", "23.128.3.255", "23.128.0.0/22", "DIRECT ASSIGNMENT"), *children]


async def _previous(services, crawl: str, tmp_path: Path) -> None:
    """Generation 1: its files loaded, then what its walkers asked live sent after (ARIN's networks,
    and the abuse address of each of the 3 dumped RIPE NCC networks in scope filled)."""
    _plan(services, crawl)
    await _ready(_load(services, crawl, tmp_path, "first"), tmp_path)
    dumped = [r for r in queue.iter_results(services.kafka_bootstrap, "t.", crawl) if r.source == "dump"]
    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", crawl)
    filled = [r.with_filled("abuse_emails", ["noc@example.net"], "rdap", "AB1-RIPE") for r in dumped]
    for record in [*_live(crawl), *filled]:
        await sink.emit(record)
    assert sink.close() == 0


def _map(services, crawl: str) -> dict:
    """A generation's map: the latest record of each block, its provenance aside."""
    prev = Previous.of_lines(queue.iter_result_values(services.kafka_bootstrap, "t.", crawl))
    return {k: {f: v for f, v in r.to_dict().items() if f not in PROVENANCE} for k, r in prev.latest.items()}


def _messages(services, crawl: str) -> Counter[tuple[bytes, bytes]]:
    records = queue.iter_results(services.kafka_bootstrap, "t.", crawl)
    return Counter((queue.result_key(r), r.to_json()) for r in records)


async def _state(services, crawl: str) -> dict[str, str]:
    raw = RedisCrawlAdmin(services.redis_url, crawl).client.hgetall(Keys(crawl).sources)
    return {k.decode(): v.decode() for k, v in raw.items()}


async def _killed_mid_carry(services, crawl: str, tmp_path: Path, previous: str) -> None:
    """A loader of `crawl` cancelled while the second batch of RIPE NCC's carried networks (the live
    records kept after unchanged dumped ones, dated to the new dump's read) is on its way (its
    in-flight note written; what it produced is delivered as the sink closes)."""
    load = _load(services, crawl, tmp_path, "killed", previous)
    task = asyncio.create_task(_ready(load, tmp_path))
    while not task.done():
        inflight = json.loads((await _state(services, crawl)).get("inflight", "null")) or {}
        if inflight.get("item") == "carried:ripencc" and inflight["from"] >= sources.BATCH:
            task.cancel()
            break
        await asyncio.sleep(0.002)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert "done" not in await _state(services, crawl), "the loader finished before it was killed"


@pytest.fixture
def crawls(services, unique_name):
    names: list[str] = []
    yield lambda tag: names.append(f"{unique_name}-{tag}") or names[-1]
    for name in names:
        queue.delete_topics(services.kafka_bootstrap, "t.", name)
        RedisCrawlAdmin(services.redis_url, name).delete_crawl()


async def test_a_generation_carries_what_did_not_change_and_a_killed_carry_ends_with_the_same_map(
    services, crawls, tmp_path, monkeypatch
):
    monkeypatch.setattr(sources, "BATCH", 2)  # 9 and 3 carried networks in 5 and 2 batches: a kill between
    first = crawls("g1")
    await _previous(services, first, tmp_path)

    killed = crawls("g2")
    _plan(services, killed)
    await _killed_mid_carry(services, killed, tmp_path, first)
    figures = await _ready(_load(services, killed, tmp_path, "next", first), tmp_path)

    whole = crawls("g2-whole")  # the same generation, never killed
    _plan(services, whole)
    never_killed = await _ready(_load(services, whole, tmp_path, "whole", first), tmp_path)
    assert never_killed["refresh"] == figures["refresh"]

    # The files did not change: the refreshed map is the previous one, killed or not.
    assert _map(services, killed) == _map(services, whole) == _map(services, first)
    # RIPE NCC's dump read against generation 1's read (its digest kept on g1's digests topic): its
    # unchanged networks staged unparsed (before 2026-12-07 the fleet parsed every dump whole)
    assert figures["dumps"]["ripencc"]["not_parsed"] == never_killed["dumps"]["ripencc"]["not_parsed"] > 0
    # (the notes' texts, not "digest" alone: a worktree's path may hold it)
    assert not [n for n in figures["notes"] if "read whole" in n or "digest not kept" in n], figures["notes"]
    by_registry = figures["refresh"]["by_registry"]
    assert by_registry["arin"]["carried"] == 9, by_registry
    assert by_registry["ripencc"]["carried"] == by_registry["ripencc"]["unchanged"] == 3, by_registry
    assert not {k: v for k, v in by_registry["ripencc"].items() if k in ("changed", "added", "removed") and v}
    # Nothing sent twice: every message once, as many of each block as the load never killed sent.
    sent = _messages(services, killed)
    assert set(sent.values()) == {1}
    assert Counter(k for k, _ in sent) == Counter(k for k, _ in _messages(services, whole))
    # Carried networks are leaves: no walk probes inside ARIN's assignment.
    store = RedisBlockStore(services.redis_url, killed)
    try:
        await store.sync()
        assert store.index.leaf(ip_int("23.128.2.5")) == (ip_int("23.128.0.0"), ip_int("23.128.3.255"))
    finally:
        await store.close()
    # The manifest kept for the next generation.
    manifest = json.loads((await _state(services, killed))["done"])["manifest"]
    assert manifest["scope"] == ["23.128.0.0/21", "193.0.0.0/20"]
    # every registry's statistics read, free space in scope or not (APNIC's, LACNIC's, AFRINIC's none)
    assert {r for r, kinds in manifest["serials"].items() if "stats" in kinds} == {
        "afrinic", "apnic", "arin", "lacnic", "ripencc"}
    # The operator reads what the load did (status.refresh).
    target = Target(killed, services.kafka_bootstrap, "t.", services.redis_url)
    assert LiveBackend().refresh(target) == figures["refresh"]


async def test_a_previous_generation_that_cannot_be_refreshed_from_is_refused_and_crawled_anew(
    services, crawls, tmp_path
):
    first = crawls("g1")
    await _previous(services, first, tmp_path)
    cases = {
        "another scope": (["193.0.0.0/20"], first, "mapped another scope"),
        "files older": (RANGES, first, "newer than 41234567 now: the files went backwards"),
        "none": (RANGES, f"{first}-none", "has no finished load"),
    }
    admin = RedisCrawlAdmin(services.redis_url, first)
    done = json.loads(admin.client.hget(Keys(first).sources, "done"))
    for tag, (ranges, previous, why) in cases.items():
        if tag == "files older":  # the previous generation read a newer RIPE NCC dump than the mirror's
            done["manifest"]["serials"]["ripencc"]["dump"] = "41234568"
            admin.client.hset(Keys(first).sources, "done", json.dumps(done))
        crawl = crawls(tag.replace(" ", "-"))
        _plan(services, crawl, ranges)
        figures = await _ready(_load(services, crawl, tmp_path, "load", previous), tmp_path)
        assert why in figures["refresh"]["refused"], figures["refresh"]
        said = f"not a refresh of {previous}: "
        assert any(n.startswith(said) and n.endswith("this generation crawls anew") for n in figures["notes"])
        records = queue.iter_results(services.kafka_bootstrap, "t.", crawl)
        carried = [r for r in records if r.registry == "arin" and r.source == "rdap"]
        assert not carried  # nothing of the previous generation


# ARIN's AS112 block: special-purpose space, yet an `assigned` row of ARIN's statistics
AS112 = Delegation("arin", "US", ip_int("192.175.48.0"), 256, "19960105", "assigned")


async def test_a_delegation_in_special_purpose_space_is_carried_only_while_its_row_is_unchanged(
    services, crawls, tmp_path
):
    """Each generation's load plans AS112 (docs/sources.md, The fleet), so its scope and manifest
    hold it: re-dated in the next generation's statistics (a transfer), its previous record is not
    carried (its shard is walked live); unchanged, it is. Before, no fleet planned it, its row was
    in no manifest, and a refresh carried its record whatever changed."""
    ranges = ["192.175.48.0/22"]
    first = crawls("g1")
    _plan(services, first, ranges)
    await _ready(_load(services, first, tmp_path, "first"), tmp_path, (AS112,))
    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", first)
    await sink.emit(NetworkRecord("arin", "NET-192-175-48-0-1", "192.175.48.0", "192.175.48.255",
                                  ["192.175.48.0/24"], type="DIRECT ASSIGNMENT", registrant="AS112 Project",
                                  country="US", source="rdap", crawl=first))  # what its walker asked
    assert sink.close() == 0
    for tag, date, carried in (("same", AS112.date, True), ("transferred", "20181014", False)):
        crawl = crawls(tag)
        _plan(services, crawl, ranges)
        load = _load(services, crawl, tmp_path, tag, first)
        figures = await _ready(load, tmp_path, (replace(AS112, date=date),))
        assert "refused" not in figures["refresh"], figures["refresh"]
        sent = [r.start_address for r in queue.iter_results(services.kafka_bootstrap, "t.", crawl)
                if r.source == "rdap"]
        assert sent == (["192.175.48.0"] if carried else []), tag
