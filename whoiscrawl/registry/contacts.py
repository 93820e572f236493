"""What a person reads off an RDAP network: holder, holder's country, abuse e-mails (entities, vCards)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pycountry

from whoiscrawl.records import NetworkRecord

_RIR_CODES = frozenset({"EU", "AP"})  # codes the registries use that ISO 3166 does not assign
# The country of the delegation holding first..last in the registry statistics, None if none does
# (`sources.stats.Delegations.country`).
CountryOf = Callable[[int, int], str | None]
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


@dataclass
class Contacts:
    """The people-facing facts of one network object."""

    holder: str | None = None
    holder_country: str | None = None  # from the holder's vCard address, ISO 3166 alpha-2
    abuse_emails: list[str] = field(default_factory=list)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def walk(entities: Any) -> Iterator[dict[str, Any]]:
    """Every entity, depth first: ARIN nests the abuse contact inside the registrant."""
    for entity in _list(entities):
        if isinstance(entity, dict):
            yield entity
            yield from walk(entity.get("entities"))


def _props(entity: dict[str, Any], name: str) -> list[list[Any]]:
    card = _list(entity.get("vcardArray"))
    props = _list(card[1]) if len(card) > 1 else []
    return [p for p in props if isinstance(p, list) and len(p) >= 4 and p[0] == name]


def _text(entity: dict[str, Any], name: str) -> str | None:
    for prop in _props(entity, name):
        if isinstance(prop[3], str) and prop[3].strip():
            return prop[3].strip()
    return None


def _roles(entity: dict[str, Any]) -> list[str]:
    return [str(r).lower() for r in _list(entity.get("roles"))]


def _types(params: Any) -> list[str]:
    kind = params.get("type") if isinstance(params, dict) else None
    return [str(t).lower() for t in (kind if isinstance(kind, list) else [kind] if kind else [])]


def _named(entity: dict[str, Any]) -> bool:
    """Whether an entity's vCard names it: AFRINIC gives nameless organisations their handle as `fn`."""
    name = _text(entity, "fn")
    return bool(name) and name != entity.get("handle")


def holder_entity(entities: Any) -> dict[str, Any] | None:
    """The registrant of kind `org` (RIPE NCC lists maintainers as registrants too, often without
    a vCard), else the first registrant, else a top entity of kind `org` (AFRINIC's entities carry
    no roles); among each, one its vCard names first."""
    top = [e for e in _list(entities) if isinstance(e, dict)]
    registrants = [e for e in top if "registrant" in _roles(e)]
    orgs = [e for e in registrants if (_text(e, "kind") or "").lower() == "org"]
    loose = [e for e in top if (_text(e, "kind") or "").lower() == "org" and not _roles(e)]
    for pool in (orgs, registrants, loose):
        if pool:
            return next((e for e in pool if _named(e)), pool[0])
    return None


_REGISTRY_MAINTAINER = re.compile(r"^(RIPE-NCC|AFRINIC|APNIC|LACNIC|ARIN)-", re.IGNORECASE)


def maintainer_name(entities: Any) -> str | None:
    """The holder as its maintainer names it, for answers that name the holder nowhere else: a
    registrant `NAME-MNT` (not a registry's own) or an entity named `... IP Maintainer`."""
    for entity in (e for e in _list(entities) if isinstance(e, dict)):
        handle = str(entity.get("handle") or "")
        own = not _REGISTRY_MAINTAINER.match(handle)
        if "registrant" in _roles(entity) and handle.upper().endswith("-MNT") and own:
            return handle[: -len("-MNT")]
        match = re.match(r"(.+?)\s+(?:IP\s+)?Maintainer$", _text(entity, "fn") or "", re.IGNORECASE)
        if match and match.group(1).upper() != "IP":  # a bare "IP Maintainer" names nobody
            return match.group(1)
    return None


@functools.lru_cache(maxsize=4096)
def country_code(text: str | None) -> str | None:
    """An ISO 3166 alpha-2 code from a code or a country name (`UNITED STATES`, `Czech Republic`)."""
    words = (text or "").strip()
    if not words:
        return None
    if words.upper() in _RIR_CODES:
        return words.upper()
    for candidate in (words, words.split()[-1]):
        try:
            return str(pycountry.countries.lookup(candidate).alpha_2)
        except LookupError:
            continue
    return None


def vcard_country(entity: dict[str, Any]) -> str | None:
    """The country of an entity's address: the label's last line, or the structured country name."""
    for prop in _props(entity, "adr"):
        params, value = prop[1], prop[3]
        label = params.get("label") if isinstance(params, dict) else None
        lines = [ln for ln in str(label or "").replace("\\n", "\n").splitlines() if ln.strip()]
        parts = [str(v) for v in _list(value)]
        for candidate in ([lines[-1]] if lines else []) + ([parts[6]] if len(parts) > 6 else []):
            code = country_code(candidate)
            if code:
                return code
    return None


# National registries whose helpdesk APNIC's answers give as the abuse contact of the blocks they
# manage; the holder's own address, when the answer gives one, is in a remark.
NATIONAL_REGISTRY_DOMAINS = ("nic.or.kr", "kisa.or.kr", "nic.ad.jp", "twnic.net", "twnic.net.tw", "vnnic.vn",
                             "vnnic.net.vn", "cnnic.cn", "cnnic.net.cn", "idnic.net", "apjii.or.id",
                             "irinn.in")


def national_helpdesk(emails: Iterable[str]) -> bool:
    """Whether every address is a national registry's (not the holder's own abuse desk)."""
    found = [e.lower() for e in emails]
    return bool(found) and all(e.split("@")[-1].endswith(NATIONAL_REGISTRY_DOMAINS) for e in found)


def _entity_abuse(entity: dict[str, Any], abuse_role: bool) -> list[str]:
    """An entity's abuse addresses: those its vCard types `abuse`, else (an abuse entity) all."""
    emails = [(p[3].strip(), _types(p[1])) for p in _props(entity, "email") if isinstance(p[3], str)]
    typed = [e for e, kinds in emails if "abuse" in kinds]
    return typed or ([e for e, _ in emails] if abuse_role else [])


def abuse_emails(entities: Any, remarks: Any = None) -> list[str]:
    """The abuse addresses of an RDAP network: the network's own abuse entities before those nested
    in its registrant (ARIN lists both: the network's contact wins); failing those, the addresses
    the remarks give for abuse (AFRINIC), which also win over a national registry's helpdesk."""
    found: set[str] = set()
    nested = [n for e in _list(entities) if isinstance(e, dict) for n in walk(e.get("entities"))]
    for level in (_list(entities), nested):
        for entity in (e for e in level if isinstance(e, dict)):
            found.update(_entity_abuse(entity, "abuse" in _roles(entity)))
        if found:
            break
    if not found or national_helpdesk(found):
        lines = _remark_lines(remarks)
        lines += [line for entity in walk(entities) for line in _remark_lines(entity.get("remarks"))]
        found = set(remark_abuse_emails(lines)) or found
    return sorted(e for e in found if e)


def _remark_lines(remarks: Any) -> list[str]:
    return [str(line) for r in _list(remarks) if isinstance(r, dict) for line in _list(r.get("description"))]


def remark_abuse_emails(lines: Iterable[str]) -> list[str]:
    """Addresses in remark lines that speak of abuse ("please send abuse reports to ...")."""
    return sorted({m for line in lines if "abuse" in line.lower() for m in EMAIL.findall(line)})


_PLACE = re.compile(r"^[^\W\d_]+(?:[ -][^\W\d_]+)?,\s*([^,]{4,})$")


def a_place(line: str) -> bool:
    """Whether a `descr:` line is where the network is, not who holds it: a town of one or two
    words and a country's name ("Zurich, Switzerland"), as RIPE NCC holders often describe it."""
    match = _PLACE.match(line.strip())
    if not match:
        return False
    try:
        pycountry.countries.lookup(match.group(1).strip())  # the whole part a country's name
    except LookupError:
        return False
    return True


def description(remarks: Any) -> str | None:
    """The first `description` remark line (APNIC titles it, older RIPE NCC answers leave it
    untitled) that is not a place: the `descr:` of a network that names no registrant."""
    for remark in _list(remarks):
        if isinstance(remark, dict) and str(remark.get("title", "description")).lower() == "description":
            lines = [str(x).strip() for x in _list(remark.get("description")) if str(x).strip()]
            for line in lines:
                if not a_place(line):
                    return line
    return None


_LACNIC_OWNER = re.compile(r"^([A-Z]{2})-[A-Z0-9]+-LACNIC$")


def of_network(doc: dict[str, Any]) -> Contacts:
    """Holder, holder's country and abuse e-mails of an RDAP ip network object."""
    entities = doc.get("entities")
    entity = holder_entity(entities)
    name = _text(entity, "fn") if entity and _named(entity) else None
    name = name or description(doc.get("remarks")) or maintainer_name(entities) or _nameless_holder(entities)
    country = vcard_country(entity) if entity else None
    owner = _LACNIC_OWNER.match(str(entity.get("handle") or "")) if entity else None
    return Contacts(
        holder=str(name) if name else None,
        # LACNIC's owner handles, `CC-XXXX-LACNIC`, carry the country
        holder_country=country or (country_code(owner.group(1)) if owner else None),
        abuse_emails=abuse_emails(entities, doc.get("remarks")),
    )


@dataclass(frozen=True)
class EntityRef:
    """An entity an answer names only by its handle, and its own `self` link if the answer gives one."""

    handle: str
    link: str | None = None


def self_link(entity: dict[str, Any]) -> str | None:
    """An entity's link of relation `self` (RFC 9083 4.2: its own answer, `.../entity/<handle>`)."""
    for link in _list(entity.get("links")):
        if isinstance(link, dict) and str(link.get("rel", "")).split() == ["self"]:
            href = link.get("href")
            return href if isinstance(href, str) and href.strip() else None
    return None


def unnamed_holder(doc: Any) -> EntityRef | None:
    """The holder entity of an RDAP network answer that its vCard does not name (no vCard, or an
    `fn` that is only the handle: AFRINIC's organisations), to be named by the entity's own answer
    (`entity_name`); None where the holder is named, is a maintainer (`-MNT`, no organisation), or
    there is none. Whatever `of_network` made of the answer meanwhile (a description, a maintainer's
    name, the handle) is a guess: the entity's answer is the registry's word."""
    entity = holder_entity(doc.get("entities")) if isinstance(doc, dict) else None
    if entity is None or _named(entity):
        return None
    handle = entity.get("handle")
    if not isinstance(handle, str) or not handle.strip() or handle.strip().upper().endswith("-MNT"):
        return None
    return EntityRef(handle.strip(), self_link(entity))


def entity_name(doc: Any, handle: str) -> str | None:
    """The name an RDAP entity answer (`/entity/<handle>`) gives the entity `handle`: its vCard's
    `fn`, unless that is the handle again; None for any other answer (another entity's, an error)."""
    if not isinstance(doc, dict) or doc.get("objectClassName") != "entity":
        return None
    if str(doc.get("handle") or "").casefold() != handle.casefold() or not _named(doc):
        return None
    return _text(doc, "fn")


def entity_emails(doc: Any, handle: str) -> list[str]:
    """The e-mail addresses an RDAP entity answer (`/entity/<handle>`) gives the contact `handle`,
    asked as a network's abuse contact: those its vCard types `abuse`, else all (LACNIC's contacts
    type none: the role `abuse` is the network's relation to them, named in the network's answer
    only); [] for any other answer (another entity's, an error)."""
    if not isinstance(doc, dict) or doc.get("objectClassName") != "entity":
        return []
    if str(doc.get("handle") or "").casefold() != handle.casefold():
        return []
    return sorted(set(_entity_abuse(doc, abuse_role=True)))


def named_abuse_contacts(doc: Any) -> dict[str, list[str]]:
    """The abuse contacts an RDAP network answer embeds with their addresses, by handle (casefolded):
    what each one's own entity answer gives (`entity_emails`: LACNIC's answers carry the contact's
    vCard, the same person object), so a contact a dump names without its address need not be asked
    once a network naming it was (`RegistryClient.contact_emails`). A contact without an address in
    the answer (no vCard, as nicinfo's recorded 201.127.0.0/16 names GEC10) is left out."""
    if not isinstance(doc, dict):
        return {}
    found: dict[str, list[str]] = {}
    for entity in walk(doc.get("entities")):
        handle = entity.get("handle")
        if "abuse" in _roles(entity) and isinstance(handle, str) and handle.strip():
            emails = sorted(set(_entity_abuse(entity, abuse_role=True)))
            if emails:
                found.setdefault(handle.strip().casefold(), emails)
    return found


def _nameless_holder(entities: Any) -> str | None:
    """The handle of a registrant or organisation the answer leaves nameless: better than nothing."""
    for entity in (e for e in _list(entities) if isinstance(e, dict)):
        if "registrant" in _roles(entity) or (_text(entity, "kind") or "").lower() == "org":
            return str(entity.get("handle") or "") or None
    return None


def resolve_country(network: str | None, holder: str | None) -> tuple[str | None, str | None]:
    """(country, where it came from) of an answer: the network's, else the holder's address
    (`fill_country` adds the delegation's where the answer names none)."""
    code = (network or "").strip().upper()
    if code and code != "ZZ":
        return code, "network"
    if holder:
        return holder, "holder"
    return None, None


def fill_country(record: NetworkRecord, country_of: CountryOf | None) -> NetworkRecord:
    """The record, its country (if the answer named none) that of the delegation holding the block
    in the registry statistics: `country_of` is given by who builds the client, never read here."""
    if record.country is None and country_of is not None:
        found = country_of(record.first, record.last)
        if found:
            record.country, record.country_source = found, "delegation"
    return record
