"""The WHOIS parsers without per-call setup read what they read before, answer for answer."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from ipwhois.net import Net

from whoiscrawl.bench.local import ipwhois_lookup, parse_benchmark, whois_corpus
from whoiscrawl.registry import whois
from whoiscrawl.sim.model import World

REAL = Path(__file__).parent.parent / "data" / "real-registry" / "ipwhois-tests-whois.json"
# What parse_whois reads of ipwhois' networks.
READ = ("range", "cidr", "name", "country", "created", "updated")
PUBLIC = (193 << 24) + 1  # ipwhois' Net refuses reserved addresses; offline it reads nothing else of it


@pytest.fixture(scope="module")
def answers(world: World) -> list[tuple[str, str]]:
    """(text, registry): the simulator's lookups, each object of its listings, and the real answers."""
    corpus = whois_corpus(world, per_registry=8, lookups_per_registry=60, max_children=60)
    found = [(text, registry) for text, _, registry in corpus.lookups]
    for text, registry, _ in corpus.listings:
        found += [(section, registry) for section in whois._RPSL_SECTION.split(text)[1:]]
    real = json.loads(REAL.read_text())
    found += [(e["response"].replace("\r\n", "\n"), e["asn_data"]["asn_registry"]) for e in real.values()]
    return found


def test_the_networks_read_without_a_net_are_ipwhois_lookups(answers: list[tuple[str, str]]):
    seen = 0
    for text, registry in answers:
        before: list[dict[str, Any]] = ipwhois_lookup(text, PUBLIC, registry)["nets"]
        after = whois._ipwhois_nets(text, registry)
        assert [{k: n.get(k) for k in READ} for n in after] == [{k: n.get(k) for k in READ} for n in before]
        seen += len(after)
    assert seen > 500


def test_objects_found_by_their_key_line_are_what_the_per_value_patterns_found(
    answers: list[tuple[str, str]],
):
    """organisation (the holder's org-name) and LACNIC's nic-hdl (the abuse e-mail's person)."""
    checked = 0
    for text, _registry in answers:
        for key, named_by, end, rest in (("organisation", "org", r"\n[ \t]*\n", whois._TO_BLANK),
                                         ("nic-hdl", "abuse-c", r"\n\s*\n", whois._TO_BLANK_OR_SPACE)):
            for value in {*whois._fields(text, named_by), "no-such-handle"}:
                old = re.search(rf"^{key}:[ \t]*{re.escape(value)}[ \t]*$(.*?)(?:{end}|\Z)", text,
                                re.MULTILINE | re.DOTALL | re.IGNORECASE)
                assert whois._object_of(text, key, value, rest) == (old.group(1) if old else None)
                checked += old is not None
    assert checked > 200


def test_parsing_text_builds_no_dns_resolver(world: World, monkeypatch: pytest.MonkeyPatch):
    """A Net made while parsing fails the test: parse_whois needs no DNS or URL opener."""
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a Net was built to parse text")

    monkeypatch.setattr(Net, "__init__", refuse)
    corpus = whois_corpus(world, per_registry=2, lookups_per_registry=5)
    for text, address, registry in corpus.lookups:
        whois.parse_whois(text, address, registry)
    for text, registry, parent in corpus.listings:
        assert whois.parse_whois_listing(text, registry, parent)


def test_the_parse_benchmark_reports_rates_beside_its_baseline(world: World):
    doc = parse_benchmark(world, per_registry=2, lookups_per_registry=10)
    assert doc["listed_objects"] > 50 and doc["lookups"] == 50
    rates = ("listed_objects_per_s", "lookups_per_s", "baseline_ipwhois_lookups_per_s")
    assert all(doc[rate] > 0 for rate in rates)
