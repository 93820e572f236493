"""A long listing is parsed off the event loop: the worker's requests and lease renewals run on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from netaddr import IPAddress

from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.registry import RegistryClient, rdap, relations
from whoiscrawl.registry.outcome import Kind, Outcome
from whoiscrawl.registry.rdap import ParsedListing, RdapParser
from whoiscrawl.space import Bootstrap

# Real answers kept with the tests (provenance: CONTRIBUTING.md, "Test data"); missing ones fail.
REAL = Path(__file__).parents[1] / "data" / "real-registry"


NETWORK = json.loads((REAL / "arin-rdap-192.198.0.0.json").read_text())


class Ticker:
    """The longest the event loop kept a 5 ms timer waiting while `run` ran."""

    def __init__(self) -> None:
        self.gaps: list[float] = []

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            self.gaps.append(time.monotonic() - last)
            last = time.monotonic()

    async def run(self, work: Any) -> tuple[Any, float]:
        """`work`'s result, and how long it took."""
        ticker = asyncio.create_task(self._tick())
        await asyncio.sleep(0.02)
        started = time.monotonic()
        result = await work
        took = time.monotonic() - started
        await asyncio.sleep(0.02)  # the ticker notes the gap it was kept waiting
        ticker.cancel()
        return result, took

    def stood_still(self, took: float) -> bool:
        return max(self.gaps) >= max(0.1, took / 4)


async def test_the_loop_runs_on_while_a_long_listing_is_parsed():
    listing = {"ipSearchResults": [NETWORK] * 1500}  # a listing as long as ARIN answers one
    first = int(IPAddress(NETWORK["startAddress"]))

    async def fetch(url: str) -> Outcome:
        return Outcome(Kind.ANSWER, listing)

    parser = RdapParser()
    search = relations.RelationSearch(fetch, parser, "arin", "http://127.0.0.1:9/", None)
    ticker = Ticker()
    _, took = await ticker.run(search.run(first, first + 255))
    assert len(search.children) == 1500 and search.complete
    assert not ticker.stood_still(took), f"the loop stood still {max(ticker.gaps):.2f}s of {took:.2f}s"


async def test_a_listing_of_megabytes_is_decoded_and_parsed_outside_the_worker_s_process():
    """Decoding JSON holds the GIL throughout: 25 MB of listing, decoded on any thread of the
    worker, stood its loop still for half a second idle and for seconds on a busy machine."""
    first = int(IPAddress(NETWORK["startAddress"]))
    body = json.dumps({"ipSearchResults": [NETWORK] * 5000}).encode()

    async def listing(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/rdap+json")

    app = web.Application()
    app.router.add_get("/arin/ips/rirSearch1/rdap-down/{key}", listing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    limiter = MemoryRateLimiter({"arin": Limit(100.0)})
    client = RegistryClient(Bootstrap.from_document({"services": []}), limiter)
    url = relations.key_url(f"http://127.0.0.1:{port}/arin/ips/rirSearch1/", "rdap-down", first, first + 255)
    try:
        await client.children("arin", url)  # the parser's process is up: started once per worker
        ticker = Ticker()
        answer, took = await ticker.run(client.children("arin", url))
    finally:
        await client.close()
        await runner.cleanup()
    assert answer.complete and len(answer.children) == 5000
    assert answer.children[0][0].handle == NETWORK["handle"]
    assert not ticker.stood_still(took), f"the loop stood still {max(ticker.gaps):.2f}s of {took:.2f}s"


async def test_a_big_answer_is_still_parsed_when_the_parser_s_process_was_killed():
    body = json.dumps({"ipSearchResults": [NETWORK] * 300}).encode()
    parser = RdapParser()
    assert len((await parser.read_big(body, "arin")).children) == 300
    assert rdap._parse_process is not None
    for pid in list(rdap._parse_process._processes):  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    again = await parser.read_big(body, "arin")  # on the thread, this once
    assert isinstance(again, ParsedListing) and len(again.children) == 300
    assert len((await parser.read_big(body, "arin")).children) == 300  # in a new process
