"""RFC 9910 relation search as RIPE NCC's server answers it (and ARIN's, switchable): the four relations."""

from __future__ import annotations

import bisect
import json
from typing import Any
from urllib.parse import unquote

from whoiscrawl.ipv4 import ip_str
from whoiscrawl.sim import render
from whoiscrawl.sim.model import World

RELATIONS = ("rdap-up", "rdap-down", "rdap-top", "rdap-bottom")
SINGLE = frozenset({"rdap-up", "rdap-top"})  # answer one object; down and bottom answer ipSearchResults
ROW_LIMIT = 10_000  # RIPE NCC's rdap.relation.query.size.limit default
CONFORMANCE = ["rirSearch1", "ips"]


def parse_ipv4(text: str) -> int | None:
    parts = text.split(".")
    if len(parts) != 4:
        return None
    n = 0
    for p in parts:
        if not p.isdigit() or len(p) > 3:
            return None
        v = int(p)
        if v > 255:
            return None
        n = (n << 8) | v
    return n


def parse_span(text: str) -> tuple[int, int] | None:
    """An RFC 9910 search argument: 'a.b.c.d/len' (aligned) or 'first - last'; None if neither."""
    text = unquote(text).strip()
    if "/" in text:
        addr_s, _, plen = text.partition("/")
        first = parse_ipv4(addr_s)
        if first is None or not plen.isdigit() or int(plen) > 32:
            return None
        size = 1 << (32 - int(plen))
        return (first, first + size - 1) if first % size == 0 else None
    a, sep, b = text.partition("-")
    first, last = parse_ipv4(a.strip()), parse_ipv4(b.strip()) if sep else None
    return (first, last) if first is not None and last is not None and first <= last else None


def registries(arin: bool = True) -> frozenset[str]:
    """Who serves relation search: RIPE NCC always, ARIN unless switched off; nobody else."""
    return frozenset({"ripencc", "arin"} if arin else {"ripencc"})


def _mine(world: World, reg: str, i: int) -> bool:
    return i >= 0 and world.registry(i) == reg and not world.is_placeholder(i)


def up(world: World, reg: str, first: int, last: int) -> int:
    """The smallest object of the registry strictly containing the key (the key itself excluded)."""
    obj = world.holding(first, last)
    while obj >= 0 and world.start[obj] == first and world.end[obj] == last:
        obj = world.parent[obj]
    return obj if _mine(world, reg, obj) else -1


def top(world: World, reg: str, first: int, last: int) -> int:
    """The least specific object of the registry strictly containing the key."""
    obj = up(world, reg, first, last)
    while obj >= 0 and world.parent[obj] >= 0 and _mine(world, reg, world.parent[obj]):
        obj = world.parent[obj]
    return obj


def down(world: World, reg: str, first: int, last: int, limit: int) -> list[int]:
    """The largest objects of the registry strictly inside the key, in address order, at most
    `limit` (WHOIS `-m`'s twin: for an object's own range, its direct children)."""
    out: list[int] = []
    j, n = bisect.bisect_left(world.start, first), len(world.start)
    while j < n and world.start[j] <= last and len(out) < limit:
        inside = world.end[j] <= last and not (world.start[j] == first and world.end[j] == last)
        if inside and _mine(world, reg, j):
            out.append(j)
            j = bisect.bisect_right(world.start, world.end[j], j + 1)  # past its subtree
        else:
            j += 1
    return out


def bottom(world: World, reg: str, first: int, last: int, limit: int) -> list[int]:
    """The most specific objects strictly inside the key: leaves, and parents their children do
    not fill (they are the most specific answer somewhere), in address order, at most `limit`."""
    out: list[int] = []
    j, n = bisect.bisect_left(world.start, first), len(world.start)
    while j < n and world.start[j] <= last and len(out) < limit:
        inside = world.end[j] <= last and not (world.start[j] == first and world.end[j] == last)
        if inside and _mine(world, reg, j) and not _filled(world, j):
            out.append(j)
        j += 1
    return out


def _filled(world: World, i: int) -> bool:
    if not world.nchildren[i]:
        return False
    kids = world.children(i, 1 << 32)
    return sum(world.end[k] - world.start[k] + 1 for k in kids) == world.end[i] - world.start[i] + 1


def links(world: World, i: int, base_url: str) -> list[dict[str, Any]]:
    """The relation links RIPE NCC's answers carry, keyed by the object's `a - b` range."""
    self_url = f"{base_url}ip/{ip_str(world.start[i])}"
    key = f"{ip_str(world.start[i])}%20-%20{ip_str(world.end[i])}"
    out = []
    for rel, active in (("rdap-up", False), ("rdap-up", True), ("rdap-down", False), ("rdap-top", False),
                        ("rdap-top", True), ("rdap-bottom", False)):
        href = f"{base_url}ips/rirSearch1/{rel}/{key}" + ("?status=active" if active else "")
        out.append({"value": self_url, "rel": f"{rel} rdap-active" if active else rel, "href": href,
                    "type": "application/rdap+json"})
    return out


def results_bytes(world: World, objects: list[int], base_url: str, reg: str) -> bytes:
    """An `ipSearchResults` answer: whole, never cut (a longer one is refused instead)."""
    results = []
    for c in objects:
        obj = render.rdap_object(world, c, base_url, relation_links=links(world, c, base_url))
        del obj["rdapConformance"], obj["notices"]
        results.append(obj)
    doc = {"rdapConformance": ["rdap_level_0", "cidr0", "nro_rdap_profile_0", *CONFORMANCE],
           "notices": [{"title": "Terms of Service", "description": [render.TOS[reg]]}],
           "ipSearchResults": results}
    return json.dumps(doc, separators=(",", ":")).encode()


def too_many_rows() -> bytes:
    """RIPE NCC's answer above the row limit: HTTP 400, no partial list, no paging."""
    return render.rdap_error(400, "Too Many Rows", extra="The result size is too large")
