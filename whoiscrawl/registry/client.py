"""The registry client: route by bootstrap, and one attempt loop for lookups, listings and WHOIS."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import posixpath
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import SplitResult, quote, unquote, urljoin, urlsplit

import aiohttp
from netaddr import IPAddress, IPNetwork, spanning_cidr

from whoiscrawl import metrics, rirs
from whoiscrawl.ipv4 import cidr_blocks
from whoiscrawl.ratelimit import RateLimiter
from whoiscrawl.records import DeadLetter, NetworkRecord
from whoiscrawl.registry import contacts, rdap, relations, spool, whois
from whoiscrawl.registry.breaker import CircuitBreaker
from whoiscrawl.registry.once import Once
from whoiscrawl.registry.outcome import AnswerTooLarge, Kind, LookupFailed, MalformedAnswer, Outcome, Received
from whoiscrawl.settings import SETTINGS
from whoiscrawl.space import Bootstrap, registry_for

log = logging.getLogger(__name__)

Child = relations.Child  # a listed network with its own listing URL, if any
Kept = relations.Kept  # where a listing hands its subtree's networks as they come (`children`)
Breaking = Literal["keep", "wait", "ignore"]  # what an attempt does with the registry's circuit breaker


@dataclass(frozen=True)
class Egress:
    """A source address the crawler sends from: `key` names its budget, `bind` is the local address
    to bind (None: whatever the host routes through)."""

    key: str
    bind: str | None = None


class DeadLetterSink(Protocol):
    async def emit(self, letter: DeadLetter) -> None:
        """Return once the letter is kept (broker-acknowledged, or written to the file)."""
        ...


@dataclass
class LookupResult:
    record: NetworkRecord | None  # None: the registry holds nothing for the address (404)
    registry: str
    lookups: int = 1
    rate_limited: int = 0
    down_url: str | None = None  # where the registry lists the network's children (RFC 9910), if it does
    prefix: bool = False  # asked for a delegation's prefix, not the address alone (`lookup_key`)
    asked: str = ""  # the registry asked first (`registry` answered: another after a redirect)

    def kept(self) -> str:
        """The answer as a store keeps it for the probe's next walk (crawl.py): JSON, without the
        raw answer and what it cost (asked once, it costs nothing again)."""
        record = dataclasses.replace(self.record, raw=None).to_json().decode() if self.record else None
        return json.dumps({"record": record, "registry": self.registry, "down_url": self.down_url,
                           "prefix": self.prefix, "asked": self.asked})

    @classmethod
    def from_kept(cls, text: str) -> LookupResult:
        """A result `kept` read back, costing no lookup."""
        doc = json.loads(text)
        record = NetworkRecord.from_json(doc["record"]) if doc["record"] else None
        return cls(record, doc["registry"], lookups=0, down_url=doc["down_url"], prefix=doc["prefix"],
                   asked=doc["asked"])


@dataclass
class Listing:
    """A network's children as its registry listed them (RFC 9910 rdap-down, WHOIS -m or r >), in
    address order."""

    children: list[Child]
    complete: bool  # False: all or part of it could not be had
    unanswered: bool = False  # ... because the registry did not answer (a later try may get it)
    lookups: int = 0
    rate_limited: int = 0
    # Every level below the parent (RFC 9910 `rdap-bottom`, ARIN's `r >`): no child needs listing again.
    deep: bool = False


class ListingStopped(Exception):
    """Raised by a listing's `kept` to stop asking (a drain), through `RegistryClient.children`,
    which notes what the listing cost until then."""

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


ABANDONED_WAIT_S = 2.0  # on close, how long requests whose caller went away may still take
MAX_ANSWER_BYTES = 64 << 20  # an RDAP body (a listing of 10,000 networks, RIPE NCC's most, is ~40 MB)
MAX_REDIRECTS = 5  # redirects followed for one lookup
_LISTED = re.compile(r"^(?:inetnum|NetRange):", re.MULTILINE | re.IGNORECASE)


@dataclass
class RegistryClient:
    """Looks addresses up at the registry that holds them, politely, and returns parsed records."""

    bootstrap: Bootstrap
    limiter: RateLimiter
    egresses: Sequence[Egress] = (Egress("default"),)
    whois_servers: dict[str, str] = field(default_factory=dict)  # registry -> host:port; {} = none
    timeout: float = SETTINGS["lookup_timeout"].default  # seconds one lookup may take
    listing_timeout: float = SETTINGS["listing_timeout"].default  # ... and one request of a listing
    attempts: int = 4  # tries for errors (5xx, resets, timeouts, malformed answers)
    max_pauses: int = 50  # 429s / rate-limit notices to sit out before giving up on a request
    default_pause: float = 5.0  # most seconds of the first pause after a 429 without Retry-After
    max_pause: float = 300.0  # ... which doubles with every further one of a request, up to this
    backoff: float = 0.2  # first retry delay; doubles, with full jitter
    include_raw: bool = False
    max_answer_bytes: int = MAX_ANSWER_BYTES  # bigger RDAP bodies are refused (a malformed answer)
    # Bodies past 1 MB are spooled to files the parse process reads, this many bytes at once (`spool.py`).
    max_spooled_bytes: int = spool.MAX_SPOOLED_BYTES
    max_whois_bytes: int = whois.MAX_WHOIS_BYTES  # ... and bigger WHOIS answers
    max_arin_listing_bytes: int = whois.MAX_ARIN_LISTING_BYTES  # ... but ARIN's `r >`, every level
    max_listing_rows: int = rdap.MAX_LISTING_ROWS  # ... and listings of more networks
    max_redirects: int = MAX_REDIRECTS
    # The registry that delegated an address, from its statistics (`--sources stats`): asked first,
    # so a block transferred out of its /8's registry costs no redirect. None: the bootstrap decides.
    delegated_by: Callable[[int], str | None] | None = None
    # The delegation holding an address, from the same statistics: a lookup asked `whole` inside its
    # first prefix asks for that prefix (`lookup_key`). None: every lookup asks for its address.
    delegation_at: Callable[[int], tuple[int, int] | None] | None = None
    # The country of a block an answer names none for, from the statistics ($WHOISCRAWL_DELEGATED,
    # read by who builds the client). None: such records stay without a country.
    delegation_country: contacts.CountryOf | None = None
    # Where answers no parser could read are kept with their context (the crawl's dead-letter topic
    # or file); None: only counted and logged.
    dead_letters: DeadLetterSink | None = None
    _sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    _parser: rdap.RdapParser = field(default_factory=rdap.RdapParser)
    _unlisted: set[str] = field(default_factory=set)  # registries warned about: able to list, not listed
    _bottomless: set[str] = field(default_factory=set)  # registries whose rdap-bottom answered 501
    _abandoned: set[asyncio.Task[Outcome]] = field(default_factory=set)  # sent, their caller gone
    # Holders named by their entity's own answer, and abuse contacts' addresses from theirs, per
    # (registry, handle): asked once per client.
    _holder_names: Once[tuple[str, str], str | None] = field(default_factory=Once)
    _contact_emails: Once[tuple[str, str], tuple[str, ...]] = field(default_factory=Once)
    # Requests that ended (answered, refused or failed): a lane in a long listing or a registry's
    # outage is turning, not stuck (the fleet worker's liveness reads it, through Crawler.progress).
    requests: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._spooled = spool.SpoolBudget(self.max_spooled_bytes)
        self._egress_keys = [e.key for e in self.egresses]
        self._bind = {e.key: e.bind for e in self.egresses}
        self._parser.max_rows = self.max_listing_rows

    async def close(self, wait_s: float = ABANDONED_WAIT_S) -> None:
        """Close the sessions once requests whose caller went away ended (or `wait_s` passed), so
        their connection slots end with them."""
        self._holder_names.cancel()  # names and addresses nobody waits for any more
        self._contact_emails.cancel()
        if self._abandoned and wait_s > 0:
            await asyncio.wait(self._abandoned, timeout=wait_s)
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

    def redirect_target(self, url: str, location: str) -> tuple[tuple[str, str] | None, str]:
        """(registry, URL) a redirect from `url` leads to, if it is under an RDAP base URL the
        bootstrap names (same scheme, host and port, its path inside the base's), else why not. So
        a redirect reaches no other scheme, host, or private, loopback or link-local address but
        those the configured bootstrap (the simulator's, say) names itself."""
        target = urljoin(url, location.strip())
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None, "not an http(s) URL"
        if parts.username or parts.password:
            return None, "a URL with credentials"
        path = posixpath.normpath(unquote(parts.path)) + ("/" if parts.path.endswith("/") else "")
        for base in sorted(self.bootstrap.registry_of_base, key=len, reverse=True):
            b = urlsplit(base)
            same = (b.scheme, b.hostname, _port(b)) == (parts.scheme, parts.hostname, _port(parts))
            if same and path.startswith(b.path):
                return (self.bootstrap.registry_of_base[base], target), ""
        return None, "no RDAP base URL of the bootstrap (another scheme, host, port or path)"

    def breaker(self, registry: str) -> CircuitBreaker:
        return self._breakers.setdefault(registry, CircuitBreaker())

    def delegated(self, address: int) -> str | None:
        """The registry the statistics say delegated the address (None: unknown, or not asked)."""
        return self.delegated_by(address) if self.delegated_by else None

    def route(self, address: int, key: str | None = None) -> tuple[str, str]:
        """(registry, URL) of a lookup of the address (or of `key`, a prefix starting there)."""
        return self._route(address, key or str(IPAddress(address)), self.delegated(address))

    def _route(self, address: int, key: str, delegated: str | None) -> tuple[str, str]:
        """`route`, the registry that delegated the address already asked."""
        base = self.bootstrap.base_of(delegated) if delegated else None
        if delegated and base:
            return delegated, f"{base}ip/{key}"
        base = self.bootstrap.base_url(address)
        registry = (self.bootstrap.registry_of_url(base) if base else None) or registry_for(address)
        if base is None or registry is None:
            raise LookupFailed(f"no RDAP service in the bootstrap for {IPAddress(address)}")
        return registry, f"{base}ip/{key}"

    # --- the one attempt loop ------------------------------------------------------------------

    async def _attempt(
        self, registry: str, send: Callable[[], Awaitable[Outcome]], tally: Tally, ok: str, breaker: Breaking
    ) -> Outcome:
        """Send until the outcome settles (answer, not found, redirect: returned as they are). A 429
        pauses everyone behind the egress and tries again, up to `max_pauses`; an error or a
        malformed answer backs off and tries again, up to `attempts`. Returns the last failure when
        they run out. `breaker`: an RDAP lookup keeps the registry's circuit breaker, and skips to
        WHOIS (a failure returned at once) while it is open and WHOIS is configured; a listing waits
        while it is open; the WHOIS fallback, which a tripped breaker sends here, ignores it. Once
        its cooldown is over the next request that meets it goes as its probe (`CircuitBreaker`)."""
        circuit = self.breaker(registry)
        while True:
            if breaker == "keep" and circuit.is_open and registry in self.whois_servers:
                tally.errors.append(f"{registry} RDAP circuit open")
                return Outcome(Kind.TRANSIENT, tally.errors[-1])
            probe = await circuit.wait() if breaker != "ignore" else False
            tally.lookups += 1
            started = time.monotonic()
            try:
                outcome = await send()
            except BaseException:
                if probe:
                    circuit.probed(None)  # cancelled: the next request probes
                raise
            self.requests += 1
            if outcome.unreadable:
                await self._dead_letter(registry, outcome)
            metrics.LOOKUP_SECONDS.labels(registry).observe(time.monotonic() - started)
            metrics.LOOKUPS.labels(registry, ok if outcome.kind is Kind.ANSWER else outcome.kind.value).inc()
            # an answer, even a malformed one, says the registry is answering; a 429 says nothing
            answering = None if outcome.kind is Kind.RATE_LIMITED else outcome.kind is not Kind.TRANSIENT
            if breaker == "keep" and answering:
                circuit.success()
            elif breaker == "keep" and answering is False:
                circuit.failure()
            if probe:
                circuit.probed(answering)
            if outcome.settled:
                return outcome
            if outcome.kind is Kind.RATE_LIMITED:
                tally.rate_limited += 1
                metrics.RATE_LIMITED.labels(registry).inc()
                pause = outcome.retry_after or self._unsaid_pause(registry, tally.rate_limited)
                await self.limiter.pause(registry, outcome.egress, pause)
                if tally.rate_limited > self.max_pauses:
                    tally.errors.append(f"{registry} kept answering 429 ({tally.rate_limited} times)")
                    return outcome
                continue
            tally.errors.append(str(outcome.value))
            log.info("%s at %s: %s", ok, registry, outcome.value)
            await asyncio.sleep(random.uniform(0, self.backoff * 2 ** (len(tally.errors) - 1)))
            if len(tally.errors) >= self.attempts:
                return outcome

    async def _dead_letter(self, registry: str, outcome: Outcome) -> None:
        """Keep an answer no parser could read, with what was asked and why, where the crawl keeps
        them, and count it; the attempt loop then goes on as for any failure (retried, WHOIS, given
        up and named). A letter that cannot be kept is logged whole: never lost silently."""
        received = outcome.received or Received("", b"")
        letter = DeadLetter.of("answer", str(outcome.value), received.asked, received.body, registry,
                               received.whole, received.size)
        metrics.DEAD_LETTERS.labels("answer", registry).inc()
        log.warning("an answer from %s could not be read, kept as a dead letter: %s", registry, letter.reason)
        if self.dead_letters is None:
            return
        try:
            await self.dead_letters.emit(letter)
        except Exception as exc:  # the crawl goes on without it; the log has it
            log.error("a dead letter could not be kept (%r): %s", exc, letter.to_json()[:2000].decode())

    def _unsaid_pause(self, registry: str, refusals: int) -> float:
        """How long to pause after the n-th 429 of a request that came without Retry-After (RIPE
        NCC's never carry one): 20 request intervals of the registry's budget (2 s at 10/s), at
        most `default_pause`, doubling with each further refusal up to `max_pause`."""
        limit = self.limiter.limits.get(registry)
        first = min(self.default_pause, 20 * limit.interval_ms / 1000) if limit else self.default_pause
        return float(min(self.max_pause, first * 2 ** max(0, refusals - 1)))

    # --- lookups -------------------------------------------------------------------------------

    def whole_delegation(
        self, address: int, whole: int, delegated: str | None = None
    ) -> tuple[int, int] | None:
        """The delegation (first, last) a lookup of the address asked `whole` asks for by its first
        prefix (`lookup_key`), or None: the address itself is asked. `delegated`: the registry the
        statistics name for it, when looked up already."""
        if not whole or self.delegation_at is None:
            return None
        if (delegated or self.delegated(address)) not in _SUBTREES:
            return None
        delegation = self.delegation_at(address)
        return delegation if delegation and "/" in lookup_key(address, delegation, whole) else None

    async def lookup(self, address: int, whole: int = 0) -> LookupResult:
        """The network holding the address. `whole`: where a delegation of at least that many
        addresses holds the address in its first prefix, at a registry that lists a network's whole
        subtree (RFC 9910), the most specific network holding all of that prefix (RFC 9082
        `ip/<prefix>`): the delegation itself, not the network below it holding the address
        (`lookup_key`; `whole_delegation`)."""
        delegated = self.delegated(address)  # asked once: the prefix asked and the route depend on it
        key = lookup_key(address, self.whole_delegation(address, whole, delegated), whole)
        registry, url = self._route(address, key, delegated)
        asked, tally = registry, Tally()
        for redirects in range(self.max_redirects + 1):
            send = functools.partial(self._rdap_lookup, registry, url, address)
            outcome = await self._attempt(registry, send, tally, "ok", "keep")
            if outcome.kind is not Kind.REDIRECT:
                break
            if redirects == self.max_redirects:
                why = f"{IPAddress(address)}: more than {self.max_redirects} redirects (max_redirects)"
                raise LookupFailed(why, registry)
            target, refusal = self.redirect_target(url, str(outcome.value))
            if target is None:
                why = f"{registry} redirected {IPAddress(address)} to {outcome.value}: {refusal}"
                raise LookupFailed(why, registry)
            registry, url = target  # the answering registry's budget pays from here
        result = LookupResult(None, registry, lookups=tally.lookups, rate_limited=tally.rate_limited,
                              prefix="/" in key and outcome.kind in (Kind.ANSWER, Kind.NOT_FOUND),
                              asked=asked)
        if outcome.kind is Kind.NOT_FOUND:
            return result
        if outcome.kind is Kind.ANSWER:
            result.record = outcome.value
            for handle, emails in contacts.named_abuse_contacts(result.record.raw).items():
                self.know_contact(registry, handle, emails)  # not asked again
            await self._name_holder(result.record, registry, url, result)
        else:
            result.record = await self._whois_fallback(address, registry, tally, result)
            result.registry = result.record.registry  # a transferred block answers from its holder
        contacts.fill_country(result.record, self.delegation_country)
        # Where its children are listed: the RDAP answer's link, else the registry's WHOIS listing
        # (an answer WHOIS gave while RDAP failed is listed all the same).
        record = result.record
        result.down_url = rdap.down_link(record.raw or {}) or self.whois_down_url(
            result.registry, record.first, record.last
        )
        if result.down_url is None:
            self._no_listing(result.registry)
        if not self.include_raw:
            record.raw = None
        return result

    async def _rdap_lookup(self, registry: str, url: str, address: int) -> Outcome:
        outcome = await self._request(registry, url)
        if outcome.kind is not Kind.ANSWER:
            return outcome
        try:
            record = await self._parser.off_loop(self._parser.parse, outcome.value, address, registry)
        except MalformedAnswer as exc:
            return Outcome(Kind.MALFORMED, str(exc), egress=outcome.egress, received=outcome.received)
        record.raw = outcome.value  # kept for the links; dropped unless include_raw
        return Outcome(Kind.ANSWER, record, egress=outcome.egress)

    def entity_url(self, registry: str, url: str, ref: contacts.EntityRef) -> tuple[str, str] | None:
        """(registry, URL) of an entity's own answer, named in the answer from `url`: its `self`
        link where that is under an RDAP base URL the bootstrap names (as a redirect must be),
        else RFC 9082's `entity/<handle>` under the registry's base (AFRINIC's older answers link
        nothing); None where the registry has no RDAP base."""
        if ref.link:
            target, refusal = self.redirect_target(url, ref.link)
            if target is not None:
                return target
            log.info("the self link %s of %s is not followed: %s", ref.link, ref.handle, refusal)
        base = self.bootstrap.base_of(registry)
        return (registry, f"{base}entity/{quote(ref.handle, safe='')}") if base else None

    async def _name_holder(
        self, record: NetworkRecord, registry: str, url: str, result: LookupResult
    ) -> None:
        """Name a holder the answer gives only by handle (`contacts.unnamed_holder`) from its
        entity's own answer: one request per distinct handle per client (concurrent lookups of
        the same holder wait for the one), through the registry's budget and attempt loop, its
        cost counted in `result`. Where that answer names nobody, the record keeps what the
        network's answer gave."""
        ref = contacts.unnamed_holder(record.raw)
        if ref is None:
            return
        key, tally = (registry, ref.handle.casefold()), Tally()
        try:
            name = await self._holder_names.get(key, lambda: self._ask_entity(registry, url, ref, tally))
        finally:  # what asking cost, counted by the caller that asked (the others' tallies stay 0)
            result.lookups += tally.lookups
            result.rate_limited += tally.rate_limited
        if name:
            record.registrant = name

    async def _ask_entity(self, registry: str, url: str, ref: contacts.EntityRef, tally: Tally) -> str | None:
        """The name the entity's own answer gives it, None if it gives none or cannot be had."""
        where = self.entity_url(registry, url, ref)
        if where is None:
            return None
        owner, entity_url = where
        try:
            send = functools.partial(self._request, owner, entity_url)
            outcome = await self._attempt(owner, send, tally, "entity", "keep")
        except Exception as exc:  # the holder stays as the network's answer gave it
            log.warning("the entity %s at %s could not be asked: %r", ref.handle, owner, exc)
            return None
        return contacts.entity_name(outcome.value, ref.handle) if outcome.kind is Kind.ANSWER else None

    def know_contact(self, registry: str, handle: str, emails: list[str]) -> None:
        """The addresses of contact `handle`, learnt from another answer of this crawl (a network's
        answer embedding the contact, the fill's record before a stop): `contact_emails` gives them
        unasked. One already asked keeps what its own answer gave."""
        if emails:
            self._contact_emails.know((registry, handle.casefold()), tuple(emails))

    async def contact_emails(self, registry: str, handle: str) -> tuple[list[str], LookupResult]:
        """The e-mail addresses of the contact `handle` (a network's abuse contact a dump names
        without its address: LACNIC's `abuse-c:`) from its entity's own answer, RFC 9082's
        `entity/<handle>` under the registry's base; asked once per (registry, handle) per client
        through the registry's budget and attempt loop (concurrent callers wait for the one). Returns
        the addresses ([] if the answer gives none or cannot be had) and, for the first caller only,
        what asking cost (a `LookupResult` without a record; `lookups` 0 for the others). A contact
        known already (`know_contact`) is not asked at all."""
        tally = Tally()
        emails = await self._contact_emails.get((registry, handle.casefold()),
                                                lambda: self._ask_contact(registry, handle, tally))
        return list(emails), LookupResult(None, registry, tally.lookups, tally.rate_limited)

    async def _ask_contact(self, registry: str, handle: str, tally: Tally) -> tuple[str, ...]:
        """One contact asked (`contact_emails`): its addresses; what asking cost goes in `tally`."""
        where = self.entity_url(registry, "", contacts.EntityRef(handle))
        if where is None:
            return ()
        owner, url = where
        try:
            send = functools.partial(self._request, owner, url)
            outcome = await self._attempt(owner, send, tally, "entity", "keep")
        except Exception as exc:  # the network keeps what the dump gave
            log.warning("the contact %s at %s could not be asked: %r", handle, owner, exc)
            return ()
        return tuple(contacts.entity_emails(outcome.value, handle)) if outcome.kind is Kind.ANSWER else ()

    async def _whois_fallback(
        self, address: int, registry: str, rdap_tally: Tally, result: LookupResult
    ) -> NetworkRecord:
        """RDAP gave up: ask the registry's WHOIS server, with budgets of its own."""
        server = self.whois_servers.get(registry)
        reason = "; ".join(rdap_tally.errors[-3:])
        if not server:
            raise LookupFailed(f"RDAP failed for {IPAddress(address)} at {registry}: {reason}", registry)
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
                f"{IPAddress(address)} at {registry}", registry
            )
        record: NetworkRecord = outcome.value
        return record

    def whois_down_url(self, registry: str, first: int, last: int) -> str | None:
        """Where a registry without RFC 9910 links lists a network's children, by the catalogue: a
        `whois://server/<query>` URL for RIPE-style `[-r] -m <range>` or ARIN's `r + > <cidr>` (the
        smallest CIDR holding the range), if the registry's WHOIS offers one and a server is set."""
        server = self.whois_servers.get(registry)
        offered = rirs.BY_ID[registry].listings if registry in rirs.BY_ID else ()
        if not server:
            return None
        if rirs.WHOIS_MORE_SPECIFIC in offered:
            query = f"{rirs.BY_ID[registry].whois_flags}-m {IPAddress(first)} - {IPAddress(last)}"
        elif rirs.WHOIS_ARIN_CHILDREN in offered:
            query = f"r + > {spanning_cidr([IPAddress(first), IPAddress(last)])}"
        else:
            return None
        return f"whois://{server}/{quote(query)}"

    def _no_listing(self, registry: str) -> None:
        """Say (once per registry) that a registry able to list is probed on the grid instead."""
        offered = rirs.BY_ID[registry].listings if registry in rirs.BY_ID else ()
        if offered and registry not in self._unlisted:
            self._unlisted.add(registry)
            log.warning(
                "%s lists children (%s), but its answers link no rdap-down and no WHOIS server is "
                "configured for it: its networks are probed on the grid", registry, ", ".join(offered)
            )

    async def answering(self, registry: str) -> bool:
        """Whether a registry answers at all now: one RDAP help query (RFC 9082, `help`), paced and
        retried like a lookup. Any settled answer (a 404 included) means the server is there; so an
        address that failed every way meanwhile failed on its own. True where no RDAP service is
        known to ask."""
        base = self.bootstrap.base_of(registry)
        if base is None:
            return True
        send = functools.partial(self._request, registry, base + "help")
        outcome = await self._attempt(registry, send, Tally(), "help", "ignore")
        return outcome.settled

    # --- listings ------------------------------------------------------------------------------

    async def children(
        self,
        registry: str,
        url: str,
        parent_handle: str | None = None,
        span: tuple[int, int] | None = None,
        wanted: Callable[[int, int], bool] | None = None,
        deep: bool = False,
        within: Callable[[int, int], tuple[int, int] | None] | None = None,
        kept: Kept | None = None,
    ) -> Listing:
        """Follow a network's listing URL (its rdap-down link, or a `whois://` URL for WHOIS `-m` or
        ARIN's `r >`): its children, paced and retried like a lookup. One request answers the whole
        level; a relation search refused as too many rows (or cut short) is split and its parts
        listed (`relations.RelationSearch`); nobody is paged by "last child". 404 is no children.
        `deep`: a relation search asks the whole subtree first, by one `rdap-bottom` of the same key
        (`Listing.deep` says whether it came so), unless the registry answered that 501 before;
        ARIN's `r >` answers every level anyway, and with `deep` all of them are the listing.
        A list that could not be had comes back incomplete, never raised, and `unanswered` where the
        registry gave no answer (a later try may get one). `wanted`: the parts worth listing (the
        crawl's scope); `within`: the part of a parent's subtree a relation search asks for (the
        scope's hull inside it: `relations.RelationSearch`). `kept`: where a relation search's subtree
        is handed as each answer settles, in address order, with whether all inside each network is
        known (never held whole: `Listing.children` has the rest); it may raise `ListingStopped`."""
        tally = Tally()
        try:
            if url.startswith("whois://"):
                listing = await self._whois_children(registry, url, parent_handle, span, wanted, tally, deep)
            else:
                deep = deep and registry not in self._bottomless
                listing = await self._relation_children(registry, url, parent_handle, wanted, tally, deep,
                                                        within, kept and functools.partial(self._hand, kept))
        except ListingStopped as stop:
            stop.lookups, stop.rate_limited = tally.lookups, tally.rate_limited
            raise
        listing.lookups, listing.rate_limited = tally.lookups, tally.rate_limited
        for record, _ in listing.children:
            contacts.fill_country(record, self.delegation_country)
        if not listing.complete:
            why = "the registry did not answer" if listing.unanswered else "an answer was unusable"
            log.warning("the listing %s at %s came back incomplete: %s", url, registry, why)
        return listing

    async def _hand(self, kept: Kept, children: list[Child], whole: bool) -> None:
        """Networks of a listing handed on as they come (`children`), as its list would hold them."""
        for record, _ in children:
            contacts.fill_country(record, self.delegation_country)
        await kept(sorted(children, key=lambda c: (c[0].first, -c[0].last)), whole)

    async def _relation_children(
        self, registry: str, url: str, parent_handle: str | None,
        wanted: Callable[[int, int], bool] | None, tally: Tally, deep: bool = False,
        within: Callable[[int, int], tuple[int, int] | None] | None = None, kept: Kept | None = None,
    ) -> Listing:
        where = relations.split_url(url)
        if where is None:
            return Listing([], complete=False)
        base, _, (first, last) = where
        def fetch(url: str) -> Awaitable[Outcome]:
            send = functools.partial(self._request, registry, url, self.listing_timeout)
            return self._listing_part(registry, send, tally)

        search = relations.RelationSearch(fetch, self._parser, registry, base, parent_handle, wanted,
                                          functools.partial(self._dead_letter, registry), within, kept)
        await search.run(first, last, deep)
        if search.bottom_unserved:
            log.info("%s does not implement rdap-bottom (501): listed by rdap-down from now", registry)
            self._bottomless.add(registry)
        search.children.sort(key=lambda c: (c[0].first, -c[0].last))  # a parent before its children
        return Listing(search.children, complete=search.complete, unanswered=search.unanswered,
                       deep=search.deep)

    async def _whois_children(
        self, registry: str, url: str, parent_handle: str | None, span: tuple[int, int] | None,
        wanted: Callable[[int, int], bool] | None, tally: Tally, deep: bool = False,
    ) -> Listing:
        server, query = _whois_query(url)
        if query.startswith("r "):
            return await self._arin_children(registry, url, parent_handle, span, wanted, tally, deep)
        outcome = await self._attempt(
            registry, lambda: self._whois_listing(registry, server, query, parent_handle),
            tally, "listing", "wait",
        )
        if outcome.kind is not Kind.ANSWER:
            return Listing([], complete=False, unanswered=outcome.unanswered)
        return Listing(outcome.value, complete=True)

    async def _arin_children(
        self, registry: str, url: str, parent_handle: str | None, span: tuple[int, int] | None,
        wanted: Callable[[int, int], bool] | None, tally: Tally, deep: bool = False,
    ) -> Listing:
        """ARIN's `r + > <cidr>` listing of a parent: every level below, asked in parts where an
        answer comes back cut at ARIN's cap (`whois.ArinListing`). With `deep`, all of it: the
        subtree, as an `rdap-bottom` answer is (`Listing.deep`), unless it holds more networks than
        `max_listing_rows`; else its direct children, each with its own listing URL. Incomplete
        where a part could not be had."""
        server, query = _whois_query(url)

        def ask(text: str) -> Awaitable[Outcome]:
            send = functools.partial(self._arin_query, registry, server, text)
            return self._listing_part(registry, send, tally)

        cidr = query.rsplit(" ", 1)[-1]
        first, last = span or _cidr_span(cidr)
        walk = whois.ArinListing(ask, first, last, wanted)
        await walk.run(cidr)
        if walk.limited:
            log.info("%s cut %d answers of %s at its limit: asked in parts", registry, walk.limited, query)
        deep = deep and len(walk.listed) <= self.max_listing_rows  # else one level, as it fits
        try:
            parse = functools.partial(walk.subtree, parent_handle) if deep else walk.children
            children = await asyncio.to_thread(parse)
        except MalformedAnswer as exc:
            log.warning("an ARIN listing of %s was unusable: %s", query, exc)
            return Listing([], complete=False)
        if len(children) > self.max_listing_rows:
            log.warning("an ARIN listing of %s: %d children, over %d (max_listing_rows)", query,
                        len(children), self.max_listing_rows)
            return Listing([], complete=False)
        for child in children:
            child.parent_handle = child.parent_handle or parent_handle
        page = [(child, self.whois_down_url(registry, child.first, child.last)) for child in children]
        return Listing(page, complete=walk.complete, unanswered=walk.unanswered, deep=deep)

    # --- one request ---------------------------------------------------------------------------

    async def _listing_part(
        self, registry: str, send: Callable[[], Awaitable[Outcome]], tally: Tally
    ) -> Outcome:
        """One request of a listing asked in parts, sent until it settles with a 429 budget of its
        own (a split listing asks many), counted into the listing's `tally`."""
        one = Tally()
        try:
            return await self._attempt(registry, send, one, "listing", "wait")
        finally:
            tally.lookups += one.lookups
            tally.rate_limited += one.rate_limited

    async def _sent_whole(self, registry: str, exchange: Callable[[str], Awaitable[Outcome]]) -> Outcome:
        """Run `exchange(egress)` inside the registry's budget. A caller cancelled while it waits for
        its permit gives the permit up; one cancelled once the request is sent only stops waiting:
        the request runs to its end (bounded by the timeout) and holds its connection slot till
        then, because the registry goes on serving an abandoned request and would count the next."""
        sent = asyncio.Event()

        async def permitted() -> Outcome:
            async with self.limiter.permit(registry, self._egress_keys) as egress:
                sent.set()
                return await exchange(egress)

        task = asyncio.create_task(permitted())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not sent.is_set():
                task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(self._forget)
            raise

    def _forget(self, task: asyncio.Task[Outcome]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("a request whose caller went away failed: %r", task.exception())

    async def _request(self, registry: str, url: str, timeout: float | None = None) -> Outcome:
        """One RDAP request inside the registry's budget, bound to the egress it was charged to,
        given `timeout` seconds (a listing's, `listing_timeout`), else a lookup's (`timeout`)."""
        bound = aiohttp.ClientTimeout(total=self.timeout if timeout is None else timeout)

        async def exchange(egress: str) -> Outcome:
            try:
                async with self._session(egress).get(url, allow_redirects=False, timeout=bound) as resp:
                    return await self._classify(resp, registry, url, egress)
            except (OSError, aiohttp.ClientError) as exc:  # OSError: timeouts, a spool's disk full
                return Outcome(Kind.TRANSIENT, f"{type(exc).__name__}: {exc}", egress=egress)

        return await self._sent_whole(registry, exchange)

    async def _classify(self, resp: aiohttp.ClientResponse, registry: str, url: str, egress: str) -> Outcome:
        if resp.status in (301, 302, 303, 307, 308):
            return Outcome(Kind.REDIRECT, resp.headers.get("Location", ""), egress=egress)
        if resp.status == 404:
            return Outcome(Kind.NOT_FOUND, egress=egress)
        async with spool.read_body(resp, self.max_answer_bytes, self._spooled) as body:
            return await self._classify_body(resp, body, registry, url, egress)

    async def _classify_body(
        self, resp: aiohttp.ClientResponse, body: spool.Body, registry: str, url: str, egress: str
    ) -> Outcome:
        received = Received(url, body.head, body.whole, body.size)
        if not body.whole:
            why = f"MalformedAnswer: answer from {url} over {self.max_answer_bytes} bytes (max_answer_bytes)"
            return Outcome(Kind.MALFORMED, why, egress=egress, received=received)
        doc = await self._decode(body, registry)
        if resp.status == 429 or rdap.rate_limit_notice(doc):
            pause = _retry_after(resp, 0.0)  # 0: the registry said not how long (RIPE NCC never does)
            return Outcome(Kind.RATE_LIMITED, retry_after=pause, egress=egress)
        if resp.status == 400 and relations.too_many_rows(doc):
            return Outcome(Kind.TOO_MANY_ROWS, egress=egress)
        if resp.status == 501:
            return Outcome(Kind.NOT_IMPLEMENTED, f"HTTP 501 from {url}", egress=egress)
        if resp.status != 200:
            return Outcome(Kind.TRANSIENT, f"HTTP {resp.status} from {url}", egress=egress)
        if doc is None:  # a broken body counts against the breaker, like a failed exchange
            why = f"MalformedAnswer: answer from {url} is not JSON ({body.size} bytes)"
            return Outcome(Kind.TRANSIENT, why, egress=egress, received=received)
        return Outcome(Kind.ANSWER, doc, egress=egress, received=received)

    async def _decode(self, body: spool.Body, registry: str) -> Any:
        """An answer's JSON document (None: not JSON); a spooled one's (a long listing), read and
        parsed off this process."""
        if body.path is not None:
            return await self._parser.read_big(body.path, registry)
        try:
            return json.loads(body.head) if body.head else None
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder follows
            return None

    async def _whois_request(self, registry: str, server: str, query: str, address: int) -> Outcome:
        """One port-43 lookup inside the registry's budget, bound to the egress it was charged to."""
        outcome = await self._whois_text(registry, server, query)
        if outcome.kind is not Kind.ANSWER:
            return outcome
        try:
            record = await asyncio.to_thread(whois.parse_whois, outcome.value, address, registry)
        except whois.WhoisRateLimited:
            return Outcome(Kind.RATE_LIMITED, egress=outcome.egress)
        except MalformedAnswer as exc:
            return Outcome(Kind.MALFORMED, str(exc), egress=outcome.egress, received=outcome.received)
        return Outcome(Kind.ANSWER, record, egress=outcome.egress)

    async def _whois_listing(
        self, registry: str, server: str, query: str, parent_handle: str | None
    ) -> Outcome:
        """One RIPE-style port-43 listing (`-m`, one level, answered whole): the children with
        their own listing URLs."""
        outcome = await self._whois_text(registry, server, query, timeout=self.listing_timeout)
        if outcome.kind is not Kind.ANSWER:
            return outcome
        rows = len(_LISTED.findall(outcome.value))
        if rows > self.max_listing_rows:
            why = f"MalformedAnswer: a WHOIS listing of {rows} networks, over {self.max_listing_rows}"
            return Outcome(Kind.MALFORMED, why + " (max_listing_rows)", egress=outcome.egress,
                           received=outcome.received)
        try:
            children = await asyncio.to_thread(
                whois.parse_whois_listing, outcome.value, registry, parent_handle
            )
        except whois.WhoisRateLimited:
            return Outcome(Kind.RATE_LIMITED, egress=outcome.egress)
        except MalformedAnswer as exc:
            return Outcome(Kind.MALFORMED, str(exc), egress=outcome.egress, received=outcome.received)
        page = [(child, self.whois_down_url(registry, child.first, child.last)) for child in children]
        return Outcome(Kind.ANSWER, page, egress=outcome.egress)

    async def _arin_query(self, registry: str, server: str, query: str) -> Outcome:
        """One ARIN listing query (`r + >` or `r + <`) read (`whois.read_arin_listing`): located,
        not parsed, whether cut at ARIN's cap or whole."""
        outcome = await self._whois_text(registry, server, query, self.max_arin_listing_bytes,
                                         self.listing_timeout)
        if outcome.kind is not Kind.ANSWER:
            return outcome
        try:
            answer = await asyncio.to_thread(whois.read_arin_listing, outcome.value)
        except whois.WhoisRateLimited:
            return Outcome(Kind.RATE_LIMITED, egress=outcome.egress)
        except MalformedAnswer as exc:
            return Outcome(Kind.MALFORMED, str(exc), egress=outcome.egress, received=outcome.received)
        return Outcome(Kind.ANSWER, answer, egress=outcome.egress)

    async def _whois_text(self, registry: str, server: str, query: str, limit: int | None = None,
                          timeout: float | None = None) -> Outcome:
        """One port-43 exchange inside the registry's budget: its text, read up to `limit` bytes
        (`max_whois_bytes`) within `timeout` seconds (a lookup's, `timeout`, unless given)."""
        host, _, port = server.rpartition(":")
        limit = limit or self.max_whois_bytes
        seconds = self.timeout if timeout is None else timeout

        asked = f"whois://{server}/{quote(query)}"

        async def exchange(egress: str) -> Outcome:  # WHOIS counts against the budget too
            try:
                bind = self._bind.get(egress)
                body = await whois.query(host, int(port), query, bind, seconds, limit)
            except AnswerTooLarge as exc:
                return Outcome(Kind.MALFORMED, f"MalformedAnswer: {exc}", egress=egress,
                               received=Received(asked, exc.partial, whole=False))
            except (OSError, TimeoutError) as exc:
                return Outcome(Kind.TRANSIENT, f"{type(exc).__name__}: {exc}", egress=egress)
            text = body.decode("utf-8", "replace")
            return Outcome(Kind.ANSWER, text, egress=egress, received=Received(asked, body))

        return await self._sent_whole(registry, exchange)


_SUBTREES = rirs.offering(rirs.RDAP_DOWN)  # whose listings give a whole subtree (rdap-bottom; ARIN's r >)


def lookup_key(address: int, delegation: tuple[int, int] | None, smallest: int = 1) -> str:
    """What a lookup asks for (RFC 9082 `ip/<key>`): the address, or, where a delegation of at
    least `smallest` addresses holds it in its first prefix (all of it when it is one CIDR), that
    prefix, whose most specific holder is the delegation rather than a network below it holding
    the address. An address past the first prefix of a delegation that is no CIDR is asked as
    itself: the prefix's answer would not hold it."""
    if delegation is None or not delegation[0] <= address <= delegation[1]:
        return str(IPAddress(address))
    if delegation[1] - delegation[0] + 1 < max(smallest, 2):
        return str(IPAddress(address))
    first, length = cidr_blocks(*delegation)[0]
    if address > first + (1 << (32 - length)) - 1:
        return str(IPAddress(address))
    return f"{IPAddress(first)}/{length}"


def _port(url: SplitResult) -> int | None:
    """A URL's port, its scheme's default where it names none."""
    try:
        return url.port or {"http": 80, "https": 443}.get(url.scheme)
    except ValueError:  # a port that is no number
        return None


def _whois_query(url: str) -> tuple[str, str]:
    """(host:port, query) of a `whois://` listing URL."""
    where = urlsplit(url)
    return f"{where.hostname}:{where.port or 43}", unquote(where.path.lstrip("/"))


def _cidr_span(cidr: str) -> tuple[int, int]:
    net = IPNetwork(cidr)
    return int(net.first), int(net.last)
