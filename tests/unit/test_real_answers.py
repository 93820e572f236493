"""Every real IPv4 registry answer of tests/data/real-registry parses into what a person reads off it
(the wider labelled corpus: test_real_answers_corpus.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from netaddr import IPAddress

from whoiscrawl.registry.contacts import fill_country, resolve_country
from whoiscrawl.registry.rdap import RdapParser
from whoiscrawl.registry.whois import parse_whois
from whoiscrawl.sources import stats

# Real answers kept with the tests (provenance: CONTRIBUTING.md, "Test data"); missing ones fail.
REAL = Path(__file__).parents[1] / "data" / "real-registry"


def _rdap(address: str) -> tuple[dict[str, Any], str]:
    single = {"86.54.11.1": "ripe-rdap-86.54.11.1-2025.json", "192.198.0.0": "arin-rdap-192.198.0.0.json"}
    if address in single:
        doc = json.loads((REAL / single[address]).read_text())
        return doc, "ripencc" if address == "86.54.11.1" else "arin"
    entry = json.loads((REAL / "ipwhois-tests-rdap.json").read_text())[address]
    return entry["response"], entry["asn_data"]["asn_registry"]


def _whois(address: str) -> tuple[str, str]:
    entry = json.loads((REAL / "ipwhois-tests-whois.json").read_text())[address]
    return entry["response"], entry["asn_data"]["asn_registry"]


# address: (registry, handle, first, last, CIDRs, holder, country, country source, abuse e-mails)
RDAP_EXPECTED = {
    # 2025 RIPE NCC: three registrants (two maintainers, the org), abuse e-mail typed `abuse`;
    # the network says DE though the organisation sits in Brno
    "86.54.11.1": ("ripencc", "86.54.11.0 - 86.54.11.255", "86.54.11.0", "86.54.11.255",
                   ["86.54.11.0/24"], "Whalebone, s.r.o.", "DE", "network", ["abuse@whalebone.io"]),
    # older RIPE NCC: addresses suffixed /32, no registrant, descr as an untitled remark
    "62.239.237.1": ("ripencc", "62.239.237.0 - 62.239.237.255", "62.239.237.0", "62.239.237.255",
                     ["62.239.237.0/24"], "UDC", "GB", "network",
                     ["lee.bailey-hague@bt.com", "steve.a.marshall@bt.com", "zzdnsr@bt.com"]),
    # 2023 ARIN: no network country (the org's address says United States), abuse POC nested and top-level
    "192.198.0.0": ("arin", "NET-192-198-0-0-1", "192.198.0.0", "192.198.3.255", ["192.198.0.0/22"],
                    "Radio Link Internet", "US", "holder", ["daniel.petsinger@radiolinkinternet.com"]),
    # older ARIN: zero-padded addresses, the abuse contact only inside the registrant
    "74.125.225.229": ("arin", "NET-74-125-0-0-1", "74.125.0.0", "74.125.255.255", ["74.125.0.0/16"],
                       "Google Inc.", "US", "holder", ["arin-contact@google.com"]),
    # APNIC: no registrant; the holder is the first descr line (a `description` remark); the IRT is
    # KRNIC's helpdesk, the holder's own abuse address is in its role's remarks
    "210.107.73.73": ("apnic", "210.107.0.0 - 210.107.127.255", "210.107.0.0", "210.107.127.255",
                      ["210.107.0.0/17"], "DACOM Corp.", "KR", "network", ["abuse@bora.net"]),
    # LACNIC's odd answer whose range is the queried address alone
    "200.57.141.161": ("lacnic", "200.57.141.161", "200.57.141.161", "200.57.141.161",
                       ["200.57.141.161/32"], "Triara.com, S.A. de C.V.", "MX", "network",
                       ["operacion.redes@TRIARA.COM"]),
    # AFRINIC: a range that is not one CIDR, entities without roles, abuse only in a remark, the
    # organisation nameless (its vCard's fn is its handle): its maintainer names it
    # ("MTN Business IP Maintainer")
    "196.11.240.215": ("afrinic", "196.11.239.0 - 196.11.246.255", "196.11.239.0", "196.11.246.255",
                       ["196.11.239.0/24", "196.11.240.0/22", "196.11.244.0/23", "196.11.246.0/24"],
                       "MTN Business", "ZA", "network", ["abuse@mtnbusiness.co.za"]),
}

WHOIS_EXPECTED = {
    # "% Abuse contact for ... is 'protect@bt.com'" (not the remark's btcertcc@bt.com)
    "62.239.237.1": ("ripencc", "62.239.237.0 - 62.239.237.255", "62.239.237.0", "62.239.237.255",
                     ["62.239.237.0/24"], "UDC", "GB", "network", ["protect@bt.com"]),
    # ARIN: the Country line belongs to the organisation
    "74.125.225.229": ("arin", "NET-74-125-0-0-1", "74.125.0.0", "74.125.255.255", ["74.125.0.0/16"],
                       "Google Inc.", "US", "holder", ["arin-contact@google.com"]),
    # APNIC: not every e-mail of the answer; the IRT's abuse-mailbox is KRNIC's helpdesk, the
    # holder's own address is in its role's remarks ("If related with spam, send mail to ...")
    "210.107.73.73": ("apnic", "210.107.0.0 - 210.107.127.255", "210.107.0.0", "210.107.127.255",
                      ["210.107.0.0/17"], "DACOM Corp.", "KR", "network", ["abuse@bora.net"]),
    # LACNIC: a short CIDR (`200.57.128/19`), the abuse-c person's e-mail
    "200.57.141.161": ("lacnic", "200.57.128.0/19", "200.57.128.0", "200.57.159.255", ["200.57.128.0/19"],
                       "Triara.com, S.A. de C.V.", "MX", "network", ["operacion.redes@TRIARA.COM"]),
    # AFRINIC: the organisation's org-name; "No abuse contact registered", the remark gives one
    "196.11.240.215": ("afrinic", "196.11.239.0 - 196.11.246.255", "196.11.239.0", "196.11.246.255",
                       ["196.11.239.0/24", "196.11.240.0/22", "196.11.244.0/23", "196.11.246.0/24"],
                       "MTN SA", "ZA", "network", ["abuse@mtnbusiness.co.za"]),
}


def _fields(record: Any) -> tuple[Any, ...]:
    return (record.registry, record.handle, record.start_address, record.end_address, record.cidrs,
            record.registrant, record.country, record.country_source, record.abuse_emails)


@pytest.mark.parametrize("address", sorted(RDAP_EXPECTED))
def test_real_rdap_answers(address: str):
    doc, registry = _rdap(address)
    record = RdapParser().parse(doc, int(IPAddress(address)), registry)
    assert _fields(record) == RDAP_EXPECTED[address]


@pytest.mark.parametrize("address", sorted(WHOIS_EXPECTED))
def test_real_whois_answers(address: str):
    text, registry = _whois(address)
    record = parse_whois(text, int(IPAddress(address)), registry)
    assert _fields(record) == WHOIS_EXPECTED[address]


def test_every_real_ipv4_answer_has_expectations():
    rdap = {a for a in json.loads((REAL / "ipwhois-tests-rdap.json").read_text()) if ":" not in a}
    whois = {a for a in json.loads((REAL / "ipwhois-tests-whois.json").read_text()) if ":" not in a}
    assert rdap | {"86.54.11.1", "192.198.0.0"} == set(RDAP_EXPECTED)
    assert whois == set(WHOIS_EXPECTED)


def test_country_falls_back_to_the_delegation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The parser reads no global: the client fills a record without a country from the delegation
    (`fill_country`, given `country_of` explicitly); $WHOISCRAWL_DELEGATED is read where the client
    is built (`stats.configured_country`)."""
    path = tmp_path / "delegated-afrinic-extended-latest"
    path.write_text("2|afrinic|20250101|2|19830101|20250101|+0000\n"
                    "afrinic|ZA|ipv4|196.11.0.0|65536|19940101|allocated|F36B9F4B\n"
                    "afrinic||ipv4|196.12.0.0|65536||available|\n")
    assert resolve_country("ZZ", "KE") == ("KE", "holder")
    assert resolve_country("za", "KE") == ("ZA", "network")
    assert resolve_country(None, None) == (None, None)
    monkeypatch.setenv(stats.ENV, str(tmp_path))
    stats.configured.cache_clear()
    try:
        doc, registry = _rdap("196.11.240.215")
        del doc["country"]
        record = RdapParser().parse(doc, int(IPAddress("196.11.240.215")), registry)
        assert (record.country, record.country_source) == (None, None)  # the environment unread
        country_of = stats.configured_country()
        assert country_of is not None
        assert (fill_country(record, country_of).country, record.country_source) == ("ZA", "delegation")
        free = int(IPAddress("196.12.1.0"))
        assert country_of(free, free + 255) is None  # available space
        kept = RdapParser().parse(_rdap("196.11.240.215")[0], int(IPAddress("196.11.240.215")), registry)
        assert fill_country(kept, country_of).country_source != "delegation"  # the answer's stands
    finally:
        stats.configured.cache_clear()
    monkeypatch.delenv(stats.ENV)
    assert stats.configured_country() is None
    stats.configured.cache_clear()


def test_listed_networks_in_the_older_address_forms():
    """A relation-search answer whose networks are written as the 2015 answers were (zero-padded,
    /32-suffixed) lists them at their real addresses."""
    from whoiscrawl.registry.rdap import parse_listing

    for address, want in (("74.125.225.229", ("74.125.0.0", "74.125.255.255")),
                          ("62.239.237.1", ("62.239.237.0", "62.239.237.255"))):
        doc, registry = _rdap(address)
        children = parse_listing(RdapParser(), {"ipSearchResults": [doc]}, registry)
        assert [(c.start_address, c.end_address) for c, _ in children] == [want]
