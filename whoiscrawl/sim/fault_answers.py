"""The simulator's fault layer: the answers a misbehaving registry gives (`faults.py` decides which).

A 5xx, a reset, a timeout, a truncated or malformed answer, over RDAP and over port 43, each logged
as a `fault`; and a published file's download cut halfway (`dropped_download`). `Served` is what
the protocol layers and this one read of the simulator (`server.Simulator`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from aiohttp import web

from whoiscrawl.rirs import BY_ID
from whoiscrawl.sim import published, render
from whoiscrawl.sim.admission import Admission
from whoiscrawl.sim.faults import Decision
from whoiscrawl.sim.model import World
from whoiscrawl.sim.requestlog import Asked, RequestLog

RDAP_JSON = "application/rdap+json"


class Served(Protocol):
    """What a protocol layer reads of the running simulator (the world changes when it advances)."""

    world: World
    files: published.Files
    log: RequestLog
    gate: Admission
    row_limit: int
    relation_registries: frozenset[str]
    arin_listing_limit: int  # most networks an ARIN `r >` answers (0: no cap)

    def base_url(self, registry: str) -> str: ...

    def render(self, obj: int) -> bytes: ...


async def rdap_fault(sim: Served, request: web.Request, fault: Decision, asked: Asked,
                     a: int | None) -> web.StreamResponse:
    """An RDAP request answered by the fault decided for it (`a`: the address asked, None: none)."""
    kind, t = fault.kind, time.time()
    obj = sim.world.lookup(a) if a is not None else -1
    handle = sim.world.handle(obj) if obj >= 0 else None
    if kind == "http_5xx":
        sim.log.note(t, asked, 503, None, "fault")
        return web.Response(status=503, text="<html><body>503 Service Unavailable</body>"
                            "</html>", content_type="text/html")
    if kind in ("reset", "timeout"):
        sim.log.note(t, asked, 0 if kind == "reset" else 504, None, "fault")
        if kind == "timeout":
            await asyncio.sleep(sim.gate.faults.timeout_s(asked.registry))
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise ConnectionResetError("simulated connection reset")
    body = (render.rdap_help(asked.registry) if a is None else sim.render(obj) if obj >= 0
            else render.rdap_error(404, "Not Found"))
    # truncated: half the answer; malformed: quotes swapped and a dangling comma
    body = body[: max(1, len(body) // 2)] if kind == "truncated" else body.replace(b'"', b"'", 7)[:-1] + b",}"
    sim.log.note(t, asked, 200, handle, "fault")
    return web.Response(body=body, content_type=RDAP_JSON)


async def whois_fault(sim: Served, fault: Decision, asked: Asked, obj: int, text: str,
                      writer: asyncio.StreamWriter) -> str | None:
    """A port-43 query answered by the fault decided for it (`text`: its sound answer); None: the
    connection was dropped."""
    kind, t, handle = fault.kind, time.time(), sim.world.handle(obj)
    if kind in ("reset", "timeout"):
        sim.log.note(t, asked, 0 if kind == "reset" else 504, None, "fault")
        if kind == "timeout":
            await asyncio.sleep(sim.gate.faults.timeout_s(asked.registry))
        writer.transport.abort()
        return None
    if kind == "http_5xx":
        sim.log.note(t, asked, 503, None, "fault")
        return "% Internal server error, please try again later.\n"
    sim.log.note(t, asked, 200, handle, "fault")
    if kind == "truncated":
        return text[: len(text) // 3]
    return "\x00\x1b[garbled" + text[::-1][:200]


class Downloads:
    """Download attempts per (address, file), for `dropped_download`: every other one is cut."""

    def __init__(self) -> None:
        self.attempts: dict[tuple[str, str], int] = {}

    def drops(self, item: published.Item, src: str, kinds: frozenset[str]) -> bool:
        """Is this download of `item` from `src` cut (`kinds`: its registry's file faults)?"""
        if "dropped_download" not in kinds or item.url != BY_ID[item.registry].dump_urls[0]:
            return False
        key = (src, item.path)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        return self.attempts[key] % 2 == 1
