"""The holder, the holder's country and the abuse e-mails of an RDAP network, case by case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from whoiscrawl.registry import contacts

REAL = Path(__file__).resolve().parents[1] / "data" / "real-answers"


def entity(handle: str, roles: list[str] | None, *props: list[Any], **extra: Any) -> dict[str, Any]:
    card = ["vcard", [["version", {}, "text", "4.0"], *props]]
    doc: dict[str, Any] = {"handle": handle, "vcardArray": card}
    if roles is not None:
        doc["roles"] = roles
    return {**doc, **extra}


def test_the_holder_is_the_registrant_of_kind_org_else_the_first():
    mnt = entity("X-MNT", ["registrant"], ["fn", {}, "text", "X-MNT"], ["kind", {}, "text", "individual"])
    org = entity("ORG-X", ["registrant"], ["fn", {}, "text", "X Ltd"], ["kind", {}, "text", "org"])
    assert contacts.of_network({"entities": [mnt, org]}).holder == "X Ltd"
    # a maintainer alone names the holder by its own name (RIPE NCC's 130.59.0.0/16: SWITCH-MNT)
    assert contacts.of_network({"entities": [mnt]}).holder == "X"
    no_fn = {"handle": "ORG-Y", "roles": ["registrant"]}
    assert contacts.of_network({"entities": [no_fn]}).holder == "ORG-Y"  # nameless: its handle, last
    # a registrant without a vCard gives way to the description remark (RIPE NCC's older answers)
    doc = {"entities": [no_fn], "remarks": [{"description": ["Y Networks"]}]}
    assert contacts.of_network(doc).holder == "Y Networks"
    # no registrant at all: APNIC's description remark
    doc = {"entities": [], "remarks": [{"title": "remarks", "description": ["not this"]},
                                       {"title": "description", "description": ["Y Corp.", "more"]}]}
    assert contacts.of_network(doc).holder == "Y Corp."
    assert contacts.of_network({}).holder is None


def test_the_holders_country_from_its_address():
    label = entity("ORG-X", ["registrant"], ["kind", {}, "text", "org"],
                   ["adr", {"label": "1 Main St\nSpringfield\nUNITED STATES"}, "text", [""] * 7])
    structured = entity("ORG-Z", ["registrant"], ["kind", {}, "text", "org"],
                        ["adr", {}, "text", ["", "", "Calle 1", "Rionegro", "", "001", "CO"]])
    assert contacts.of_network({"entities": [label]}).holder_country == "US"
    assert contacts.of_network({"entities": [structured]}).holder_country == "CO"
    assert contacts.country_code("EU") == "EU"  # RIR codes ISO 3166 does not assign
    assert contacts.country_code("Korea, Republic of") == "KR"
    assert contacts.country_code("Example City") is None


def test_abuse_emails_from_roles_types_nesting_and_remarks():
    typed = entity("T", ["technical"], ["email", {"type": "abuse"}, "text", "typed@x.example"],
                   ["email", {}, "text", "tech@x.example"])
    nested = entity("ORG", ["registrant"], entities=[
        entity("POC", ["abuse", "technical"], ["email", {}, "text", "poc@x.example"])])
    # the network's own entities before those nested in its registrant (ARIN: network POC first)
    assert contacts.abuse_emails([typed, nested]) == ["typed@x.example"]
    assert contacts.abuse_emails([nested]) == ["poc@x.example"]
    # an abuse entity whose vCard marks its abuse address: that one, not every address it has
    role = entity("AR1", ["abuse"], ["email", {}, "text", "noc@x.example"],
                  ["email", {"type": "abuse"}, "text", "abuse@x.example"])
    assert contacts.abuse_emails([role]) == ["abuse@x.example"]
    remarks = [{"title": "Remark", "description": ["please send abuse reports to abuse@y.example"]},
               {"title": "Remark", "description": ["sales: sales@y.example"]}]
    assert contacts.abuse_emails([], remarks) == ["abuse@y.example"]
    assert contacts.abuse_emails([typed], remarks) == ["typed@x.example"]  # remarks only as a last resort


def test_a_national_registrys_helpdesk_gives_way_to_the_holders_own_abuse_address():
    irt = entity("IRT-KRNIC-KR", ["abuse"], ["email", {}, "text", "hostmaster@nic.or.kr"])
    role = entity("DB50-AP", ["technical"], ["email", {}, "text", "ipadm@x.example"],
                  remarks=[{"title": "remarks", "description": ["If spam, send mail to abuse@x.example"]}])
    assert contacts.abuse_emails([irt, role]) == ["abuse@x.example"]
    assert contacts.abuse_emails([irt]) == ["hostmaster@nic.or.kr"]  # no address of its own: the helpdesk


def test_a_lacnic_owner_handle_carries_its_country():
    owner = entity("MX-USCV4-LACNIC", ["registrant"], ["fn", {}, "text", "Uninet S.A. de C.V."])
    assert contacts.of_network({"entities": [owner]}).holder_country == "MX"


def test_a_holder_named_only_by_handle_is_to_be_asked_for_by_its_self_link():
    """The holder entity the answer does not name (no vCard, or `fn` its handle: AFRINIC), with its
    own `self` link where the answer gives one; a named holder or a maintainer is asked for not."""
    link = {"rel": "self", "href": "https://rdap.afrinic.net/rdap/entity/ORG-X1-AFRINIC"}
    nameless = entity("ORG-X1-AFRINIC", None, ["kind", {}, "text", "org"],
                      ["fn", {}, "text", "ORG-X1-AFRINIC"], links=[{"rel": "related", "href": "x"}, link])
    assert contacts.unnamed_holder({"entities": [nameless]}) == contacts.EntityRef(
        "ORG-X1-AFRINIC", link["href"])
    no_card = {"handle": "ORG-Y1-RIPE", "roles": ["registrant"]}
    assert contacts.unnamed_holder({"entities": [no_card]}) == contacts.EntityRef("ORG-Y1-RIPE", None)
    named = entity("ORG-Z", ["registrant"], ["fn", {}, "text", "Z Ltd"], ["kind", {}, "text", "org"])
    mnt = {"handle": "Z-MNT", "roles": ["registrant"]}
    assert contacts.unnamed_holder({"entities": [named]}) is None
    assert contacts.unnamed_holder({"entities": [mnt]}) is None
    assert contacts.unnamed_holder({"entities": "nonsense"}) is None and contacts.unnamed_holder([]) is None
    # a bare "IP Maintainer" (AFRINIC's role) names nobody: the handle, not "IP", meanwhile
    role = entity("AR1-AFRINIC", None, ["kind", {}, "text", "group"], ["fn", {}, "text", "IP Maintainer"])
    assert contacts.of_network({"entities": [role, nameless]}).holder == "ORG-X1-AFRINIC"


def test_an_entity_answer_names_the_entity_asked_for():
    """A real AFRINIC entity answer (20c/rdap's WOL-AFRINIC): its own vCard's `fn`, for its own
    handle only (not a nested entity's, not another's); an answer that is no entity names nobody."""
    wol = json.loads((REAL / "afrinic" / "entities" / "20c-rdap-WOL-AFRINIC.json").read_text())
    assert contacts.entity_name(wol, "WOL-AFRINIC") == "Workonline NOC"
    assert contacts.entity_name(wol, "wol-afrinic") == "Workonline NOC"  # handles are case-blind
    assert contacts.entity_name(wol, "ORG-WCL1-AFRINIC") is None
    assert contacts.entity_name({**wol, "objectClassName": "ip network"}, "WOL-AFRINIC") is None
    same = entity("ORG-X1-AFRINIC", None, ["fn", {}, "text", "ORG-X1-AFRINIC"], objectClassName="entity")
    assert contacts.entity_name(same, "ORG-X1-AFRINIC") is None  # still only its handle
    assert contacts.entity_name({"errorCode": 404}, "WOL-AFRINIC") is None


def test_the_abuse_contacts_a_network_answer_embeds_are_what_their_own_answers_give():
    # LACNIC's captured answer for 200.57.141.161 embeds its abuse contact RYT2's vCard (the person
    # object its `entity/RYT2` answers): its address is known without asking
    answers = json.loads((REAL.parent / "real-registry" / "ipwhois-tests-rdap.json").read_text())
    triara = answers["200.57.141.161"]["response"]
    assert contacts.named_abuse_contacts(triara) == {"ryt2": ["operacion.redes@TRIARA.COM"]}
    # nicinfo's recorded 201.127.0.0/16 names GEC10 without a vCard: nothing known, it is asked
    uninet = json.loads((REAL / "lacnic" / "nicinfo-201.127.0.1.json").read_text())
    assert contacts.named_abuse_contacts(uninet) == {}
    # a technical or administrative contact is no abuse contact; an abuse contact typed addresses win
    tech = entity("T1", ["technical"], ["email", {}, "text", "noc@x.example"])
    typed = entity("A1", ["abuse"], ["email", {}, "text", "noc@x.example"],
                   ["email", {"type": "abuse"}, "text", "abuse@x.example"])
    assert contacts.named_abuse_contacts({"entities": [tech, typed]}) == {"a1": ["abuse@x.example"]}
    assert contacts.named_abuse_contacts(None) == {}
