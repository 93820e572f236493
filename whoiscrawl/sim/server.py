"""The simulator's servers: one aiohttp RDAP service for all five RIRs and a port-43 WHOIS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from whoiscrawl.ipv4 import ip_str
from whoiscrawl.rirs import BY_ID, REGISTRIES
from whoiscrawl.sim import entities, policy, published, relations, render, whoisq
from whoiscrawl.sim.arrival import BACKLOG, Arrivals, InOrder
from whoiscrawl.sim.data import load_iana
from whoiscrawl.sim.faults import Decision, Faults
from whoiscrawl.sim.model import World
from whoiscrawl.sim.published import Item as FileItem
from whoiscrawl.sim.relations import parse_ipv4, parse_span
from whoiscrawl.sim.scenarios import Scenario

RDAP_JSON = "application/rdap+json"
_RENDER_CACHE_MAX = 60_000


class RequestLog:
    """Buffered JSONL log of every lookup; flushed every second and at stop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._buf: list[str] = []
        self.count = 0

    def write(self, t: float, source: str, registry: str | None, address: str, protocol: str,
              status: int, handle: str | None, outcome: str) -> None:
        reg = f'"{registry}"' if registry else "null"
        h = json.dumps(handle) if handle is not None else "null"
        self._buf.append(
            f'{{"t":{t:.6f},"source":"{source}","registry":{reg},"address":{json.dumps(address)},'
            f'"protocol":"{protocol}","status":{status},"handle":{h},"outcome":"{outcome}"}}\n')
        self.count += 1
        if len(self._buf) >= 5000:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._fh.write("".join(self._buf))
            self._buf.clear()
        self._fh.flush()

    def close(self) -> None:
        self.flush()
        self._fh.close()


class Simulator:
    """RDAP + WHOIS for one scenario on 127.0.0.1, with limits, faults and a request log."""

    def __init__(self, scenario: Scenario, host: str = "127.0.0.1", port: int = 0,
                 whois_port: int = 0, time_scale: float = 1.0, faults: Faults | None = None,
                 log_path: str | Path | None = None, limits_enabled: bool = True,
                 latency: bool = True, row_limit: int = relations.ROW_LIMIT,
                 arin_relation_search: bool = True) -> None:
        self.scenario = scenario
        self.world: World = scenario.world()
        self.host = host
        self.port = port
        self.whois_port = whois_port
        self.time_scale = float(time_scale)
        self.t0 = time.time()
        self.faults = faults or Faults(time_scale=self.time_scale, t0=self.t0)
        self.faults.t0 = self.t0
        self.limiter = policy.Limiter(self.time_scale, enabled=limits_enabled)
        self.latency = latency
        self.row_limit = row_limit
        self.relation_registries = relations.registries(arin_relation_search)
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"whoiscrawl-sim-{scenario.name}-",
                                        suffix=".jsonl")
            os.close(fd)
            log_path = name
        self.log = RequestLog(Path(log_path))
        self._cache: dict[int, bytes] = {}
        self._runner: web.AppRunner | None = None
        self._whois: asyncio.Server | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._bootstrap = b""
        self._iana = load_iana()
        self.files = published.Files(scenario, self.world)
        self._downloads: dict[tuple[str, str], int] = {}  # attempts per (address, file): dropped_download
        self.arrivals = Arrivals()  # when each request's bytes came: what the limits count
        self.in_order = InOrder()  # ... and in that order, however the loop read them

    @property
    def day(self) -> int:
        return self.scenario.day

    def advance(self, days: int = 1) -> list[dict[str, Any]]:
        """Move the registries `days` days on (`churn.py`): every later answer and published file is
        of the new day's world; returns the changes made, a dict each."""
        if days < 0:
            raise ValueError(f"advance by {days} days: the simulated world only moves forward")
        made: list[dict[str, Any]] = []
        for _ in range(days):
            self.scenario = self.scenario.on_day(self.scenario.day + 1)
            made += [c.to_dict() for c in self.scenario.changes()]
        self.world = self.scenario.world()
        self.files = published.Files(self.scenario, self.world)
        self._cache.clear()
        return made

    # addresses --------------------------------------------------------------------------
    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, registry: str) -> str:
        return f"{self.root}{render.BASE_PATHS[registry]}"

    @property
    def files_base(self) -> str:
        """Where the registries' published files are: `rirs.published_at(url, files_base)`."""
        return f"{self.root}/published"

    @property
    def bootstrap_url(self) -> str:
        return f"{self.root}/bootstrap/ipv4.json"

    def info(self) -> dict[str, Any]:
        return {
            "bootstrap_url": self.bootstrap_url,
            "whois": f"{self.host}:{self.whois_port}",
            "scenario": self.scenario.name,
            "seed": self.scenario.seed,
            "day": self.scenario.day,
            "ranges": list(self.scenario.ranges),
            "limits": policy.limits(self.time_scale),
            "log": str(self.log.path),
            "time_scale": self.time_scale,
            "relation_search": {"registries": sorted(self.relation_registries),
                                "row_limit": self.row_limit},
            "rdap": {r: self.base_url(r) for r in REGISTRIES},
            "published": self.files_base,
            "file_faults": {r: sorted(k) for r, k in self.faults.files.items()},
        }

    def bootstrap_doc(self) -> dict[str, Any]:
        services = []
        for r in REGISTRIES:
            prefixes = [f"{row.octet}.0.0.0/8" for row in self._iana if row.registry == r]
            services.append([prefixes, [self.base_url(r)]])
        return {"version": "1.0", "publication": "2018-10-13T00:00:00Z",
                "description": f"whoiscrawl simulator ({self.scenario.name}): RDAP bootstrap "
                               "file for IPv4 address allocations",
                "services": services}

    # lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        for r in REGISTRIES:
            app.router.add_get(render.BASE_PATHS[r] + "ip/{addr}", self._handler(self.rdap, r))
            app.router.add_get(render.BASE_PATHS[r] + "ip/{addr}/{plen}", self._handler(self.rdap, r))
            app.router.add_get(render.BASE_PATHS[r] + "help", self._handler(self.help, r))
            app.router.add_get(render.BASE_PATHS[r] + "entity/{handle}", self._handler(self.entity, r))
            if r in self.relation_registries:
                app.router.add_get(render.BASE_PATHS[r] + "ips/rirSearch1/{rel}/{arg:.+}",
                                   self._handler(self.relation, r))
        app.router.add_get("/published/{path:.+}", self.published)
        app.router.add_get("/bootstrap/ipv4.json", self._bootstrap_handler)
        app.router.add_get("/sim/info", self._info_handler)
        app.router.add_post("/sim/advance", self._advance_handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        rdap_sock = self.arrivals.listen(self.host, self.port)
        await web.SockSite(self._runner, rdap_sock, backlog=BACKLOG).start()
        self.port = rdap_sock.getsockname()[1]
        self._bootstrap = json.dumps(self.bootstrap_doc(), indent=1).encode()
        self._whois = await asyncio.start_server(self._whois_conn, sock=self.arrivals.listen(
            self.host, self.whois_port), backlog=BACKLOG)
        self.whois_port = self._whois.sockets[0].getsockname()[1]
        self._flusher = asyncio.create_task(self._flush_loop())
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._whois is not None:
            self._whois.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._whois.wait_closed(), 2)
        if self._runner is not None:
            await self._runner.cleanup()
        self.log.close()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.log.flush()

    # rdap ----------------------------------------------------------------------------------
    async def _bootstrap_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self._bootstrap, content_type="application/json")

    async def _info_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.info())

    async def _advance_handler(self, request: web.Request) -> web.Response:
        """`POST /sim/advance?days=N` (default 1): the world N days on; the day and its changes."""
        days = request.query.get("days", "1")
        if not days.isdigit():
            return web.json_response({"error": f"days={days!r}: give a whole number of days"}, status=400)
        made = await asyncio.to_thread(self.advance, int(days))
        return web.json_response({"day": self.scenario.day, "changes": made})

    @staticmethod
    def _handler(serve: Callable[[web.Request, str], Awaitable[web.StreamResponse]], registry: str) -> Any:
        """An aiohttp handler serving one registry's requests with `serve`."""
        async def handler(request: web.Request) -> web.StreamResponse:
            return await serve(request, registry)
        return handler

    async def published(self, request: web.Request) -> web.StreamResponse:
        """A file a registry publishes, at its real host and path (`published.catalogue`), sound
        or spoiled by the file faults configured; made on first request (then cached), streamed
        as the registries' download servers send it: bytes, no Content-Encoding. Outside the rate
        limits (download servers have none of the RDAP kind); logged with protocol `file`."""
        src, path = request.remote or "unknown", request.match_info["path"]
        item = self.files.items.get(path)
        if item is None:
            self.log.write(time.time(), src, None, path[:200], "file", 404, None, "not_found")
            return web.Response(status=404, text=f"no such published file: {path}\n")
        spoiled = any(published.spoils(item, k) for k in self.faults.files.get(item.registry, ()))
        local = await asyncio.to_thread(self.files.path, item, self.faults.files)
        size = local.stat().st_size
        kind = "application/gzip" if item.name.endswith(".gz") else "text/plain; charset=" + item.encoding
        self.log.write(time.time(), src, item.registry, path, "file", 200, None, "fault" if spoiled else "ok")
        response = web.StreamResponse(headers={"Content-Type": kind, "Content-Length": str(size)})
        await response.prepare(request)
        cut_at = size // 2 if self._drops(item, src) else None
        with open(local, "rb") as fh:
            while chunk := await asyncio.to_thread(fh.read, 1 << 20 if cut_at is None else cut_at):
                await response.write(chunk)
                if cut_at is not None:  # the transfer dropped halfway: the client holds half a file
                    assert request.transport is not None
                    request.transport.close()
                    return response
        await response.write_eof()
        return response

    def _drops(self, item: FileItem, src: str) -> bool:
        """Is this download of `item` from `src` cut (`dropped_download`: every other attempt)?"""
        if "dropped_download" not in self.faults.files.get(item.registry, ()) or \
                item.url != BY_ID[item.registry].dump_urls[0]:
            return False
        key = (src, item.path)
        self._downloads[key] = self._downloads.get(key, 0) + 1
        return self._downloads[key] % 2 == 1

    def _arrived(self, request: web.Request) -> float:
        """When the request came (`arrival`): a registry counts it then, not when it gets to it."""
        transport = request.transport
        return self.arrivals.of(transport.get_extra_info("peername") if transport else None)

    def render(self, obj: int) -> bytes:
        body = self._cache.get(obj)
        if body is None:
            if len(self._cache) >= _RENDER_CACHE_MAX:
                self._cache.clear()
            reg, base = self.world.registry(obj), self.base_url(self.world.registry(obj))
            links = relations.links(self.world, obj, base) if reg in self.relation_registries else None
            body = render.rdap_bytes(self.world, obj, base, links)
            self._cache[obj] = body
        return body

    def _latency(self, registry: str) -> float:
        if not self.latency:
            return 0.0
        return self.faults.latency_s(registry, policy.POLICIES[registry].latency_ms)

    @staticmethod
    def _too_many(registry: str, retry: float, body: bytes) -> web.Response:
        """A 429 with a JSON error body; Retry-After (and the simulator's exact Retry-After-Ms)
        only where the registry sends it (RIPE NCC does not)."""
        headers = {"Retry-After": str(max(1, math.ceil(retry))),
                   "Retry-After-Ms": str(max(1, math.ceil(retry * 1000)))}
        return web.Response(status=429, body=body, content_type=RDAP_JSON,
                            headers=headers if policy.POLICIES[registry].retry_after else {})

    async def rdap(self, request: web.Request, registry: str) -> web.StreamResponse:
        addr_s = request.match_info["addr"]
        src = request.remote or "unknown"
        now = self._arrived(request)
        a = parse_ipv4(addr_s)
        if a is None:
            self.log.write(now, src, registry, addr_s, "rdap", 400, None, "not_found")
            return web.Response(status=400, body=render.rdap_error(400, "Bad Request",
                                extra="not an IPv4 address"), content_type=RDAP_JSON)

        def answer() -> web.Response:
            obj = self.world.lookup(a)
            plen = request.match_info.get("plen")
            if plen is not None and obj >= 0:
                obj = self._covering(obj, a, plen)
            t = time.time()
            if obj < 0:
                self.log.write(t, src, registry, addr_s, "rdap", 404, None, "not_found")
                return web.Response(status=404, body=render.rdap_error(404, "Not Found"),
                                    content_type=RDAP_JSON)
            owner = REGISTRIES[self.world.reg[obj]]
            if owner != registry:
                self.log.write(t, src, registry, addr_s, "rdap", 301, None, "redirect")
                return web.Response(status=301, headers={
                    "Location": f"{self.base_url(owner)}ip/{addr_s}"})
            self.log.write(t, src, registry, addr_s, "rdap", 200, self.world.handle(obj), "ok")
            return web.Response(body=self.render(obj), content_type=RDAP_JSON)

        return await self._serve(request, registry, src, now, addr_s, a, "rdap", answer)

    async def help(self, request: web.Request, registry: str) -> web.StreamResponse:
        """RDAP `help` (RFC 9082): the registry's notices, inside its limits like any query;
        faults for an address range spare it, a registry-wide fault or outage does not."""
        src = request.remote or "unknown"

        def answer() -> web.Response:
            self.log.write(time.time(), src, registry, "", "help", 200, None, "ok")
            return web.Response(body=render.rdap_help(registry), content_type=RDAP_JSON)

        return await self._serve(request, registry, src, self._arrived(request), "", None, "help", answer)

    async def entity(self, request: web.Request, registry: str) -> web.StreamResponse:
        """RDAP entity lookup (RFC 9082 3.1.5): an organisation of the world by its handle
        (`entities.py`), 404 for any other; inside the registry's limits like any query."""
        src, handle = request.remote or "unknown", request.match_info["handle"]

        def answer() -> web.Response:
            body = entities.entity_bytes(self.world, registry, handle, self.base_url(registry))
            status = 404 if body is None else 200
            self.log.write(time.time(), src, registry, handle[:64], "entity", status,
                           None if body is None else handle, "not_found" if body is None else "ok")
            return web.Response(status=status, body=body or render.rdap_error(404, "Not Found"),
                                content_type=RDAP_JSON)

        return await self._serve(request, registry, src, self._arrived(request), handle[:64], None,
                                 "entity", answer)

    async def relation(self, request: web.Request, registry: str) -> web.StreamResponse:
        """RFC 9910 relation search as RIPE NCC's server answers it: `rdap-up`/`rdap-top` one
        object, `rdap-down`/`rdap-bottom` ipSearchResults, whole; an empty answer 404, more rows
        than the limit 400 "Too Many Rows"; `?status=active` on down or bottom 501."""
        src = request.remote or "unknown"
        now = self._arrived(request)
        rel, span = request.match_info["rel"], parse_span(request.match_info["arg"])
        if rel not in relations.RELATIONS or span is None:
            self.log.write(now, src, registry, request.match_info["arg"][:64], "rdap-down", 400, None,
                           "not_found")
            return web.Response(status=400, body=render.rdap_error(400, "Bad Request",
                                extra="not a relation and an IPv4 prefix or range"),
                                content_type=RDAP_JSON)
        first_s = ip_str(span[0])
        active = request.query.get("status") == "active"

        def answer() -> web.Response:
            status, body, handle = self._relate(registry, rel, span, active)
            outcome = {200: "ok", 400: "too_many_rows", 404: "not_found"}.get(status, "not_found")
            self.log.write(time.time(), src, registry, first_s, rel, status, handle, outcome)
            return web.Response(status=status, body=body, content_type=RDAP_JSON)

        return await self._serve(request, registry, src, now, first_s, span[0], rel, answer)

    def _relate(self, registry: str, rel: str, span: tuple[int, int],
                active: bool) -> tuple[int, bytes, str | None]:
        """(status, body, handle logged) of one relation search."""
        w, base = self.world, self.base_url(registry)
        if rel in relations.SINGLE:
            obj = (relations.up if rel == "rdap-up" else relations.top)(w, registry, *span)
            if obj < 0:
                return 404, render.rdap_error(404, "Not Found"), None
            return 200, self.render(obj), w.handle(obj)
        if active:
            return 501, render.rdap_error(501, "Not Implemented", extra="status on " + rel), None
        search = relations.down if rel == "rdap-down" else relations.bottom
        found = search(w, registry, *span, self.row_limit + 1)
        if not found:
            return 404, render.rdap_error(404, "Not Found"), None
        if len(found) > self.row_limit:
            return 400, relations.too_many_rows(), None
        exact = w.exact(*span)
        return 200, relations.results_bytes(w, found, base, registry), w.handle(exact) if exact >= 0 else None

    async def _service_time(self, registry: str) -> None:
        """The registry's latency for one answer (none to speak of: no sleep at all)."""
        delay = self._latency(registry)
        if delay > 0.0005:
            await asyncio.sleep(delay)

    async def _serve(self, request: web.Request, registry: str, src: str, now: float, addr_s: str,
                     a: int | None, protocol: str, answer: Callable[[], web.Response]) -> web.StreamResponse:
        """Everything an RDAP request meets before its answer: injected faults, the registry's
        limits and connection cap (429s), and service latency. `a`: the address asked (None: a
        request for no address, as `help`)."""
        await self.in_order.turn(now)
        fault = self.faults.decide(registry, src, now, address=a)
        refused = self._refuse(registry, src, now, addr_s, protocol, fault)
        if refused is not None:
            return refused
        try:
            await self._service_time(registry)
            if fault.kind is not None:
                return await self._rdap_fault(request, fault, registry, src, addr_s, a, protocol)
            return answer()
        finally:
            self.limiter.release(registry, src)

    def _refuse(self, registry: str, src: str, now: float, addr_s: str, protocol: str,
                fault: Decision) -> web.Response | None:
        """A 429 for a fault storm or ban, the registry's limits or its connection cap; None admits
        the request, which then holds a connection slot until `limiter.release`."""
        log = self.log.write
        if fault.kind in ("storm", "ban"):
            log(now, src, registry, addr_s, protocol, 429, None, "fault")
            return self._too_many(registry, fault.retry_after, render.rdap_error(429, "Too Many Requests"))
        verdict = self.limiter.check(registry, src, now)
        if not verdict.allowed:
            log(now, src, registry, addr_s, protocol, 429, None, verdict.outcome)
            return self._too_many(registry, verdict.retry_after, render.rdap_error(
                429, "Too Many Requests", notice=verdict.notice))
        if not self.limiter.acquire(registry, src, now):
            log(now, src, registry, addr_s, protocol, 429, None, "rate_limited")
            return self._too_many(registry, 1.0 / self.time_scale, render.rdap_error(
                429, "Too Many Requests", extra="too many concurrent connections"))
        return None

    def _covering(self, obj: int, a: int, plen: str) -> int:
        """For ip/<prefix>/<len>: the most specific object holding the whole prefix."""
        if not plen.isdigit() or not 0 <= int(plen) <= 32:
            return -1
        size = 1 << (32 - int(plen))
        first = a & ~(size - 1) & 0xFFFFFFFF
        last = first + size - 1
        w = self.world
        while obj >= 0 and (w.start[obj] > first or w.end[obj] < last):
            obj = w.parent[obj]
        return obj

    async def _rdap_fault(self, request: web.Request, fault: Decision, registry: str, src: str,
                          addr_s: str, a: int | None, protocol: str) -> web.StreamResponse:
        kind = fault.kind
        t = time.time()
        obj = self.world.lookup(a) if a is not None else -1
        handle = self.world.handle(obj) if obj >= 0 else None
        if kind == "http_5xx":
            self.log.write(t, src, registry, addr_s, protocol, 503, None, "fault")
            return web.Response(status=503, text="<html><body>503 Service Unavailable</body>"
                                "</html>", content_type="text/html")
        if kind in ("reset", "timeout"):
            status = 0 if kind == "reset" else 504
            self.log.write(t, src, registry, addr_s, protocol, status, None, "fault")
            if kind == "timeout":
                await asyncio.sleep(self.faults.timeout_s(registry))
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise ConnectionResetError("simulated connection reset")
        body = (render.rdap_help(registry) if a is None else self.render(obj) if obj >= 0
                else render.rdap_error(404, "Not Found"))
        if kind == "truncated":
            body = body[: max(1, len(body) // 2)]
        else:  # malformed
            body = body.replace(b'"', b"'", 7)[:-1] + b",}"
        self.log.write(t, src, registry, addr_s, protocol, 200, handle, "fault")
        return web.Response(body=body, content_type=RDAP_JSON)

    # whois ---------------------------------------------------------------------------------
    async def _whois_conn(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        src = peer[0] if peer else "unknown"
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), 30)
            except (TimeoutError, ConnectionError):
                return
            text = await self.whois(line.decode("latin-1", "replace"), src, writer, self.arrivals.of(peer))
            if text is not None:
                writer.write(text.encode())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def whois(self, line: str, src: str, writer: asyncio.StreamWriter, now: float) -> str | None:
        """Answer one port-43 query that arrived at `now` as the owning registry (`whoisq`: an address,
        RIPE-style `-m`/`-M`/`-r`, ARIN's `r >`), inside its limits; None when a fault dropped the line."""
        query = whoisq.parse(line)
        if query is None:
            self.log.write(now, src, None, line.strip()[:64], "whois", 400, None, "not_found")
            return "% ERROR:101: no entries found\n"
        obj = self.world.holding(*query.span)
        registry = self.world.registry(obj) if obj >= 0 else (self._iana[query.span[0] >> 24].registry
                                                             or "arin")
        await self.in_order.turn(now)
        fault = self.faults.decide(registry, src, now, "whois", query.span[0])
        refused = self._whois_refuse(registry, src, now, query, fault)
        if refused is not None:
            return refused
        try:
            await self._service_time(registry)
            text = self._whois_answer(registry, src, query, obj, fault.kind is None)
            if fault.kind is None or text.startswith("%ERROR"):
                return text
            return await self._whois_fault(fault, registry, src, query, obj, text, writer)
        finally:
            self.limiter.release(registry, src)

    def _whois_refuse(self, registry: str, src: str, now: float, query: whoisq.Query,
                      fault: Decision) -> str | None:
        """A refusal for a fault storm or ban, the registry's limits or its connection cap (RIPE
        NCC: `%ERROR:306`); None admits the query, which then holds a connection slot."""
        log, addr_s, protocol = self.log.write, whoisq.first_address(query), query.protocol
        if fault.kind in ("storm", "ban"):
            log(now, src, registry, addr_s, protocol, 429, None, "fault")
            return f"%ERROR:201: access denied for {src}\n% Queries exceeded the limit.\n"
        verdict = self.limiter.check(registry, src, now)
        if not verdict.allowed:
            log(now, src, registry, addr_s, protocol, 429, None, verdict.outcome)
            return (f"%ERROR:201: access denied for {src}\n"
                    f"% Query limit exceeded; retry after {verdict.retry_after:.3f} s.\n")
        if not self.limiter.acquire(registry, src, now):
            log(now, src, registry, addr_s, protocol, 429, None, "rate_limited")
            return ("%ERROR:306: too many simultaneous connections from your IP address\n"
                    if registry == "ripencc" else f"%ERROR:201: access denied for {src}\n"
                    "% Too many connections.\n")
        return None

    def _whois_answer(self, registry: str, src: str, query: whoisq.Query, obj: int,
                      log_ok: bool) -> str:
        """The text of an admitted query; contact objects it serves count against the registry's
        daily personal-data cap (a query that crosses it is refused, `%ERROR:201`)."""
        t, log, addr_s, protocol = time.time(), self.log.write, whoisq.first_address(query), query.protocol
        refusal = whoisq.refusal(query, registry)
        if refusal is not None:
            log(t, src, registry, addr_s, protocol, 400, None, "not_found")
            return refusal
        if obj < 0:
            log(t, src, registry, addr_s, protocol, 404, None, "not_found")
            return "% No entries found for the selected source(s).\n"
        text, personal = whoisq.answer(self.world, query, registry, obj)
        verdict = self.limiter.personal(registry, src, t, personal)
        if not verdict.allowed:
            log(t, src, registry, addr_s, protocol, 429, None, "blocked")
            return (f"%ERROR:201: access denied for {src}\n% You have exceeded the daily limit of "
                    "personal data sets; use -r to query without contact objects.\n")
        if log_ok:  # a fault logs the query itself
            log(t, src, registry, addr_s, protocol, 200, self.world.handle(obj), "ok")
        return text

    async def _whois_fault(self, fault: Decision, registry: str, src: str, query: whoisq.Query,
                           obj: int, text: str, writer: asyncio.StreamWriter) -> str | None:
        kind, t, log = fault.kind, time.time(), self.log.write
        addr_s, protocol, handle = whoisq.first_address(query), query.protocol, self.world.handle(obj)
        if kind in ("reset", "timeout"):
            log(t, src, registry, addr_s, protocol, 0 if kind == "reset" else 504, None, "fault")
            if kind == "timeout":
                await asyncio.sleep(self.faults.timeout_s(registry))
            writer.transport.abort()
            return None
        if kind == "http_5xx":
            log(t, src, registry, addr_s, protocol, 503, None, "fault")
            return "% Internal server error, please try again later.\n"
        log(t, src, registry, addr_s, protocol, 200, handle, "fault")
        if kind == "truncated":
            return text[: len(text) // 3]
        return "\x00\x1b[garbled" + text[::-1][:200]


def describe(sim: Simulator) -> str:
    """The first stdout line of `sim serve`."""
    return json.dumps(sim.info(), separators=(",", ":"))


__all__ = ["RequestLog", "Simulator", "describe", "parse_ipv4"]
