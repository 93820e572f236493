"""ARIN's `r >` listing, client side: an answer cut at ARIN's cap read as such, and a long listing
asked in parts that still finds every child, straddlers of a cut and networks spanning a part
included, whatever order the server lists in."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netaddr import IPAddress, IPNetwork, spanning_cidr

from whoiscrawl.ipv4 import ip_str
from whoiscrawl.registry import whois
from whoiscrawl.registry.outcome import Kind, Outcome

TERMS = ("\n#\n# ARIN WHOIS data and services are subject to the Terms of Use\n"
         "# available at: https://www.arin.net/resources/registry/whois/tou/\n#\n\n")
NOTICE = "\n#\n# Results limited to 256 networks: the query matched more.\n#\n"
Span = tuple[int, int]


def record(lo: int, hi: int) -> str:
    """One network's full record, as ARIN's `r + >` prints it."""
    return (f"NetRange:       {ip_str(lo)} - {ip_str(hi)}\nNetName:        NET{lo:x}-{hi:x}\n"
            f"NetHandle:      {handle((lo, hi))}\nParent:         \nNetType:        Reassigned\n"
            "Organization:   Example (EX-1)\nRegDate:        2001-01-01\nUpdated:        2001-01-01\n\n"
            "OrgName:        Example\nOrgId:          EX-1\nCountry:        US\n\n")


def handle(span: Span) -> str:
    return f"NET-{ip_str(span[0]).replace('.', '-')}-{span[1] - span[0]}"


def answer(spans: list[Span], notice: str = "") -> str:
    return TERMS + "".join(record(*s) for s in spans) + notice + TERMS


def test_an_answer_cut_at_arins_cap_is_read_as_cut_never_as_the_list():
    spans = [(ip_int("12.0.0.0"), ip_int("12.0.0.255")), (ip_int("12.0.1.0"), ip_int("12.0.2.255"))]
    cut = whois.read_arin_listing(answer(spans, NOTICE))
    assert cut.limited and [n[:2] for n in cut.nets] == spans
    assert "Results limited" not in cut.text[cut.nets[-1][2]:cut.nets[-1][3]]  # the record ends before it
    whole = whois.read_arin_listing(answer(spans))
    assert not whole.limited and [n[:2] for n in whole.nets] == spans


@pytest.mark.parametrize("notice", [
    "\n#\n# Query results exceeded the limit of 256 records.\n#\n",
    "\n# Output truncated: narrow the query\n",
    "\n#\n# limitExceeded: 256\n#\n",
])
def test_other_wordings_of_the_cut_are_read_as_cut(notice: str):
    assert whois.read_arin_listing(answer([(0, 255)], notice)).limited


def test_an_answer_of_exactly_arins_256_networks_is_taken_for_cut_notice_or_not():
    spans = [(a << 8, (a << 8) + 255) for a in range(whois.ARIN_LISTING_LIMIT or 256)]
    assert whois.read_arin_listing(answer(spans)).limited
    assert not whois.read_arin_listing(answer(spans[:-1])).limited


def ip_int(text: str) -> int:
    return int(IPAddress(text))


def laminar(rng: random.Random, lo: int, hi: int, depth: int) -> list[Span]:
    """Networks inside lo..hi, nested or apart, at any alignment (ARIN's NetRanges need not be
    CIDRs), some spanning a half of their parent exactly."""
    out: list[Span] = []
    p = lo
    while depth and p <= hi:
        size = min(rng.choice((1, 2, 3, 4, 6, 8, 16, 24, 32, 64)), hi - p + 1)
        if (p, p + size - 1) != (lo, hi) and rng.random() < 0.6:
            out.append((p, p + size - 1))
            out += laminar(rng, p, p + size - 1, depth - 1)
        p += size + (rng.randint(0, 8) if rng.random() < 0.3 else 0)
    return out


Ask = Callable[[str], Awaitable[Outcome]]


def server(networks: list[Span], cap: int, rng: random.Random, containing: bool) -> tuple[list[str], Ask]:
    """ARIN's port 43 over `networks`: `r + >` every network strictly inside the CIDR (with
    `containing`, also those holding it, as ARIN's documentation says it may show them), in an
    order of its own, cut at `cap` with a notice; `r + <` every network holding the CIDR."""
    asked: list[str] = []

    async def ask(query: str) -> Outcome:
        asked.append(query)
        net = IPNetwork(query.rsplit(" ", 1)[-1])
        first, last = int(net.first), int(net.last)
        if " > " in query:
            found = [s for s in networks if (first <= s[0] and s[1] <= last and s != (first, last))
                     or (containing and s[0] <= first and last <= s[1])]
        else:
            found = [s for s in networks if s[0] <= first and last <= s[1]]
        rng.shuffle(found)
        cut = len(found) > cap
        text = answer(found[:cap], NOTICE if cut else "")
        return Outcome(Kind.ANSWER, whois.read_arin_listing(text))

    return asked, ask


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([4, 5, 8]), st.booleans(), st.booleans())
def test_a_listing_cut_at_any_cap_is_asked_in_parts_and_finds_every_child(
    seed: int, cap: int, containing: bool, aligned_parent: bool
):
    rng = random.Random(seed)  # the networks, and the order the server lists them in
    # the cap at least the holders of an address (the parent and 3 levels): those come whole
    base = ip_int("10.0.0.0")
    parent = (base, base + (255 if aligned_parent else 191))  # a NetRange of one CIDR, or of two
    networks = [parent, *laminar(rng, *parent, depth=3)]
    direct = sorted({s for s in networks if s != parent and not any(
        o != s and o != parent and o[0] <= s[0] and s[1] <= o[1] for o in networks)})
    asked, ask = server(networks, cap, rng, containing)
    walk = whois.ArinListing(ask, *parent)
    asyncio.run(walk.run(str(spanning_cidr([IPAddress(parent[0]), IPAddress(parent[1])]))))
    assert walk.complete
    assert [(c.first, c.last) for c in walk.children()] == direct
    assert set(walk.listed) == set(networks) - {parent}  # every level below, too
    # ... which is the whole subtree, a parent before its children; a network whose record names
    # no parent (this server's `Parent:` is blank) is given the smallest listed one holding it
    subtree = walk.subtree(handle(parent))
    below = sorted(set(networks) - {parent}, key=lambda s: (s[0], -s[1]))
    assert [(r.first, r.last) for r in subtree] == below
    for r in subtree:
        holders = [o for o in networks if o[0] <= r.first and r.last <= o[1] and o != (r.first, r.last)]
        assert r.parent_handle == handle(min(holders, key=lambda o: o[1] - o[0]))
    # the cost: a cut answer's two halves, and the holders of each cut's addresses asked once
    cut, holders = walk.limited, sum(" < " in q for q in asked)
    assert holders <= (cut + 1 if cut else 0) and len(asked) <= 1 + 2 * cut + holders


def test_holders_that_do_not_name_the_parent_leave_the_listing_incomplete():
    # A server that does not take `r <` as ARIN documents it (no match, or not the parent that
    # holds the address): what lies across the cut is unknown, so the walk's grid must probe it.
    base = ip_int("10.0.0.0")
    parent = (base, base + 255)
    networks = [parent, *[(base + 16 * k, base + 16 * k + 15) for k in range(16)]]
    _asked, capped = server(networks, 4, random.Random(1), containing=False)

    async def ask(query: str) -> Outcome:
        if " < " in query:
            no_match = f"{TERMS}No match found for {query}.\n{TERMS}"
            return Outcome(Kind.ANSWER, whois.read_arin_listing(no_match))
        return await capped(query)

    walk = whois.ArinListing(ask, *parent)
    asyncio.run(walk.run("10.0.0.0/24"))
    assert walk.limited and not walk.complete
    assert [(c.first, c.last) for c in walk.children()] == networks[1:]  # the halves still listed all
