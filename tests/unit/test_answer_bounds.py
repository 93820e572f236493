"""Bounds on what a registry (or something posing as one) can make the client read or follow: RDAP
body size, WHOIS text size, rows per listing, redirects only to the bootstrap's RDAP bases, the time
a lookup and a listing may take. Each refusal against a tiny server on 127.0.0.1, with the failure's
reason."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from netaddr import IPAddress
from unitsupport_answers import DATA
from unitsupport_registry import Registry

from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.registry import RegistryClient, whois
from whoiscrawl.registry.outcome import AnswerTooLarge, Kind, LookupFailed
from whoiscrawl.space import Bootstrap

NETWORK = json.loads((DATA / "real-registry" / "arin-rdap-192.198.0.0.json").read_text())
ADDRESS = int(IPAddress("192.198.0.1"))


def client_of(registry: Registry, **options: Any) -> RegistryClient:
    """A client whose bootstrap names the registry's base for 192.198.0.0/22 (ARIN's space)."""
    bootstrap = Bootstrap.from_document({"services": [[["192.198.0.0/22"], [registry.base]]]})
    limiter = MemoryRateLimiter({"arin": Limit(1000.0)})
    return RegistryClient(bootstrap, limiter, attempts=1, backoff=0.0, **options)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    started: list[Registry] = []

    async def start(routes: dict[str, Callable[[web.Request], Any]]) -> Registry:
        started.append(await Registry(routes).start())
        return started[-1]

    yield start
    for registry in started:
        assert registry.runner is not None
        await registry.runner.cleanup()


async def answer(_: web.Request) -> web.Response:
    return web.json_response(NETWORK, content_type="application/rdap+json")


async def test_an_rdap_body_over_the_cap_is_refused(serve: Callable[..., Any]):
    registry = await serve({"/a/ip/": answer})
    client = client_of(registry, max_answer_bytes=1000)
    try:
        with pytest.raises(LookupFailed, match="max_answer_bytes"):
            await client.lookup(ADDRESS)
    finally:
        await client.close()
    roomy = client_of(registry)
    try:
        assert (await roomy.lookup(ADDRESS)).record is not None  # the same answer under the cap
    finally:
        await roomy.close()


async def test_an_endless_rdap_body_is_read_no_further_than_the_cap(serve: Callable[..., Any]):
    sent = []

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/rdap+json"})
        await resp.prepare(request)
        try:
            for _ in range(100_000):  # 6.5 GB unless the client stops reading
                await resp.write(b"[" * 65536)
                sent.append(1)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp

    registry = await serve({"/a/ip/": endless})
    client = client_of(registry, max_answer_bytes=1 << 20)
    try:
        with pytest.raises(LookupFailed, match="max_answer_bytes"):
            await client.lookup(ADDRESS)
    finally:
        await client.close()
    assert len(sent) < 1000  # what the socket buffers took, not the 100,000 chunks


async def test_a_whois_answer_over_the_cap_is_refused():
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        try:
            for _ in range(10_000):
                writer.write(b"remarks: " + b"x" * 1000 + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(talk, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(AnswerTooLarge, match="max_whois_bytes"):
            await whois.query("127.0.0.1", port, "192.198.0.1", None, 10.0, limit=100_000)
        assert len(await whois.query("127.0.0.1", port, "192.198.0.1", None, 30.0, limit=20 << 20)) > 100_000
        limiter = MemoryRateLimiter({"arin": Limit(1000.0)})
        client = RegistryClient(Bootstrap.from_document({"services": []}), limiter, max_whois_bytes=50_000)
        outcome = await client._whois_text("arin", f"127.0.0.1:{port}", "n + 192.198.0.1")
        assert outcome.kind is Kind.MALFORMED and "max_whois_bytes" in outcome.value
    finally:
        server.close()
        await server.wait_closed()


async def test_a_listing_of_more_rows_than_the_cap_is_refused(serve: Callable[..., Any],
                                                              caplog: pytest.LogCaptureFixture):
    async def listing(_: web.Request) -> web.Response:
        return web.json_response({"ipSearchResults": [NETWORK] * 50}, content_type="application/rdap+json")

    registry = await serve({"/a/ips/rirSearch1/": listing})
    url = f"{registry.base}ips/rirSearch1/rdap-down/192.198.0.0%20-%20192.198.3.255"
    client = client_of(registry, max_listing_rows=10)
    try:
        capped = await client.children("arin", url)
    finally:
        await client.close()
    assert not capped.complete and not capped.children
    assert "a listing of 50 networks, over 10 (max_listing_rows)" in caplog.text
    roomy = client_of(registry)
    try:
        assert len((await roomy.children("arin", url)).children) == 50
    finally:
        await roomy.close()


CLOSING = b"\n% This query was served by the RIPE Database Query Service\n"


@contextlib.asynccontextmanager
async def whois_server(text: str, delay_s: float = 0.0) -> AsyncIterator[str]:
    """A RIPE-style port-43 server on 127.0.0.1 answering any query with `text` (and the closing
    line) after `delay_s`: its host:port."""
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        await asyncio.sleep(delay_s)
        writer.write(text.encode() + CLOSING)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(talk, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_whois_listing_of_more_rows_than_the_cap_is_refused():
    rows = "".join(f"\ninetnum: 10.0.{i}.0 - 10.0.{i}.255\nsource: RIPE\n" for i in range(30))
    limiter = MemoryRateLimiter({"ripencc": Limit(1000.0)})
    client = RegistryClient(Bootstrap.from_document({"services": []}), limiter, max_listing_rows=10)
    async with whois_server(rows) as server:
        outcome = await client._whois_listing("ripencc", server, "-r -m 10.0.0.0/16", None)
    assert outcome.kind is Kind.MALFORMED and "a WHOIS listing of 30 networks, over 10" in outcome.value


REFUSED = {
    "another scheme": ("ftp://127.0.0.1:{port}/a/ip/192.198.0.1", "not an http(s) URL"),
    "another host": ("http://localhost:{port}/a/ip/192.198.0.1", "no RDAP base URL"),
    "another port": ("http://127.0.0.1:{other}/a/ip/192.198.0.1", "no RDAP base URL"),
    "a private address": ("http://10.1.2.3/a/ip/192.198.0.1", "no RDAP base URL"),
    "a link-local address": ("http://169.254.169.254/latest/meta-data/", "no RDAP base URL"),
    "loopback by another name": ("http://[::1]:{port}/a/ip/192.198.0.1", "no RDAP base URL"),
    "credentials": ("http://user:pw@127.0.0.1:{port}/a/ip/192.198.0.1", "credentials"),
    "a path outside the base": ("http://127.0.0.1:{port}/b/ip/192.198.0.1", "no RDAP base URL"),
    "a path climbing out": ("/a/../b/ip/192.198.0.1", "no RDAP base URL"),
    "a base's prefix climbing out": ("http://127.0.0.1:{port}/a/../b/ip/192.198.0.1", "no RDAP base URL"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_a_redirect_outside_the_bootstrap_s_bases_is_refused(serve: Callable[..., Any], case: str):
    other = await serve({"/": answer})  # listening, never to be asked
    location, reason = REFUSED[case]

    async def redirect(request: web.Request) -> web.Response:
        target = location.format(port=request.url.port, other=other.port)
        return web.Response(status=302, headers={"Location": target})

    registry = await serve({"/a/ip/": redirect, "/b/": answer})
    client = client_of(registry)
    try:
        with pytest.raises(LookupFailed, match=re.escape(reason)):
            await client.lookup(ADDRESS)
    finally:
        await client.close()
    assert other.seen == [] and not any(path.startswith("/b/") for path in registry.seen)


async def test_a_redirect_within_the_base_is_followed_and_a_loop_is_cut(serve: Callable[..., Any]):
    async def relative(_: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": "/a/ip/192.198.0.1/answer"})

    async def loop(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": str(request.url)})

    registry = await serve({"/a/ip/192.198.0.1/answer": answer, "/a/ip/192.198.0.1": relative})
    client = client_of(registry)
    try:
        assert (await client.lookup(ADDRESS)).record is not None
    finally:
        await client.close()
    looping = await serve({"/a/ip/": loop})
    client = client_of(looping, max_redirects=3)
    try:
        with pytest.raises(LookupFailed, match="more than 3 redirects"):
            await client.lookup(ADDRESS)
    finally:
        await client.close()
    assert len(looping.seen) == 4


SLOW_S = 0.6  # how long the tiny registry takes to answer a listing: past the lookups' bound below


async def slow_listing(_: web.Request) -> web.Response:
    await asyncio.sleep(SLOW_S)
    return web.json_response({"ipSearchResults": [NETWORK] * 3}, content_type="application/rdap+json")


async def test_a_listing_has_its_own_time_bound_apart_from_a_lookup_s(serve: Callable[..., Any]):
    # A relation search of 10,000 rows takes a registry far longer than a lookup: bound by a
    # lookup's seconds, it failed at every try and came back incomplete.
    registry = await serve({"/a/ips/rirSearch1/": slow_listing, "/a/ip/": answer})
    url = f"{registry.base}ips/rirSearch1/rdap-down/192.198.0.0%20-%20192.198.3.255"
    client = client_of(registry, timeout=SLOW_S / 3, listing_timeout=SLOW_S * 10)
    try:
        assert (await client.lookup(ADDRESS)).record is not None  # a quick answer within the lookup's
        listing = await client.children("arin", url)
    finally:
        await client.close()
    assert listing.complete and len(listing.children) == 3
    hurried = client_of(registry, timeout=SLOW_S / 3, listing_timeout=SLOW_S / 3)
    try:
        cut = await hurried.children("arin", url)
    finally:
        await hurried.close()
    assert not cut.complete and cut.unanswered  # the bound is the listing's own


async def test_a_whois_listing_has_the_listing_s_time_bound():
    rows = "% This is the RIPE Database query service.\n" + "".join(
        f"\n% Information related to '10.0.{i}.0 - 10.0.{i}.255'\n\ninetnum: 10.0.{i}.0 - 10.0.{i}.255\n"
        f"netname: NET-{i}\ncountry: NL\nsource: RIPE\n" for i in range(3))
    limiter = MemoryRateLimiter({"ripencc": Limit(1000.0)})
    bootstrap = Bootstrap.from_document({"services": []})
    patient = RegistryClient(bootstrap, limiter, timeout=SLOW_S / 3, listing_timeout=SLOW_S * 10)
    hurried = RegistryClient(bootstrap, limiter, timeout=SLOW_S / 3, listing_timeout=SLOW_S / 3)
    async with whois_server(rows, delay_s=SLOW_S) as server:
        answered = await patient._whois_listing("ripencc", server, "-r -m 10.0.0.0/16", None)
        cut = await hurried._whois_listing("ripencc", server, "-r -m 10.0.0.0/16", None)
    assert answered.kind is Kind.ANSWER and len(answered.value) == 3
    assert cut.kind is Kind.TRANSIENT and "TimeoutError" in cut.value
