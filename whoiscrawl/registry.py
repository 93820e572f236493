"""The registry client: route by bootstrap, RDAP over HTTP with retries and redirects, WHOIS fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from ipwhois.net import Net
from ipwhois.rdap import RDAP
from ipwhois.whois import Whois
from netaddr import AddrFormatError, IPAddress, IPRange

from whoiscrawl import metrics, rirs
from whoiscrawl.ratelimit import RateLimiter
from whoiscrawl.records import NetworkRecord
from whoiscrawl.space import WHOIS_MORE_SPECIFIC, Bootstrap, registry_for

log = logging.getLogger(__name__)


class MalformedAnswer(ValueError):
    """The registry answered, but not with a usable network object for the address."""


class LookupFailed(RuntimeError):
    """Every attempt (RDAP with retries, then WHOIS) failed; the text says why."""


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

    children: list[tuple[NetworkRecord, str | None]]  # each with its own rdap-down link
    complete: bool  # False: all or part of it could not be had (a cut list with no way to the rest)
    lookups: int = 0
    rate_limited: int = 0


@dataclass
class CircuitBreaker:
    """Stop hammering a registry that keeps failing: when at least half of the last `window`
    requests failed, hold off for a cooldown that doubles each time it re-opens."""

    window: int = 20
    min_failures: int = 8
    base_cooldown: float = 1.0
    max_cooldown: float = 60.0
    _outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=20))
    _opened: int = 0
    _open_until: float = 0.0

    async def wait(self) -> None:
        delay = self._open_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def failure(self) -> None:
        self._outcomes.append(False)
        failures = self._outcomes.count(False)
        if failures >= self.min_failures and failures * 2 >= len(self._outcomes) and not self.is_open:
            cooldown = min(self.max_cooldown, self.base_cooldown * 2**self._opened)
            self._open_until = time.monotonic() + cooldown
            self._opened += 1
            log.warning(
                "%d of the last %d requests failed: holding off for %.0fs",
                failures,
                len(self._outcomes),
                cooldown,
            )

    def success(self) -> None:
        self._outcomes.append(True)
        if self._outcomes.count(False) * 2 < len(self._outcomes):
            self._opened = 0

    @property
    def is_open(self) -> bool:
        return self._open_until > time.monotonic()


def _events(network: dict[str, Any], action: str) -> str | None:
    for event in network.get("events") or []:
        if event.get("action") == action:
            return str(event.get("timestamp"))
    return None


def _emails(objects: dict[str, Any], role: str) -> list[str]:
    found = []
    for obj in objects.values():
        if role in (obj.get("roles") or []):
            for email in (obj.get("contact") or {}).get("email") or []:
                if email.get("value"):
                    found.append(str(email["value"]))
    return sorted(set(found))


def _registrant(objects: dict[str, Any]) -> str | None:
    for obj in objects.values():
        if "registrant" in (obj.get("roles") or []):
            return (obj.get("contact") or {}).get("name") or obj.get("handle")
    return None


class RdapParser:
    """ipwhois's own RDAP parser, with one reusable Net (creating one costs ~0.4 ms of CPU)."""

    def __init__(self) -> None:
        self._rdap = RDAP(Net("1.1.1.1"))

    def parse(self, doc: dict[str, Any], address: int, registry: str) -> NetworkRecord:
        if not isinstance(doc, dict) or doc.get("objectClassName") not in (None, "ip network"):
            raise MalformedAnswer("not an RDAP ip network object")
        self._rdap._net.address_str = str(IPAddress(address))
        try:
            parsed = self._rdap.lookup(
                response=doc, asn_data={"asn_registry": registry}, depth=0, root_ent_check=False
            )
        except Exception as exc:  # ipwhois raises bare KeyErrors/TypeErrors on broken documents
            raise MalformedAnswer(f"ipwhois could not parse the answer: {exc!r}") from exc
        net = parsed.get("network") or {}
        return _to_record(net, parsed.get("objects") or {}, address, registry, "rdap")


def down_link(doc: dict[str, Any]) -> str | None:
    """The network's RFC 9910 `rdap-down` link (its children), if the registry serves one."""
    for link in doc.get("links") or []:
        if isinstance(link, dict) and str(link.get("rel", "")).split() == ["rdap-down"] and link.get("href"):
            return str(link["href"])
    return None


def _truncated(doc: dict[str, Any]) -> bool:
    """RFC 9083 section 10.2.1: a notice of type 'result set truncated due to ...'."""
    return any(
        "truncated" in str(n.get("type", "")).lower() for n in doc.get("notices") or [] if isinstance(n, dict)
    )


def _to_record(
    net: dict[str, Any], objects: dict[str, Any], address: int, registry: str, source: str
) -> NetworkRecord:
    start, end = net.get("start_address"), net.get("end_address")
    if not start or not end or not net.get("handle"):
        raise MalformedAnswer("network object without handle, startAddress or endAddress")
    try:
        first, last = int(IPAddress(start)), int(IPAddress(end))
    except (ValueError, TypeError) as exc:
        raise MalformedAnswer(f"bad address range {start} - {end}") from exc
    if not first <= address <= last:
        raise MalformedAnswer(f"answer {start} - {end} does not hold the address {IPAddress(address)}")
    cidrs = [c.strip() for c in str(net.get("cidr") or "").split(",") if c.strip()]
    if not cidrs:
        cidrs = [str(c) for c in IPRange(first, last).cidrs()]
    status = net.get("status") or []
    return NetworkRecord(
        registry=registry,
        handle=str(net["handle"]),
        start_address=str(IPAddress(first)),
        end_address=str(IPAddress(last)),
        cidrs=cidrs,
        name=net.get("name"),
        country=net.get("country"),
        parent_handle=net.get("parent_handle"),
        type=net.get("type"),
        status=[str(s) for s in (status if isinstance(status, list) else [status])],
        abuse_emails=_emails(objects, "abuse"),
        registrant=_registrant(objects),
        registration_date=_events(net, "registration"),
        last_changed=_events(net, "last changed"),
        query_address=str(IPAddress(address)),
        source=source,
    )


def _retry_after(resp: aiohttp.ClientResponse, default: float) -> float:
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def _rate_limit_notice(doc: Any) -> bool:
    notices = doc.get("notices") if isinstance(doc, dict) else None
    return any("rate limit" in str(n.get("title", "")).lower() for n in notices or [] if isinstance(n, dict))


@dataclass
class RegistryClient:
    """Looks addresses up at the registry that holds them, politely, and returns parsed records."""

    bootstrap: Bootstrap
    limiter: RateLimiter
    egresses: Sequence[Egress] = (Egress("default"),)
    whois_servers: dict[str, str] = field(default_factory=dict)  # registry -> host:port; {} = none
    timeout: float = 10.0
    attempts: int = 4  # RDAP tries for errors (5xx, resets, timeouts, malformed answers)
    max_pauses: int = 50  # 429s / rate-limit notices to sit out before giving up on an address
    default_pause: float = 5.0  # seconds to pause after a 429 without Retry-After
    backoff: float = 0.2  # first retry delay; doubles, with full jitter
    include_raw: bool = False
    _sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    _parser: RdapParser = field(default_factory=RdapParser)

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

    async def lookup(self, address: int) -> LookupResult:
        registry, url = self.route(address)
        result = LookupResult(None, registry, lookups=0)
        errors: list[str] = []
        pauses = 0
        while len(errors) < self.attempts:
            breaker = self.breaker(registry)
            if breaker.is_open and registry in self.whois_servers:
                errors.append(f"{registry} RDAP circuit open")
                break  # RDAP keeps failing there: ask WHOIS instead of waiting
            await breaker.wait()
            started = time.monotonic()
            result.lookups += 1
            kind, payload, retry_after, egress = await self._request(registry, url)
            metrics.LOOKUP_SECONDS.labels(registry).observe(time.monotonic() - started)
            if kind == "ok":
                breaker.success()
                malformed = self._take_answer(result, payload, address, registry)
                if malformed is None:
                    return result
                errors.append(malformed)
                await self._backoff(len(errors))
                continue
            if kind == "not_found":
                breaker.success()
                metrics.LOOKUPS.labels(registry, "not_found").inc()
                return result
            if kind == "redirect":
                breaker.success()  # a registry that refers us on is answering
                target = self.bootstrap.registry_of_url(payload)
                metrics.LOOKUPS.labels(registry, "redirect").inc()
                if target is None:
                    raise LookupFailed(
                        f"{registry} redirected {IPAddress(address)} to {payload}, "
                        "which is no RDAP service of the bootstrap"
                    )
                registry, url = target, payload  # the answering registry's budget pays from here
                continue
            if kind == "rate_limited":
                result.rate_limited += 1
                pauses += 1
                metrics.LOOKUPS.labels(registry, "rate_limited").inc()
                metrics.RATE_LIMITED.labels(registry).inc()
                await self.limiter.pause(registry, egress, retry_after or self.default_pause)
                if pauses > self.max_pauses:
                    errors.append(f"{registry} kept answering 429 ({pauses} times)")
                    break
                continue
            breaker.failure()
            metrics.LOOKUPS.labels(registry, "error").inc()
            errors.append(str(payload))
            await self._backoff(len(errors))
        result.registry = registry
        result.lookups += 1
        result.record = await self._whois_fallback(address, registry, errors)
        result.registry = result.record.registry  # a transferred block answers from its holder
        return result

    def _take_answer(self, result: LookupResult, doc: Any, address: int, registry: str) -> str | None:
        """Fill the result from an RDAP answer; the reason if the answer is malformed."""
        try:
            record = self._parser.parse(doc, address, registry)
        except MalformedAnswer as exc:
            metrics.LOOKUPS.labels(registry, "malformed").inc()
            return str(exc)
        record.raw = doc if self.include_raw else None
        result.record, result.registry = record, registry
        result.down_url = down_link(doc) or self.whois_down_url(registry, record.first, record.last)
        metrics.LOOKUPS.labels(registry, "ok").inc()
        return None

    def whois_down_url(self, registry: str, first: int, last: int) -> str | None:
        """Where a registry without RFC 9910 links lists a network's children: a `whois://` URL
        for `-m` on its range, if its WHOIS server is RIPE-style and one is configured."""
        server = self.whois_servers.get(registry)
        if not server or registry not in WHOIS_MORE_SPECIFIC:
            return None
        return f"whois://{server}/{quote(f'{IPAddress(first)} - {IPAddress(last)}')}"

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
    ) -> tuple[list[tuple[NetworkRecord, str | None]], bool] | None:
        """One listing request with retries, RDAP `rdap-down` or (a `whois://` URL) WHOIS `-m`:
        (children, cut short?), or None if it failed."""
        errors = 0
        while errors < self.attempts:
            await self.breaker(registry).wait()
            listing.lookups += 1
            if url.startswith("whois://"):
                kind, payload, retry_after, egress = await self._whois_request(registry, url, parent_handle)
            else:
                kind, payload, retry_after, egress = await self._request(registry, url)
                if kind == "ok":
                    try:
                        payload = (self._parse_listing(payload, registry), _truncated(payload))
                    except MalformedAnswer as exc:
                        kind, payload = "error", str(exc)
            if kind == "rate_limited":
                listing.rate_limited += 1
                metrics.RATE_LIMITED.labels(registry).inc()
                await self.limiter.pause(registry, egress, retry_after or self.default_pause)
                if listing.rate_limited > self.max_pauses:
                    return None
                continue
            if kind == "ok":
                metrics.LOOKUPS.labels(registry, "listing").inc()
                return payload
            if kind in ("not_found", "redirect"):
                return None  # nothing to list there (or not here): the walk probes instead
            errors += 1
            metrics.LOOKUPS.labels(registry, "error").inc()
            log.info("listing %s: %s", url, payload)
            await self._backoff(errors)
        return None

    async def _whois_request(
        self, registry: str, url: str, parent_handle: str | None
    ) -> tuple[str, Any, float, str]:
        """`-m <range>` at a RIPE-style WHOIS server inside the registry's budget, answered like
        `_request`: ("ok", (children, False), ...) since such a server answers whole, a refusal as
        "rate_limited", a failed exchange or a cut answer as "error"."""
        where = urlsplit(url)
        async with self.limiter.permit(registry, self._egress_keys) as egress:
            try:
                text = await _whois_query(where.hostname or "", where.port or 43,
                                          f"-r -m {unquote(where.path.lstrip('/'))}",
                                          self._bind.get(egress), self.timeout)
            except (OSError, TimeoutError) as exc:
                return "error", f"{type(exc).__name__}: {exc}", 0.0, egress
        try:
            children = await asyncio.to_thread(parse_whois_listing, text, registry, parent_handle)
        except WhoisRateLimited:
            return "rate_limited", None, 0.0, egress
        except MalformedAnswer as exc:
            return "error", str(exc), 0.0, egress
        page = [(child, self.whois_down_url(registry, child.first, child.last)) for child in children]
        return "ok", (page, False), 0.0, egress

    def _parse_listing(self, doc: Any, registry: str) -> list[tuple[NetworkRecord, str | None]]:
        items = doc.get("ipSearchResults") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise MalformedAnswer("a listing without ipSearchResults")
        children = []
        for item in items:
            if not isinstance(item, dict):
                raise MalformedAnswer("an ipSearchResults entry that is no object")
            try:
                first = int(IPAddress(str(item.get("startAddress"))))
            except (AddrFormatError, ValueError) as exc:
                raise MalformedAnswer(f"a listed network without a start address: {exc}") from exc
            children.append((self._parser.parse(item, first, registry), down_link(item)))
        children.sort(key=lambda c: c[0].first)
        return children

    async def _request(self, registry: str, url: str) -> tuple[str, Any, float, str]:
        """One RDAP request inside the registry's budget: (kind, payload, retry-after, egress used),
        with transport failures and unreadable answers as kind "error"."""
        async with self.limiter.permit(registry, self._egress_keys) as egress:
            try:
                return (*await self._fetch(url, egress), egress)
            except (TimeoutError, aiohttp.ClientError, MalformedAnswer) as exc:
                return "error", f"{type(exc).__name__}: {exc}", 0.0, egress

    async def _fetch(self, url: str, egress: str) -> tuple[str, Any, float]:
        async with self._session(egress).get(url, allow_redirects=False) as resp:
            if resp.status in (301, 302, 303, 307, 308):
                return "redirect", resp.headers.get("Location", ""), 0.0
            if resp.status == 404:
                return "not_found", None, 0.0
            body = await resp.read()
            doc: Any = None
            try:
                doc = json.loads(body) if body else None
            except ValueError:
                doc = None
            if resp.status == 429 or _rate_limit_notice(doc):
                return "rate_limited", None, _retry_after(resp, self.default_pause)
            if resp.status != 200:
                return "error", f"HTTP {resp.status} from {url}", 0.0
            if doc is None:
                raise MalformedAnswer(f"answer from {url} is not JSON ({len(body)} bytes)")
            return "ok", doc, 0.0

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(random.uniform(0, self.backoff * 2 ** (attempt - 1)))

    async def _whois_fallback(self, address: int, registry: str, errors: list[str]) -> NetworkRecord:
        server = self.whois_servers.get(registry)
        reason = "; ".join(errors[-3:])
        if not server:
            raise LookupFailed(f"RDAP failed for {IPAddress(address)} at {registry}: {reason}")
        host, _, port = server.rpartition(":")
        try:
            for pause in range(self.max_pauses + 1):
                async with self.limiter.permit(registry, self._egress_keys) as egress:  # WHOIS counts too
                    try:
                        record = await asyncio.to_thread(_whois_lookup, address, registry, host, int(port))
                        break
                    except WhoisRateLimited as exc:
                        if pause == self.max_pauses:
                            raise
                        metrics.RATE_LIMITED.labels(registry).inc()
                        await self.limiter.pause(registry, egress, self.default_pause)
                        log.info("WHOIS at %s: %s", registry, exc)
        except Exception as exc:  # ipwhois raises its own WhoisLookupError and socket errors
            raise LookupFailed(
                f"RDAP ({reason}) and WHOIS ({exc}) failed for {IPAddress(address)} at {registry}"
            ) from exc
        metrics.LOOKUPS.labels(registry, "whois").inc()
        return record


def _whois_field(text: str, *names: str) -> str | None:
    for name in names:
        match = re.search(rf"^{name}:[ \t]*(\S.*?)[ \t]*$", text, re.IGNORECASE | re.MULTILINE)
        if match:
            return match.group(1)
    return None


def _whois_registry(text: str, asked: str) -> str:
    """Which registry wrote this answer: a transferred block's record comes from its new holder."""
    if _whois_field(text, "NetRange"):
        return "arin"
    if "lacnic" in text.lower() and _whois_field(text, "owner"):
        return "lacnic"
    source = (_whois_field(text, "source") or "").split("#")[0].strip().upper()
    return rirs.by_whois_source(source) or asked


class WhoisRateLimited(RuntimeError):
    """The WHOIS server refused the query for volume (RIPE-style %ERROR:201, 'limit exceeded')."""


_WHOIS_REFUSAL = re.compile(r"%\s*ERROR:201|access denied|limit exceeded|queries exceeded", re.IGNORECASE)


# ARIN's WHOIS spells NetType differently from its RDAP "type"; records use the RDAP words.
_ARIN_NET_TYPES = {
    "DIRECT ALLOCATION": "DIRECT ALLOCATION",
    "DIRECT ASSIGNMENT": "DIRECT ASSIGNMENT",
    "REALLOCATED": "REALLOCATION",
    "REASSIGNED": "REASSIGNMENT",
}


def _whois_lookup(address: int, asked: str, host: str, port: int) -> NetworkRecord:
    text = Net(str(IPAddress(address))).get_whois(asn_registry=asked, retry_count=1, server=host, port=port)
    return parse_whois(text, address, asked)


def parse_whois(text: str, address: int, asked: str) -> NetworkRecord:
    """Port-43 text (any registry's format) as a record of the most specific network holding the
    address, parsed with ipwhois; fields RDAP has and the text lacks stay empty."""
    if _WHOIS_REFUSAL.search(text[:2000]) and not _whois_field(text, "inetnum", "NetRange"):
        raise WhoisRateLimited(text.strip().splitlines()[0][:200])
    registry = _whois_registry(text, asked)
    parsed = Whois(Net(str(IPAddress(address)))).lookup(
        response=text, is_offline=True, asn_data={"asn_registry": registry}
    )
    holding = []
    for candidate in parsed.get("nets") or []:
        first, _, last = str(candidate.get("range") or "").partition(" - ")
        try:
            span = IPRange(first.strip(), last.strip())
        except (AddrFormatError, ValueError, TypeError):
            continue
        if span.first <= address <= span.last:
            holding.append((span.size, span, candidate))
    if not holding:
        raise MalformedAnswer(f"WHOIS answer from {registry} holds no network for the address")
    _, span, best = min(holding, key=lambda h: h[0])
    # The handle as RDAP spells it: ARIN's NetHandle, elsewhere the inetnum itself.
    handle = _whois_field(text, "NetHandle", "inetnum") or f"{IPAddress(span.first)} - {IPAddress(span.last)}"
    net_type = (_whois_field(text, "status", "NetType") or "").upper() or None
    parent = None
    if registry == "arin":  # "Parent: NAME (NET-HANDLE)"; RPSL objects name no parent
        net_type = _ARIN_NET_TYPES.get(net_type or "", net_type)
        match = re.search(r"\(([^()]+)\)\s*$", _whois_field(text, "Parent") or "")
        parent = match.group(1) if match else None
    net_fields = {
        "handle": handle,
        "start_address": str(IPAddress(span.first)),
        "end_address": str(IPAddress(span.last)),
        "cidr": best.get("cidr"),
        "name": best.get("name"),
        "country": best.get("country"),
        "type": net_type,
        "parent_handle": parent,
        "status": [],
    }
    record = _to_record(net_fields, {}, address, registry, "whois")
    emails = best.get("emails") or []
    emails = emails if isinstance(emails, list) else str(emails).split("\n")  # ipwhois gives either
    record.abuse_emails = sorted({str(e).strip() for e in emails if str(e).strip()})
    record.registration_date = best.get("created")
    record.last_changed = best.get("updated")
    return record


async def _whois_query(host: str, port: int, query: str, bind: str | None, timeout: float) -> str:
    """One port-43 exchange: send the query, read the answer to the server's close."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port, local_addr=(bind, 0) if bind else None)
        try:
            writer.write(f"{query}\r\n".encode())
            await writer.drain()
            return (await reader.read()).decode("utf-8", "replace")
        finally:
            writer.close()


_RPSL_SECTION = re.compile(r"^% Information related to ", re.MULTILINE)
_RPSL_CLOSING = re.compile(r"^% This query was served by ", re.MULTILINE)


def parse_whois_listing(text: str, asked: str, parent_handle: str | None) -> list[NetworkRecord]:
    """A RIPE-style `-m` answer: one record per inetnum, in address order. The server's closing
    line must be there: without it the answer was cut, and a cut list would hide networks."""
    if _WHOIS_REFUSAL.search(text[:2000]) and not _whois_field(text, "inetnum"):
        raise WhoisRateLimited(text.strip().splitlines()[0][:200] if text.strip() else "refused")
    if not _RPSL_CLOSING.search(text):
        first_line = text.strip().splitlines()[0][:120] if text.strip() else "nothing"
        raise MalformedAnswer(f"a WHOIS listing from {asked} without its closing line: {first_line}")
    records = []
    for section in _RPSL_SECTION.split(text)[1:]:
        inetnum = _whois_field(section, "inetnum")
        if not inetnum:
            continue  # a section of contact objects only
        first, _, _ = inetnum.partition(" - ")
        try:
            address = int(IPAddress(first.strip()))
        except (AddrFormatError, ValueError) as exc:
            raise MalformedAnswer(f"a listed inetnum that is no range: {inetnum!r}") from exc
        record = parse_whois(section, address, asked)
        record.parent_handle = record.parent_handle or parent_handle  # RPSL names no parent
        records.append(record)
    records.sort(key=lambda r: r.first)
    return records
