"""RDAP answers: network objects as records (ipwhois's parser), relation links, listings, notices."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import json
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ipwhois.net import Net
from ipwhois.rdap import RDAP
from netaddr import AddrFormatError, IPAddress, IPRange

from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import contacts
from whoiscrawl.registry.outcome import AnswerTooLarge, MalformedAnswer

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


def _objects(doc: Any, key: str) -> list[dict[str, Any]]:
    """The objects of a document's array `key`: none where the answer has no array there."""
    items = doc.get(key) if isinstance(doc, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _events(network: dict[str, Any], action: str) -> str | None:
    for event in _objects(network, "events"):
        if event.get("action") == action and isinstance(event.get("timestamp"), str):
            return str(event["timestamp"])
    return None


# Long parses leave the event loop: a listing of a thousand networks takes seconds of CPU, and on
# the loop it stalled every request and lease of a worker (leases lapsed, listings were taken over
# and listed twice). One thread per process parses (in turn: a parser's Net is shared state); a
# body of megabytes is decoded and parsed in one process of its own, started with the first, since
# decoding JSON holds the GIL throughout (1.8 s for 5,000 networks, whose records take 26 ms to
# bring back). Both are the process's, shared by its clients: a worker started anew (a test's
# hundred) must not wait a second for a process of its own.
_PARSE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rdap-parse")
_parse_process: Executor | None = None


MAX_LISTING_ROWS = 20_000  # networks in one listing (RIPE NCC refuses more than 10,000 rows)


class RdapParser:
    """ipwhois's own RDAP parser, with one reusable Net (creating one costs ~0.4 ms of CPU), and the
    most networks it takes from one listing (`max_rows`)."""

    def __init__(self, max_rows: int = MAX_LISTING_ROWS) -> None:
        self._rdap = RDAP(Net("1.1.1.1"))
        self.max_rows = max_rows

    async def off_loop(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args)` on the parse thread (the GIL is shared, in 5 ms turns: the loop runs on)."""
        return await asyncio.get_running_loop().run_in_executor(_PARSE_THREAD, lambda: fn(*args, **kwargs))

    async def read_big(self, body: bytes | Path, registry: str) -> Any:
        """A big answer's document (its bytes, or the file it was spooled to), read and decoded in
        the parse process: a listing comes back parsed (a `ParsedListing`); None if it is not JSON."""
        global _parse_process
        if _parse_process is None:
            spawn = multiprocessing.get_context("spawn")  # forking a process with threads is unsafe
            _parse_process = ProcessPoolExecutor(1, mp_context=spawn, initializer=_a_child_of,
                                                 initargs=(os.getpid(),))
        loop = asyncio.get_running_loop()
        try:
            work = functools.partial(read_answer, body, registry, None, self.max_rows)
            return await loop.run_in_executor(_parse_process, work)
        except BrokenProcessPool:  # killed (out of memory, say): this one here, the next in a new one
            log.warning("the RDAP parse process died: parsing an answer (%s) on a thread", _sized(body))
            _parse_process = None
            return await self.off_loop(read_answer, body, registry, self)

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
        return to_record(net, contacts.of_network(doc), address, registry, "rdap")


def down_link(doc: dict[str, Any]) -> str | None:
    """The network's RFC 9910 `rdap-down` link (its children), if the registry serves one."""
    for link in _objects(doc, "links"):
        if str(link.get("rel", "")).split() == ["rdap-down"] and isinstance(link.get("href"), str):
            return str(link["href"])
    return None


def truncated(doc: dict[str, Any]) -> bool:
    """RFC 9083 section 10.2.1: a notice of type 'result set truncated due to ...'."""
    return any("truncated" in str(n.get("type", "")).lower() for n in _objects(doc, "notices"))


def address_of(text: str) -> int:
    """An RDAP IPv4 address as an integer, as older answers wrote them too: zero-padded
    (ARIN's `074.125.000.000`) or suffixed `/32` (RIPE NCC's `62.239.237.0/32`)."""
    octets = text.strip().removesuffix("/32").split(".")
    return int(IPAddress(".".join(str(int(octet)) for octet in octets) if len(octets) == 4 else text))


WHOLE_SPACE = "0.0.0.0 - 255.255.255.255"  # RIPE NCC's parent of its top objects: IANA's, no network


def _text(value: Any) -> str | None:
    """A field's text; a number written for it, as text; anything else (an answer's nonsense): none."""
    return str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None


def _span_of(net: dict[str, Any], address: int) -> tuple[int, int]:
    """A network's first and last IPv4 address, which must hold the address asked for."""
    start, end = net.get("start_address"), net.get("end_address")
    if not start or not end or not _text(net.get("handle")):
        raise MalformedAnswer("network object without handle, startAddress or endAddress")
    try:
        first, last = IPAddress(str(start)), IPAddress(str(end))
    except (ValueError, TypeError) as exc:
        raise MalformedAnswer(f"bad address range {start} - {end}") from exc
    if first.version != 4 or last.version != 4:
        raise MalformedAnswer(f"not an IPv4 range: {start} - {end}")
    if not int(first) <= address <= int(last):
        raise MalformedAnswer(f"answer {start} - {end} does not hold the address {IPAddress(address)}")
    return int(first), int(last)


def to_record(
    net: dict[str, Any], people: contacts.Contacts, address: int, registry: str, source: str
) -> NetworkRecord:
    """A record of a network's fields (ipwhois's names), its holder and abuse contacts; the
    country is the network's, else the holder's (`country_source`); the client adds the
    registry statistics' (`contacts.fill_country`)."""
    first, last = _span_of(net, address)
    cidrs = [c.strip() for c in (_text(net.get("cidr")) or "").split(",") if c.strip()]
    if not cidrs:
        cidrs = [str(c) for c in IPRange(first, last).cidrs()]
    status = net.get("status") or []
    country, country_source = contacts.resolve_country(_text(net.get("country")), people.holder_country)
    kind = _text(net.get("type"))
    return NetworkRecord(
        registry=registry,
        handle=str(net["handle"]),
        start_address=str(IPAddress(first)),
        end_address=str(IPAddress(last)),
        cidrs=cidrs,
        name=_text(net.get("name")),
        country=country,
        country_source=country_source,
        parent_handle=None if net.get("parent_handle") == WHOLE_SPACE else _text(net.get("parent_handle")),
        type=kind.upper() if kind else None,  # LACNIC writes "allocated"
        status=[str(s) for s in (status if isinstance(status, list) else [status])],
        abuse_emails=people.abuse_emails,
        registrant=people.holder,
        registration_date=_events(net, "registration"),
        last_changed=_events(net, "last changed"),
        query_address=str(IPAddress(address)),
        source=source,
    )


def rate_limit_notice(doc: Any) -> bool:
    """A "Rate Limit Notice" in an answer (LACNIC's way of saying 429)."""
    if isinstance(doc, ParsedListing):
        return doc.rate_limited
    return any("rate limit" in str(n.get("title", "")).lower() for n in _objects(doc, "notices"))


@dataclass
class ParsedListing:
    """An `ipSearchResults` answer already parsed (in the parser's process): its children, what its
    notices say, or why it could not be parsed."""

    children: list[tuple[NetworkRecord, str | None]]
    truncated: bool = False
    rate_limited: bool = False
    malformed: str | None = None


_process_parser: RdapParser | None = None


def _a_child_of(parent: int) -> None:
    """The parser's process leaves signals to its parent (Ctrl-C reaches the whole process group)
    and ends with it: a parent SIGKILLed (a chaos bench, the OOM killer, a local crawl killed)
    left it waiting forever on its call queue, deaf to SIGTERM (found as orphans of killed workers)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above: nobody left to serve
        os._exit(0)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _sized(body: bytes | Path) -> str:
    return f"{len(body)} bytes" if isinstance(body, bytes) else str(body)


def read_answer(
    body: bytes | Path, registry: str, parser: RdapParser | None = None, max_rows: int = MAX_LISTING_ROWS
) -> Any:
    """Decode an answer (its bytes, or the file it was spooled to: read here, in the parser's
    process); a listing is parsed there too. None: not JSON."""
    global _process_parser
    try:
        doc = json.loads(body if isinstance(body, bytes) else body.read_bytes())
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder follows
        return None
    if not isinstance(doc, dict) or "ipSearchResults" not in doc:
        return doc
    if parser is None:
        parser = _process_parser = _process_parser or RdapParser()
        parser.max_rows = max_rows
    return parsed_listing(parser, doc, registry)


def parsed_listing(parser: RdapParser, doc: Any, registry: str) -> ParsedListing:
    """An `ipSearchResults` answer parsed, with what its notices say (`malformed`: why it could not be)."""
    cut, refused = (truncated(doc), rate_limit_notice(doc)) if isinstance(doc, dict) else (False, False)
    try:
        return ParsedListing(parse_listing(parser, doc, registry), cut, refused)
    except MalformedAnswer as exc:
        return ParsedListing([], cut, refused, malformed=str(exc))


def parse_listing(parser: RdapParser, doc: Any, registry: str) -> list[tuple[NetworkRecord, str | None]]:
    """An RFC 9910 `ipSearchResults` answer: each child with its own rdap-down link, in address order."""
    items = doc.get("ipSearchResults") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise MalformedAnswer("a listing without ipSearchResults")
    if len(items) > parser.max_rows:
        raise AnswerTooLarge(f"a listing of {len(items)} networks, over {parser.max_rows} (max_listing_rows)")
    children = []
    for item in items:
        if not isinstance(item, dict):
            raise MalformedAnswer("an ipSearchResults entry that is no object")
        try:
            first = address_of(str(item.get("startAddress")))
        except (AddrFormatError, ValueError) as exc:
            raise MalformedAnswer(f"a listed network without a start address: {exc}") from exc
        children.append((parser.parse(item, first, registry), down_link(item)))
    children.sort(key=lambda c: c[0].first)
    return children
