"""The simulator's RDAP answers have the shape of the real ones: keys and structure, registry by registry."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from whoiscrawl import rirs
from whoiscrawl.ipv4 import cidrs, ip_int
from whoiscrawl.registry import RdapParser
from whoiscrawl.sim import render
from whoiscrawl.sim.model import World
from whoiscrawl.sim.score import truth_record
from whoiscrawl.sources.published import StatsPlan
from whoiscrawl.sources.stats import Delegation
from whoiscrawl.space import Scope

# Real answers kept with the tests (provenance: CONTRIBUTING.md, "Test data"); missing ones fail.
REAL = Path(__file__).parents[1] / "data" / "real-registry"

# (registry, era) -> the real answer it is shaped after
TEMPLATES = {
    ("ripencc", "current"): ("ripe-rdap-86.54.11.1-2025.json", None),
    ("arin", "current"): ("arin-rdap-192.198.0.0.json", None),
    ("apnic", "current"): ("ipwhois-tests-rdap.json", "210.107.73.73"),
    ("lacnic", "current"): ("ipwhois-tests-rdap.json", "200.57.141.161"),
    ("afrinic", "current"): ("ipwhois-tests-rdap.json", "196.11.240.215"),
    ("ripencc", "2015"): ("ipwhois-tests-rdap.json", "62.239.237.1"),
    ("arin", "2015"): ("ipwhois-tests-rdap.json", "74.125.225.229"),
}
# Relation search (RFC 9910) links and conformance belong to the listing model, not to the shape.
SEARCH_RELS = frozenset({"rdap-up", "rdap-down", "rdap-top", "rdap-bottom"})
SEARCH_CONFORMANCE = frozenset({"rirSearch1", "ips"})


def _real(registry: str, era: str) -> dict[str, Any]:
    name, key = TEMPLATES[(registry, era)]
    doc = json.loads((REAL / name).read_text())
    return doc[key]["response"] if key else doc


def _vcard_names(entity: dict[str, Any]) -> frozenset[str]:
    card = entity.get("vcardArray") or ["vcard", []]
    return frozenset(p[0] for p in card[1])


def _kind(entity: dict[str, Any]) -> str | None:
    card = entity.get("vcardArray") or ["vcard", []]
    return next((p[3] for p in card[1] if p[0] == "kind"), None)


def entity_shape(entity: dict[str, Any]) -> tuple[Any, ...]:
    """An entity's structure: its keys, roles, vCard kind and property names, nested entities."""
    nested = tuple(sorted({entity_shape(e) for e in entity.get("entities") or []}))  # distinct kinds
    return (tuple(sorted(entity)), tuple(sorted(entity.get("roles") or [])), _kind(entity),
            tuple(sorted(_vcard_names(entity))), nested)


def shape(doc: dict[str, Any]) -> dict[str, Any]:
    """The structure of an ip network answer, without its values."""
    rels = Counter(str(link.get("rel")) for link in doc.get("links") or []
                   if not set(str(link.get("rel")).split()) & SEARCH_RELS)
    return {
        "keys": sorted(doc),
        "types": {k: type(v).__name__ for k, v in doc.items()},
        "entities": Counter(entity_shape(e) for e in doc.get("entities") or []),
        "conformance": sorted(set(doc.get("rdapConformance") or []) - SEARCH_CONFORMANCE),
        "notices": [n.get("title") for n in doc.get("notices") or []],
        "links": rels,
        "remarks": [r.get("title") for r in doc.get("remarks") or []],
    }


def _object_like(world: World, registry: str, template: dict[str, Any]) -> int:
    """A registered object of the registry with what the template has: a country, a parent
    (a delegation for RIPE NCC, whose top objects hang under 0.0.0.0 - 255.255.255.255)."""
    for i in range(len(world)):
        if world.registry(i) != registry or world.is_placeholder(i) or render.country(world, i) is None:
            continue
        top = world.parent[i] < 0
        if registry == "ripencc" and not top:
            continue
        if registry != "ripencc" and ("parentHandle" in template) == top:
            continue
        return i
    raise AssertionError(f"no {registry} object like the template")


@pytest.mark.parametrize(("registry", "era"), sorted(TEMPLATES))
def test_shape_matches_the_real_answer(registry: str, era: str, world: World):
    real = _real(registry, era)
    i = _object_like(world, registry, real)
    sim = render.rdap_object(world, i, f"https://rdap.example/{registry}/", era)
    want, got = shape(real), shape(sim)
    for part in want:
        assert got[part] == want[part], part


@pytest.mark.parametrize(("registry", "era"), sorted(TEMPLATES))
def test_the_crawler_reads_every_shape(registry: str, era: str, world: World):
    """Holder, country and abuse e-mail come out right whatever the registry's shape and era:
    zero-padded and /32-suffixed addresses too."""
    i = _object_like(world, registry, _real(registry, era))
    truth = truth_record(world, i, 1)
    doc = render.rdap_object(world, i, f"https://rdap.example/{registry}/", era)
    record = RdapParser().parse(doc, ip_int(truth["start_address"]), registry)
    assert (record.start_address, record.end_address, record.cidrs) == (
        truth["start_address"], truth["end_address"], truth["cidrs"])
    assert (record.registrant, record.country, record.abuse_emails) == (
        truth["registrant"], truth["country"], truth["abuse_emails"])
    assert record.country_source == ("holder" if registry == "arin" else "network")


def test_ripe_shape_details(world: World):
    """RIPE NCC: the organisation among several registrants, `redacted`, `geofeed1`, the top parent."""
    i = _object_like(world, "ripencc", _real("ripencc", "current"))
    doc = render.rdap_object(world, i, "https://rdap.example/ripencc/")
    registrants = [e for e in doc["entities"] if "registrant" in e["roles"]]
    assert len(registrants) >= 2 and [_kind(e) for e in registrants].count("org") == 1
    assert doc["parentHandle"] == "0.0.0.0 - 255.255.255.255"
    assert {"geofeed1", "redacted"} <= set(doc["rdapConformance"]) and doc["redacted"]
    abuse = next(e for e in doc["entities"] if "abuse" in e["roles"])
    assert any(p[0] == "email" and p[1] == {"type": "abuse"} for p in abuse["vcardArray"][1])


def test_arin_and_afrinic_details(world: World):
    """ARIN: no network country, cidr0 and origin AS; AFRINIC: abuse only in remarks."""
    i = _object_like(world, "arin", _real("arin", "current"))
    doc = render.rdap_object(world, i, "https://rdap.example/arin/")
    assert "country" not in doc and doc["cidr0_cidrs"] and doc["arin_originas0_originautnums"]
    legacy = render.rdap_object(world, i, "https://rdap.example/arin/", "2015")
    assert all(len(octet) == 3 for octet in legacy["startAddress"].split("."))
    j = _object_like(world, "afrinic", _real("afrinic", "current"))
    doc = render.rdap_object(world, j, "https://rdap.example/afrinic/")
    assert not any("roles" in e for e in doc["entities"])
    assert "abuse" in doc["remarks"][0]["description"][0]


def _org_fn(doc: dict[str, Any]) -> str:
    org = next(e for e in doc["entities"] if "registrant" in e["roles"] and _kind(e) == "org")
    return str(next(p[3] for p in org["vcardArray"][1] if p[0] == "fn"))


def test_lacnic_names_a_network_by_its_holder(world: World):
    """LACNIC keeps no netname: its answer's `name` is the holder's, as in the captured
    200.57.141.161 ("Triara.com, S.A. de C.V."), and so is the simulator's."""
    real = _real("lacnic", "current")
    assert real["name"] == _org_fn(real) == "Triara.com, S.A. de C.V."
    i = _object_like(world, "lacnic", real)
    doc = render.rdap_object(world, i, "https://rdap.example/lacnic/")
    assert doc["name"] == _org_fn(doc) == truth_record(world, i, 1)["name"]


@pytest.mark.parametrize("registry", rirs.REGISTRIES)
def test_free_space_from_the_statistics_says_what_the_placeholder_answers(registry: str, world: World):
    """Free space written from the statistics (never asked) and the registry's placeholder answer for
    it (asked) name the same holder and abuse mailbox, the registry's own (`rirs.Rir.abuse_mailbox`):
    the map says the same of it whichever source it came from."""
    i = next(i for i in range(len(world)) if world.registry(i) == registry and world.is_placeholder(i))
    first, last = world.start[i], world.end[i]
    answer = render.rdap_object(world, i, f"https://rdap.example/{registry}/")
    live = RdapParser().parse(answer, first, registry)
    row = Delegation(registry, None, first, last - first + 1, None, "available")
    plan = StatsPlan([row], {registry: "1"})
    (written,) = plan.free_records(Scope.of([(first, last)]))
    assert (written.source, written.start_address, written.end_address) == ("stats", live.start_address,
                                                                          live.end_address)
    assert (written.registrant, written.abuse_emails) == (live.registrant, live.abuse_emails)
    assert written.abuse_emails == [rirs.BY_ID[registry].abuse_mailbox]


def _free_run(world: World, registry: str) -> list[tuple[int, int]]:
    """The first whole run of the registry's free space (placeholders side by side) spanning more
    than one CIDR, as its placeholders; [] if none."""
    spans = sorted((world.start[i], world.end[i]) for i in range(len(world))
                   if world.registry(i) == registry and world.is_placeholder(i))
    runs: list[list[tuple[int, int]]] = []
    for span in spans:
        if runs and runs[-1][-1][1] + 1 == span[0]:
            runs[-1].append(span)
        else:
            runs.append([span])
    return next((run for run in runs if len(cidrs(run[0][0], run[-1][1])) > 1), [])


@pytest.mark.parametrize("registry", rirs.REGISTRIES)
def test_free_space_from_the_statistics_is_written_as_its_placeholders(registry: str, world: World):
    """A statistics row of free space spanning several CIDRs is written as the placeholders the
    registry answers for it: LACNIC's one a CIDR, named by it (its objects are CIDRs), the others'
    one for the row. Written as one block, LACNIC's were blocks no map had (`full`: 20 of 57 missed
    seen so)."""
    run = _free_run(world, registry)
    if not run:
        pytest.skip(f"no free run of {registry} over several CIDRs in this world")
    first, last = run[0][0], run[-1][1]
    row = Delegation(registry, None, first, last - first + 1, None, "available")
    plan = StatsPlan([row], {registry: "1"})
    written = list(plan.free_records(Scope.of([(first, last)])))
    assert [(ip_int(r.start_address), ip_int(r.end_address)) for r in written] == run
    if rirs.BY_ID[registry].cidr_objects:
        assert [r.handle for r in written] == [c for r in written for c in r.cidrs]


# WHOIS text -----------------------------------------------------------------------------------

WHOIS_TEMPLATES = {"ripencc": "62.239.237.1", "apnic": "210.107.73.73", "afrinic": "196.11.240.215",
                   "arin": "74.125.225.229", "lacnic": "200.57.141.161"}
# Attributes the simulator prints that the (2015) captures lack: today's RIPE NCC objects carry
# `org:` and `abuse-c:`; `created:`/`last-modified:` replaced `changed:` at APNIC and AFRINIC since.
WHOIS_EXTRAS = {"ripencc": {"org", "abuse-c"}, "apnic": {"org", "created", "last-modified"},
                "afrinic": {"created", "last-modified"}, "arin": set(), "lacnic": set()}


def _paragraphs(text: str) -> list[list[tuple[str, str]]]:
    """The objects of a WHOIS answer: (attribute, value) pairs, comments left out."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        pairs = [tuple(x.strip() for x in line.split(":", 1)) for line in block.splitlines()
                 if line and line[0] not in "%#" and ":" in line]
        if pairs:
            out.append(pairs)
    return out


def _classes(text: str) -> set[str]:
    return {p[0][0].lower() for p in _paragraphs(text)}


def _network_attributes(text: str) -> set[str]:
    first = next(p for p in _paragraphs(text) if p[0][0].lower() in ("inetnum", "netrange"))
    return {a.lower() for a, _ in first}


@pytest.mark.parametrize("registry", sorted(WHOIS_TEMPLATES))
def test_whois_text_has_the_real_objects_and_attributes(registry: str, world: World):
    entry = json.loads((REAL / "ipwhois-tests-whois.json").read_text())[WHOIS_TEMPLATES[registry]]
    real = entry["response"]
    i = _object_like(world, registry, {"parentHandle": "x"} if registry != "ripencc" else {})
    sim = render.whois_text(world, i)
    assert _classes(sim) <= _classes(real)
    assert _network_attributes(sim) <= _network_attributes(real) | WHOIS_EXTRAS[registry]
    # the abuse contact where the registry prints it
    assert ("% Abuse contact for" in sim) == ("% Abuse contact for" in real)
    assert ("No abuse contact registered" in sim) == ("No abuse contact registered" in real)
