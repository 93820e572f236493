"""The simulator's HTTP layer: each registry's RDAP service (lookups, `help`, RFC 9910 relation
search) and the files the registries publish, behind the policy layer (`admission.py`)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from whoiscrawl.ipv4 import ip_str
from whoiscrawl.rirs import REGISTRIES
from whoiscrawl.sim import entities, policy, published, relations, render
from whoiscrawl.sim.admission import Refusal
from whoiscrawl.sim.fault_answers import RDAP_JSON, Downloads, Served, rdap_fault
from whoiscrawl.sim.relations import parse_ipv4, parse_span
from whoiscrawl.sim.requestlog import Asked

_REFUSED = {"fault": "", "limit": "", "connections": "too many concurrent connections"}


def too_many(registry: str, retry: float, body: bytes) -> web.Response:
    """A 429 with a JSON error body; Retry-After (and the simulator's exact Retry-After-Ms)
    only where the registry sends it (RIPE NCC does not)."""
    headers = {"Retry-After": str(max(1, math.ceil(retry))),
               "Retry-After-Ms": str(max(1, math.ceil(retry * 1000)))}
    return web.Response(status=429, body=body, content_type=RDAP_JSON,
                        headers=headers if policy.POLICIES[registry].retry_after else {})


def _handler(serve: Callable[[web.Request, str], Awaitable[web.StreamResponse]], registry: str) -> Any:
    """An aiohttp handler serving one registry's requests with `serve`."""
    async def handler(request: web.Request) -> web.StreamResponse:
        return await serve(request, registry)
    return handler


class RdapService:
    """The five registries' RDAP over HTTP, and their published files, for one simulator."""

    def __init__(self, sim: Served) -> None:
        self.sim = sim
        self.downloads = Downloads()
        # Large relation searches render here, one at a time, off the loop (`relation`): in parallel
        # threads they shared the GIL and all finished late (four ARIN /11s at once: all at 44 s,
        # past a client's timeout, each asked again and rendered anew) where one after another the
        # first is answered in one render's time.
        self.searches = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relation-search")

    def routes(self, app: web.Application) -> None:
        for r in REGISTRIES:
            app.router.add_get(render.BASE_PATHS[r] + "ip/{addr}", _handler(self.rdap, r))
            app.router.add_get(render.BASE_PATHS[r] + "ip/{addr}/{plen}", _handler(self.rdap, r))
            app.router.add_get(render.BASE_PATHS[r] + "help", _handler(self.help, r))
            app.router.add_get(render.BASE_PATHS[r] + "entity/{handle}", _handler(self.entity, r))
            if r in self.sim.relation_registries:
                app.router.add_get(render.BASE_PATHS[r] + "ips/rirSearch1/{rel}/{arg:.+}",
                                   _handler(self.relation, r))
        app.router.add_get("/published/{path:.+}", self.published)

    async def published(self, request: web.Request) -> web.StreamResponse:
        """A file a registry publishes, at its real host and path (`published.catalogue`), sound
        or spoiled by the file faults configured; made on first request (then cached), streamed
        as the registries' download servers send it: bytes, no Content-Encoding. Outside the rate
        limits (download servers have none of the RDAP kind); logged with protocol `file`."""
        sim, src, path = self.sim, request.remote or "unknown", request.match_info["path"]
        item, file_faults = sim.files.items.get(path), sim.gate.faults.files
        if item is None:
            sim.log.write(time.time(), src, None, path[:200], "file", 404, None, "not_found")
            return web.Response(status=404, text=f"no such published file: {path}\n")
        kinds = file_faults.get(item.registry, frozenset())
        spoiled = any(published.spoils(item, k) for k in kinds)
        local = await asyncio.to_thread(sim.files.path, item, file_faults)
        size = local.stat().st_size
        kind = "application/gzip" if item.name.endswith(".gz") else "text/plain; charset=" + item.encoding
        sim.log.write(time.time(), src, item.registry, path, "file", 200, None, "fault" if spoiled else "ok")
        response = web.StreamResponse(headers={"Content-Type": kind, "Content-Length": str(size)})
        await response.prepare(request)
        cut_at = size // 2 if self.downloads.drops(item, src, kinds) else None
        with open(local, "rb") as fh:
            while chunk := await asyncio.to_thread(fh.read, 1 << 20 if cut_at is None else cut_at):
                await response.write(chunk)
                if cut_at is not None:  # the transfer dropped halfway: the client holds half a file
                    assert request.transport is not None
                    request.transport.close()
                    return response
        await response.write_eof()
        return response

    def _arrived(self, request: web.Request) -> float:
        transport = request.transport
        return self.sim.gate.arrived(transport.get_extra_info("peername") if transport else None)

    async def rdap(self, request: web.Request, registry: str) -> web.StreamResponse:
        sim, addr_s = self.sim, request.match_info["addr"]
        asked = Asked(registry, request.remote or "unknown", addr_s, "rdap")
        now = self._arrived(request)
        a = parse_ipv4(addr_s)
        if a is None:
            sim.log.note(now, asked, 400, None, "not_found")
            return web.Response(status=400, body=render.rdap_error(400, "Bad Request",
                                extra="not an IPv4 address"), content_type=RDAP_JSON)

        async def answer() -> web.Response:
            obj = sim.world.lookup(a)
            plen = request.match_info.get("plen")
            if plen is not None and obj >= 0:
                obj = self._covering(obj, a, plen)
            t = time.time()
            if obj < 0:
                sim.log.note(t, asked, 404, None, "not_found")
                return web.Response(status=404, body=render.rdap_error(404, "Not Found"),
                                    content_type=RDAP_JSON)
            owner = REGISTRIES[sim.world.reg[obj]]
            if owner != registry:
                sim.log.note(t, asked, 301, None, "redirect")
                return web.Response(status=301, headers={
                    "Location": f"{sim.base_url(owner)}ip/{addr_s}"})
            sim.log.note(t, asked, 200, sim.world.handle(obj), "ok")
            return web.Response(body=sim.render(obj), content_type=RDAP_JSON)

        return await self._serve(request, asked, now, a, answer)

    async def help(self, request: web.Request, registry: str) -> web.StreamResponse:
        """RDAP `help` (RFC 9082): the registry's notices, inside its limits like any query;
        faults for an address range spare it, a registry-wide fault or outage does not."""
        asked = Asked(registry, request.remote or "unknown", "", "help")

        async def answer() -> web.Response:
            self.sim.log.note(time.time(), asked, 200, None, "ok")
            return web.Response(body=render.rdap_help(registry), content_type=RDAP_JSON)

        return await self._serve(request, asked, self._arrived(request), None, answer)

    async def entity(self, request: web.Request, registry: str) -> web.StreamResponse:
        """RDAP entity lookup (RFC 9082 3.1.5): an organisation of the world by its handle (and a
        LACNIC contact, `entities.py`), 404 for any other; inside the registry's limits like any query."""
        handle = request.match_info["handle"]
        asked = Asked(registry, request.remote or "unknown", handle[:64], "entity")
        sim = self.sim

        async def answer() -> web.Response:
            body = entities.entity_bytes(sim.world, registry, handle, sim.base_url(registry))
            status = 404 if body is None else 200
            sim.log.note(time.time(), asked, status, None if body is None else handle,
                         "not_found" if body is None else "ok")
            return web.Response(status=status, body=body or render.rdap_error(404, "Not Found"),
                                content_type=RDAP_JSON)

        return await self._serve(request, asked, self._arrived(request), None, answer)

    async def relation(self, request: web.Request, registry: str) -> web.StreamResponse:
        """RFC 9910 relation search as RIPE NCC's server answers it: `rdap-up`/`rdap-top` one
        object, `rdap-down`/`rdap-bottom` ipSearchResults, whole; an empty answer 404, more rows
        than the limit 400 "Too Many Rows"; `?status=active` on down or bottom 501."""
        src, log = request.remote or "unknown", self.sim.log
        now = self._arrived(request)
        rel, span = request.match_info["rel"], parse_span(request.match_info["arg"])
        if rel not in relations.RELATIONS or span is None:
            log.write(now, src, registry, request.match_info["arg"][:64], "rdap-down", 400, None, "not_found")
            return web.Response(status=400, body=render.rdap_error(400, "Bad Request",
                                extra="not a relation and an IPv4 prefix or range"),
                                content_type=RDAP_JSON)
        asked = Asked(registry, src, ip_str(span[0]), rel)
        active = request.query.get("status") == "active"

        async def answer() -> web.Response:
            # A subtree's rows (tens of MB at a /11) are rendered off the loop (`searches`): a
            # registry serving one large search goes on reading everyone's requests (rendered on the
            # loop, one held the simulator for 2-8 s, and requests counted after it out of their
            # arrival order drew the demo's ARIN 429s).
            status, body, handle = await asyncio.get_running_loop().run_in_executor(
                self.searches, self._relate, registry, rel, span, active)
            outcome = {200: "ok", 400: "too_many_rows", 404: "not_found"}.get(status, "not_found")
            log.note(time.time(), asked, status, handle, outcome)
            return web.Response(status=status, body=body, content_type=RDAP_JSON)

        return await self._serve(request, asked, now, span[0], answer)

    def _relate(self, registry: str, rel: str, span: tuple[int, int],
                active: bool) -> tuple[int, bytes, str | None]:
        """(status, body, handle logged) of one relation search."""
        sim = self.sim
        w, base, row_limit = sim.world, sim.base_url(registry), sim.row_limit
        if rel in relations.SINGLE:
            obj = (relations.up if rel == "rdap-up" else relations.top)(w, registry, *span)
            if obj < 0:
                return 404, render.rdap_error(404, "Not Found"), None
            return 200, sim.render(obj), w.handle(obj)
        if active:
            return 501, render.rdap_error(501, "Not Implemented", extra="status on " + rel), None
        search = relations.down if rel == "rdap-down" else relations.bottom
        found = search(w, registry, *span, row_limit + 1)
        if not found:
            return 404, render.rdap_error(404, "Not Found"), None
        if len(found) > row_limit:
            return 400, relations.too_many_rows(), None
        exact = w.exact(*span)
        return 200, relations.results_bytes(w, found, base, registry), w.handle(exact) if exact >= 0 else None

    async def _serve(self, request: web.Request, asked: Asked, now: float, a: int | None,
                     answer: Callable[[], Awaitable[web.Response]]) -> web.StreamResponse:
        """Everything an RDAP request meets before its answer (`admission.py`: injected faults,
        the registry's limits and connection cap, service latency), then its answer or its fault.
        `a`: the address asked (None: a request for no address, as `help`)."""
        gate, registry = self.sim.gate, asked.registry
        fault = await gate.fault(registry, asked.source, now, "rdap", a)
        refusal = gate.refuse(registry, asked.source, now, fault)
        if refusal is not None:
            return self._refused(asked, now, refusal)
        try:
            await gate.service_time(registry)
            if fault.kind is not None:
                return await rdap_fault(self.sim, request, fault, asked, a)
            return await answer()
        finally:
            gate.release(registry, asked.source)

    def _refused(self, asked: Asked, now: float, refusal: Refusal) -> web.Response:
        """A refusal said as the registry's RDAP says it: a 429 and a JSON error."""
        self.sim.log.note(now, asked, 429, None, refusal.outcome)
        return too_many(asked.registry, refusal.retry_after, render.rdap_error(
            429, "Too Many Requests", notice=refusal.notice, extra=_REFUSED[refusal.why]))

    def _covering(self, obj: int, a: int, plen: str) -> int:
        """For ip/<prefix>/<len>: the most specific object holding the whole prefix."""
        if not plen.isdigit() or not 0 <= int(plen) <= 32:
            return -1
        size = 1 << (32 - int(plen))
        first = a & ~(size - 1) & 0xFFFFFFFF
        last = first + size - 1
        w = self.sim.world
        while obj >= 0 and (w.start[obj] > first or w.end[obj] < last):
            obj = w.parent[obj]
        return obj
