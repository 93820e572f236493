"""Each registry's RDAP JSON and port-43 WHOIS text for a simulated network object."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from whoiscrawl import rirs
from whoiscrawl.ipv4 import cidr_blocks, cidrs, ip_str
from whoiscrawl.rirs import REGISTRIES
from whoiscrawl.sim import shapes
from whoiscrawl.sim.model import World

BASE_PATHS: dict[str, str] = {
    "arin": "/arin/registry/",
    "ripencc": "/ripencc/",
    "apnic": "/apnic/",
    "lacnic": "/lacnic/rdap/",
    "afrinic": "/afrinic/rdap/",
}
PORT43 = {r.id: r.whois_host for r in rirs.CATALOGUE}
RIR_NAMES = {r.id: r.name for r in rirs.CATALOGUE}
RIR_HANDLES = {"arin": "ARIN", "ripencc": "ORG-NCC1-RIPE", "apnic": "APNIC-HM",
               "lacnic": "LACNIC", "afrinic": "ORG-AFNC1-AFRINIC"}
RIR_MAINTAINERS = {"arin": "ARIN-HM", "ripencc": "RIPE-NCC-HM-MNT", "apnic": "APNIC-HM",
                   "lacnic": "LACNIC-HM", "afrinic": "AFRINIC-HM-MNT"}
TOS = {
    "arin": "By using the ARIN RDAP/Whois service, you are agreeing to the RDAP/Whois Terms of Use",
    "ripencc": "This is the RIPE Database query service. The objects are in RDAP format.",
    "apnic": "Use of this service is subject to the APNIC Whois Terms of Use.",
    "lacnic": "LACNIC RDAP service. Use is subject to the LACNIC Terms of Use.",
    "afrinic": "This is the AfriNIC RDAP server. Use is subject to the AFRINIC Terms of Use.",
}
_ADJ = ("Blue", "Red", "North", "South", "Silver", "Rapid", "Prime", "Global", "Metro", "Alpha",
        "Nova", "Delta", "Sky", "Ocean", "Urban", "Iron", "Green", "Bright", "Swift", "Core",
        "Star", "Peak", "Clear", "First", "Open", "Unity", "Summit", "Pioneer", "Atlas", "Vertex")
_NOUN = ("River", "Net", "Link", "Wave", "Telecom", "Fiber", "Data", "Cloud", "Comms", "Access",
         "Systems", "Hosting", "Broadband", "Networks", "Online", "Connect", "Digital", "Wireless",
         "Labs", "Media", "Bank", "University", "Holdings", "Energy", "Transit", "Cable")
_SUFFIX = ("Ltd", "Inc.", "GmbH", "S.A.", "LLC", "B.V.", "Pty Ltd", "S.r.l.", "Co.", "AB")
# LACNIC's holders are mostly Spanish- and Portuguese-speaking: some names carry letters outside
# ASCII, which its Latin-1 dump encodes differently from the UTF-8 of its RDAP answers.
_LACNIC_SUFFIX = ("S.A.", "Ltda.", "S.R.L.", "Telecomunicações Ltda.", "Comunicación S.A.",
                  "Informática Ltda.", "S.A. de C.V.", "Señal Digital S.A.", "Serviços de Internet Ltda.",
                  "E.I.R.L.")


@dataclass(frozen=True)
class Org:
    """The (deterministic) organisation behind an object."""

    name: str
    abbr: str
    n: int
    domain: str
    key: int  # the world's organisation number: unique, so a handle built on it names one holder


def org_of(world: World, i: int) -> Org:
    """The holder of object i, under its new name where it was renamed (its handle stays)."""
    o = world.org[i]
    org = _org(o, world.reg[i] == REGISTRIES.index("lacnic"))
    return replace(org, name=world.names[o]) if o in world.names else org


def org_name(o: int, lacnic: bool) -> str:
    """The name organisation number o is born with."""
    return _org(o, lacnic).name


@lru_cache(maxsize=1 << 14)  # an object's name and contacts both ask; a dump asks millions
def _org(o: int, lacnic: bool) -> Org:
    suffixes = _LACNIC_SUFFIX if lacnic else _SUFFIX
    a, b, c = _ADJ[o % len(_ADJ)], _NOUN[(o // 31) % len(_NOUN)], suffixes[(o // 997) % len(suffixes)]
    abbr = (a[:3] + b[:2]).upper()
    n = o % 9973 + 1
    return Org(f"{a} {b} {c}", abbr, n, f"{a}{b}{n}.example".lower(), o)


def object_name(world: World, i: int) -> str:
    """The network name (NetName / netname). LACNIC keeps none: its RDAP answers the holder's name
    as the network's `name` (the captured 200.57.141.161: "Triara.com, S.A. de C.V.", its WHOIS's
    `owner:`; tests/data/real-registry)."""
    reg = REGISTRIES[world.reg[i]]
    s = world.start[i]
    if world.typ[i] == 0:
        return {"arin": "ARIN-UNALLOCATED", "ripencc": "RIPE-NCC-UNALLOCATED",
                "apnic": "APNIC-UNALLOCATED", "lacnic": "LACNIC-UNALLOCATED",
                "afrinic": "AFRINIC-UNALLOCATED"}[reg]
    org = org_of(world, i)
    if reg == "lacnic":
        return org.name
    tag = hashlib.blake2b(f"{world.seed}:{s}:{world.end[i]}".encode(), digest_size=2).hexdigest()
    if reg == "arin":
        return f"{org.abbr}-{tag.upper()}" if world.depth[i] else f"{org.abbr}-{org.n}"
    if world.depth[i] == 0:
        return f"{world.ccs[world.cc[i]]}-{org.abbr}-{world.date[i]}"
    return f"{org.abbr}-NET-{tag.upper()}"


def country(world: World, i: int) -> str | None:
    if world.typ[i] == 0:
        return None
    cc = world.ccs[world.cc[i]]
    return None if cc == "ZZ" else cc


def _date(d: int, plus_days: int = 0) -> str:
    y, m, dd = d // 10000, (d // 100) % 100, d % 100
    if y < 1980:
        y, m, dd = 1993, 1, 1
    dd = min(28, dd + plus_days % 20)
    return f"{y:04d}-{m:02d}-{max(dd, 1):02d}"


def _events(world: World, i: int) -> tuple[str, str]:
    d = world.date[i] or 19930101
    reg_date = _date(d)
    bump = world.org[i] % 37
    changed_year = min(2018, d // 10000 + bump % 6)
    changed = _date(changed_year * 10000 + (d % 10000), bump)
    changed = max(changed, reg_date)
    touched = world.touched.get(world.org[i])  # its holder renamed or its abuse contact replaced
    if touched:
        changed = max(changed, f"{touched // 10000:04d}-{touched // 100 % 100:02d}-{touched % 100:02d}")
    return reg_date, changed


def contacts(world: World, i: int) -> tuple[str, str, str, str]:
    """(registrant handle, registrant name, abuse handle, abuse email). The handles of the RPSL
    registries carry the organisation's key: a published dump holds one object per handle, so a
    handle must name one holder and one abuse mailbox."""
    reg = REGISTRIES[world.reg[i]]
    if world.typ[i] == 0:
        rir = RIR_HANDLES[reg]
        return rir, RIR_NAMES[reg], f"ABUSE-{rir}", rirs.BY_ID[reg].abuse_mailbox
    org = org_of(world, i)
    cc = country(world, i) or "ZZ"
    # The abuse contact is its holder's, or (LACNIC) the registering holder's: `World.contact_holder`.
    # A replaced abuse contact is a new role (or IRT) with a new mailbox: its handle and address
    # carry the generation.
    who = org if (h := world.contact_holder(i)) == i else org_of(world, h)
    gen = world.abuse.get(who.key, 0)
    email, g = (f"abuse{gen}@{who.domain}", f"G{gen}") if gen else (f"abuse@{who.domain}", "")
    if reg == "arin":
        return f"{org.abbr}-{org.n}", org.name, f"ABUSE{org.n}{g}-ARIN", email
    if reg == "ripencc":
        return f"ORG-{org.abbr}{org.key}-RIPE", org.name, f"AR{org.key}{g}-RIPE", email
    if reg == "apnic":
        return f"ORG-{org.abbr}{org.key}-AP", org.name, f"IRT-{org.abbr}{org.key}{g}-{cc}", email
    if reg == "lacnic":
        return f"{cc}-{org.abbr}{org.key}-LACNIC", org.name, f"{who.abbr[:3]}{who.key}{g}", email
    return f"ORG-{org.abbr}{org.key}-AFRINIC", org.name, f"AR{org.key}{g}-AFRINIC", email


# One AFRINIC organisation in NAMELESS_EVERY is named by its networks' RDAP answers only by its
# handle (the vCard `fn` the handle, as AFRINIC's answer for 196.216.2.0/23 in 2014); its entity's
# own answer, `/entity/<handle>` (`entities.py`), names it. WHOIS and the dump name it as always.
NAMELESS_EVERY = 16


def nameless(world: World, i: int) -> bool:
    """Whether object i's RDAP answer names its holder only by the holder's handle."""
    return (world.reg[i] == REGISTRIES.index("afrinic") and world.typ[i] != 0
            and world.org[i] % NAMELESS_EVERY == NAMELESS_EVERY - 1)


def maintainer(world: World, i: int) -> str:
    """The maintainer of object i (APNIC's admin role is named after it: `<maintainer>-AP`)."""
    if world.typ[i] == 0:
        return RIR_MAINTAINERS[REGISTRIES[world.reg[i]]]
    org = org_of(world, i)
    return f"{org.abbr}{org.key}-MNT"


def facts(world: World, i: int, base_url: str) -> shapes.Facts:
    """What the registry holds about object i, for its answer's shape."""
    reg = REGISTRIES[world.reg[i]]
    s, e, p = world.start[i], world.end[i], world.parent[i]
    start = ip_str(s)
    reg_date, changed = _events(world, i)
    reg_h, reg_name, abuse_h, abuse_mail = contacts(world, i)
    placeholder = world.typ[i] == 0
    contact = world.contact_holder(i)  # whose contacts it names (LACNIC: perhaps the registering ISP's)
    up = None
    if p >= 0:
        pa, pl = cidr_blocks(world.start[p], world.end[p])[0]
        up = f"{base_url}ip/{ip_str(pa)}/{pl}"
    return shapes.Facts(
        registry=reg, handle=world.handle(i), start=start, end=ip_str(e), name=object_name(world, i),
        type=world.type_word(i), status=["reserved"] if placeholder else ["active"],
        cidrs=[(ip_str(a), ln) for a, ln in cidr_blocks(s, e)], country=country(world, i),
        parent=world.handle(p) if p >= 0 else None, registered=reg_date, changed=changed,
        org_handle=reg_h, org_name=reg_name, abuse_handle=abuse_h, abuse_email=abuse_mail,
        abuse_org=org_of(world, contact).name, abuse_country=country(world, contact),
        maintainer=maintainer(world, i),
        self_url=f"{base_url}ip/{start}", up_url=up, port43=PORT43[reg], terms=TOS[reg],
        placeholder=placeholder, asn=0 if placeholder else 64512 + world.org[i] % 1000, top=p < 0,
        org_named=not nameless(world, i))


def rdap_object(world: World, i: int, base_url: str, era: str = "current",
                relation_links: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ip network object for object i in its registry's shape (`shapes`), with cidr0
    wherever the registry serves it; with `relation_links` (RFC 9910, from `relations.links`, for
    a registry that serves relation search) and their conformance."""
    reg = REGISTRIES[world.reg[i]]
    doc = shapes.rdap(facts(world, i, base_url), era)
    if relation_links and world.typ[i] != 0:
        doc["rdapConformance"] += ["rirSearch1", "ips"]
        doc["links"] += relation_links
    if world.typ[i] == 0:
        doc.setdefault("remarks", []).append({"title": "Unallocated space", "description": [
            f"This range is not allocated or assigned by the {RIR_NAMES[reg]}."]})
    return doc


def rdap_bytes(world: World, i: int, base_url: str,
               relation_links: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps(rdap_object(world, i, base_url, relation_links=relation_links),
                      separators=(",", ":")).encode()


def rdap_help(registry: str) -> bytes:
    """The answer to an RDAP `help` query (RFC 9082 3.1.6, RFC 9083 7): conformance and notices."""
    doc = {"rdapConformance": ["rdap_level_0"],
           "notices": [{"title": "Help", "description": [TOS[registry]]}]}
    return json.dumps(doc, separators=(",", ":")).encode()


def rdap_error(code: int, title: str, notice: bool = False, extra: str = "") -> bytes:
    doc: dict[str, Any] = {"rdapConformance": ["rdap_level_0"], "errorCode": code,
                           "title": title, "description": [extra] if extra else []}
    if notice:
        doc["notices"] = [{"title": "Rate Limit Notice", "description": [
            "Too many queries from your IP address. You have exceeded the query limit "
            "of 10 queries per minute and are blocked for 5 minutes."]}]
    return json.dumps(doc, separators=(",", ":")).encode()


# WHOIS --------------------------------------------------------------------------------------

_ARIN_HEADER = (
    "\n#\n# ARIN WHOIS data and services are subject to the Terms of Use\n"
    "# available at: https://www.arin.net/resources/registry/whois/tou/\n#\n\n"
)
_RPSL_HEADER = {
    "ripencc": "% This is the RIPE Database query service.\n% The objects are in RPSL format.\n\n",
    "apnic": "% [whois.apnic.net]\n% Whois data copyright terms    http://www.apnic.net/db/dbcopyright.html\n\n",
    "afrinic": "% This is the AfriNIC Whois server.\n% The AFRINIC whois database is subject to "
               "the following terms of Use.\n\n",
}
_ARIN_TYPE = {"DIRECT ALLOCATION": "Direct Allocation", "DIRECT ASSIGNMENT": "Direct Assignment",
              "REALLOCATION": "Reallocated", "REASSIGNMENT": "Reassigned",
              "UNALLOCATED": "Unallocated"}


# RIPE NCC's WHOIS software (also run by APNIC and AFRINIC) answers `-m <range>`: the largest
# objects inside the range, RPSL objects one after another, ended by the service's closing line.
WHOIS_MORE_SPECIFIC = rirs.offering(rirs.WHOIS_MORE_SPECIFIC)
# Requests that look an address up; the others list, relate or ask for help, and re-answer nothing
# (never counted as wasted re-answers).
LOOKUP_PROTOCOLS = frozenset({"rdap", "whois"})


def _rpsl_closing(reg: str) -> str:
    name = {"ripencc": "RIPE", "apnic": "APNIC", "afrinic": "AFRINIC"}[reg]
    return f"% This query was served by the {name} Database Query Service version 1.0 (SIM)\n\n"


def whois_text(world: World, i: int, with_contacts: bool = True) -> str:
    """Port-43 text for object i in its registry's format (RPSL: without contact objects when
    `with_contacts` is False, as RIPE-style servers answer `-r`)."""
    reg = REGISTRIES[world.reg[i]]
    if reg in _RPSL_HEADER:
        return _RPSL_HEADER[reg] + _rpsl_object(world, i, with_contacts) + _rpsl_closing(reg)
    return _text(world, i)


def whois_listing(world: World, objects: list[int], reg: str, with_contacts: bool = True) -> str:
    """The answer of a RIPE-style server to `-m`/`-M`: each object's RPSL text, then the closing line."""
    if not objects:
        return _RPSL_HEADER[reg] + "%ERROR:101: no entries found\n\n" + _rpsl_closing(reg)
    body = "".join(_rpsl_object(world, i, with_contacts) for i in objects)
    return _RPSL_HEADER[reg] + body + _rpsl_closing(reg)


def arin_no_match(query: str) -> str:
    return f"{_ARIN_HEADER}No match found for {query}.\n{_ARIN_HEADER}"


def arin_limit_notice(limit: int) -> str:
    """What ARIN's port 43 prints under a listing cut at its limit: the wording is the simulator's
    own (unverified; Whois-RWS says `<limitExceeded limit="256">true</limitExceeded>`)."""
    return f"\n#\n# Results limited to {limit} networks: the query matched more.\n#\n"


def arin_listing(world: World, objects: list[int], query: str, full: bool, limited: int | None = None) -> str:
    """ARIN's answer to `r > <cidr>` (or `r < <cidr>`): a line per network (`OrgName NetName
    (Handle) first - last`), or with `+` each network's full record; `No match found` for none;
    `limited`: the cap the objects were cut at, said before the closing terms block."""
    if not objects:
        return arin_no_match(query)
    notice = arin_limit_notice(limited) if limited else ""
    if full:
        return _ARIN_HEADER + "\n".join(_text(world, i)[len(_ARIN_HEADER): -len(_ARIN_HEADER)]
                                         for i in objects) + notice + _ARIN_HEADER
    lines = [f"{contacts(world, i)[1]} {object_name(world, i)} ({world.handle(i)}) "
             f"{ip_str(world.start[i])} - {ip_str(world.end[i])}" for i in objects]
    return _ARIN_HEADER + "\n".join(lines) + "\n" + notice + _ARIN_HEADER


def shown(world: World, i: int) -> tuple[str, ...]:
    """What every registry's WHOIS prints of object i: registry, first and last address, name,
    registration and change dates, registrant handle and name, abuse handle and e-mail, country,
    status word."""
    reg_date, changed = _events(world, i)
    return (REGISTRIES[world.reg[i]], ip_str(world.start[i]), ip_str(world.end[i]), object_name(world, i),
            reg_date, changed, *contacts(world, i), country(world, i) or "ZZ", world.type_word(i))


def _text(world: World, i: int) -> str:
    reg, start, end, name, reg_date, changed, reg_h, reg_name, abuse_h, abuse_mail, cc, typ = shown(world, i)
    s, e, p = world.start[i], world.end[i], world.parent[i]
    if reg == "arin":
        parent = f"{object_name(world, p)} ({world.handle(p)})" if p >= 0 else ""
        lines = [
            f"NetRange:       {start} - {end}",
            f"CIDR:           {', '.join(cidrs(s, e))}",
            f"NetName:        {name}",
            f"NetHandle:      {world.handle(i)}",
            f"Parent:         {parent}",
            f"NetType:        {_ARIN_TYPE.get(typ, typ.title())}",
            "OriginAS:       ",
            f"Organization:   {reg_name} ({reg_h})",
            f"RegDate:        {reg_date}",
            f"Updated:        {changed}",
            f"Ref:            https://rdap.arin.net/registry/ip/{start}",
            "",
            "",
            f"OrgName:        {reg_name}",
            f"OrgId:          {reg_h}",
            "Address:        1 Example Street",
            "City:           Example City",
            "StateProv:      ",
            "PostalCode:     00000",
            f"Country:        {cc}",
            f"RegDate:        {reg_date}",
            f"Updated:        {changed}",
            "",
            f"OrgAbuseHandle: {abuse_h}",
            "OrgAbuseName:   Abuse contact",
            f"OrgAbuseEmail:  {abuse_mail}",
            "",
        ]
        return _ARIN_HEADER + "\n".join(lines) + "\n" + _ARIN_HEADER
    if reg == "lacnic":
        lines = [
            "% Joint Whois - whois.lacnic.net",
            "%  This server accepts single ASN, IPv4 or IPv6 queries",
            "",
            *(f"{k}:".ljust(13) + v for k, v in lacnic_inetnum(world, i)),
            "",
            f"nic-hdl:     {abuse_h}",
            "person:      Network Operations",
            f"e-mail:      {abuse_mail}",
            "address:     1 Example Street",
            f"country:     {cc}",
            f"created:     {reg_date.replace('-', '')}",
            f"changed:     {changed.replace('-', '')}",
            "",
        ]
        return "\n".join(lines) + "\n"
    raise ValueError(f"{reg} writes RPSL")


def lacnic_inetnum(world: World, i: int) -> list[tuple[str, str]]:
    """Object i's attributes as LACNIC holds them (its WHOIS answer and its dump print these): the
    block as a CIDR (a range where it is none), the holder inline as `owner:`, dates YYYYMMDD."""
    _reg, start, end, _name, reg_date, changed, reg_h, reg_name, abuse_h, _mail, cc, typ = shown(world, i)
    cidr = cidrs(world.start[i], world.end[i])
    return [("inetnum", cidr[0] if len(cidr) == 1 else f"{start} - {end}"), ("status", typ.lower()),
            ("owner", reg_name), ("ownerid", f"{cc}-{reg_h.split('-')[1] if '-' in reg_h else reg_h}"),
            ("responsible", "Network Operations"), ("address", "1 Example Street"), ("country", cc),
            ("owner-c", abuse_h), ("tech-c", abuse_h), ("abuse-c", abuse_h),
            ("created", reg_date.replace("-", "")), ("changed", changed.replace("-", ""))]


RPSL_SOURCE = {"ripencc": "RIPE", "apnic": "APNIC", "afrinic": "AFRINIC"}


def rpsl_line(key: str, value: str) -> str:
    """One RPSL attribute, its value in the 17th column as RIPE NCC's software prints it."""
    return _rpsl_key(key) + value


@lru_cache(maxsize=256)
def _rpsl_key(key: str) -> str:
    return f"{key}:".ljust(16)


def rpsl_inetnum(world: World, i: int) -> list[tuple[str, str]]:
    """Object i's inetnum attributes as RIPE NCC, APNIC and AFRINIC hold them (the WHOIS answer and
    the published dumps print these): abuse by `abuse-c:` (RIPE NCC), `mnt-irt:` (APNIC) or a
    remark (AFRINIC); APNIC's `changed:` lines, AFRINIC's `parent:`."""
    reg, start, end, name, reg_date, changed, reg_h, reg_name, abuse_h, abuse_mail, cc, typ = shown(world, i)
    src = RPSL_SOURCE[reg]
    abuse_link = {"ripencc": ("abuse-c", abuse_h), "apnic": ("mnt-irt", abuse_h),
                  "afrinic": ("remarks", f"please send abuse reports to {abuse_mail}")}[reg]
    admin = f"{maintainer(world, i)}-AP" if reg == "apnic" else abuse_h  # APNIC's admin role
    attrs = [("inetnum", f"{start} - {end}"), ("netname", name), ("descr", reg_name), ("country", cc),
             ("org", reg_h), ("admin-c", admin), ("tech-c", admin), abuse_link, ("status", typ),
             ("mnt-by", f"{src}-HM-MNT" if world.depth[i] == 0 else f"MNT-{src}"),
             ("created", f"{reg_date}T00:00:00Z"), ("last-modified", f"{changed}T00:00:00Z")]
    if reg == "apnic":  # APNIC still prints 'changed:' lines
        attrs.append(("changed", f"hm-changed@apnic.net {changed.replace('-', '')}"))
    if reg == "afrinic" and world.parent[i] >= 0:  # AFRINIC names each object's parent
        attrs.insert(1, ("parent", world.handle(world.parent[i])))
    return [*attrs, ("source", src)]


def _rpsl_object(world: World, i: int, with_contacts: bool = True) -> str:
    """One object as RIPE NCC, APNIC and AFRINIC print it, with its abuse contact where each puts it:
    RIPE NCC's "% Abuse contact for" comment and role `abuse-mailbox:`, APNIC's IRT object (no
    comment), AFRINIC's remarks ("No abuse contact registered") and organisation object; without
    the referenced objects (organisation, role, IRT) when `with_contacts` is False (`-r`)."""
    reg, start, end, _name, _rd, _ch, reg_h, reg_name, abuse_h, abuse_mail, cc, _typ = shown(world, i)
    src = RPSL_SOURCE[reg]
    span = f"{start} - {end}"
    comment = {"ripencc": f"% Abuse contact for '{span}' is '{abuse_mail}'",
               "afrinic": f"% No abuse contact registered for {span}"}.get(reg)
    lines = [f"% Information related to '{span}'", ""] + ([comment, ""] if comment else []) + [
        rpsl_line(k, v) for k, v in rpsl_inetnum(world, i)] + [""]
    if not with_contacts:
        return "\n".join(lines) + "\n"
    if reg == "afrinic":
        lines += [f"organisation:   {reg_h}", f"org-name:       {reg_name}", "org-type:       LIR",
                  f"country:        {cc}", "address:        1 Example Street", f"source:         {src}", ""]
    contact = {"ripencc": ["role:           Abuse contact", f"abuse-mailbox:  {abuse_mail}"],
               "apnic": [f"irt:            {abuse_h}", f"e-mail:         {abuse_mail}",
                         f"abuse-mailbox:  {abuse_mail}"],
               "afrinic": ["role:           IP Maintainer",
                           f"e-mail:         noc@{abuse_mail.split('@')[1]}"]}[reg]
    lines += [contact[0], "address:        1 Example Street", *contact[1:],
              f"nic-hdl:        {abuse_h}", f"source:         {src}", ""]
    return "\n".join(lines) + "\n"
