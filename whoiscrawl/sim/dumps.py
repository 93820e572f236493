"""The bulk RPSL dumps the simulated registries publish, object by object, from the same world as
their RDAP and WHOIS answers (registries.md, "Published files").

- RIPE NCC: split files `ripe.db.inetnum.gz`, `ripe.db.organisation.gz`, `ripe.db.role.gz`, each
  opening with the terms header, each object preceded by a blank line, dummified as its NRTM
  dummifier does (RIPE-NCC/whois `DummifierNrtm`): persons dropped, roles kept only with an
  `abuse-mailbox:`, the first `admin-c:`/`tech-c:` `DUMY-RIPE` (later ones dropped), the first
  `e-mail:` `unread@ripe.net`, the first `address:` `Dummy address for <key>`, phone
  `+31205354444`, organisations cut to their mandatory attributes plus `abuse-c`, `country`,
  `created`, `last-modified`, and seven "THIS OBJECT IS MODIFIED" remarks appended.
- APNIC: split files for inetnum, organisation, role (the admin role the inetnums name) and irt
  (the abuse mailbox); no person file.
- AFRINIC: one `afrinic.db.gz`, inetnums (each naming its `parent:`) then organisations; the abuse
  address is the inetnum's remark, as in its answers.
- LACNIC: one `lacnic.db.gz` in its own shape: Latin-1, CRLF line ends, short CIDRs
  (`5.183.80/22`), the holder inline (`owner:`, `ownerid:`, `responsible:`), the contacts by handle
  (`owner-c:`, `tech-c:`, `abuse-c:`, as its WHOIS prints them), dates YYYYMMDD, no contact objects
  (the abuse address is redacted: RDAP answers `entity/<abuse-c>` with it, `entities.py`).
ARIN publishes no dump. Free-space placeholders are not registry objects and are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from whoiscrawl.sim import render
from whoiscrawl.sim.data import REG_INDEX
from whoiscrawl.sim.model import World

# The RIPE NCC dump header (RIPE-NCC/whois, `QueryMessages.termsAndConditionsDump`).
RIPE_HEADER = ("#\n# The contents of this file are subject to \n# RIPE Database Terms and Conditions\n"
               "#\n# https://docs.db.ripe.net/terms-conditions.html\n#\n")
_MODIFIED = ("****************************", "* THIS OBJECT IS MODIFIED",
             "* Please note that all data that is generally regarded as personal",
             "* data has been removed from this object.",
             "* To view the original object, please query the RIPE Database at:",
             "* http://www.ripe.net/whois", "****************************")
_REPLACED = {"e-mail": "unread@ripe.net", "phone": "+31205354444", "fax-no": "+31205354444",
             "address": "Dummy address for {key}"}
_PERSON_REFERENCES = ("admin-c", "tech-c")
_ORG_KEPT = ("organisation", "org-name", "org-type", "address", "e-mail", "mnt-ref", "mnt-by",
             "source", "abuse-c", "country", "created", "last-modified")

Attrs = list[tuple[str, str]]


def dummified(attrs: Attrs, key: str | None = None) -> Attrs:
    """An object as RIPE NCC's dummifier publishes it (organisations cut down beforehand); `key`:
    its primary key where that is not the first attribute (a role's `nic-hdl:`)."""
    key, out, seen = key or attrs[0][1], [], set()
    for name, value in attrs:
        if name in _REPLACED or name in _PERSON_REFERENCES:
            if name in seen:
                continue  # only the first of each survives, replaced
            seen.add(name)
            value = "DUMY-RIPE" if name in _PERSON_REFERENCES else _REPLACED[name].format(key=key)
        out.append((name, value))
    return out + [("remarks", line) for line in _MODIFIED]


def text(attrs: Attrs) -> str:
    return "".join(render.rpsl_line(k, v) + "\n" for k, v in attrs)


def objects_of(world: World, registry: str) -> np.ndarray:
    """The registry's objects (no placeholders), in address order, parents first."""
    reg = np.frombuffer(world.reg, dtype=np.uint8)
    typ = np.frombuffer(world.typ, dtype=np.uint8)
    return np.flatnonzero((reg == REG_INDEX[registry]) & (typ != 0))


def one_per(world: World, objects: np.ndarray, by_country: bool = False) -> np.ndarray:
    """One object per organisation (per organisation and country: APNIC's IRT handles carry it),
    the first in address order, so each contact object is written once."""
    keys = np.frombuffer(world.org, dtype=np.uint32)[objects].astype(np.uint64)
    if by_country:
        keys = (keys << np.uint64(16)) | np.frombuffer(world.cc, dtype=np.uint16)[objects]
    _, first = np.unique(keys, return_index=True)
    return objects[np.sort(first)]


def _dates(world: World, i: int) -> tuple[str, str]:
    _r, _s, _e, _n, reg_date, changed, *_ = render.shown(world, i)
    return f"{reg_date}T00:00:00Z", f"{changed}T00:00:00Z"


def _organisation(world: World, i: int, source: str) -> Attrs:
    reg_h, reg_name, abuse_h, _mail = render.contacts(world, i)
    created, changed = _dates(world, i)
    attrs = [("organisation", reg_h), ("org-name", reg_name), ("country", render.country(world, i) or "ZZ"),
             ("org-type", "LIR" if world.depth[i] == 0 else "OTHER"), ("address", "1 Example Street"),
             ("phone", "+00 0000000"), ("e-mail", f"info@{render.org_of(world, i).domain}"),
             ("abuse-c", abuse_h), ("mnt-ref", render.maintainer(world, i)),
             ("mnt-by", render.maintainer(world, i)), ("created", created), ("last-modified", changed),
             ("source", source)]
    if source == "RIPE":
        return dummified([a for a in attrs if a[0] in _ORG_KEPT])
    return [a for a in attrs if source != "AFRINIC" or a[0] not in ("phone", "e-mail", "abuse-c")]


def _ripe_role(world: World, i: int) -> Attrs:
    _h, _name, abuse_h, mail = render.contacts(world, i)
    created, changed = _dates(world, i)
    return dummified([("role", "Abuse contact"), ("address", "1 Example Street"), ("phone", "+00 0000000"),
                      ("e-mail", mail), ("abuse-mailbox", mail), ("admin-c", abuse_h), ("tech-c", abuse_h),
                      ("nic-hdl", abuse_h), ("mnt-by", render.maintainer(world, i)), ("created", created),
                      ("last-modified", changed), ("source", "RIPE")], key=abuse_h)


def _apnic_role(world: World, i: int) -> Attrs:
    org, nic = render.org_of(world, i), f"{render.maintainer(world, i)}-AP"
    return [("role", f"{org.name} NOC"), ("address", "1 Example Street"),
            ("country", render.country(world, i) or "ZZ"), ("phone", "+00-0-0000-0000"),
            ("e-mail", f"noc@{org.domain}"), ("admin-c", nic), ("tech-c", nic), ("nic-hdl", nic),
            ("mnt-by", "MNT-APNIC"), ("last-modified", _dates(world, i)[1]), ("source", "APNIC")]


def _apnic_irt(world: World, i: int) -> Attrs:
    _h, _name, irt, mail = render.contacts(world, i)
    nic = f"{render.maintainer(world, i)}-AP"
    return [("irt", irt), ("address", "1 Example Street"), ("e-mail", mail), ("abuse-mailbox", mail),
            ("admin-c", nic), ("tech-c", nic), ("auth", "# Filtered"), ("mnt-by", "MNT-APNIC"),
            ("last-modified", _dates(world, i)[1]), ("source", "APNIC")]


def lacnic_short(block: str) -> str:
    """LACNIC's short CIDR: trailing zero octets dropped (`5.183.80.0/22` -> `5.183.80/22`)."""
    if "/" not in block:
        return block
    address, length = block.split("/")
    octets = address.split(".")
    while len(octets) > 1 and octets[-1] == "0" and (len(octets) - 1) * 8 >= int(length):
        octets.pop()
    return f"{'.'.join(octets)}/{length}"


def _lacnic_inetnum(world: World, i: int) -> Attrs:
    attrs = render.lacnic_inetnum(world, i)
    return [(k, lacnic_short(v) if k == "inetnum" else v) for k, v in attrs]


# Which objects each published dump holds: (objects to write, one per organisation?, its attributes).
Part = tuple[str, bool, Callable[[World, int], Attrs]]
PARTS: dict[str, tuple[Part, ...]] = {
    "ripe.db.inetnum.gz": (("ripencc", False, lambda w, i: dummified(render.rpsl_inetnum(w, i))),),
    "ripe.db.organisation.gz": (("ripencc", True, lambda w, i: _organisation(w, i, "RIPE")),),
    "ripe.db.role.gz": (("ripencc", True, _ripe_role),),
    "apnic.db.inetnum.gz": (("apnic", False, render.rpsl_inetnum),),
    "apnic.db.organisation.gz": (("apnic", True, lambda w, i: _organisation(w, i, "APNIC")),),
    "apnic.db.role.gz": (("apnic", True, _apnic_role),),
    "apnic.db.irt.gz": (("apnic", True, _apnic_irt),),
    "afrinic.db.gz": (("afrinic", False, render.rpsl_inetnum),
                      ("afrinic", True, lambda w, i: _organisation(w, i, "AFRINIC"))),
    "lacnic.db.gz": (("lacnic", False, _lacnic_inetnum),),
}


def header(name: str) -> str:
    return RIPE_HEADER if name.startswith("ripe.") else ""


def objects(world: World, name: str) -> Iterator[Attrs]:
    """The objects of one published dump, one at a time."""
    for registry, per_org, attrs_of in PARTS[name]:
        found = objects_of(world, registry)
        if per_org:
            found = one_per(world, found, by_country=name == "apnic.db.irt.gz")
        for start in range(0, len(found), 1 << 16):  # a slice at a time: no list of millions
            for i in found[start:start + (1 << 16)].tolist():
                yield attrs_of(world, i)


def lacnic_text(attrs: Attrs) -> str:
    """A LACNIC object: its attributes padded to the 13th column."""
    return "".join(f"{k}:".ljust(13) + v + "\n" for k, v in attrs)
