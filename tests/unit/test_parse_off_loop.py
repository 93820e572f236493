"""A long listing is parsed off the event loop (a thread; a process for megabytes), shown by record."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from netaddr import IPAddress

from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import RegistryClient, rdap, relations
from whoiscrawl.registry.outcome import Kind, Outcome
from whoiscrawl.registry.rdap import ParsedListing, RdapParser
from whoiscrawl.space import Bootstrap

# Real answers kept with the tests (provenance: CONTRIBUTING.md, "Test data"); missing ones fail.
REAL = Path(__file__).parents[1] / "data" / "real-registry"


NETWORK = json.loads((REAL / "arin-rdap-192.198.0.0.json").read_text())


class Noting(RdapParser):
    """The parser, noting the thread each network was parsed on (its own record of where it ran)."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def parse(self, doc: dict[str, Any], address: int, registry: str) -> NetworkRecord:
        self.threads.add(threading.current_thread().name)
        return super().parse(doc, address, registry)


async def test_a_long_listing_is_parsed_on_the_parse_thread_not_the_loop():
    """Seconds of CPU for 1,500 networks: on the loop they stalled every request and lease renewal.
    Asserted from where the parses ran, not from how long a timer waited on a busy machine."""
    listing = {"ipSearchResults": [NETWORK] * 1500}  # a listing as long as ARIN answers one
    first = int(IPAddress(NETWORK["startAddress"]))

    async def fetch(url: str) -> Outcome:
        return Outcome(Kind.ANSWER, listing)

    parser = Noting()
    search = relations.RelationSearch(fetch, parser, "arin", "http://127.0.0.1:9/", None)
    await search.run(first, first + 255)
    assert len(search.children) == 1500 and search.complete
    assert parser.threads and all(name.startswith("rdap-parse") for name in parser.threads), parser.threads
    assert threading.current_thread().name not in parser.threads  # (the loop's own thread)


async def test_a_listing_of_megabytes_is_decoded_and_parsed_outside_the_worker_s_process(monkeypatch):
    """Decoding JSON holds the GIL throughout: 25 MB of listing, decoded on any thread of the
    worker, stood its loop still for half a second idle and for seconds on a busy machine. This
    process never decodes it: every json.loads here is noted, and none was given the listing."""
    first = int(IPAddress(NETWORK["startAddress"]))
    body = json.dumps({"ipSearchResults": [NETWORK] * 5000}).encode()
    decoded_here: list[int] = []
    loads = json.loads

    def noting_loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        decoded_here.append(len(text))
        return loads(text, *args, **kwargs)

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
        monkeypatch.setattr(json, "loads", noting_loads)  # (the parse process, spawned, has its own)
        answer = await client.children("arin", url)
    finally:
        monkeypatch.undo()
        await client.close()
        await runner.cleanup()
    assert answer.complete and len(answer.children) == 5000
    assert answer.children[0][0].handle == NETWORK["handle"]
    assert [n for n in decoded_here if n >= len(body)] == []
    assert rdap._parse_process is not None  # it went to the parse process


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


_STARTS_A_PARSE_PROCESS = """
import asyncio, json, sys
from whoiscrawl.registry import rdap
async def main():
    await rdap.RdapParser().read_big(json.dumps({"objectClassName": "ip network"}).encode(), "arin")
    print(*rdap._parse_process._processes, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_the_parse_process_ends_with_a_parent_killed_outright():
    """A worker SIGKILLed (a chaos bench, the OOM killer) left its parse process behind, deaf to
    SIGTERM, waiting forever: 29 such orphans after a day's chaos runs."""
    parent = subprocess.Popen([sys.executable, "-c", _STARTS_A_PARSE_PROCESS], stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait()
    for _ in range(200):  # the kernel signals it at once; this waits for it to be reaped
        if not _alive(child):
            break
        time.sleep(0.05)
    gone = not _alive(child)
    if not gone:
        os.kill(child, signal.SIGKILL)
    assert gone, "the parse process outlived its killed parent"
