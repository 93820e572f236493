"""RDAP entity answers: the simulator's (`/entity/<handle>`, shaped after a real AFRINIC one) and
where the client asks for them (the entity's `self` link, else RFC 9082's path)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.registry import RegistryClient, contacts
from whoiscrawl.rirs import REGISTRIES
from whoiscrawl.sim import entities, render
from whoiscrawl.sim.model import World
from whoiscrawl.space import Bootstrap, fetch_bootstrap

REAL_ENTITY = Path(__file__).parents[1] / "data" / "real-answers" / "afrinic" / "entities" / \
    "20c-rdap-WOL-AFRINIC.json"  # a real AFRINIC entity answer (20c/rdap's test data)
BASE = "https://rdap.example/afrinic/rdap/"


def _nameless(world: World) -> int:
    return next(i for i in range(len(world)) if render.nameless(world, i))


def test_a_nameless_holders_entity_answer_names_it_in_the_shape_of_afrinics(world: World):
    i = _nameless(world)
    handle = render.contacts(world, i)[0]
    network = render.rdap_object(world, i, BASE)
    org = next(e for e in network["entities"] if e["handle"] == handle)
    assert contacts.entity_name({**org, "objectClassName": "entity"}, handle) is None  # fn: the handle
    assert contacts.unnamed_holder(network) == contacts.EntityRef(handle, None)  # no links (2014 shape)
    doc = entities.entity_object(world, "afrinic", handle, BASE)
    assert doc is not None and contacts.entity_name(doc, handle) == render.org_of(world, i).name
    real = json.loads(REAL_ENTITY.read_text())
    assert set(doc) == set(real) - {"entities"}  # an organisation's answer nests no contacts here
    url = f"{BASE}entity/{handle}"
    assert doc["links"] == [{"value": url, "rel": "self", "href": url}]
    assert [p[0] for p in doc["vcardArray"][1]] == [p[0] for p in real["vcardArray"][1]]
    assert doc["rdapConformance"] == real["rdapConformance"]


def test_only_the_worlds_organisations_are_answered(world: World):
    i = _nameless(world)
    handle = render.contacts(world, i)[0]
    key = str(world.org[i])
    assert entities.entity_object(world, "afrinic", handle.replace(key, str(int(key) + 1)), BASE) is None
    other_abbr = "ORG-ZZZZZ" + handle.removeprefix("ORG-")[5:]
    assert entities.entity_object(world, "afrinic", other_abbr, BASE) is None
    assert entities.entity_object(world, "ripencc", handle, BASE) is None  # another registry's handle
    assert entities.entity_object(world, "arin", "ARIN", BASE) is not None  # the registry's own
    assert entities.entity_object(world, "afrinic", "AR1-AFRINIC", BASE) is None


async def test_the_simulator_serves_entities_within_the_registrys_limits(start_sim, world: World):
    sim = await start_sim(time_scale=1000)
    handle = render.contacts(world, _nameless(world))[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sim.base_url('afrinic')}entity/{handle}") as resp:
            assert resp.status == 200
            doc = json.loads(await resp.read())
        async with session.get(f"{sim.base_url('afrinic')}entity/NOBODY-AFRINIC") as resp:
            assert resp.status == 404
    assert doc["links"][0]["href"] == f"{sim.base_url('afrinic')}entity/{handle}"
    sim.log.flush()
    logged = [(e["protocol"], e["status"], e["outcome"]) for e in map(json.loads, sim.log.path.open())]
    assert logged == [("entity", 200, "ok"), ("entity", 404, "not_found")]


def test_the_client_follows_a_self_link_only_under_a_bootstrap_base():
    bootstrap = Bootstrap.from_document({"services": [[["41.0.0.0/8"], [BASE]]]})
    client = RegistryClient(bootstrap, MemoryRateLimiter({}))
    asked = f"{BASE}ip/41.1.1.1"
    own = contacts.EntityRef("ORG-X1-AFRINIC", f"{BASE}entity/ORG-X1-AFRINIC")
    assert client.entity_url("afrinic", asked, own) == ("afrinic", own.link)
    # a link elsewhere (another host, a private address) is not followed: RFC 9082's path instead
    for hostile in ("http://169.254.169.254/latest/meta-data", "https://evil.example/entity/X", "file:///etc/passwd"):
        ref = contacts.EntityRef("ORG-X1-AFRINIC", hostile)
        assert client.entity_url("afrinic", asked, ref) == ("afrinic", f"{BASE}entity/ORG-X1-AFRINIC")
    # a handle with characters of its own is quoted into the path
    odd = contacts.EntityRef("ORG-X/1?-AFRINIC")
    assert client.entity_url("afrinic", asked, odd) == ("afrinic", f"{BASE}entity/ORG-X%2F1%3F-AFRINIC")
    assert client.entity_url("arin", asked, odd) is None  # no RDAP base for it in the bootstrap


async def test_lookups_of_one_nameless_holder_at_once_ask_its_entity_once(start_sim, world: World):
    """Three networks of one nameless organisation looked up at once: one entity request, counted in
    the lookups of the one that made it, and all three records name the holder."""
    sim = await start_sim(time_scale=1000)
    held: dict[int, list[int]] = {}
    for i in range(len(world)):
        if render.nameless(world, i) and world.lookup(world.start[i]) == i:
            held.setdefault(world.org[i], []).append(i)
    objects = next(v for v in held.values() if len(v) >= 3)[:3]
    limits = {r: Limit(500.0) for r in REGISTRIES}
    client = RegistryClient(await fetch_bootstrap(sim.bootstrap_url), MemoryRateLimiter(limits))
    try:
        results = await asyncio.gather(*(client.lookup(world.start[i]) for i in objects))
    finally:
        await client.close()
    name = render.org_of(world, objects[0]).name
    assert [r.record.registrant for r in results if r.record] == [name] * 3
    assert sum(r.lookups for r in results) == 3 + 1
    sim.log.flush()
    logged = [e["protocol"] for e in map(json.loads, sim.log.path.open())]
    assert logged.count("entity") == 1 and logged.count("rdap") == 3


def test_a_lacnic_contact_a_network_links_to_is_answered_with_the_networks_vcard(world: World):
    # LACNIC's captured answer names its abuse contact (RYT2) by handle and links `entity/RYT2`
    # (tests/data/real-registry/ipwhois-tests-rdap.json, 200.57.141.161); its dump and WHOIS name
    # the same handle as `abuse-c:`: the contact's own answer gives the address
    lacnic = REGISTRIES.index("lacnic")
    i = next(i for i in range(len(world)) if world.reg[i] == lacnic and world.typ[i] != 0)
    _h, _name, handle, email = render.contacts(world, i)
    base = "https://rdap.example/lacnic/rdap/"
    network = render.rdap_object(world, i, base)
    abuse = next(e for e in network["entities"] if "abuse" in e.get("roles", []))
    assert abuse["handle"] == handle and abuse["links"][0]["href"] == f"{base}entity/{handle}"
    doc = entities.entity_object(world, "lacnic", handle, base)
    assert doc is not None and doc["vcardArray"] == abuse["vcardArray"] and "roles" not in doc
    assert contacts.entity_emails(doc, handle) == [email]
    assert contacts.entity_emails(doc, "OTHER1") == []  # an answer about another contact gives nothing
    assert ("abuse-c", handle) in render.lacnic_inetnum(world, i)  # the dump's and WHOIS's attribute
    assert entities.entity_object(world, "lacnic", handle[:3] + "999999", base) is None
    assert entities.entity_object(world, "lacnic", f"{handle}G7", base) is None  # not its generation


def test_lacnic_blocks_an_isp_registers_mostly_name_the_isps_contacts(world: World):
    # LACNIC: the customer's block has the customer's own `owner:`/`ownerid:` and, mostly, the
    # registering ISP's contacts (the real 200.68.34.56/29, CL-AAPS3-LACNIC, names the ISP's OTE as
    # owner-c, tech-c and abuse-c: tests/data/real-answers/lacnic/go-whois-200.68.34.57.txt)
    lacnic, base = REGISTRIES.index("lacnic"), "https://rdap.example/lacnic/rdap/"
    subs = [i for i in range(len(world)) if world.reg[i] == lacnic and world.parent[i] >= 0]
    shared = [i for i in subs if render.contacts(world, i)[2] == render.contacts(world, world.parent[i])[2]]
    assert len(subs) >= 50 and 0.6 <= len(shared) / len(subs) <= 0.9, (len(shared), len(subs))
    i = shared[0]
    isp = world.contact_holder(i)
    owner_id, _name, handle, email = render.contacts(world, i)
    assert owner_id != render.contacts(world, isp)[0]  # a holder of its own
    assert (handle, email) == render.contacts(world, isp)[2:]
    abuse = next(e for e in render.rdap_object(world, i, base)["entities"] if "abuse" in e["roles"])
    doc = entities.entity_object(world, "lacnic", handle, base)
    assert doc is not None and doc["vcardArray"] == abuse["vcardArray"]
    assert contacts.entity_emails(doc, handle) == [email]
    assert ["org", {}, "text", render.org_of(world, isp).name] in doc["vcardArray"][1]
    # a block with contacts of its own names them, and LACNIC answers its handle
    own = next(j for j in subs if world.contact_holder(j) == j)
    _o, _n, own_handle, own_email = render.contacts(world, own)
    own_doc = entities.entity_object(world, "lacnic", own_handle, base)
    assert contacts.entity_emails(own_doc, own_handle) == [own_email]


async def test_a_contact_a_network_answer_embedded_is_not_asked_again(start_sim, world: World):
    """LACNIC's network answers carry their abuse contact's vCard: once a network naming a contact
    was looked up, the fill's `contact_emails` for that handle costs nothing; another contact is
    asked (one `entity` request)."""
    sim = await start_sim(time_scale=1000)
    lacnic = REGISTRIES.index("lacnic")
    nets = [i for i in range(len(world)) if world.reg[i] == lacnic and world.typ[i] != 0
            and world.lookup(world.start[i]) == i]
    first = nets[0]
    other = next(i for i in nets if render.contacts(world, i)[2] != render.contacts(world, first)[2])
    client = RegistryClient(await fetch_bootstrap(sim.bootstrap_url),
                            MemoryRateLimiter({r: Limit(500.0) for r in REGISTRIES}))
    try:
        looked = await client.lookup(world.start[first])
        _o, _n, handle, email = render.contacts(world, first)
        emails, cost = await client.contact_emails("lacnic", handle)
        _o, _n, other_handle, other_email = render.contacts(world, other)
        other_emails, other_cost = await client.contact_emails("lacnic", other_handle)
    finally:
        await client.close()
    assert looked.record is not None and looked.record.abuse_emails == [email]
    assert (emails, cost.lookups) == ([email], 0)
    assert (other_emails, other_cost.lookups) == ([other_email], 1)
    sim.log.flush()
    logged = [e["protocol"] for e in map(json.loads, sim.log.path.open())]
    assert logged.count("entity") == 1 and logged[-1] == "entity"  # the other contact's alone
