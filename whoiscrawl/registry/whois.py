"""Port 43: an async WHOIS client bound to its egress address, and RPSL / ARIN text as records."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ipwhois.whois import RIR_WHOIS, Whois
from netaddr import AddrFormatError, IPAddress, IPNetwork, IPRange, cidr_abbrev_to_verbose

from whoiscrawl import rirs
from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import contacts
from whoiscrawl.registry.outcome import AnswerTooLarge, Kind, MalformedAnswer, Outcome
from whoiscrawl.registry.rdap import to_record


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


# RIPE-style refusals: %ERROR:201 (access denied, limits), %ERROR:306 (too many connections).
_WHOIS_REFUSAL = re.compile(
    r"%\s*ERROR:(?:201|306)|access denied|limit exceeded|queries exceeded", re.IGNORECASE
)


# ARIN's WHOIS spells NetType differently from its RDAP "type"; records use the RDAP words.
_ARIN_NET_TYPES = {
    "DIRECT ALLOCATION": "DIRECT ALLOCATION",
    "DIRECT ASSIGNMENT": "DIRECT ASSIGNMENT",
    "REALLOCATED": "REALLOCATION",
    "REASSIGNED": "REASSIGNMENT",
}


def lookup_query(address: int, registry: str) -> str:
    """The query for the network holding an address: ARIN's syntax wants `n + <address>`; servers
    with a personal-data quota get `-r` (no contact objects), which keeps the query out of it
    (RIPE NCC 1,000, AFRINIC 5,000 a day; their abuse addresses stay in a `%` comment or remarks)."""
    if registry == "arin":
        return f"n + {IPAddress(address)}"
    flags = rirs.BY_ID[registry].whois_flags if registry in rirs.BY_ID else ""
    return f"{flags}{IPAddress(address)}"


def parse_whois(text: str, address: int, asked: str) -> NetworkRecord:
    """Port-43 text (any registry's format) as a record of the most specific network holding the
    address (`inetnum:`/`NetRange:` objects; a `route:` is no network), its fields read from that
    network's own part of the answer with ipwhois; fields RDAP has and the text lacks stay empty."""
    text = text.replace("\r", "")  # LACNIC ends its lines with CRLF, some recordings with CR CR LF
    if _WHOIS_REFUSAL.search(text[:2000]) and not _whois_field(text, "inetnum", "NetRange"):
        raise WhoisRateLimited(text.strip().splitlines()[0][:200])
    registry = _whois_registry(text, asked)
    holding = [(span, written, at) for span, written, at in _networks(text) if address in span]
    if not holding:
        raise MalformedAnswer(f"WHOIS answer from {registry} holds no network for the address")
    span, written, at = min(holding, key=lambda h: h[0].size)
    part = _part(text, at, span, registry)
    # ipwhois reads the fields from the network's own part; with no Net of the address (none is
    # needed to parse, and ipwhois refuses one of a special-purpose address such as 240/4)
    best: dict[str, Any] = next(
        (n for n in _ipwhois_nets(part, registry) if span_of(str(n.get("range") or "")) == span), {}
    )
    net_type = (_whois_field(part, "status", "NetType") or "").upper() or None
    parent = None
    if registry == "arin":  # "Parent: NAME (NET-HANDLE)"; RPSL objects name no parent
        net_type = _ARIN_NET_TYPES.get(net_type or "", net_type)
        match = re.search(r"\(([^()]+)\)\s*$", _whois_field(part, "Parent") or "")
        parent = match.group(1) if match else None
    net_fields: dict[str, Any] = {
        "handle": _handle(part, written, span, registry),
        "start_address": str(IPAddress(span.first)),
        "end_address": str(IPAddress(span.last)),
        "cidr": best.get("cidr"),
        "name": best.get("name"),
        "country": None if registry == "arin" else best.get("country"),  # ARIN's is the org's
        "type": net_type,
        "parent_handle": parent,
        "status": [],
    }
    record = to_record(net_fields, _people(part, registry, text), address, registry, "whois")
    record.registration_date = best.get("created")
    record.last_changed = best.get("updated")
    return record


class _TextWhois(Whois):
    """ipwhois' WHOIS text parser without the `Net` it is built on: a `Net` makes a DNS resolver
    (reading /etc/resolv.conf) and a URL opener, for text that needs neither (6-12% of a crawl of
    all IPv4 went there)."""

    def __init__(self) -> None:  # parsing text only: nothing to look up, so no Net
        pass


_TEXT_WHOIS = _TextWhois()
# The fields of ipwhois' networks parse_whois reads. ipwhois parses eleven by default, `emails`
# with a pattern that rescans the object from every line (most of a listing's parse time).
_IPWHOIS_FIELDS = ["name", "handle", "description", "country", "created", "updated"]


def _ipwhois_nets(text: str, registry: str) -> list[Any]:
    """The networks of a WHOIS answer as ipwhois' offline `Whois.lookup` reads them (range, cidr
    and `_IPWHOIS_FIELDS`; dates as written: lookup applies no date format)."""
    if registry == "arin":
        nets = _TEXT_WHOIS.get_nets_arin(text)
    elif registry == "lacnic":
        nets = _TEXT_WHOIS.get_nets_lacnic(text)
    else:
        nets = _TEXT_WHOIS.get_nets_other(text)
    patterns = RIR_WHOIS[registry]["fields"]
    for k, net in enumerate(nets):
        section_end = nets[k + 1]["start"] if k + 1 < len(nets) else None
        net.update(_TEXT_WHOIS.parse_fields(text, patterns, section_end, net["end"], None, _IPWHOIS_FIELDS))
        del net["start"], net["end"]
    return nets


_NETWORK = re.compile(r"^(?:inetnum|NetRange):[ \t]*(\S.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)


def _networks(text: str) -> list[tuple[IPRange, str, int]]:
    """Every network object of an answer: its span, its range as written, where it starts."""
    found = []
    for match in _NETWORK.finditer(text):
        span = span_of(match.group(1))
        if span is not None:
            found.append((span, match.group(1), match.start()))
    return found


def _part(text: str, at: int, span: IPRange, registry: str) -> str:
    """The part of an answer about the network starting at `at`: ARIN's block up to the next
    `NetRange:` (its organisation and contacts follow it), an RPSL answer's section."""
    if registry == "arin":
        following = _ARIN_NET.search(text, at + 1)
        return text[at : following.start() if following else len(text)]
    return _section(text, span)


def _handle(part: str, written: str, span: IPRange, registry: str) -> str:
    """The handle as RDAP spells it: ARIN's NetHandle, elsewhere the network's range itself
    (LACNIC's short CIDRs, `200.57.128/19`, written out)."""
    if registry == "arin":
        handle = _whois_field(part, "NetHandle")
        if handle:
            return handle
    if "/" in written:
        return str(cidr_abbrev_to_verbose(written.strip()))
    return f"{IPAddress(span.first)} - {IPAddress(span.last)}"


def span_of(text: str) -> IPRange | None:
    """A WHOIS range: `a - b`, a CIDR, or LACNIC's short CIDR (`200.57.128/19`)."""
    first, _, last = text.partition(" - ")
    try:
        if last:
            return IPRange(first.strip(), last.strip())
        if "/" in first:
            net = IPNetwork(cidr_abbrev_to_verbose(first.strip()))
            return IPRange(net.first, net.last)
    except (AddrFormatError, ValueError, TypeError):
        return None
    return None


def _section(text: str, span: IPRange) -> str:
    """The part of an answer about one network: RPSL answers repeat `% Information related to`
    for each object they show (APNIC adds mirrored national-registry objects)."""
    for section in _RPSL_SECTION.split(text)[1:]:
        found = span_of(_whois_field(section, "inetnum") or "")
        if found is not None and (found.first, found.last) == (span.first, span.last):
            return section
    return text


def _fields(text: str, name: str) -> list[str]:
    pattern = rf"^{name}:[ \t]*(\S.*?)[ \t]*$"
    return [m.strip() for m in re.findall(pattern, text, re.IGNORECASE | re.MULTILINE)]


def _people(part: str, registry: str, text: str) -> contacts.Contacts:
    """Holder, holder's country and abuse e-mails as a registry's WHOIS prints them, read from the
    network's own part of the answer (`text`: the whole answer, for what only it holds)."""
    if registry == "arin":  # "Organization: Google Inc. (GOGL)"; the Org block holds the country
        org = re.sub(r"\s*\([^()]*\)\s*$", "", _whois_field(part, "Organization") or "")
        # The network's own abuse contact (R...) before its organisation's
        abuse = _fields(part, "RAbuseEmail") or _fields(part, "OrgAbuseEmail")
        country = contacts.country_code(_whois_field(part, "Country"))
        return contacts.Contacts(org or _whois_field(part, "OrgName"), country, sorted(set(abuse)))
    if registry == "lacnic":  # owner:, and the abuse-c handle's person object (registro.br: nic-hdl-br)
        handle = _whois_field(part, "abuse-c")
        person = re.search(rf"^nic-hdl(?:-br)?:[ \t]*{re.escape(handle)}[ \t]*$(.*?)(?:\n\s*\n|\Z)", text,
                           re.MULTILINE | re.DOTALL | re.IGNORECASE) if handle else None
        abuse = _fields(person.group(1), "e-mail") if person else []
        # registro.br answers for Brazil alone, with no country line
        brazil = "BR" if _REGISTRO_BR.search(text) else None
        return contacts.Contacts(_whois_field(part, "owner"), brazil, sorted(set(abuse)))
    return contacts.Contacts(_rpsl_holder(part), None, _rpsl_abuse(part, text))


_REGISTRO_BR = re.compile(r"^% Copyright \(c\) Nic\.br|whois\.registro\.br", re.MULTILINE | re.IGNORECASE)


# The rest of an object after its key line, up to a blank line (a line of spaces or tabs; or of any
# white space, as LACNIC's person objects were read) or the end.
_TO_BLANK = re.compile(r"(.*?)(?:\n[ \t]*\n|\Z)", re.DOTALL)
_TO_BLANK_OR_SPACE = re.compile(r"(.*?)(?:\n\s*\n|\Z)", re.DOTALL)
_KEY_LINES = {key: re.compile(rf"^{key}:[ \t]*(.*?)[ \t]*$", re.MULTILINE | re.IGNORECASE)
              for key in ("organisation", "nic-hdl")}


def _object_of(text: str, key: str, value: str, rest: re.Pattern[str]) -> str | None:
    """The rest of the first object whose `key:` line reads `value` (case aside): a fixed pattern
    rather than one compiled for each value, which cost a listing a compile per object (and
    pushed the fixed patterns out of `re`'s cache)."""
    wanted = value.lower()
    for line in _KEY_LINES[key].finditer(text):
        if line.group(1).lower() == wanted:
            found = rest.match(text, line.end())
            return found.group(1) if found else None
    return None


_ABUSE_COMMENT = re.compile(r"^% Abuse contact for '[^']*' is '([^']+)'", re.MULTILINE)


def _abuse_comment(text: str) -> list[str]:
    """The addresses of RIPE-style "% Abuse contact for" comments (an obfuscated one is none)."""
    return [found for found in _ABUSE_COMMENT.findall(text) if contacts.EMAIL.fullmatch(found)]


def _rpsl_abuse(section: str, text: str) -> list[str]:
    """The network's section's "% Abuse contact for" comment, else its `abuse-mailbox:` lines,
    else its inetnum's remarks about abuse (AFRINIC: "please send abuse reports to ..."), else the
    comment of a covering network's section (APNIC shows a national registry's object apart). A
    national registry's helpdesk gives way to the holder's own address in the section's remarks."""
    found = _abuse_comment(section) or _fields(section, "abuse-mailbox")
    if not found:
        found = contacts.remark_abuse_emails(_fields(_inetnum(section), "remarks")) or _abuse_comment(text)
    if contacts.national_helpdesk(found):
        found = contacts.remark_abuse_emails(_fields(section, "remarks")) or found
    return sorted(set(found))


def _inetnum(text: str) -> str:
    """The inetnum object of a section (up to its first blank line)."""
    match = re.search(r"^inetnum:.*?(?:\n[ \t]*\n|\Z)", text, re.MULTILINE | re.DOTALL | re.IGNORECASE)
    return match.group(0) if match else ""


def _rpsl_holder(text: str) -> str | None:
    """The `org-name:` of the organisation the inetnum names, else its first `descr:` line."""
    org = _whois_field(_inetnum(text), "org")
    if org:
        block = _object_of(text, "organisation", org, _TO_BLANK)
        name = _whois_field(block, "org-name") if block is not None else None
        if name:
            return name
    return _whois_field(_inetnum(text), "descr")


MAX_WHOIS_BYTES = 16 << 20  # a WHOIS answer (a listing of 10,000 inetnums is ~10 MB)
# ARIN's `r > <cidr>` answers every level below, full records (~600 bytes a network): a /8 such as
# 12/8 (52,000 networks in the simulator's standard) is tens of MB.
MAX_ARIN_LISTING_BYTES = 256 << 20


async def query(
    host: str, port: int, text: str, bind: str | None, timeout: float, limit: int = MAX_WHOIS_BYTES
) -> bytes:
    """One port-43 exchange: send the query, read the answer's bytes to the server's close, at most
    `limit` of them (AnswerTooLarge, with what was read: the server sent more)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port, local_addr=(bind, 0) if bind else None)
        try:
            writer.write(f"{text}\r\n".encode())
            await writer.drain()
            body = await reader.read(limit + 1)
            while len(body) <= limit and (more := await reader.read(limit + 1 - len(body))):
                body += more
            if len(body) > limit:
                raise AnswerTooLarge(f"a WHOIS answer from {host} over {limit} bytes (max_whois_bytes)", body)
            return body
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


_ARIN_TERMS = re.compile(r"^# ARIN WHOIS data and services are subject to the Terms of Use", re.MULTILINE)
_ARIN_NET = re.compile(r"^NetRange:", re.MULTILINE)
# A listing cut at ARIN's cap says so in a `#` comment (Whois-RWS: `<limitExceeded>true`); its
# port-43 wording is unverified, so any comment line naming a limit, a truncation or an excess is
# taken for it (ARIN's other comments: terms, "results may also be obtained via", ambiguous query).
_ARIN_LIMITED = re.compile(r"^#[^\n]*\b(?:limit|truncat|exceed)", re.IGNORECASE | re.MULTILINE)
# An answer listing exactly the cap's number of networks is taken for a cut one too, notice or not
# (ARIN's "stop displaying data after the 256th result"): a whole one that size costs one split.
ARIN_LISTING_LIMIT = rirs.BY_ID["arin"].whois_listing_limit


@dataclass(frozen=True)
class ArinAnswer:
    """One ARIN `r + >` or `r + <` answer, read: each listed network's first and last address and
    where its record lies in the text; `limited`: the server cut it at its cap."""

    text: str
    nets: tuple[tuple[int, int, int, int], ...]  # (first, last, start, end) of each record
    limited: bool


def read_arin_listing(text: str) -> ArinAnswer:
    """ARIN's answer to `r + > <cidr>` (every more specific network, full records) or `r + < <cidr>`
    (every network holding it). It ends with ARIN's terms block: without it the answer was cut in
    transit (MalformedAnswer); a refusal is WhoisRateLimited. Records are located, not parsed."""
    if _WHOIS_REFUSAL.search(text[:2000]) and not _ARIN_NET.search(text):
        raise WhoisRateLimited(text.strip().splitlines()[0][:200] if text.strip() else "refused")
    terms = list(_ARIN_TERMS.finditer(text))
    nets = list(_ARIN_NET.finditer(text))
    if not terms or (nets and terms[-1].start() < nets[-1].start()):
        raise MalformedAnswer("an ARIN listing without its closing terms block")
    notice = _ARIN_LIMITED.search(text, nets[-1].start()) if nets else _ARIN_LIMITED.search(text)
    close = notice.start() if notice and notice.start() < terms[-1].start() else terms[-1].start()
    spans = []
    for k, net in enumerate(nets):
        end = nets[k + 1].start() if k + 1 < len(nets) else close
        lo, hi = _net_range(text[net.start() : text.find("\n", net.start())])
        spans.append((lo, hi, net.start(), end))
    limited = notice is not None or len(nets) == ARIN_LISTING_LIMIT
    return ArinAnswer(text, tuple(spans), limited)


Listed = tuple[ArinAnswer, int]  # a network's record: the answer and its index there


def arin_children(
    listed: dict[tuple[int, int], Listed], wanted: Callable[[int, int], bool] | None = None
) -> list[NetworkRecord]:
    """The direct children among networks listed inside a parent, by span: the largest ones, none
    inside another (and among them those `wanted`), in address order. Only these are parsed."""
    records, reached = [], -1
    for lo, hi in sorted(listed, key=lambda s: (s[0], -s[1])):
        if lo > reached:  # not inside the previous kept one: a direct child
            reached = hi
            if wanted is None or wanted(lo, hi):
                records.append(_parse_listed(listed[(lo, hi)], lo))
    return records


def arin_subtree(
    listed: dict[tuple[int, int], Listed], parent_handle: str | None,
    wanted: Callable[[int, int], bool] | None = None,
) -> list[NetworkRecord]:
    """Every network listed inside a parent, all levels (those `wanted`), a parent before its
    children. One without a `Parent:` line is given the smallest listed network holding it (else
    the parent, `parent_handle`)."""
    records: list[NetworkRecord] = []
    holders: list[NetworkRecord] = []  # the networks holding the one at hand, innermost last
    for lo, hi in sorted(listed, key=lambda s: (s[0], -s[1])):
        while holders and holders[-1].last < lo:
            holders.pop()
        if wanted is not None and not wanted(lo, hi):
            continue  # outside the crawl's scope: not parsed (nothing inside it is wanted either)
        record = _parse_listed(listed[(lo, hi)], lo)
        record.parent_handle = record.parent_handle or (holders[-1].handle if holders else parent_handle)
        records.append(record)
        holders.append(record)
    return records


def _parse_listed(listed: Listed, first: int) -> NetworkRecord:
    answer, k = listed
    _, _, a, b = answer.nets[k]
    return parse_whois(answer.text[a:b], first, "arin")


def inside(answer: ArinAnswer, first: int, last: int) -> dict[tuple[int, int], Listed]:
    """The networks of an answer strictly inside first..last, by span."""
    return {(lo, hi): (answer, k) for k, (lo, hi, _, _) in enumerate(answer.nets)
            if first <= lo and hi <= last and (lo, hi) != (first, last)}


@dataclass
class ArinListing:
    """ARIN's `r + > <cidr>` listing of the networks strictly inside first..last, whole however
    long. An answer cut at the server's cap is never taken for the whole list: its CIDR is split
    in halves, each asked the same way, recursively. The networks no half can show (one spanning
    a half exactly, one straddling the cut: `r >` lists what is strictly inside the CIDR asked)
    all hold the half's first address, so each such address is asked once, `r + < <address>/32`
    (every network holding it), and what of it lies inside the parent kept. Nothing is assumed of
    the order the server lists in. `wanted`: halves outside it are not asked (the crawl's scope)."""

    ask: Callable[[str], Awaitable[Outcome]]  # one query through the attempt loop: an ArinAnswer
    first: int
    last: int
    wanted: Callable[[int, int], bool] | None = None
    listed: dict[tuple[int, int], Listed] = field(default_factory=dict)
    complete: bool = True
    unanswered: bool = False  # a query failed every try (errors, 429s): worth asking again later
    limited: int = 0  # answers cut at the cap, each split
    _held: set[int] = field(default_factory=set)  # addresses whose holders were asked

    async def run(self, cidr: str) -> None:
        """List the parent by `r + > <cidr>` (the smallest CIDR holding it), in parts if cut."""
        net = IPNetwork(cidr)
        await self._part(int(net.first), net.prefixlen)

    async def _part(self, base: int, plen: int) -> None:
        answer = await self._query(f"r + > {IPAddress(base)}/{plen}")
        if answer is None or not answer.limited:
            return
        self.limited += 1
        if plen >= 32:
            self.complete = False
            return
        halves = (base, base + (1 << (31 - plen)))
        for address in halves:
            if self.first <= address <= self.last and address not in self._held:
                self._held.add(address)
                held = await self._query(f"r + < {IPAddress(address)}/32")
                # the parent holds the address: an answer without it, or cut, is no list of holders
                whole = held is not None and not held.limited and any(
                    lo <= self.first and self.last <= hi for lo, hi, _, _ in held.nets)
                self.complete = self.complete and whole
        for half in halves:
            a, b = max(half, self.first), min(half + (1 << (31 - plen)) - 1, self.last)
            if a <= b and (self.wanted is None or self.wanted(a, b)):
                await self._part(half, plen + 1)

    async def _query(self, query: str) -> ArinAnswer | None:
        outcome = await self.ask(query)
        if outcome.kind is not Kind.ANSWER:
            self.complete = False
            self.unanswered = self.unanswered or outcome.unanswered
            return None
        answer: ArinAnswer = outcome.value
        for span, at in inside(answer, self.first, self.last).items():
            self.listed.setdefault(span, at)
        return answer

    def children(self) -> list[NetworkRecord]:
        """The parent's direct children among what was listed (`arin_children`)."""
        return arin_children(self.listed, self.wanted)

    def subtree(self, parent_handle: str | None) -> list[NetworkRecord]:
        """Every network listed inside the parent, all levels (`arin_subtree`): once `complete`,
        its whole subtree, as an `rdap-bottom` answer is."""
        return arin_subtree(self.listed, parent_handle, self.wanted)


def _net_range(line: str) -> tuple[int, int]:
    a, _, b = line.partition(":")[2].partition(" - ")
    try:
        return int(IPAddress(a.strip())), int(IPAddress(b.strip()))
    except (AddrFormatError, ValueError) as exc:
        raise MalformedAnswer(f"a listed NetRange that is no range: {line!r}") from exc
