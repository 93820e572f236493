"""The registry client: route by bootstrap, and one attempt loop for lookups, listings and WHOIS."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from netaddr import IPAddress

from whoiscrawl import metrics
from whoiscrawl.ratelimit import RateLimiter
from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import rdap, whois
from whoiscrawl.registry.breaker import CircuitBreaker
from whoiscrawl.registry.outcome import Kind, LookupFailed, MalformedAnswer, Outcome
from whoiscrawl.space import WHOIS_MORE_SPECIFIC, Bootstrap, registry_for

log = logging.getLogger(__name__)

Child = tuple[NetworkRecord, str | None]  # a listed network with its own listing URL, if any
Breaking = Literal["keep", "wait", "ignore"]  # what an attempt does with the registry's circuit breaker


@dataclass(frozen=True)
class Egress:
    """A source address the crawler sends from: `key` names its budget, `bind` is the local address
    to bind (None: whatever the host routes through)."""

    key: str
    bind: str | None = None


@dataclass
class LookupResult:
    record: NetworkRecord | None  # None: the registry holds nothing for the address (404)
    registry: str
    lookups: int = 1
    rate_limited: int = 0
    down_url: str | None = None  # where the registry lists the network's children (RFC 9910), if it does


@dataclass
class Listing:
    """A network's children as its registry listed them (RFC 9910 rdap-down), in address order."""

    children: list[Child]
    complete: bool  # False: all or part of it could not be had (a cut list with no way to the rest)
    lookups: int = 0
    rate_limited: int = 0


@dataclass
class Tally:
    """What the attempts of one request cost: requests sent, 429s sat out, why attempts failed."""

    lookups: int = 0
    rate_limited: int = 0
    errors: list[str] = field(default_factory=list)


def _retry_after(resp: aiohttp.ClientResponse, default: float) -> float:
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


@dataclass
class RegistryClient:
    """Looks addresses up at the registry that holds them, politely, and returns parsed records."""

    bootstrap: Bootstrap
    limiter: RateLimiter
    egresses: Sequence[Egress] = (Egress("default"),)
    whois_servers: dict[str, str] = field(default_factory=dict)  # registry -> host:port; {} = none
    timeout: float = 10.0
    attempts: int = 4  # tries for errors (5xx, resets, timeouts, malformed answers)
    max_pauses: int = 50  # 429s / rate-limit notices to sit out before giving up on a request
    default_pause: float = 5.0  # seconds to pause after a 429 without Retry-After
    backoff: float = 0.2  # first retry delay; doubles, with full jitter
    include_raw: bool = False
    _sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    _parser: rdap.RdapParser = field(default_factory=rdap.RdapParser)

    def __post_init__(self) -> None:
        self._egress_keys = [e.key for e in self.egresses]
        self._bind = {e.key: e.bind for e in self.egresses}

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    def _session(self, egress: str) -> aiohttp.ClientSession:
        session = self._sessions.get(egress)
        if session is None:
            bind = self._bind.get(egress)
            connector = aiohttp.TCPConnector(
                limit=64,
                keepalive_timeout=30,
                enable_cleanup_closed=True,
                local_addr=(bind, 0) if bind else None,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Accept": "application/rdap+json", "User-Agent": "whoiscrawl/0.1"},
            )
            self._sessions[egress] = session
        return session

    def breaker(self, registry: str) -> CircuitBreaker:
        return self._breakers.setdefault(registry, CircuitBreaker())

    def route(self, address: int) -> tuple[str, str]:
        base = self.bootstrap.base_url(address)
        registry = (self.bootstrap.registry_of_url(base) if base else None) or registry_for(address)
        if base is None or registry is None:
            raise LookupFailed(f"no RDAP service in the bootstrap for {IPAddress(address)}")
        return registry, f"{base}ip/{IPAddress(address)}"

    # --- the one attempt loop ------------------------------------------------------------------

    async def _attempt(
        self, registry: str, send: Callable[[], Awaitable[Outcome]], tally: Tally, ok: str, breaker: Breaking
    ) -> Outcome:
        """Send until the outcome settles (answer, not found, redirect: returned as they are). A 429
        pauses everyone behind the egress and tries again, up to `max_pauses`; an error or a
        malformed answer backs off and tries again, up to `attempts`. Returns the last failure when
        they run out. `breaker`: an RDAP lookup keeps the registry's circuit breaker, and skips to
        WHOIS (a failure returned at once) while it is open and WHOIS is configured; a listing waits
        while it is open; the WHOIS fallback, which a tripped breaker sends here, ignores it."""
        circuit = self.breaker(registry)
        while True:
            if breaker == "keep" and circuit.is_open and registry in self.whois_servers:
                tally.errors.append(f"{registry} RDAP circuit open")
                return Outcome(Kind.TRANSIENT, tally.errors[-1])
            if breaker != "ignore":
                await circuit.wait()
            tally.lookups += 1
            started = time.monotonic()
            outcome = await send()
            metrics.LOOKUP_SECONDS.labels(registry).observe(time.monotonic() - started)
            metrics.LOOKUPS.labels(registry, ok if outcome.kind is Kind.ANSWER else outcome.kind.value).inc()
            if breaker == "keep" and outcome.kind is Kind.TRANSIENT:
                circuit.failure()
            elif breaker == "keep" and outcome.kind is not Kind.RATE_LIMITED:
                circuit.success()  # an answer, even a malformed one: the registry is answering
            if outcome.settled:
                return outcome
            if outcome.kind is Kind.RATE_LIMITED:
                tally.rate_limited += 1
                metrics.RATE_LIMITED.labels(registry).inc()
                await self.limiter.pause(registry, outcome.egress, outcome.retry_after or self.default_pause)
                if tally.rate_limited > self.max_pauses:
                    tally.errors.append(f"{registry} kept answering 429 ({tally.rate_limited} times)")
                    return outcome
                continue
            tally.errors.append(str(outcome.value))
            log.info("%s at %s: %s", ok, registry, outcome.value)
            await asyncio.sleep(random.uniform(0, self.backoff * 2 ** (len(tally.errors) - 1)))
            if len(tally.errors) >= self.attempts:
                return outcome

    # --- lookups -------------------------------------------------------------------------------

    async def lookup(self, address: int) -> LookupResult:
        registry, url = self.route(address)
        tally = Tally()
        while True:
            send = functools.partial(self._rdap_lookup, registry, url, address)
            outcome = await self._attempt(registry, send, tally, "ok", "keep")
            if outcome.kind is not Kind.REDIRECT:
                break
            target = self.bootstrap.registry_of_url(outcome.value)
            if target is None:
                raise LookupFailed(
                    f"{registry} redirected {IPAddress(address)} to {outcome.value}, "
                    "which is no RDAP service of the bootstrap"
                )
            registry, url = target, outcome.value  # the answering registry's budget pays from here
        result = LookupResult(None, registry, lookups=tally.lookups, rate_limited=tally.rate_limited)
        if outcome.kind is Kind.ANSWER:
            result.record = outcome.value
            result.down_url = rdap.down_link(outcome.value.raw or {}) or self.whois_down_url(
                registry, result.record.first, result.record.last
            )
            if not self.include_raw:
                result.record.raw = None
        elif outcome.kind is not Kind.NOT_FOUND:
            result.record = await self._whois_fallback(address, registry, tally, result)
            result.registry = result.record.registry  # a transferred block answers from its holder
        return result

    async def _rdap_lookup(self, registry: str, url: str, address: int) -> Outcome:
        outcome = await self._request(registry, url)
        if outcome.kind is not Kind.ANSWER:
            return outcome
        try:
            record = self._parser.parse(outcome.value, address, registry)
        except MalformedAnswer as exc:
            return Outcome(Kind.MALFORMED, str(exc), egress=outcome.egress)
        record.raw = outcome.value  # kept for the links; dropped unless include_raw
        return Outcome(Kind.ANSWER, record, egress=outcome.egress)

    async def _whois_fallback(
        self, address: int, registry: str, rdap_tally: Tally, result: LookupResult
    ) -> NetworkRecord:
        """RDAP gave up: ask the registry's WHOIS server, with budgets of its own."""
        server = self.whois_servers.get(registry)
        reason = "; ".join(rdap_tally.errors[-3:])
        if not server:
            raise LookupFailed(f"RDAP failed for {IPAddress(address)} at {registry}: {reason}")
        tally = Tally()
        query = whois.lookup_query(address, registry)
        outcome = await self._attempt(
            registry, lambda: self._whois_request(registry, server, query, address), tally, "whois", "ignore"
        )
        result.lookups += tally.lookups
        result.rate_limited += tally.rate_limited
        if outcome.kind is not Kind.ANSWER:
            raise LookupFailed(
                f"RDAP ({reason}) and WHOIS ({'; '.join(tally.errors[-3:])}) failed for "
                f"{IPAddress(address)} at {registry}"
            )
        record: NetworkRecord = outcome.value
        return record

    def whois_down_url(self, registry: str, first: int, last: int) -> str | None:
        """Where a registry without RFC 9910 links lists a network's children: a `whois://` URL
        for `-m` on its range, if its WHOIS server is RIPE-style and one is configured."""
        server = self.whois_servers.get(registry)
        if not server or registry not in WHOIS_MORE_SPECIFIC:
            return None
        return f"whois://{server}/{quote(f'{IPAddress(first)} - {IPAddress(last)}')}"

    # --- listings ------------------------------------------------------------------------------

    async def children(
        self, registry: str, url: str, last: int | None = None, parent_handle: str | None = None
    ) -> Listing:
        """Follow a network's listing URL (its rdap-down link, or a `whois://` URL for WHOIS `-m`):
        its children, paced and retried like a lookup.

        A registry that cuts a long list short is asked again for the rest of the network's range
        (up to `last`), starting at the last child it listed: RFC 9910 `rdap-down` for a range
        answers the largest networks strictly inside it (RIPE's `-m`), and a range that starts inside
        a listed child holds just the siblings after it. A list that could not be had comes back
        incomplete, never raised: the walk then probes what the list did not cover."""
        listing = Listing([], complete=False)
        seen: set[tuple[int, int]] = set()
        while True:
            page = await self._list_page(registry, url, listing, parent_handle)
            if page is None:
                return listing
            children, cut = page
            for child in children:
                if (child[0].first, child[0].last) not in seen:
                    seen.add((child[0].first, child[0].last))
                    listing.children.append(child)
            reached = max((c.last for c, _ in children), default=None)
            if not cut or (last is not None and reached is not None and reached >= last):
                listing.complete = True
                return listing
            if last is None or reached is None or "/rdap-down/" not in url:
                return listing
            rest = quote(f"{IPAddress(reached)} - {IPAddress(last)}")
            next_url = f"{url[: url.index('/rdap-down/')]}/rdap-down/{rest}"
            if next_url == url:
                return listing  # no progress: leave the rest to the grid
            url = next_url

    async def _list_page(
        self, registry: str, url: str, listing: Listing, parent_handle: str | None
    ) -> tuple[list[Child], bool] | None:
        """One listing page, RDAP `rdap-down` or (a `whois://` URL) WHOIS `-m`: (children, cut
        short?), or None if it failed, or the registry has nothing to list there (the walk probes)."""
        tally = Tally(rate_limited=listing.rate_limited)  # 429s count over the whole listing
        if url.startswith("whois://"):
            where = urlsplit(url)
            server, query = f"{where.hostname}:{where.port or 43}", f"-r -m {unquote(where.path.lstrip('/'))}"
            outcome = await self._attempt(
                registry, lambda: self._whois_request(registry, server, query, None, parent_handle),
                tally, "listing", "wait",
            )
        else:
            outcome = await self._attempt(
                registry, lambda: self._rdap_page(registry, url), tally, "listing", "wait"
            )
        listing.lookups += tally.lookups
        listing.rate_limited = tally.rate_limited
        page: tuple[list[Child], bool] | None = outcome.value if outcome.kind is Kind.ANSWER else None
        return page

    async def _rdap_page(self, registry: str, url: str) -> Outcome:
        outcome = await self._request(registry, url)
        if outcome.kind is not Kind.ANSWER:
            return outcome
        try:
            children = rdap.parse_listing(self._parser, outcome.value, registry)
        except MalformedAnswer as exc:
            return Outcome(Kind.MALFORMED, str(exc), egress=outcome.egress)
        return Outcome(Kind.ANSWER, (children, rdap.truncated(outcome.value)), egress=outcome.egress)

    # --- one request ---------------------------------------------------------------------------

    async def _request(self, registry: str, url: str) -> Outcome:
        """One RDAP request inside the registry's budget, bound to the egress it was charged to."""
        async with self.limiter.permit(registry, self._egress_keys) as egress:
            try:
                async with self._session(egress).get(url, allow_redirects=False) as resp:
                    return await self._classify(resp, url, egress)
            except (TimeoutError, aiohttp.ClientError) as exc:
                return Outcome(Kind.TRANSIENT, f"{type(exc).__name__}: {exc}", egress=egress)

    async def _classify(self, resp: aiohttp.ClientResponse, url: str, egress: str) -> Outcome:
        if resp.status in (301, 302, 303, 307, 308):
            return Outcome(Kind.REDIRECT, resp.headers.get("Location", ""), egress=egress)
        if resp.status == 404:
            return Outcome(Kind.NOT_FOUND, egress=egress)
        body = await resp.read()
        try:
            doc: Any = json.loads(body) if body else None
        except ValueError:
            doc = None
        if resp.status == 429 or rdap.rate_limit_notice(doc):
            pause = _retry_after(resp, self.default_pause)
            return Outcome(Kind.RATE_LIMITED, retry_after=pause, egress=egress)
        if resp.status != 200:
            return Outcome(Kind.TRANSIENT, f"HTTP {resp.status} from {url}", egress=egress)
        if doc is None:  # a broken body counts against the breaker, like a failed exchange
            why = f"MalformedAnswer: answer from {url} is not JSON ({len(body)} bytes)"
            return Outcome(Kind.TRANSIENT, why, egress=egress)
        return Outcome(Kind.ANSWER, doc, egress=egress)

    async def _whois_request(
        self, registry: str, server: str, query: str, address: int | None, parent_handle: str | None = None
    ) -> Outcome:
        """One port-43 exchange inside the registry's budget, bound to the egress it was charged to:
        the network holding `address`, or (no address) a RIPE-style `-m` listing, which such a
        server answers whole."""
        host, _, port = server.rpartition(":")
        async with self.limiter.permit(registry, self._egress_keys) as egress:  # WHOIS counts too
            try:
                text = await whois.query(host, int(port), query, self._bind.get(egress), self.timeout)
            except (OSError, TimeoutError) as exc:
                return Outcome(Kind.TRANSIENT, f"{type(exc).__name__}: {exc}", egress=egress)
        try:
            if address is not None:
                record = await asyncio.to_thread(whois.parse_whois, text, address, registry)
                return Outcome(Kind.ANSWER, record, egress=egress)
            children = await asyncio.to_thread(whois.parse_whois_listing, text, registry, parent_handle)
        except whois.WhoisRateLimited:
            return Outcome(Kind.RATE_LIMITED, egress=egress)
        except MalformedAnswer as exc:
            return Outcome(Kind.MALFORMED, str(exc), egress=egress)
        page = [(child, self.whois_down_url(registry, child.first, child.last)) for child in children]
        return Outcome(Kind.ANSWER, (page, False), egress=egress)
