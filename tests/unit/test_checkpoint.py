"""The local crawl's checkpoint file: a save writes what changed, and a kill mid-save loses nothing."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from whoiscrawl.store.memory import CheckpointError, MemoryStore, read_checkpoint
from whoiscrawl.strategy import Answer

IO_COUNTERS = Path("/proc/thread-self/io")


def bytes_written() -> int:
    """Bytes this thread handed to write(2) so far: counts whatever the store writes, however."""
    for line in IO_COUNTERS.read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "wchar":
            return int(value)
    raise AssertionError("no wchar in /proc/thread-self/io")


def shard(k: int) -> str:
    return f"shard-{k}"


async def crawled(path: Path, networks: int) -> MemoryStore:
    """A store that has met `networks` networks: parents listed whole, shards done, walks under way."""
    store = MemoryStore(path)
    for k in range(networks):
        first = (1 << 24) + 256 * k
        await store.listed(first, first + 255, "me", True)
    for k in range(networks // 16):
        await store.shard_done(shard(k), 65536)
    for lane in range(64):
        await store.record_step(shard(10**7 + lane), f"{lane * 256}/-1/", None)
    store.save()
    return store


async def steps_bytes(store: MemoryStore, steps: int) -> float:
    """Bytes written per step of a crawl that saves after each step (the crawl saves each 0.5 s)."""
    before = bytes_written()
    for k in range(steps):
        first = (2 << 24) + 256 * k
        await store.record_step(shard(10**7 + k % 64), f"{first}/-1/", Answer(first, first + 255, True))
        if k % 8 == 0:
            await store.listed(first, first + 255, "me", k % 16 == 0)
            await store.shard_done(shard(2 * 10**7 + k), 256)
        store.save()
    return (bytes_written() - before) / steps


@pytest.mark.skipif(not IO_COUNTERS.exists(), reason="needs Linux's per-thread I/O counters")
def test_a_step_writes_as_many_bytes_at_a_million_networks_as_at_ten_thousand(tmp_path: Path):
    async def run(networks: int) -> float:
        store = await crawled(tmp_path / f"{networks}.checkpoint.json", networks)
        return await steps_bytes(store, 300)

    small, big = asyncio.run(run(10_000)), asyncio.run(run(1_000_000))
    print(f"bytes per step: {small:.0f} at 10k networks, {big:.0f} at 1M")
    # Equal within a constant: compaction (at most once per snapshot's worth of journal) may
    # double the small crawl's figure; the map's size must not show.
    assert big <= 2 * small and small <= 3 * big


def state_of(store: MemoryStore) -> dict:
    return {"counters": asdict(store.counters), "cursors": store.cursors, "done": store.done,
            "partly_listed": store.partly_listed, "listed_whole": store.listed_whole}


def test_a_journal_cut_off_mid_line_resumes_at_the_save_before(tmp_path: Path):
    path = tmp_path / "crawl.jsonl.checkpoint.json"

    async def crawl() -> list[tuple[int, dict]]:
        store, saved = MemoryStore(path), []
        for k in range(40):
            first = (5 << 24) + 256 * k
            await store.record_step(f"s{k % 3}", f"{first}/-1/", Answer(first, first + 255, k % 2 == 0))
            if k % 5 == 4:
                await store.listed(first, first + 255, "me", k % 10 == 4)
                await store.shard_done(f"s{k % 3}", 256)
            store.save()
            saved.append((path.stat().st_size, json.loads(json.dumps(state_of(store), default=sorted))))
        return saved

    saved = asyncio.run(crawl())
    whole = path.read_bytes()
    assert whole.count(b"\n") == 40  # a snapshot, then one journal line a save
    for (end_before, state_before), (end, _) in itertools.pairwise(saved):
        for cut in (end_before + 1, (end_before + end) // 2, end - 2):  # a kill mid-way through a line
            path.write_bytes(whole[:cut])
            resumed = MemoryStore(path)
            assert resumed.load()
            assert json.loads(json.dumps(state_of(resumed), default=sorted)) == state_before
            resumed.save()  # compacts: the cut line is gone, and the file reads back whole
            assert path.read_bytes().count(b"\n") == 1
            again = MemoryStore(path)
            assert again.load() and state_of(again) == state_of(resumed)


def test_a_checkpoint_damaged_before_its_last_line_names_the_file_and_line(tmp_path: Path):
    path = tmp_path / "crawl.jsonl.checkpoint.json"
    path.write_text('{"counters": {}, "cursors": {}, "done": []}\n{"counters": \n{"counters": {}}\n')
    with pytest.raises(CheckpointError, match=r"crawl.jsonl.checkpoint.json is damaged at line 2"):
        read_checkpoint(path)


def test_a_checkpoint_of_one_json_object_as_earlier_versions_wrote_it_still_loads(tmp_path: Path):
    path = tmp_path / "crawl.jsonl.checkpoint.json"
    path.write_text(json.dumps({"counters": {"lookups": 7}, "cursors": {"a-b": "5/-1/"}, "done": ["c-d"],
                                "partly_listed": [1 << 32 | 9], "listed_whole": [2 << 32 | 3]}))
    store = MemoryStore(path)
    assert store.load()
    assert store.counters.lookups == 7 and store.cursors == {"a-b": "5/-1/"} and store.done == {"c-d"}
    assert store.partly_listed == {1 << 32 | 9} and store.listed_whole == {2 << 32 | 3}
    assert store.index.knows(2, 3)


def test_the_journal_is_folded_into_a_new_snapshot_once_it_outgrows_the_old_one(tmp_path: Path):
    path = tmp_path / "crawl.jsonl.checkpoint.json"

    async def crawl() -> tuple[MemoryStore, list[int]]:
        store, lines = MemoryStore(path), []
        for k in range(1000):
            first = (7 << 24) + 256 * k
            await store.record_step(f"s{k % 64}", f"{first}/-1/", Answer(first, first + 255, True))
            store.save()
            lines.append(path.read_bytes().count(b"\n"))
        return store, lines

    store, lines = asyncio.run(crawl())
    folded = [k for k in range(1, len(lines)) if lines[k] < lines[k - 1]]
    assert folded and all(lines[k] == 1 for k in folded)  # rewritten as one snapshot line
    assert path.stat().st_size < 3 * 64 * 1024  # never much past the journal's threshold
    again = MemoryStore(path)
    assert again.load() and state_of(again) == state_of(store)
