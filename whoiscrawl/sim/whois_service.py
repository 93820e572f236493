"""The simulator's port-43 layer: each registry's WHOIS (an address, RIPE-style `-m`/`-M`/`-r`,
ARIN's `r >` and `r <`), answered as the owning registry behind the policy layer (`admission.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from whoiscrawl.sim import whoisq
from whoiscrawl.sim.admission import Refusal
from whoiscrawl.sim.data import Slash8
from whoiscrawl.sim.fault_answers import Served, whois_fault
from whoiscrawl.sim.requestlog import Asked


def refusal_text(registry: str, src: str, refusal: Refusal) -> str:
    """A refusal as the registry's port 43 says it (RIPE NCC's connection cap: `%ERROR:306`)."""
    if refusal.why == "fault":
        return f"%ERROR:201: access denied for {src}\n% Queries exceeded the limit.\n"
    if refusal.why == "limit":
        return (f"%ERROR:201: access denied for {src}\n"
                f"% Query limit exceeded; retry after {refusal.retry_after:.3f} s.\n")
    return ("%ERROR:306: too many simultaneous connections from your IP address\n"
            if registry == "ripencc" else f"%ERROR:201: access denied for {src}\n"
            "% Too many connections.\n")


class WhoisService:
    """The five registries' port 43 for one simulator."""

    def __init__(self, sim: Served, iana: tuple[Slash8, ...]) -> None:
        self.sim = sim
        self.iana = iana  # who holds each /8: the registry that answers for an address no object holds

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One port-43 connection: a query line in, the answer out, closed."""
        peer = writer.get_extra_info("peername")
        src = peer[0] if peer else "unknown"
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), 30)
            except (TimeoutError, ConnectionError):
                return
            arrived = self.sim.gate.arrived(peer)
            text = await self.whois(line.decode("latin-1", "replace"), src, writer, arrived)
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
        sim = self.sim
        query = whoisq.parse(line)
        if query is None:
            sim.log.write(now, src, None, line.strip()[:64], "whois", 400, None, "not_found")
            return "% ERROR:101: no entries found\n"
        obj = sim.world.holding(*query.span)
        if query.kind == "r<":  # up the hierarchy: answered by the registry of the outermost holder
            while obj >= 0 and sim.world.parent[obj] >= 0:
                obj = sim.world.parent[obj]
        registry = (sim.world.registry(obj) if obj >= 0
                    else self.iana[query.span[0] >> 24].registry or "arin")
        asked = Asked(registry, src, whoisq.first_address(query), query.protocol)
        fault = await sim.gate.fault(registry, src, now, "whois", query.span[0])
        refusal = sim.gate.refuse(registry, src, now, fault)
        if refusal is not None:
            sim.log.note(now, asked, 429, None, refusal.outcome)
            return refusal_text(registry, src, refusal)
        try:
            await sim.gate.service_time(registry)
            text = self._answer(asked, query, obj, fault.kind is None)
            if fault.kind is None or text.startswith("%ERROR"):
                return text
            return await whois_fault(sim, fault, asked, obj, text, writer)
        finally:
            sim.gate.release(registry, src)

    def _answer(self, asked: Asked, query: whoisq.Query, obj: int, log_ok: bool) -> str:
        """The text of an admitted query; contact objects it serves count against the registry's
        daily personal-data cap (a query that crosses it is refused, `%ERROR:201`). An ARIN listing
        cut at its cap (`arin_listing_limit`) is logged `limited`."""
        sim, t, registry, src = self.sim, time.time(), asked.registry, asked.source
        refusal = whoisq.refusal(query, registry)
        if refusal is not None:
            sim.log.note(t, asked, 400, None, "not_found")
            return refusal
        if obj < 0:
            sim.log.note(t, asked, 404, None, "not_found")
            return "% No entries found for the selected source(s).\n"
        text, personal, limited = whoisq.answer(sim.world, query, registry, obj, sim.arin_listing_limit)
        verdict = sim.gate.limiter.personal(registry, src, t, personal)
        if not verdict.allowed:
            sim.log.note(t, asked, 429, None, "blocked")
            return (f"%ERROR:201: access denied for {src}\n% You have exceeded the daily limit of "
                    "personal data sets; use -r to query without contact objects.\n")
        if log_ok:  # a fault logs the query itself
            sim.log.note(t, asked, 200, sim.world.handle(obj), "limited" if limited else "ok")
        return text
