"""Each registry's RDAP and WHOIS answers parse with ipwhois into the ground truth's fields."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from ipwhois.net import Net
from ipwhois.rdap import RDAP
from ipwhois.whois import Whois

from whoiscrawl.ipv4 import ip_int
from whoiscrawl.registry import RdapParser
from whoiscrawl.rirs import REGISTRIES
from whoiscrawl.sim.model import World
from whoiscrawl.sim.score import truth_record


async def whois_query(host_port: str, query: str, source: str = "127.0.0.1") -> str:
    host, port = host_port.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
    writer.write(f"{query}\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data.decode()


@pytest.mark.parametrize("registry", REGISTRIES)
async def test_rdap_and_whois_parse_into_truth(registry, start_sim, world: World, find_address):
    sim = await start_sim(time_scale=1000)
    addr, obj = find_address(registry, with_parent=True)
    truth = truth_record(world, obj, 1)
    async with aiohttp.ClientSession() as s, s.get(f"{sim.base_url(registry)}ip/{addr}") as r:
        assert r.status == 200
        assert r.content_type == "application/rdap+json"
        doc = await r.json(content_type=None)
    record = RdapParser().parse(doc, ip_int(addr), registry)
    assert (record.handle, record.start_address, record.end_address) == (
        truth["handle"], truth["start_address"], truth["end_address"])
    assert record.cidrs == truth["cidrs"]
    assert (record.name, record.country, record.type) == (truth["name"], truth["country"], truth["type"])
    assert record.parent_handle == truth["parent_handle"]
    assert (record.registrant, record.abuse_emails) == (truth["registrant"], truth["abuse_emails"])
    assert record.country_source == ("holder" if registry == "arin" else "network")

    text = await whois_query(sim.info()["whois"], f"n + {addr}" if registry == "arin" else addr)
    w = Whois(Net(addr)).lookup(response=text, is_offline=True,
                                asn_data={"asn_registry": registry})
    assert len(w["nets"]) == 1
    wn = w["nets"][0]
    assert wn["cidr"] == ", ".join(truth["cidrs"])
    assert wn["range"] in (f"{truth['start_address']} - {truth['end_address']}", truth["cidrs"][0])
    assert wn["country"] == truth["country"]
    if registry == "arin":
        assert wn["handle"] == truth["handle"]
        assert wn["name"] == truth["name"]
    elif registry == "lacnic":
        assert wn["range"] in (truth["handle"], f"{truth['start_address']} - "
                                                f"{truth['end_address']}")
    else:  # RIPE style: the inetnum key is the handle, netname the name
        assert wn["range"] == truth["handle"]
        assert wn["name"] == truth["name"]
    assert wn["emails"] and "@" in wn["emails"][0]


@pytest.mark.parametrize("registry", ["arin", "ripencc"])
async def test_range_not_on_a_cidr_boundary(registry, start_sim, world: World, find_address):
    sim = await start_sim(time_scale=1000)
    addr, obj = find_address(registry, noncidr=True)
    async with aiohttp.ClientSession() as s, s.get(f"{sim.base_url(registry)}ip/{addr}") as r:
        doc = await r.json(content_type=None)
    assert len(doc["cidr0_cidrs"]) >= 2
    parsed = RDAP(Net(addr)).lookup(response=doc, asn_data={"asn_registry": registry}, depth=0)
    assert parsed["network"]["cidr"] == ", ".join(truth_record(world, obj, 1)["cidrs"])


@pytest.mark.parametrize("registry", REGISTRIES)
def test_whois_fallback_records_match_the_truth(registry, world: World, find_address):
    """The crawler's WHOIS path (what it records when RDAP is down) gives the truth's fields, as far
    as the text holds them: only ARIN's names a parent, and LACNIC's has no network name."""
    from whoiscrawl.registry import parse_whois
    from whoiscrawl.sim.render import whois_text

    addr, obj = find_address(registry, with_parent=True)
    truth = truth_record(world, obj, 1)
    record = parse_whois(whois_text(world, obj), ip_int(addr), registry)
    assert record.registry == registry
    assert (record.handle, record.start_address, record.end_address) == (
        truth["handle"], truth["start_address"], truth["end_address"])
    assert sorted(record.cidrs) == sorted(truth["cidrs"])
    assert record.name == (None if registry == "lacnic" else truth["name"])
    assert (record.country, record.type) == (truth["country"], truth["type"])
    assert record.parent_handle == (truth["parent_handle"] if registry == "arin" else None)
    assert (record.registrant, record.abuse_emails) == (truth["registrant"], truth["abuse_emails"])
    assert record.source == "whois"
