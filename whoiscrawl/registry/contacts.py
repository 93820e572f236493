"""What a person reads off an RDAP network: holder, holder's country, abuse e-mails (entities, vCards)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pycountry

from whoiscrawl.sources import stats

_RIR_CODES = frozenset({"EU", "AP"})  # codes the registries use that ISO 3166 does not assign
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


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


def holder_entity(entities: Any) -> dict[str, Any] | None:
    """The registrant of kind `org` (RIPE NCC lists maintainers as registrants too), else the
    first registrant, else an entity of kind `org` (AFRINIC's entities carry no roles)."""
    top = [e for e in _list(entities) if isinstance(e, dict)]
    registrants = [e for e in top if "registrant" in _roles(e)]
    for entity in registrants:
        if (_text(entity, "kind") or "").lower() == "org":
            return entity
    if registrants:
        return registrants[0]
    return next((e for e in top if (_text(e, "kind") or "").lower() == "org" and not _roles(e)), None)


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


def abuse_emails(entities: Any, remarks: Any = None) -> list[str]:
    """E-mails of abuse entities at any depth and vCard e-mails typed `abuse`; failing those, the
    addresses the network's remarks give for abuse (AFRINIC)."""
    found: set[str] = set()
    for entity in walk(entities):
        abuse_role = "abuse" in _roles(entity)
        for prop in _props(entity, "email"):
            if isinstance(prop[3], str) and (abuse_role or "abuse" in _types(prop[1])):
                found.add(prop[3].strip())
    if not found:
        found.update(remark_abuse_emails(_remark_lines(remarks)))
    return sorted(e for e in found if e)


def _remark_lines(remarks: Any) -> list[str]:
    return [str(line) for r in _list(remarks) if isinstance(r, dict) for line in _list(r.get("description"))]


def remark_abuse_emails(lines: Iterable[str]) -> list[str]:
    """Addresses in remark lines that speak of abuse ("please send abuse reports to ...")."""
    return sorted({m for line in lines if "abuse" in line.lower() for m in _EMAIL.findall(line)})


def description(remarks: Any) -> str | None:
    """The first `description` remark line (APNIC titles it, older RIPE NCC answers leave it
    untitled): the `descr:` of a network that names no registrant."""
    for remark in _list(remarks):
        if isinstance(remark, dict) and str(remark.get("title", "description")).lower() == "description":
            lines = [str(x).strip() for x in _list(remark.get("description")) if str(x).strip()]
            if lines:
                return lines[0]
    return None


def of_network(doc: dict[str, Any]) -> Contacts:
    """Holder, holder's country and abuse e-mails of an RDAP ip network object."""
    entity = holder_entity(doc.get("entities"))
    name = (_text(entity, "fn") or entity.get("handle")) if entity else description(doc.get("remarks"))
    return Contacts(
        holder=str(name) if name else None,
        holder_country=vcard_country(entity) if entity else None,
        abuse_emails=abuse_emails(doc.get("entities"), doc.get("remarks")),
    )


def resolve_country(
    network: str | None, holder: str | None, first: int, last: int
) -> tuple[str | None, str | None]:
    """(country, where it came from): the network's, else the holder's address, else the country of
    the delegation that contains the block in the registry statistics ($WHOISCRAWL_DELEGATED)."""
    code = (network or "").strip().upper()
    if code and code != "ZZ":
        return code, "network"
    if holder:
        return holder, "holder"
    delegations = stats.configured()
    found = delegations.country(first, last) if delegations else None
    return (found, "delegation") if found else (None, None)
