"""Port-43 queries as the registries' servers read them: RIPE-style `-m`, `-M`, `-r`; ARIN's `r >`, `r <`."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import NamedTuple

from whoiscrawl import rirs
from whoiscrawl.ipv4 import ip_str
from whoiscrawl.sim import relations, render
from whoiscrawl.sim.model import World
from whoiscrawl.sim.relations import parse_ipv4, parse_span

RIPE_STYLE = rirs.offering(rirs.WHOIS_MORE_SPECIFIC)  # RIPE NCC's software: RIPE NCC, APNIC, AFRINIC
ARIN_STYLE = rirs.offering(rirs.WHOIS_ARIN_CHILDREN)  # ARIN's own syntax
PERSONAL_DATA = frozenset({"ripencc", "afrinic"})  # count contact objects served against a daily cap


@dataclass(frozen=True)
class Query:
    """One parsed query line: what it asks (`lookup`, `-m`, `-M`, `r>`, `r<`), of which span, and how."""

    kind: str
    span: tuple[int, int]
    no_contacts: bool = False  # RIPE-style `-r`
    full: bool = False  # ARIN's `+`
    text: str = ""

    @property
    def protocol(self) -> str:
        return {"lookup": "whois", "-m": "whois-m", "-M": "whois-M", "r>": "whois-r>",
                "r<": "whois-r<"}[self.kind]

    @property
    def arin(self) -> bool:
        """ARIN's own syntax: `r > <cidr>` or `r < <cidr>`."""
        return self.kind in ("r>", "r<")


class Answer(NamedTuple):
    """A query's answer: its text, the contact objects it carries (a daily cap counts them) and,
    for a listing cut at the server's cap, that cap (None: answered whole)."""

    text: str
    contacts: int = 0
    limited: int | None = None


def parse(line: str) -> Query | None:
    """A query line: ARIN's `r [+] > <cidr>` or `r [+] < <cidr>`, RIPE-style `[-r] -m|-M <prefix or
    range>`, or an address (the last IPv4-looking token: `n + 1.2.3.4`, `-B 1.2.3.4`)."""
    words = line.replace(",", " ").split()
    flags = {w for w in words if len(w) > 1 and w[0] == "-" and w[1:].isalpha()}
    text = line.strip()
    if words[:1] == ["r"] and (">" in words or "<" in words):
        span = parse_span(words[-1])
        kind = "r>" if ">" in words else "r<"
        return Query(kind, span, full="+" in words, text=text) if span else None
    kind = "-M" if "-M" in flags else "-m" if "-m" in flags else ""
    if kind:
        span = parse_span(" ".join(w for w in words if w not in flags))
        return Query(kind, span, no_contacts="-r" in flags, text=text) if span else None
    for tok in reversed(words):
        a = parse_ipv4(tok.split("/")[0])
        if a is not None:
            return Query("lookup", (a, a), no_contacts="-r" in flags, text=text)
    return None


def refusal(query: Query, registry: str) -> str | None:
    """The server's answer to a query its software does not take, or None if it takes it."""
    if query.kind in ("-m", "-M") and registry not in RIPE_STYLE:
        if registry in ARIN_STYLE:
            return render.arin_no_match(query.text)
        return "% This server accepts single ASN, IPv4 or IPv6 queries\n"
    if query.arin and registry not in ARIN_STYLE:
        return "%ERROR:108: bad character in input\n"
    return None


def inside(world: World, reg: str, first: int, last: int) -> list[int]:
    """Every object of the registry strictly inside first..last, all levels (`-M`, ARIN's `>`)."""
    out: list[int] = []
    j, n = bisect.bisect_left(world.start, first), len(world.start)
    while j < n and world.start[j] <= last:
        if world.end[j] <= last and not (world.start[j] == first and world.end[j] == last) and \
                world.registry(j) == reg and not world.is_placeholder(j):
            out.append(j)
        j += 1
    return out


def holding(world: World, reg: str, first: int, last: int) -> list[int]:
    """Every object of the registry holding all of first..last, its own included, outermost first
    (ARIN's `<`)."""
    out: list[int] = []
    obj = world.holding(first, last)
    while obj >= 0:
        if world.registry(obj) == reg and not world.is_placeholder(obj):
            out.append(obj)
        obj = world.parent[obj]
    return out[::-1]


def answer(world: World, query: Query, registry: str, obj: int, arin_limit: int = 0) -> Answer:
    """The answer to a query the registry's server takes; ARIN's listings cut at `arin_limit`
    networks (0: none), as its server stops at its limit and says so."""
    rpsl = registry in RIPE_STYLE
    if query.kind == "lookup":
        text = render.whois_text(world, obj, not query.no_contacts)
        return Answer(text, int(rpsl and not query.no_contacts))
    if query.arin:
        found = (inside if query.kind == "r>" else holding)(world, registry, *query.span)
        limited = arin_limit if 0 < arin_limit < len(found) else None
        found = found[:arin_limit] if limited else found
        return Answer(render.arin_listing(world, found, query.text, query.full, limited), 0, limited)
    if query.kind == "-m":
        found = relations.down(world, registry, *query.span, 1 << 32)
    else:
        found = inside(world, registry, *query.span)
    text = render.whois_listing(world, found, registry, not query.no_contacts)
    return Answer(text, 0 if query.no_contacts else len(found))


def first_address(query: Query) -> str:
    return ip_str(query.span[0])
