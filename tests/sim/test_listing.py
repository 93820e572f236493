"""Listings, server and client: RFC 9910 relation search (RIPE NCC, ARIN), WHOIS `-m` and ARIN's `r >`."""

from __future__ import annotations

import asyncio
import bisect
import json
from collections import Counter

import aiohttp
import pytest
from netaddr import IPAddress, spanning_cidr

from whoiscrawl.ipv4 import cidr_blocks, ip_int, ip_str
from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.registry import MalformedAnswer, RegistryClient, parse_whois_listing, whois
from whoiscrawl.sim import relations, render, score, whoisq
from whoiscrawl.sim.model import World
from whoiscrawl.sim.scenarios import Scenario
from whoiscrawl.space import Bootstrap


def parent_with(world: World, quick: Scenario, registry: str, low: int, high: int) -> int:
    """A single-CIDR object of the registry in the quick ranges with low..high children."""
    for first, last in quick.intervals:
        for _a, _b, obj in world.segments(first, last):
            p = world.parent[obj] if obj >= 0 else -1
            fits = p >= 0 and world.registry(p) == registry and low <= world.nchildren[p] <= high
            if fits and len(cidr_blocks(world.start[p], world.end[p])) == 1:
                return p
    raise LookupError(registry)


async def network_doc(session: aiohttp.ClientSession, sim, world: World, i: int) -> dict:
    ((address, length),) = cidr_blocks(world.start[i], world.end[i])
    registry = world.registry(i)
    async with session.get(f"{sim.base_url(registry)}ip/{ip_str(address)}/{length}") as resp:
        assert resp.status == 200
        return await resp.json(content_type=None)


def down(doc: dict) -> list[str]:
    return [link["href"] for link in doc.get("links", []) if link["rel"] == "rdap-down"]  # AFRINIC: no links


def key(world: World, i: int) -> str:
    return f"{ip_str(world.start[i])}%20-%20{ip_str(world.end[i])}"


def span(world: World, i: int) -> tuple[int, int]:
    return world.start[i], world.end[i]


def kids_of(world: World, i: int) -> list[str]:
    return [world.handle(c) for c in world.children(i, 10**6)]


async def test_rdap_down_lists_every_child_in_address_order(start_sim, world: World, quick: Scenario):
    sim = await start_sim(time_scale=1000)
    parent = parent_with(world, quick, "ripencc", 3, 500)
    async with aiohttp.ClientSession() as session:
        doc = await network_doc(session, sim, world, parent)
        assert "rirSearch1" in doc["rdapConformance"]
        rels = [link["rel"] for link in doc["links"] if "rirSearch1" in link["href"]]
        assert rels == ["rdap-up", "rdap-up rdap-active", "rdap-down", "rdap-top", "rdap-top rdap-active",
                        "rdap-bottom"]  # as RIPE NCC's answers link them, keyed by `a - b`
        (link,) = down(doc)
        assert link.endswith(f"/ips/rirSearch1/rdap-down/{key(world, parent)}")
        async with session.get(link) as resp:
            assert resp.status == 200 and resp.content_type == "application/rdap+json"
            listing = await resp.json(content_type=None)
    assert [n["handle"] for n in listing["ipSearchResults"]] == [
        world.handle(c) for c in world.children(parent, 10**6)
    ]
    assert all(n["parentHandle"] == world.handle(parent) for n in listing["ipSearchResults"])
    assert not any("truncated" in str(n.get("type")) for n in listing["notices"])
    sim.log.flush()
    logged = [json.loads(line) for line in sim.log.path.open()]
    assert logged[-1]["protocol"] == "rdap-down" and logged[-1]["handle"] == world.handle(parent)


async def test_above_the_row_limit_a_search_is_refused_as_too_many_rows(
    start_sim, world: World, quick: Scenario
):
    sim = await start_sim(time_scale=1000, row_limit=50)
    parent = parent_with(world, quick, "arin", 51, 10**9)
    fits = parent_with(world, quick, "arin", 3, 50)
    async with aiohttp.ClientSession() as session:
        (link,) = down(await network_doc(session, sim, world, parent))
        async with session.get(link) as resp:
            assert resp.status == 400  # no partial list, no truncation notice, no paging
            refused = await resp.json(content_type=None)
        (small,) = down(await network_doc(session, sim, world, fits))
        async with session.get(small) as resp:
            assert resp.status == 200
            whole = await resp.json(content_type=None)
    assert refused["title"] == "Too Many Rows" and "ipSearchResults" not in refused
    assert len(whole["ipSearchResults"]) == world.nchildren[fits]
    assert not any("truncated" in str(n.get("type")) for n in whole["notices"])


async def test_relations_of_a_key_that_is_no_object(start_sim, world: World, quick: Scenario):
    """down: the largest networks inside the key; bottom: the most specific; up, top: one network;
    nothing: 404; `status=active` on down: 501 (RIPE NCC's server)."""
    sim = await start_sim(time_scale=1000)
    parent = parent_with(world, quick, "ripencc", 4, 500)
    kids = world.children(parent, 10**6)
    first, last = world.start[kids[1]], world.end[kids[-1]]  # from the second child to the end
    span = f"{ip_str(first)}%20-%20{ip_str(last)}"
    base = f"{sim.base_url('ripencc')}ips/rirSearch1/"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}rdap-down/{span}") as resp:
            listed = [n["handle"] for n in (await resp.json(content_type=None))["ipSearchResults"]]
        async with session.get(f"{base}rdap-bottom/{span}") as resp:
            bottom = [n["handle"] for n in (await resp.json(content_type=None))["ipSearchResults"]]
        async with session.get(f"{base}rdap-up/{span}") as resp:
            up = (await resp.json(content_type=None))["handle"]
        async with session.get(f"{base}rdap-top/{key(world, kids[1])}") as resp:
            top = (await resp.json(content_type=None))["handle"]
        async with session.get(f"{base}rdap-down/{span}?status=active") as resp:
            assert resp.status == 501
        leaf = next(c for c in kids if not world.nchildren[c])
        async with session.get(f"{base}rdap-down/{key(world, leaf)}") as resp:
            assert resp.status == 404  # an empty answer is 404
    assert listed == [world.handle(c) for c in kids[1:]] and up == world.handle(parent)
    root = parent
    while world.parent[root] >= 0:
        root = world.parent[root]
    assert top == world.handle(root)
    leaves = [world.handle(c) for c in relations.bottom(world, "ripencc", first, last, 10**6)]
    assert bottom == leaves and set(bottom) >= {world.handle(c) for c in kids[1:] if not world.nchildren[c]}


async def test_a_search_of_thousands_of_rows_holds_up_no_other_request(start_sim, world: World):
    """A registry rendering a large relation search goes on answering others: a lookup sent while
    the simulator renders ARIN's subtree is answered before it. (Rendered on the simulator's loop, a
    /11 held every request for 2-8 s in the demo, and read late and out of their arrival order they
    were counted as a burst: 5-15 ARIN 429s in one demo in five.)"""
    sim = await start_sim(time_scale=1000)
    first, last = ip_int("12.0.0.0"), ip_int("12.15.255.255")
    assert len(relations.bottom(world, "arin", first, last, 10**6)) > 2000  # a render of a second or so
    search = f"{sim.base_url('arin')}ips/rirSearch1/rdap-bottom/{ip_str(first)}%20-%20{ip_str(last)}"
    lookup = f"{sim.base_url('arin')}ip/{ip_str(first + 1)}"
    async with aiohttp.ClientSession() as session:

        async def status(url: str) -> int:
            async with session.get(url) as resp:
                await resp.read()
                return resp.status

        searching = asyncio.create_task(status(search))
        await asyncio.sleep(0.05)  # the search is read: its rows are being rendered
        assert await status(lookup) == 200
        assert await searching == 200
    sim.log.flush()
    logged = [json.loads(x) for x in sim.log.path.read_text().splitlines()]
    assert [x["protocol"] for x in logged] == ["rdap", "rdap-bottom"]


def test_within_a_network_s_own_range_is_its_children(world: World):
    parents = [i for i in range(0, len(world), 7) if world.nchildren[i]][:300]
    assert len(parents) > 100
    for i in parents:
        assert world.within(world.start[i], world.end[i], 10**6) == world.children(i, 10**6)


@pytest.mark.parametrize("registry", ["apnic", "lacnic", "afrinic"])
async def test_registries_without_relation_search_neither_link_nor_answer(
    start_sim, world: World, quick: Scenario, registry: str
):
    sim = await start_sim(time_scale=1000)
    parent = parent_with(world, quick, registry, 1, 10**9)
    async with aiohttp.ClientSession() as session:
        doc = await network_doc(session, sim, world, parent)
        assert down(doc) == [] and "rirSearch1" not in doc["rdapConformance"]
        assert not any("rirSearch1" in link["href"] for link in doc.get("links", []))
        url = f"{sim.base_url(registry)}ips/rirSearch1/rdap-down/{key(world, parent)}"
        async with session.get(url) as resp:
            assert resp.status == 404


async def test_arin_relation_search_can_be_switched_off(start_sim, world: World, quick: Scenario):
    sim = await start_sim(time_scale=1000, arin_relation_search=False)
    parent = parent_with(world, quick, "arin", 3, 10**9)
    async with aiohttp.ClientSession() as session:
        assert down(await network_doc(session, sim, world, parent)) == []
        ripe = parent_with(world, quick, "ripencc", 3, 10**9)
        assert down(await network_doc(session, sim, world, ripe)) != []
    assert sim.info()["relation_search"] == {"registries": ["ripencc"], "row_limit": 10_000}


async def client_for(sim, whois: tuple[str, ...] = ()) -> RegistryClient:
    async with aiohttp.ClientSession() as session, session.get(sim.bootstrap_url) as resp:
        bootstrap = Bootstrap.from_document(await resp.json(content_type=None))
    limits = {r: Limit(500.0) for r in ("arin", "ripencc", "apnic", "lacnic", "afrinic")}
    servers = dict.fromkeys(whois, f"127.0.0.1:{sim.whois_port}")
    return RegistryClient(bootstrap, MemoryRateLimiter(limits), whois_servers=servers)


async def test_the_client_splits_a_search_refused_as_too_many_rows(start_sim, world: World, quick: Scenario):
    sim = await start_sim(time_scale=1000, row_limit=20)
    client = await client_for(sim)
    try:
        small = parent_with(world, quick, "ripencc", 3, 20)
        big = parent_with(world, quick, "ripencc", 100, 3000)
        async with aiohttp.ClientSession() as session:
            small_link = down(await network_doc(session, sim, world, small))[0]
            big_link = down(await network_doc(session, sim, world, big))[0]
        whole = await client.children("ripencc", small_link, world.handle(small))
        assert whole.complete and whole.lookups == 1
        assert [c.handle for c, _ in whole.children] == kids_of(world, small)
        assert all(c.parent_handle == world.handle(small) for c, _ in whole.children)
        split = await client.children("ripencc", big_link, world.handle(big))
        everyone = world.children(big, 10**6)
        assert split.complete and [c.handle for c, _ in split.children] == [world.handle(c) for c in everyone]
        assert split.lookups > len(everyone) // 20  # one per part, and a few rdap-up at the cuts
        assert all(url and "/rdap-down/" in url for _, url in split.children)
    finally:
        await client.close()
    sim.log.flush()
    statuses = {json.loads(line)["status"] for line in sim.log.path.open() if '"rdap-down"' in line}
    assert 400 in statuses


async def test_a_listing_answered_404_has_no_children(start_sim, world: World, quick: Scenario):
    sim = await start_sim(time_scale=1000)
    client = await client_for(sim)
    try:
        leaf = next(i for i in range(len(world)) if world.registry(i) == "ripencc"
                    and not world.nchildren[i] and not world.is_placeholder(i))
        url = f"{sim.base_url('ripencc')}ips/rirSearch1/rdap-down/{key(world, leaf)}"
        listing = await client.children("ripencc", url, world.handle(leaf))
        assert listing.complete and listing.children == [] and listing.lookups == 1
    finally:
        await client.close()


async def test_apnic_is_listed_by_whois_m(start_sim, world: World, quick: Scenario):
    sim = await start_sim(time_scale=1000)
    client = await client_for(sim, ("apnic",))
    try:
        parent = parent_with(world, quick, "apnic", 3, 300)
        result = await client.lookup(world.start[parent])
        assert result.down_url is not None and result.down_url.startswith("whois://")  # no rdap-down link
        listing = await client.children("apnic", str(client.whois_down_url("apnic", world.start[parent],
                                                                           world.end[parent])),
                                        world.handle(parent), (world.start[parent], world.end[parent]))
        assert listing.complete and listing.lookups == 1
        assert [c.handle for c, _ in listing.children] == kids_of(world, parent)
    finally:
        await client.close()
    sim.log.flush()
    assert "whois-m" in {json.loads(line)["protocol"] for line in sim.log.path.open()}


async def test_arin_without_relation_search_is_listed_by_r_more(start_sim, world: World, quick: Scenario):
    """ARIN's WHOIS `r + > <cidr>` answers every level below; the client keeps the direct children."""
    sim = await start_sim(time_scale=1000, arin_relation_search=False)
    client = await client_for(sim, ("arin",))
    try:
        parent = next(
            i for i in range(len(world)) if world.registry(i) == "arin" and 3 <= world.nchildren[i] < 300
            and any(world.nchildren[c] for c in world.children(i, 300))
        )
        result = await client.lookup(world.start[parent])
        assert result.down_url is not None and result.down_url.startswith("whois://")  # no rdap-down link
        url = client.whois_down_url("arin", world.start[parent], world.end[parent])
        assert url is not None and "r%20%2B%20%3E" in url
        listing = await client.children("arin", url, world.handle(parent), span(world, parent))
        kids = world.children(parent, 10**6)
        assert listing.complete and listing.lookups == 1
        assert [c.handle for c, _ in listing.children] == [world.handle(c) for c in kids]
        for (child, _), i in zip(listing.children, kids, strict=True):
            truth = score.truth_record(world, i, 0)
            assert (child.type, child.parent_handle, child.cidrs) == (truth["type"], truth["parent_handle"],
                                                                       truth["cidrs"])
    finally:
        await client.close()
    sim.log.flush()
    assert "whois-r>" in {json.loads(line)["protocol"] for line in sim.log.path.open()}


def arin_parent_to_cut(world: World, cap: int) -> int:
    """An ARIN REALLOCATION (from 12/8 on: its legacy /8 is dense) with 3 to 10 times `cap`
    networks below it, a child of which straddles the middle of the CIDR `r >` asks for it, or
    spans a half of it exactly: what no half's `r >` can show."""
    for i in range(bisect.bisect_left(world.start, ip_int("12.0.0.0")), len(world)):
        if world.registry(i) != "arin" or world.type_word(i) != "REALLOCATION" or world.is_placeholder(i):
            continue
        if not 3 * cap <= len(whoisq.inside(world, "arin", *span(world, i))) <= 10 * cap:
            continue
        net = spanning_cidr([IPAddress(world.start[i]), IPAddress(world.end[i])])
        middle = int(net.first) + net.size // 2
        halves = {(int(net.first), middle - 1), (middle, int(net.last))}
        if any(world.start[c] < middle <= world.end[c] or span(world, c) in halves
               for c in world.children(i, 10**6)):
            return i
    raise LookupError("arin")


async def test_arins_r_more_stops_at_its_limit_and_says_so(start_sim, world: World):
    """ARIN's `r >` answers at most its limit (256; 8 here) and says it was cut, before its terms
    block; `r <` answers every network holding the CIDR, the CIDR's own included. The request log
    says which answers were cut (`limited`)."""
    sim = await start_sim(time_scale=1000, arin_relation_search=False, arin_listing_limit=8)
    parent = arin_parent_to_cut(world, 8)
    cidr = str(spanning_cidr([IPAddress(world.start[parent]), IPAddress(world.end[parent])]))
    port = ("127.0.0.1", sim.whois_port)
    cut = (await whois.query(*port, f"r + > {cidr}", None, 10)).decode()
    assert cut.count("NetRange:") == 8 and "# Results limited to 8 networks" in cut
    assert cut.rindex("Results limited") > cut.rindex("NetRange:") and cut.rstrip().endswith("#")
    assert whois.read_arin_listing(cut).limited
    child = world.children(parent, 1)[0]
    holders = (await whois.query(*port, f"r + < {ip_str(world.start[child])}/32", None, 10)).decode()
    chain = whoisq.holding(world, "arin", world.start[child], world.start[child])
    assert {parent, child} <= set(chain) and holders.count("NetRange:") == len(chain)
    assert not whois.read_arin_listing(holders).limited
    sim.log.flush()
    logged = [json.loads(line) for line in sim.log.path.open()]
    assert [(e["protocol"], e["outcome"]) for e in logged] == [("whois-r>", "limited"), ("whois-r<", "ok")]
    assert sim.info()["whois_listing_limit"] == {"arin": 8}
    default = await start_sim(time_scale=1000)
    assert default.info()["whois_listing_limit"] == {"arin": 256}  # ARIN's own


async def test_the_client_lists_a_parent_whose_r_more_is_cut_in_parts(start_sim, world: World):
    """A cut `r >` answer is never the list: the client asks the CIDR's halves, and the holders of
    each cut's addresses (`r <`), until no answer is cut, and finds every child: those straddling
    a cut and those spanning a half exactly included."""
    sim = await start_sim(time_scale=1000, arin_relation_search=False, arin_listing_limit=8)
    client = await client_for(sim, ("arin",))
    parent = arin_parent_to_cut(world, 8)
    try:
        url = client.whois_down_url("arin", world.start[parent], world.end[parent])
        assert url is not None
        listing = await client.children("arin", url, world.handle(parent), span(world, parent))
        assert listing.complete and [c.handle for c, _ in listing.children] == kids_of(world, parent)
        assert all(c.parent_handle == world.handle(parent) for c, _ in listing.children)
        assert listing.lookups > 3
    finally:
        await client.close()
    sim.log.flush()
    asked = Counter((e["protocol"], e["outcome"]) for e in map(json.loads, sim.log.path.open()))
    assert asked[("whois-r>", "limited")] >= 1 and asked[("whois-r<", "ok")] >= 1
    assert sum(asked.values()) == listing.lookups


async def test_an_arin_listing_asked_deep_is_the_parents_whole_subtree(start_sim, world: World):
    """Asked `deep` (as the crawler's listings are), ARIN's `r >`, cut and completed by its parts,
    is every network below the parent, all levels, a parent before its children, each naming its
    own parent (`Listing.deep`: the crawler lists none of them again); a subtree over
    `max_listing_rows` is one level, as asked without `deep`."""
    sim = await start_sim(time_scale=1000, arin_relation_search=False, arin_listing_limit=8)
    client = await client_for(sim, ("arin",))
    parent = arin_parent_to_cut(world, 8)
    below = whoisq.inside(world, "arin", *span(world, parent))
    assert len(below) > len(world.children(parent, 10**6))  # networks two levels below it too
    try:
        url = client.whois_down_url("arin", world.start[parent], world.end[parent])
        assert url is not None
        listing = await client.children("arin", url, world.handle(parent), span(world, parent), deep=True)
        assert listing.deep and listing.complete
        assert [c.handle for c, _ in listing.children] == [world.handle(i) for i in below]
        parents = [world.handle(world.parent[i]) for i in below]
        assert [c.parent_handle for c, _ in listing.children] == parents
        client.max_listing_rows = len(below) - 1
        one = await client.children("arin", url, world.handle(parent), span(world, parent), deep=True)
        assert not one.deep and one.complete and [c.handle for c, _ in one.children] == kids_of(world, parent)
    finally:
        await client.close()


async def test_ripe_style_whois_lists_what_rdap_does_not(start_sim, world: World, quick: Scenario):
    """AFRINIC serves no RFC 9910 links here; its WHOIS (RIPE NCC's software) answers `-m`."""
    sim = await start_sim(time_scale=1000)
    async with aiohttp.ClientSession() as session, session.get(sim.bootstrap_url) as resp:
        bootstrap = Bootstrap.from_document(await resp.json(content_type=None))
    whois = dict.fromkeys(("afrinic", "lacnic"), f"127.0.0.1:{sim.whois_port}")
    limits = {"afrinic": Limit(500.0), "lacnic": Limit(500.0)}
    client = RegistryClient(bootstrap, MemoryRateLimiter(limits), whois_servers=whois)
    try:
        parent = parent_with(world, quick, "afrinic", 3, 300)
        url = client.whois_down_url("afrinic", world.start[parent], world.end[parent])
        assert url is not None and url.startswith("whois://")
        listing = await client.children("afrinic", url, world.handle(parent), span(world, parent))
        kids = world.children(parent, 10**6)
        assert listing.complete and listing.lookups == 1
        assert [c.handle for c, _ in listing.children] == [world.handle(c) for c in kids]
        for (child, child_url), i in zip(listing.children, kids, strict=True):
            truth = score.truth_record(world, i, 0)
            assert (child.name, child.country, child.type, child.parent_handle) == (
                truth["name"], truth["country"], truth["type"], truth["parent_handle"])
            assert child.cidrs == truth["cidrs"] and child.source == "whois"
            assert child_url == client.whois_down_url("afrinic", child.first, child.last)
        lacnic = parent_with(world, quick, "lacnic", 1, 10**9)
        assert client.whois_down_url("lacnic", world.start[lacnic], world.end[lacnic]) is None
        refused = await client.children(  # LACNIC's server takes single addresses only
            "lacnic", f"whois://127.0.0.1:{sim.whois_port}/-m%20{ip_str(world.start[lacnic])}%20-%20"
            f"{ip_str(world.end[lacnic])}", world.handle(lacnic))
        assert not refused.complete and refused.children == []
    finally:
        await client.close()
    sim.log.flush()
    logged = [json.loads(line) for line in sim.log.path.open()]
    assert [e["protocol"] for e in logged if e["registry"] == "afrinic"] == ["whois-m"]


def test_a_whois_listing_without_its_closing_line_is_refused(world: World, quick: Scenario):
    parent = parent_with(world, quick, "afrinic", 3, 10**9)
    text = render.whois_listing(world, world.children(parent, 10**6), "afrinic")
    assert len(parse_whois_listing(text, "afrinic", world.handle(parent))) == world.nchildren[parent]
    with pytest.raises(MalformedAnswer, match="closing line"):
        parse_whois_listing(text[: len(text) // 2], "afrinic", world.handle(parent))
    assert parse_whois_listing(render.whois_listing(world, [], "afrinic"), "afrinic", None) == []


@pytest.mark.parametrize("row_limit", [1, 2, 7])
async def test_splitting_down_to_tiny_row_limits_still_lists_every_child(
    start_sim, world: World, quick: Scenario, row_limit: int
):
    """Parts that are children themselves (with children, or leaves that 404), children across a
    split point, non-CIDR children: at a row limit of one every part meets them."""
    sim = await start_sim(time_scale=1000, row_limit=row_limit)
    client = await client_for(sim)
    try:
        for registry in ("ripencc", "arin"):
            parent = parent_with(world, quick, registry, 30, 120)
            url = f"{sim.base_url(registry)}ips/rirSearch1/rdap-down/{key(world, parent)}"
            listing = await client.children(registry, url, world.handle(parent))
            assert listing.complete
            assert [c.handle for c, _ in listing.children] == kids_of(world, parent)
    finally:
        await client.close()


async def test_a_subtree_over_the_row_limit_is_asked_in_parts_and_every_network_listed(
    start_sim, world: World, quick: Scenario
):
    # rdap-bottom refused as Too Many Rows is split at the edges of the child holding the middle
    # (its own subtree asked as a network's) and its parts asked as ranges, down to what an answer
    # holds: every network some address answers with, all levels, none twice; no level by level.
    sim = await start_sim(time_scale=1000, row_limit=20)
    client = await client_for(sim)
    try:
        parent = parent_with(world, quick, "arin", 30, 3000)
        async with aiohttp.ClientSession() as session:
            link = down(await network_doc(session, sim, world, parent))[0]
        listing = await client.children("arin", link, world.handle(parent), span(world, parent), deep=True)
    finally:
        await client.close()
    want = [world.handle(i) for i in relations.bottom(world, "arin", *span(world, parent), 10**6)]
    got = [c.handle for c, _ in listing.children]
    assert len(want) > 20 and listing.deep and listing.complete
    assert sorted(got) == sorted(want) and len(set(got)) == len(got)
    sim.log.flush()
    asked = Counter(json.loads(line)["protocol"] for line in sim.log.path.open())
    assert asked["rdap-down"] == 0 and asked["rdap-bottom"] >= 2


async def test_a_subtree_asked_in_parts_is_handed_over_answer_by_answer_never_held_whole(
    start_sim, world: World, quick: Scenario
):
    # Full's ARIN /8s hold 35,000-75,000 networks each, asked in parts of at most the row limit:
    # gathered whole before any was kept, several listings at once grew the crawler past 700 MB.
    # With `kept`, each answer's networks are handed on as it settles (a network across a cut
    # after its own subtree), and the listing keeps none of them for its end.
    sim = await start_sim(time_scale=1000, row_limit=7)
    client = await client_for(sim)
    handed: list[tuple[list[str], bool]] = []
    spans: dict[str, tuple[int, int]] = {}

    async def kept(children: list, whole: bool) -> None:
        handed.append(([c.handle for c, _ in children], whole))
        spans.update((c.handle, (c.first, c.last)) for c, _ in children)

    try:
        parent = parent_with(world, quick, "arin", 30, 3000)
        async with aiohttp.ClientSession() as session:
            link = down(await network_doc(session, sim, world, parent))[0]
        listing = await client.children("arin", link, world.handle(parent), span(world, parent), deep=True,
                                        kept=kept)
    finally:
        await client.close()
    want = [world.handle(i) for i in relations.bottom(world, "arin", *span(world, parent), 10**6)]
    got = [h for chunk, _ in handed for h in chunk]
    assert listing.deep and listing.complete and listing.children == []
    assert sorted(got) == sorted(want) and len(set(got)) == len(got)
    assert len(handed) > 3 and max(len(chunk) for chunk, _ in handed) <= 7  # an answer's at most
    assert all(whole for _, whole in handed)  # every part answered: all inside each known
    when = {h: k for k, (chunk, _) in enumerate(handed) for h in chunk}
    for outer, (a, b) in spans.items():  # a network is handed after every network inside it
        inner = [h for h, (x, y) in spans.items() if h != outer and a <= x and y <= b]
        assert all(when[h] <= when[outer] for h in inner), outer
