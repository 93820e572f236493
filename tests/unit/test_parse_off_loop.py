"""A long listing is parsed off the event loop: the worker's requests and lease renewals run on."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from netaddr import IPAddress

from whoiscrawl.registry import relations
from whoiscrawl.registry.outcome import Kind, Outcome
from whoiscrawl.registry.rdap import RdapParser

REAL = Path("/work/shared/data/real-registry")
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="the real answers are not on this machine")


async def test_the_loop_runs_on_while_a_long_listing_is_parsed():
    network = json.loads((REAL / "arin-rdap-192.198.0.0.json").read_text())
    listing = {"ipSearchResults": [network] * 1500}  # a listing as long as ARIN answers one
    first = int(IPAddress(network["startAddress"]))

    async def fetch(url: str) -> Outcome:
        return Outcome(Kind.ANSWER, listing)

    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()

    parser = RdapParser()
    search = relations.RelationSearch(fetch, parser, "arin", "http://127.0.0.1:9/", None)
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    started = time.monotonic()
    await search.run(first, first + 255)
    took = time.monotonic() - started
    await asyncio.sleep(0.02)  # the ticker notes the gap it was kept waiting
    ticker.cancel()
    assert len(search.children) == 1500 and search.complete
    assert max(gaps) < max(0.1, took / 4), f"the loop stood still {max(gaps):.2f}s of a {took:.2f}s parse"
    parser.close()
