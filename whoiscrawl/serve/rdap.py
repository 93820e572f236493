"""The map as RDAP documents (pure): RFC 9083 networks and errors, RFC 9910 relations, RFC 9224 bootstrap."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import numpy as np

from whoiscrawl import rirs
from whoiscrawl.ipv4 import cidr_blocks, ip_str
from whoiscrawl.serve.index import MapIndex
from whoiscrawl.serve.lookup import parse_address
from whoiscrawl.space import build_bootstrap_document

CONFORMANCE = ["rdap_level_0", "cidr0", "rirSearch1", "ips"]
RELATIONS = ("rdap-up", "rdap-down", "rdap-top", "rdap-bottom")
ROW_LIMIT = 10_000  # networks a relation search answers at most (RIPE NCC's own limit); more: truncated
# The string fields an ip network object shows, read at once (`network`).
_SHOWN = ("handle", "name", "type", "country", "parent_handle", "registrant", "registration_date",
          "last_changed", "fetched_at", "registry", "source")
MIRROR_NOTICE = {
    "title": "whoiscrawl mirror",
    "description": ["Answered from a map whoiscrawl collected from the registries' own records; the "
                    "registry named in each network's remarks is the authoritative source."],
}


class QueryError(ValueError):
    """A query that cannot be answered: `status` is the HTTP status of its RDAP error object."""

    def __init__(self, status: int, title: str, description: str) -> None:
        super().__init__(description)
        self.status, self.title, self.description = status, title, description


def error(status: int, title: str, description: str) -> dict[str, Any]:
    """An RFC 9083 section 6 error object."""
    return {"rdapConformance": ["rdap_level_0"], "errorCode": status, "title": title,
            "description": [description], "notices": [MIRROR_NOTICE]}


def parse_key(text: str) -> tuple[int, int]:
    """An address, a prefix `a.b.c.d/len` or a range `a - b` (RFC 9910 keys) as first..last."""
    text = unquote(text).strip()
    if "/" in text:
        addr, _, plen = text.partition("/")
        first = _address(addr)
        if not plen.isdigit() or int(plen) > 32:
            raise QueryError(400, "Bad Request", f"{text!r}: an IPv4 prefix length is 0 to 32")
        size = 1 << (32 - int(plen))
        if first % size:
            raise QueryError(400, "Bad Request", f"{text!r}: the address has bits set past the prefix "
                             f"length (the prefix is {ip_str(first - first % size)}/{plen})")
        return first, first + size - 1
    if "-" in text:
        a, _, b = text.partition("-")
        first, last = _address(a.strip()), _address(b.strip())
        if first > last:
            raise QueryError(400, "Bad Request", f"{text!r}: the range ends before it starts")
        return first, last
    address = _address(text)
    return address, address


def _address(text: str) -> int:
    address, why = parse_address(text)
    if why is None:
        return address
    if ":" in text:
        raise QueryError(404, "Not Found", f"{why} (this mirror holds no IPv6 networks)")
    raise QueryError(400, "Bad Request", why)


@functools.lru_cache(maxsize=1 << 14)
def _date(text: str | None) -> str | None:
    """An event date as RFC 3339 needs it, or None where the registry's text is no date (kept:
    networks share their dates, and parsing one costs more than the rest of an event)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat().replace("+00:00", "Z")
    except ValueError:
        return None


def _card(*props: list[Any]) -> list[Any]:
    return ["vcard", [["version", {}, "text", "4.0"], *props]]


def _entities(registrant: str | None, emails: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if registrant:
        out.append({"objectClassName": "entity", "roles": ["registrant"], "vcardArray": _card(
            ["fn", {}, "text", registrant], ["kind", {}, "text", "org"])})
    if emails:
        cards = [["email", {"type": "work"}, "text", e] for e in emails]
        out.append({"objectClassName": "entity", "roles": ["abuse"], "vcardArray": _card(
            ["fn", {}, "text", "Abuse contact"], ["kind", {}, "text", "group"], *cards)})
    return out


def _events(registered: str | None, changed: str | None, fetched: str | None) -> list[dict[str, Any]]:
    out = []
    for action, text in (("registration", registered), ("last changed", changed),
                         ("last update of RDAP database", fetched)):
        when = _date(text)
        if when:
            out.append({"eventAction": action, "eventDate": when})
    return out


def _links(base: str, start: str, end: str) -> list[dict[str, Any]]:
    self_url = f"{base}ip/{start}"
    key = f"{start}%20-%20{end}"  # quote("a - b"): a dotted quad needs no escaping, the spaces do
    links = [{"value": self_url, "rel": "self", "href": self_url, "type": "application/rdap+json"}]
    links += [{"value": self_url, "rel": rel, "href": f"{base}ips/rirSearch1/{rel}/{key}",
               "type": "application/rdap+json"} for rel in RELATIONS]
    return links


def network(index: MapIndex, net: int, base: str, top: bool = True) -> dict[str, Any]:
    """An RFC 9083 ip network object (with cidr0's prefixes and RFC 9910's relation links); `top`:
    a whole answer (conformance and notices), else a member of search results. Reads only the
    fields it shows (an uncached answer is most of a request's work)."""
    (handle, name, kind, country, parent_handle, registrant, registered, changed, fetched, registry,
     source) = index.texts(net, _SHOWN)
    first, last = index.first.item(net), index.last.item(net)
    start, end = ip_str(first), ip_str(last)
    out: dict[str, Any] = {"rdapConformance": CONFORMANCE} if top else {}
    out |= {"objectClassName": "ip network", "handle": handle, "startAddress": start, "endAddress": end,
            "ipVersion": "v4"}
    parent = index.parent.item(net)
    if not parent_handle and parent >= 0:  # as `MapIndex.record` names it
        parent_handle = index.texts(parent, ("handle",))[0]
    shown = (("name", name), ("type", kind), ("country", country), ("parentHandle", parent_handle))
    for member, text in shown:
        if text:
            out[member] = text
    status = index.value(net, "status")
    if status:
        out["status"] = status
    out["cidr0_cidrs"] = [{"v4prefix": ip_str(a), "length": plen} for a, plen in cidr_blocks(first, last)]
    out["entities"] = _entities(registrant, index.value(net, "abuse_emails"))  # type: ignore[arg-type]
    out["events"] = _events(registered, changed, fetched)
    out["links"] = _links(base, start, end)
    out["remarks"] = [{"title": "Source", "description": [
        f"Registry: {registry}; read over {source or 'rdap'}; observed {fetched}"]}]
    if top:
        out["notices"] = [MIRROR_NOTICE]
    return out


def relation(index: MapIndex, rel: str, first: int, last: int) -> np.ndarray:
    """RFC 9910: the networks related to the key first..last (the key's own network excluded): up,
    the nearest holding it; top, the outermost; down, the largest inside it; bottom, those inside
    it that are the most specific network somewhere (leaves, and parents their children do not fill)."""
    if rel in ("rdap-up", "rdap-top"):
        net = index.containing(first, last)
        while net >= 0 and int(index.first[net]) == first and int(index.last[net]) == last:
            net = int(index.parent[net])
        while rel == "rdap-top" and net >= 0 and int(index.parent[net]) >= 0:
            net = int(index.parent[net])
        return np.array([net] if net >= 0 else [], np.int64)
    if rel not in RELATIONS:
        raise QueryError(400, "Bad Request", f"unknown relation {rel!r}: use one of {', '.join(RELATIONS)}")
    inside = index.inside(first, last)
    inside = inside[(index.first[inside] != first) | (index.last[inside] != last)]
    if rel == "rdap-down":
        return inside[~np.isin(index.parent[inside], inside)]
    return inside[index.owners()[inside]]


def search_results(index: MapIndex, nets: np.ndarray, base: str) -> dict[str, Any]:
    """RFC 9910 search results (`ipSearchResults`), cut at ROW_LIMIT with RFC 9083's truncation notice."""
    notices: list[dict[str, Any]] = [MIRROR_NOTICE]
    if len(nets) > ROW_LIMIT:
        notices.append({"title": "Search results truncated", "type": "result set truncated due to "
                        "excessive load", "description": [f"{len(nets):,} networks match; the first "
                                                          f"{ROW_LIMIT:,} are listed: ask for parts"]})
        nets = nets[:ROW_LIMIT]
    return {"rdapConformance": CONFORMANCE, "notices": notices,
            "ipSearchResults": [network(index, int(n), base, top=False) for n in nets.tolist()]}


def help_document(index: MapIndex) -> dict[str, Any]:
    """RFC 9082 section 3.1.6: what this server answers."""
    return {"rdapConformance": CONFORMANCE, "notices": [MIRROR_NOTICE, {"title": "Queries", "description": [
        "GET ip/<address> and ip/<prefix>: the most specific network holding it",
        "GET ips/rirSearch1/rdap-up|rdap-down|rdap-top|rdap-bottom/<prefix or 'a - b'>: related networks",
        "POST batch: addresses one a line; JSON lines back, one an address, in order",
        "GET bootstrap/ipv4.json: an RFC 9224 document naming this server for all of IPv4",
        f"The map holds {len(index):,} networks; newest record observed {index.observed or 'never'}.",
    ]}]}


def bootstrap(root: str) -> dict[str, Any]:
    """An RFC 9224 document pointing each registry's /8s at this mirror's base for that registry, so
    a client keeps each registry's answers (and budget) apart."""
    doc = build_bootstrap_document({r: f"{root}{r}/" for r in rirs.REGISTRIES},
                                   "whoiscrawl mirror: every registry's networks, from its map")
    return doc
