"""RFC 9910 relation search: registries that serve it list a network's children (`rdap-down`)."""

from __future__ import annotations

import json

import aiohttp
import pytest

from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.registry import MalformedAnswer, RegistryClient, parse_whois_listing
from whoiscrawl.sim import render, score
from whoiscrawl.sim.model import World, ip_str, range_cidrs
from whoiscrawl.sim.scenarios import Scenario
from whoiscrawl.space import Bootstrap


def parent_with(world: World, quick: Scenario, registry: str, low: int, high: int) -> int:
    """A single-CIDR object of the registry in the quick ranges with low..high children."""
    for first, last in quick.intervals:
        for _a, _b, obj in world.segments(first, last):
            p = world.parent[obj] if obj >= 0 else -1
            fits = p >= 0 and world.registry(p) == registry and low <= world.nchildren[p] <= high
            if fits and len(range_cidrs(world.start[p], world.end[p])) == 1:
                return p
    raise LookupError(registry)


async def network_doc(session: aiohttp.ClientSession, sim, world: World, i: int) -> dict:
    ((address, length),) = range_cidrs(world.start[i], world.end[i])
    registry = world.registry(i)
    async with session.get(f"{sim.base_url(registry)}ip/{ip_str(address)}/{length}") as resp:
        assert resp.status == 200
        return await resp.json(content_type=None)


def down(doc: dict) -> list[str]:
    return [link["href"] for link in doc["links"] if link["rel"] == "rdap-down"]


async def test_rdap_down_lists_every_child_in_address_order(start_sim, world: World, quick: Scenario):
    sim = await start_sim(time_scale=1000)
    parent = parent_with(world, quick, "ripencc", 3, render.SEARCH_RESULTS_MAX)
    async with aiohttp.ClientSession() as session:
        doc = await network_doc(session, sim, world, parent)
        assert "rirSearch1" in doc["rdapConformance"]
        (link,) = down(doc)
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


async def test_a_long_list_is_cut_with_a_truncation_notice(start_sim, world: World, quick: Scenario):
    sim = await start_sim(time_scale=1000)
    parent = parent_with(world, quick, "arin", render.SEARCH_RESULTS_MAX + 1, 10**9)
    async with aiohttp.ClientSession() as session:
        (link,) = down(await network_doc(session, sim, world, parent))
        async with session.get(link) as resp:
            listing = await resp.json(content_type=None)
    assert len(listing["ipSearchResults"]) == render.SEARCH_RESULTS_MAX
    assert any(n.get("type") == "result set truncated due to excessive load" for n in listing["notices"])


async def test_a_range_starting_inside_a_listed_child_lists_the_siblings_after_it(
    start_sim, world: World, quick: Scenario
):
    sim = await start_sim(time_scale=1000)
    parent = parent_with(world, quick, "arin", render.SEARCH_RESULTS_MAX + 1, 10**9)
    kids = world.children(parent, 10**6)
    listed = kids[render.SEARCH_RESULTS_MAX - 1]
    rest = f"{ip_str(world.end[listed])}%20-%20{ip_str(world.end[parent])}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sim.base_url('arin')}ips/rirSearch1/rdap-down/{rest}") as resp:
            assert resp.status == 200
            page = await resp.json(content_type=None)
        async with session.get(f"{sim.base_url('ripencc')}ips/rirSearch1/rdap-down/{rest}") as resp:
            assert resp.status == 404  # not RIPE's space
    want = kids[render.SEARCH_RESULTS_MAX : 2 * render.SEARCH_RESULTS_MAX]
    assert [n["handle"] for n in page["ipSearchResults"]] == [world.handle(c) for c in want]


def test_within_a_network_s_own_range_is_its_children(world: World):
    parents = [i for i in range(0, len(world), 7) if world.nchildren[i]][:300]
    assert len(parents) > 100
    for i in parents:
        assert world.within(world.start[i], world.end[i], 10**6) == world.children(i, 10**6)


async def test_registries_without_relation_search_neither_link_nor_answer(
    start_sim, world: World, quick: Scenario
):
    sim = await start_sim(time_scale=1000)
    parent = parent_with(world, quick, "lacnic", 1, 10**9)
    async with aiohttp.ClientSession() as session:
        doc = await network_doc(session, sim, world, parent)
        assert down(doc) == [] and "rirSearch1" not in doc["rdapConformance"]
        path = render.down_path(world, parent)
        async with session.get(f"{sim.base_url('lacnic')}{path}") as resp:
            assert resp.status == 404


async def test_the_client_follows_the_link_and_says_when_a_list_was_cut(
    start_sim, world: World, quick: Scenario
):
    sim = await start_sim(time_scale=1000)
    async with aiohttp.ClientSession() as session, session.get(sim.bootstrap_url) as resp:
        bootstrap = Bootstrap.from_document(await resp.json(content_type=None))
    client = RegistryClient(bootstrap, MemoryRateLimiter({"ripencc": Limit(500.0), "arin": Limit(500.0)}))
    try:
        small = parent_with(world, quick, "ripencc", 3, render.SEARCH_RESULTS_MAX)
        big = parent_with(world, quick, "arin", render.SEARCH_RESULTS_MAX + 1, 10**9)
        async with aiohttp.ClientSession() as session:
            small_link = down(await network_doc(session, sim, world, small))[0]
            big_link = down(await network_doc(session, sim, world, big))[0]
        whole = await client.children("ripencc", small_link)
        assert whole.complete and whole.lookups == 1
        assert [c.handle for c, _ in whole.children] == [
            world.handle(c) for c in world.children(small, 10**6)
        ]
        assert all(c.parent_handle == world.handle(small) for c, _ in whole.children)
        cut = await client.children("arin", big_link)
        assert not cut.complete and len(cut.children) == render.SEARCH_RESULTS_MAX
        paged = await client.children("arin", big_link, world.end[big])
        everyone = world.children(big, 10**6)
        assert paged.complete and [c.handle for c, _ in paged.children] == [world.handle(c) for c in everyone]
        assert paged.lookups == -(-len(everyone) // render.SEARCH_RESULTS_MAX)  # one request a page
        missing = await client.children(
            "ripencc", small_link.replace("rdap-down/", "rdap-down/10.0.0.0/8?x=")
        )
        assert not missing.complete and missing.children == []
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
        parent = parent_with(world, quick, "afrinic", 3, 10**9)
        url = client.whois_down_url("afrinic", world.start[parent], world.end[parent])
        assert url is not None and url.startswith("whois://")
        listing = await client.children("afrinic", url, world.end[parent], world.handle(parent))
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
            "lacnic", f"whois://127.0.0.1:{sim.whois_port}/{ip_str(world.start[lacnic])}%20-%20"
            f"{ip_str(world.end[lacnic])}", world.end[lacnic])
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
