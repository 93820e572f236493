"""Local mode stopped at many random points and resumed: exactly the blocks of an uninterrupted crawl."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from whoiscrawl.bench.common import Simulator, simulator
from whoiscrawl.ipv4 import ip_int
from whoiscrawl.local import LocalCrawl
from whoiscrawl.rirs import REGISTRIES
from whoiscrawl.settings import CrawlSettings
from whoiscrawl.sim import scenarios
from whoiscrawl.sim.model import World
from whoiscrawl.space import fetch_bootstrap

from .conftest import TIME_SCALE

pytestmark = pytest.mark.slow  # a crawl, then the same crawl stopped and resumed many times

# One range of each registry's kind: RDAP relation search (RIPE NCC, and ARIN's long lists),
# WHOIS -m listings (APNIC, AFRINIC) and the grid alone (LACNIC).
RANGES = ["193.0.0.0/16", "12.0.0.0/16", "1.0.0.0/16", "41.0.0.0/16", "186.0.0.0/18"]


async def job(sim: Simulator, out: Path, resume: bool, stopping: asyncio.Event) -> LocalCrawl:
    return LocalCrawl(
        ranges=RANGES,
        out=out,
        bootstrap=await fetch_bootstrap(sim.bootstrap_url),
        limits=sim.limits(),
        settings=CrawlSettings(whois_servers=dict.fromkeys(REGISTRIES, sim.whois)),
        resume=resume,
        stopping=stopping,
    )


async def crawl_until(sim: Simulator, out: Path, resume: bool, stop_after: float | None) -> dict:
    """Crawl until `stop_after` seconds have passed (then stop as Ctrl-C does) or to the end."""
    stopping = asyncio.Event()
    task = asyncio.create_task((await job(sim, out, resume, stopping)).run())
    if stop_after is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), stop_after)
        stopping.set()
    return await task


def blocks(out: Path) -> set[tuple[str, str]]:
    return {(r["start_address"], r["end_address"]) for r in map(json.loads, out.open())}


def listings(log: Path) -> Counter[tuple[str, str, str]]:
    """Listing requests answered (RDAP rdap-bottom and rdap-down, WHOIS -m) by what they asked for.
    One refused (a 429 the simulator's own stalls can draw, see test_local_crawl.py) is asked again:
    not a second listing."""
    asked = [json.loads(line) for line in log.open()]
    kinds = ("rdap-bottom", "rdap-down", "whois-m")
    answered = (r for r in asked if r["protocol"] in kinds and r["outcome"] == "ok")
    return Counter((r["protocol"], r["address"], str(r["handle"])) for r in answered)


def asked_about(log: Path, world: World) -> set[tuple[int, int]]:
    """The networks a relation search was asked about, however answered (12/8's is refused as too
    many rows, then asked in parts): by the handle logged, else (a refusal, a part) the outermost
    network starting at the key's first address."""
    out = set()
    for e in map(json.loads, log.open()):
        if not e["protocol"].startswith("rdap-"):
            continue
        i = world.lookup(ip_int(e["address"]))
        while i >= 0 and world.handle(i) != e["handle"] and world.parent[i] >= 0 and \
                world.start[world.parent[i]] == world.start[i]:
            i = world.parent[i]
        if i >= 0:
            out.add((world.start[i], world.end[i]))
    return out


def test_a_crawl_stopped_anywhere_and_resumed_ends_with_the_uninterrupted_blocks(tmp_path):
    whole, log_whole = tmp_path / "whole.jsonl", tmp_path / "whole-requests.jsonl"
    with simulator("quick", TIME_SCALE, log_whole) as sim:
        summary = asyncio.run(crawl_until(sim, whole, False, None))
    assert summary["complete"]
    parts, log_parts = tmp_path / "parts.jsonl", tmp_path / "parts-requests.jsonl"
    rng = random.Random(14)
    stops = 0
    with simulator("quick", TIME_SCALE, log_parts) as sim:
        summary = {"complete": False}
        while not summary["complete"]:
            # Stopped anywhere: during start-up, mid-walk, in a listing (which then finishes first).
            summary = asyncio.run(crawl_until(sim, parts, stops > 0, rng.uniform(0.02, 0.3)))
            stops += 1
    print(f"stops {stops}, blocks {len(blocks(whole))} whole / {len(blocks(parts))} resumed")
    asked = listings(log_parts)
    print(f"listing requests {sum(listings(log_whole).values())} whole / {sum(asked.values())} resumed")
    assert blocks(parts) == blocks(whole)
    assert [k for k, n in asked.items() if n > 1] == []  # no parent listed twice
    # What is listed besides depends on the order lanes meet networks: one met by a lookup before
    # its parent was listed whole (rdap-bottom) is listed on its own too. So a listing only one run
    # asked is of a network inside one both runs listed whole; nothing else differs.
    whole_asked, world = listings(log_whole), scenarios.get("quick").world()
    span = {world.handle(i): (world.start[i], world.end[i]) for i in range(len(world))}
    both = list(asked_about(log_whole, world) & asked_about(log_parts, world))
    for _p, _a, h in set(asked) ^ set(whole_asked):
        if h not in span:
            continue  # a part of a split listing (its key is no network)
        first, last = span[h]
        assert any(a <= first and last <= b and (a, b) != (first, last) for a, b in both), h
    assert stops >= 5
