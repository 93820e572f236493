"""Hierarchy traps: gaps answer the allocation, free space a placeholder, transfers redirect."""

from __future__ import annotations

import aiohttp
from netaddr import IPRange, IPSet

from whoiscrawl import rirs
from whoiscrawl.ipv4 import ip_int, ip_str
from whoiscrawl.sim import model
from whoiscrawl.sim.data import load_iana
from whoiscrawl.sim.model import ASSIGNMENT_TYPES, World


async def fetch(url: str, follow: bool = False):
    async with aiohttp.ClientSession() as s, s.get(url, allow_redirects=follow) as r:
        body = await r.json(content_type=None) if r.status in (200, 404, 429) else None
        return r.status, r.headers, body, str(r.url)


async def test_gap_in_allocation_answers_the_allocation(start_sim, world: World, quick):
    sim = await start_sim(time_scale=1000)
    a, b, obj = next(
        (a, b, obj) for first, last in quick.intervals
        for a, b, obj in world.segments(first, last)
        if obj >= 0 and world.nchildren[obj] > 0 and not world.is_placeholder(obj)
        and world.typ[obj] not in ASSIGNMENT_TYPES and world.end[obj] > b)
    reg = world.registry(obj)
    status, _, doc, _ = await fetch(f"{sim.base_url(reg)}ip/{ip_str(a)}")
    assert status == 200 and doc["handle"] == world.handle(obj)
    # the trap: jumping past the answer's end would skip children registered after the gap
    later = [i for i in range(len(world)) if world.parent[i] == obj and world.start[i] > b]
    assert later, "an allocation with a gap followed by more children"
    status, _, child, _ = await fetch(f"{sim.base_url(reg)}ip/{ip_str(world.start[later[0]])}")
    assert child["parentHandle"] == doc["handle"]


async def test_free_space_answers_placeholder(start_sim, world: World):
    sim = await start_sim(time_scale=1000)
    for addr, reg in (("102.0.1.1", "afrinic"), ("5.180.1.1", "ripencc")):
        status, _, doc, _ = await fetch(f"{sim.base_url(reg)}ip/{addr}")
        assert status == 200
        assert doc["status"] == ["reserved"] and doc["type"] == "UNALLOCATED"
        obj = world.lookup(ip_int(addr))
        assert doc["startAddress"] == ip_str(world.start[obj])
        # covers exactly the free range: the neighbours are registered, or another /8
        for n in (world.start[obj] - 1, world.end[obj] + 1):
            other = world.lookup(n)
            assert other != obj
            assert not world.is_placeholder(other) or (n >> 24) != (world.start[obj] >> 24) \
                or world.reg[other] != world.reg[obj]


async def test_transferred_space_redirects(start_sim):
    sim = await start_sim(time_scale=1000)
    # 128.0/16 sits in an ARIN-administered legacy /8 but is registered at the RIPE NCC
    status, headers, _, _ = await fetch(f"{sim.base_url('arin')}ip/128.0.1.1")
    assert status == 301
    assert headers["Location"] == f"{sim.base_url('ripencc')}ip/128.0.1.1"
    status, _, doc, url = await fetch(f"{sim.base_url('arin')}ip/128.0.1.1", follow=True)
    assert status == 200 and url.startswith(sim.base_url("ripencc"))
    assert doc["port43"] == "whois.ripe.net"
    # asking the wrong RIR for ordinary space redirects to the administering one
    status, headers, _, _ = await fetch(f"{sim.base_url('ripencc')}ip/24.0.1.1")
    assert status == 301 and headers["Location"].startswith(sim.base_url("arin"))


async def test_bootstrap_maps_every_rir_slash8(start_sim):
    sim = await start_sim()
    status, _, doc, _ = await fetch(sim.bootstrap_url)
    assert status == 200 and doc["version"] == "1.0" and doc["publication"]
    mapping = {p: urls[0] for prefixes, urls in doc["services"] for p in prefixes}
    for row in load_iana():
        key = f"{row.octet}.0.0.0/8"
        if row.registry:
            assert mapping[key] == sim.base_url(row.registry)
        else:
            assert key not in mapping
    assert mapping["128.0.0.0/8"].endswith("/arin/registry/")
    assert mapping["193.0.0.0/8"].endswith("/ripencc/")
    assert mapping["200.0.0.0/8"].endswith("/lacnic/rdap/")


async def test_reserved_space_not_found_and_prefix_queries(start_sim, world: World):
    sim = await start_sim(time_scale=1000)
    status, _, doc, _ = await fetch(f"{sim.base_url('arin')}ip/10.1.2.3")
    assert status == 404 and doc["errorCode"] == 404
    status, _, doc, _ = await fetch(f"{sim.base_url('ripencc')}ip/77.0.0.0/16")
    assert status == 200
    assert int(doc["cidr0_cidrs"][0]["length"]) <= 16


def test_no_child_sits_under_a_status_its_registry_keeps_childless(world: World, quick):
    # RIPE NCC's server refuses children under ASSIGNED PA, PI and ANYCAST (InetnumStatus
    # PARENT_STATUS), and AFRINIC runs its software: sub-assignments sit under SUB-ALLOCATED PA or
    # AGGREGATED-BY-LIR parents, and the delegations assigned PI hold none.
    held = [i for i in range(len(world)) if world.parent[i] >= 0
            and rirs.is_childless(world.registry(i), world.type_word(world.parent[i]))]
    assert held == [], [(world.handle(i), world.type_word(world.parent[i])) for i in held[:5]]
    aggregates = {world.type_word(world.parent[i]) for i in range(len(world))
                  if world.parent[i] >= 0 and world.registry(i) == "ripencc"
                  and world.end[i] - world.start[i] < 255}
    assert {"AGGREGATED-BY-LIR", "SUB-ALLOCATED PA"} <= aggregates


def test_free_space_is_never_special_purpose_space():
    """IANA's special-purpose ranges are no registry's free space: a placeholder spanning them is a
    block no crawl finds (none asks there). standard's one ARIN miss was 192.0.0.0 - 192.0.2.255,
    the free 192.0.1.0/24 merged with 192.0.0.0/24 and 192.0.2.0/24 (TEST-NET-1); ARIN's statistics
    list 192.0.1.0/24 alone, reserved, and so does the placeholder now."""
    special = IPSet(rirs.SPECIAL_PURPOSE)
    runs = model._free_runs()
    assert not any(special & IPSet(IPRange(a, b)) for a, b, _reg in runs)
    a, b, reg = next(r for r in runs if r[0] <= ip_int("192.0.1.1") <= r[1])
    assert (ip_str(a), ip_str(b), rirs.REGISTRIES[reg]) == ("192.0.1.0", "192.0.1.255", "arin")
