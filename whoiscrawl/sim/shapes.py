"""Per-registry RDAP network shapes after the real answers (tests/data/real-registry): keys, entities.

Each registry puts the same facts in different places, as its real server does:
- RIPE NCC (2025): several `registrant` entities (the maintainers, and the organisation of vCard
  kind `org`), an abuse role whose e-mail is typed `abuse`, RFC 9537 `redacted`, `geofeed1`, top
  objects under `0.0.0.0 - 255.255.255.255`. The 2015 form suffixes addresses with `/32`, has one
  abuse entity and the `descr` as an untitled remark.
- ARIN (2023): no `country` on the network (the organisation's vCard address ends with the
  country's name), `cidr0_cidrs`, `arin_originas0_originautnums`, the abuse POC both nested in the
  registrant and at the top. The 2015 form zero-pads addresses and nests the abuse POC only.
- APNIC: no registrant; the `descr` is a `description` remark, abuse comes from the IRT entity.
- LACNIC: a person entity with the abuse role and the organisation (kind `org`) as registrant,
  structured vCard addresses ending with the country code, a lower-case `type`.
- AFRINIC: entities without roles (the organisation is the one of kind `org`), abuse addresses only
  in the network's remarks, no links or events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pycountry

ERAS = ("current", "2015")  # the shapes of today's answers, and of the older captured ones


@dataclass(frozen=True)
class Facts:
    """What the registry holds about one network, before it is shaped into an answer."""

    registry: str
    handle: str
    start: str
    end: str
    name: str
    type: str
    status: list[str]
    cidrs: list[tuple[str, int]]
    country: str | None
    parent: str | None  # the parent's handle (`a - b` at RIPE NCC, APNIC and AFRINIC)
    registered: str
    changed: str
    org_handle: str
    org_name: str
    abuse_handle: str
    abuse_email: str
    maintainer: str
    self_url: str
    up_url: str | None
    port43: str
    terms: str
    placeholder: bool
    asn: int
    top: bool  # a delegation itself (the registry's own maintainer holds it too)
    # False: the answer names its holder only by handle (AFRINIC's vCard `fn` the handle, as its
    # 2014 answers did); the entity's own answer (`entities.py`) names it
    org_named: bool = True
    # The abuse contact's holder (LACNIC: perhaps the one that registered the block rather than the
    # block's, `World.contact_holder`) and its country, as the contact's vCard gives them; None: the
    # network's holder and country
    abuse_org: str | None = None
    abuse_country: str | None = None


def country_name(cc: str | None) -> str:
    """The country's name as registries print it in addresses (RIR codes like EU stay codes)."""
    found = pycountry.countries.get(alpha_2=cc) if cc else None
    return str(found.name) if found else (cc or "")


def _card(*props: list[Any]) -> list[Any]:
    return ["vcard", [["version", {}, "text", "4.0"], *props]]


def _label(f: Facts, upper: bool = False) -> list[Any]:
    name = country_name(f.country)
    return [
        "adr",
        {"label": f"1 Example Street\nExample City\n{name.upper() if upper else name}"},
        "text",
        ["", "", "", "", "", "", ""],
    ]


def _entity(handle: str, roles: list[str] | None, card: list[Any], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"handle": handle, "vcardArray": card}
    if roles is not None:
        doc["roles"] = roles
    doc.update(extra)
    doc["objectClassName"] = "entity"
    return doc


def _events(f: Facts, registration: bool = True) -> list[dict[str, str]]:
    changed = [{"eventAction": "last changed", "eventDate": f"{f.changed}T00:00:00Z"}]
    return (
        [{"eventAction": "registration", "eventDate": f"{f.registered}T00:00:00Z"}] if registration else []
    ) + changed


def _cidr0(f: Facts) -> list[dict[str, Any]]:
    return [{"v4prefix": a, "length": n} for a, n in f.cidrs]


def rdap(f: Facts, era: str = "current") -> dict[str, Any]:
    """The registry's RDAP ip network object for these facts, in the shape of its real answers."""
    shaper = {"ripencc": _ripe, "arin": _arin, "apnic": _apnic, "lacnic": _lacnic, "afrinic": _afrinic}
    return shaper[f.registry](f, era)


# RIPE NCC ---------------------------------------------------------------------------------------


def _ripe_links(f: Facts, href: str) -> list[dict[str, Any]]:
    terms = "http://www.ripe.net/data-tools/support/documentation/terms"
    return [
        {"value": f.self_url, "rel": "self", "href": href},
        {"value": terms, "rel": "copyright", "href": terms},
    ]


def _ripe(f: Facts, era: str) -> dict[str, Any]:
    if era == "2015":
        return _ripe_2015(f)
    entity_url = f.self_url.split("/ip/")[0] + "/entity/"
    maint = _entity(
        f.maintainer,
        ["registrant"],
        _card(["fn", {}, "text", f.maintainer], ["kind", {}, "text", "individual"]),
        links=_ripe_links(f, entity_url + f.maintainer),
    )
    org = _entity(
        f.org_handle,
        ["registrant"],
        _card(
            ["fn", {}, "text", f.org_name],
            ["kind", {}, "text", "org"],
            _label(f),
            ["tel", {"type": "voice"}, "text", "+0000000"],
        ),
        links=_ripe_links(f, entity_url + f.org_handle),
    )
    abuse = _entity(
        f.abuse_handle,
        ["abuse"],
        _card(
            ["fn", {}, "text", "Abuse-C Role"],
            ["kind", {}, "text", "group"],
            _label(f),
            ["email", {"type": "abuse"}, "text", f.abuse_email],
        ),
        links=_ripe_links(f, entity_url + f.abuse_handle),
        entities=[maint],
    )
    tech = _entity(
        f"TS{f.abuse_handle}",
        ["administrative", "technical"],
        _card(
            ["fn", {}, "text", "Tech support"],
            ["kind", {}, "text", "group"],
            _label(f),
            ["tel", {"type": "voice"}, "text", "+0000000"],
        ),
        links=_ripe_links(f, entity_url + f"TS{f.abuse_handle}"),
    )
    hostmaster = _entity(
        "RIPE-NCC-HM-MNT",
        ["registrant"],
        _card(
            ["fn", {}, "text", "RIPE-NCC-HM-MNT"],
            ["kind", {}, "text", "individual"],
            ["org", {}, "text", "ORG-NCC1-RIPE"],
        ),
        links=_ripe_links(f, entity_url + "RIPE-NCC-HM-MNT"),
    )
    registrants = [maint, org, hostmaster] if f.top and not f.placeholder else [maint, org]
    doc: dict[str, Any] = {
        "handle": f.handle,
        "startAddress": f.start,
        "endAddress": f.end,
        "ipVersion": "v4",
        "name": f.name,
        "type": f.type,
        "country": f.country,
        "parentHandle": f.parent or "0.0.0.0 - 255.255.255.255",
        "cidr0_cidrs": _cidr0(f),
        "status": f.status,
        "entities": [*registrants, tech, abuse],
        "links": [
            {"value": f.self_url, "rel": "self", "href": f.self_url, "type": "application/rdap+json"},
            _ripe_links(f, "")[1],
        ],
        "events": _events(f),
        "rdapConformance": ["geofeed1", "cidr0", "rdap_level_0", "nro_rdap_profile_0", "redacted"],
        "notices": [
            {"title": "Filtered", "description": ["This output has been filtered."]},
            {
                "title": "Whois Inaccuracy Reporting",
                "description": ["If you see inaccuracies in the results, please visit:"],
            },
            {"title": "Source", "description": ["Objects returned came from source", "RIPE"]},
            {"title": "Terms and Conditions", "description": [f.terms]},
        ],
        "port43": f.port43,
        "objectClassName": "ip network",
        "redacted": [
            {
                "name": {"description": "Personal e-mail information"},
                "reason": {"description": "Personal data"},
                "prePath": f"$.entities[?(@.handle=='{h}')].vcardArray[1][?(@[0]=='e-mail')]",
                "method": "removal",
            }
            for h in (f.org_handle, f.abuse_handle)
        ],
    }
    if f.country is None:
        del doc["country"]
    return doc


def _ripe_2015(f: Facts) -> dict[str, Any]:
    abuse = {
        "vcardArray": _card(
            ["fn", {}, "text", "Abuse contact"],
            ["kind", {}, "text", "group"],
            ["adr", {"label": "1 Example Street"}, "text", None],
            ["email", {}, "text", f.abuse_email],
        ),
        "handle": f.abuse_handle,
        "entities": [
            {"handle": f"TS{f.abuse_handle}", "roles": ["administrative", "technical"]},
            {"handle": f.maintainer, "roles": ["registrant"]},
            {"handle": f"AC{f.abuse_handle}", "roles": ["administrative"]},
        ],
        "roles": ["abuse"],
    }
    doc: dict[str, Any] = {
        "type": f.type,
        "name": f.name,
        "notices": [
            {"title": "Filtered", "description": ["This output has been filtered."]},
            {"title": "Source", "description": ["Objects returned came from source", "RIPE"]},
            {"title": "Terms and Conditions", "description": [f.terms]},
        ],
        "startAddress": f"{f.start}/32",
        "entities": [abuse],
        "ipVersion": "v4",
        "port43": f.port43,
        "events": _events(f, registration=False),
        "handle": f.handle,
        "rdapConformance": ["rdap_level_0"],
        "endAddress": f"{f.end}/32",
        "country": f.country,
        "remarks": [{"description": [f.org_name]}],
        "links": [{"href": f.self_url, "rel": "self", "value": f.self_url}, _ripe_links(f, "")[1]],
    }
    if f.country is None:
        del doc["country"]
    return doc


# ARIN -------------------------------------------------------------------------------------------


def _arin_links(f: Facts, kind: str, handle: str) -> list[dict[str, Any]]:
    base = f.self_url.split("/ip/")[0]
    return [
        {
            "href": f"{base}/entity/{handle}",
            "rel": "self",
            "type": "application/rdap+json",
            "value": f.self_url,
        },
        {
            "href": f"https://whois.arin.net/rest/{kind}/{handle}",
            "rel": "alternate",
            "type": "application/xml",
            "value": f.self_url,
        },
    ]


def _arin_poc(f: Facts, roles: list[str], legacy: bool = False) -> dict[str, Any]:
    who = ["org", {}, "text", f.org_name] if legacy else ["n", {}, "text", ["Contact", "Abuse", "", "", ""]]
    card = _card(
        _label(f, upper=legacy),
        ["fn", {}, "text", "Abuse contact"],
        who,
        ["kind", {}, "text", "group" if legacy else "individual"],
        ["email", {}, "text", f.abuse_email],
        ["tel", {"type": ["work", "voice"]}, "text", "+1-000-000-0000"],
    )
    return _entity(
        f.abuse_handle,
        roles,
        card,
        events=_events(f),
        links=_arin_links(f, "poc", f.abuse_handle),
        port43=f.port43,
        status=["validated"],
    )


def _zero_pad(address: str) -> str:
    return ".".join(f"{int(octet):03d}" for octet in address.split("."))


def _arin(f: Facts, era: str) -> dict[str, Any]:
    legacy = era == "2015"
    org_card = _card(["fn", {}, "text", f.org_name], _label(f, upper=legacy), ["kind", {}, "text", "org"])
    nested = _arin_poc(
        f,
        ["abuse", "administrative", "technical"]
        if legacy
        else ["noc", "technical", "administrative", "abuse"],
        legacy,
    )
    registrant = _entity(
        f.org_handle,
        ["registrant"],
        org_card,
        entities=[nested],
        events=_events(f),
        links=_arin_links(f, "org", f.org_handle),
        port43=f.port43,
    )
    if not legacy:
        registrant["remarks"] = [
            {"title": "Registration Comments", "description": [f"https://{f.abuse_email.split('@')[1]}"]}
        ]
    doc: dict[str, Any] = {
        "arin_originas0_originautnums": [f.asn] if f.asn else [],
        "cidr0_cidrs": _cidr0(f),
        "endAddress": f.end,
        "entities": [registrant, _arin_poc(f, ["noc", "abuse", "technical"])],
        "events": _events(f),
        "handle": f.handle,
        "ipVersion": "v4",
        "links": [
            {"href": f.self_url, "rel": "self", "type": "application/rdap+json", "value": f.self_url},
            {
                "href": f"https://whois.arin.net/rest/net/{f.handle}",
                "rel": "alternate",
                "type": "application/xml",
                "value": f.self_url,
            },
        ],
        "name": f.name,
        "notices": [
            {"title": "Terms of Service", "description": [f.terms]},
            {
                "title": "Whois Inaccuracy Reporting",
                "description": ["If you see inaccuracies in the results, please visit: "],
            },
            {
                "title": "Copyright Notice",
                "description": ["Copyright 1997-2023, American Registry for Internet Numbers, Ltd."],
            },
        ],
        "objectClassName": "ip network",
        "parentHandle": f.parent,
        "port43": f.port43,
        "rdapConformance": ["nro_rdap_profile_0", "rdap_level_0", "cidr0", "arin_originas0"],
        "startAddress": f.start,
        "status": f.status,
        "type": f.type,
    }
    if legacy:  # zero-padded, the abuse POC only inside the registrant, no cidr0 or origin AS
        for key in ("arin_originas0_originautnums", "cidr0_cidrs", "status", "type"):
            del doc[key]
        doc["entities"] = [registrant]
        doc["startAddress"], doc["endAddress"] = _zero_pad(f.start), _zero_pad(f.end)
        doc["rdapConformance"] = ["rdap_level_0"]
        doc["notices"] = doc["notices"][:1]
    if f.parent is None:
        del doc["parentHandle"]
    return doc


# APNIC ------------------------------------------------------------------------------------------


def _apnic(f: Facts, era: str) -> dict[str, Any]:
    entity_url = f.self_url.split("/ip/")[0] + "/entity/"
    admin = _entity(
        f"{f.maintainer}-AP",
        ["technical", "administrative"],
        _card(
            ["fn", {}, "text", f"{f.org_name} NOC"],
            ["kind", {}, "text", "group"],
            ["adr", {"label": "1 Example Street\\nExample City"}, "text", ["", "", "", "", "", "", ""]],
            ["tel", {"type": "voice"}, "text", "+00-0-0000-0000"],
            ["email", {}, "text", f"noc@{f.abuse_email.split('@')[1]}"],
        ),
        remarks=[{"title": "remarks", "description": [f"IP address administrators of {f.org_name}"]}],
        links=[
            {
                "type": "application/rdap+json",
                "href": f"{entity_url}{f.maintainer}-AP",
                "rel": "self",
                "value": f.self_url,
            }
        ],
    )
    irt = _entity(
        f.abuse_handle,
        ["abuse"],
        _card(
            ["fn", {}, "text", f.abuse_handle],
            ["kind", {}, "text", "group"],
            ["email", {"pref": "1"}, "text", f.abuse_email],
            ["adr", {"label": "1 Example Street"}, "text", ["", "", "", "", "", "", ""]],
        ),
        links=[
            {
                "type": "application/rdap+json",
                "href": f"{entity_url}{f.abuse_handle}",
                "rel": "self",
                "value": f.self_url,
            }
        ],
    )
    doc: dict[str, Any] = {
        "type": f.type,
        "name": f.name,
        "notices": [
            {"title": "Source", "description": ["Objects returned came from source", "APNIC"]},
            {"title": "Terms and Conditions", "description": [f.terms]},
        ],
        "startAddress": f.start,
        "country": f.country,
        "entities": [admin, irt],
        "ipVersion": "v4",
        "port43": f.port43,
        "events": _events(f, registration=False),
        "handle": f.handle,
        "rdapConformance": ["rdap_level_0"],
        "endAddress": f.end,
        "parentHandle": f.parent,
        "objectClassName": "ip network",
        "remarks": [{"title": "description", "description": [f.org_name]}],
        "links": [{"type": "application/rdap+json", "href": f.self_url, "rel": "self", "value": f.self_url}],
    }
    if f.up_url:
        doc["links"].insert(
            0, {"type": "application/rdap+json", "href": f.up_url, "rel": "up", "value": f.self_url}
        )
    for key, value in (("country", f.country), ("parentHandle", f.parent)):
        if value is None:
            del doc[key]
    return doc


# LACNIC -----------------------------------------------------------------------------------------


def _lacnic_adr(country: str | None) -> list[Any]:
    return ["adr", {}, "text", ["", "", "1 Example Street", "Example City", "", "00000", country or ""]]


def lacnic_contact_card(org_name: str, country: str | None, email: str) -> list[Any]:
    """The vCard of a LACNIC contact (a person handle, as `RYT2` in the captured answer): the same
    in a network's answer and in the contact's own (`entity/<handle>`, `entities.py`)."""
    return _card(
        ["fn", {}, "text", "Network Operations"],
        ["kind", {}, "text", "individual"],
        _lacnic_adr(country),
        ["tel", {"type": "voice"}, "text", "00 0000000"],
        ["email", {}, "text", email],
        ["org", {}, "text", org_name],
    )


def _lacnic(f: Facts, era: str) -> dict[str, Any]:
    base = f.self_url.split("/ip/")[0]
    adr = _lacnic_adr(f.country)
    contact_org, contact_cc = (f.abuse_org, f.abuse_country) if f.abuse_org else (f.org_name, f.country)
    person_card = lacnic_contact_card(contact_org, contact_cc, f.abuse_email)
    links = [
        {"href": f"{base}/entity/{f.abuse_handle}", "rel": "self", "value": f"{base}/entity/{f.abuse_handle}"}
    ]
    person = _entity(
        f.abuse_handle, ["administrative", "technical", "abuse"], person_card, lang="en", links=links
    )
    owner_contact = _entity(
        f.abuse_handle, ["administrative", "registrant"], person_card, lang="en", links=links
    )
    org = _entity(
        f.org_handle,
        ["registrant"],
        _card(
            ["fn", {}, "text", f.org_name],
            ["kind", {}, "text", "org"],
            adr,
            ["tel", {"type": "voice"}, "text", "00 0000000"],
        ),
        entities=[owner_contact],
        links=[
            {"href": f"{base}/entity/{f.org_handle}", "rel": "self", "value": f"{base}/entity/{f.org_handle}"}
        ],
        events=_events(f, registration=False),
    )
    terms = "http://www.lacnic.net/web/lacnic/registration-data-access-protocol"
    doc: dict[str, Any] = {
        "type": f.type.lower(),
        "name": f.name,
        "notices": [{"title": "Terms and Conditions", "description": [f.terms]}],
        "startAddress": f.start,
        "objectClassName": "ip network",
        "entities": [person, org],
        "ipVersion": "v4",
        "events": _events(f, registration=False),
        "handle": f.handle,
        "rdapConformance": ["rdap_level_0"],
        "endAddress": f.end,
        "country": f.country,
        "port43": f.port43,
        "links": [
            {"href": f.self_url, "rel": "self", "value": f.self_url},
            {"href": terms, "rel": "copyright", "value": terms},
        ],
    }
    if f.parent:  # both captured answers are delegations, which name no parent anywhere
        doc["parentHandle"] = f.parent
    if f.country is None:
        del doc["country"]
    return doc


# AFRINIC ----------------------------------------------------------------------------------------


def _afrinic(f: Facts, era: str) -> dict[str, Any]:
    adr = [
        "adr",
        {"type": "work"},
        "text",
        ["1 Example Street", "Example City", country_name(f.country), "", "", "", ""],
    ]
    common = {"status": ["active"], "port43": f.port43, "lang": "en"}
    role = _entity(
        f.abuse_handle,
        None,
        _card(
            ["kind", {}, "text", "group"],
            ["fn", {}, "text", "IP Maintainer"],
            ["email", {"type": "work"}, "text", f"noc@{f.abuse_email.split('@')[1]}"],
            adr,
        ),
        **common,
    )
    org = _entity(
        f.org_handle,
        None,
        _card(
            ["kind", {}, "text", "org"],
            ["fn", {}, "text", f.org_name if f.org_named else f.org_handle],
            ["tel", {"type": "work"}, "uri", "tel:+000000000"],
            ["email", {"type": "work"}, "text", f"info@{f.abuse_email.split('@')[1]}"],
            adr,
        ),
        **common,
    )
    doc: dict[str, Any] = {
        "type": f.type,
        "name": f.name,
        "notices": [
            {
                "title": "ABOUT",
                "description": ["This is the AfriNIC RDAP server."],
                "links": [
                    {
                        "media": "screen",
                        "type": "text/html",
                        "href": "https://afrinic.net/whois",
                        "rel": "describedby",
                        "hreflang": ["en"],
                        "title": "AFRINIC Database Reference Manual",
                        "value": f.self_url,
                    }
                ],
            }
        ],
        "startAddress": f.start,
        "objectClassName": "ip network",
        "ipVersion": "v4",
        "entities": [role, org],
        "lang": "en",
        "remarks": [{"title": "Remark", "description": [f"please send abuse reports to {f.abuse_email}"]}],
        "handle": f.handle,
        "rdapConformance": ["rdap_level_0"],
        "endAddress": f.end,
        "status": f.status,
        "parentHandle": f.parent,
        "country": f.country,
        "port43": f.port43,
    }
    for key, value in (("country", f.country), ("parentHandle", f.parent)):
        if value is None:
            del doc[key]
    return doc
