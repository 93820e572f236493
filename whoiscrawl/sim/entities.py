"""Each registry's answer to an RDAP entity query (`/entity/<handle>`) for the world's organisations."""

from __future__ import annotations

import json
import re
import weakref
from array import array
from bisect import bisect_left
from typing import Any

from whoiscrawl.rirs import REGISTRIES
from whoiscrawl.sim import render, shapes
from whoiscrawl.sim.model import World

# The organisation handles that carry the world's organisation number (`render.contacts`): the
# RPSL registries' and LACNIC's. ARIN's `ABBR-n` does not (n repeats), and its answers always name
# their organisation, so its entities are not served.
_ORG_HANDLES = {
    "ripencc": re.compile(r"^ORG-([A-Z]{5})(\d+)-RIPE$"),
    "apnic": re.compile(r"^ORG-([A-Z]{5})(\d+)-AP$"),
    "afrinic": re.compile(r"^ORG-([A-Z]{5})(\d+)-AFRINIC$"),
    "lacnic": re.compile(r"^[A-Z]{2}-([A-Z]{5})(\d+)-LACNIC$"),
}


# LACNIC's contact handles (`render.contacts`: the organisation's abbreviation cut to three letters,
# its number, `G<n>` once its abuse contact was replaced), the persons its answers name as abuse,
# administrative and technical contacts; its captured answer links each to `entity/<handle>`.
_LACNIC_CONTACT = re.compile(r"^([A-Z]{3})(\d+)(?:G\d+)?$")


class Organisations:
    """One object each organisation holds at a registry, by organisation number: sorted arrays of
    a registry's registered objects, made on the first entity query for it (one pass over the
    world, once)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._by_registry: dict[str, tuple[array[int], array[int]]] = {}

    def object_of(self, registry: str, key: int) -> int:
        """An object organisation `key` holds at the registry, -1 if it holds none there."""
        keys, objects = self._index(registry)
        at = bisect_left(keys, key)
        return objects[at] if at < len(keys) and keys[at] == key else -1

    def _index(self, registry: str) -> tuple[array[int], array[int]]:
        found = self._by_registry.get(registry)
        if found is None:
            w, r = self.world, REGISTRIES.index(registry)
            pairs = sorted((w.org[i], i) for i in range(len(w)) if w.reg[i] == r and w.typ[i] != 0)
            found = array("I", (k for k, _ in pairs)), array("i", (i for _, i in pairs))
            self._by_registry[registry] = found
        return found


_INDEXES: weakref.WeakKeyDictionary[World, Organisations] = weakref.WeakKeyDictionary()


def organisations(world: World) -> Organisations:
    """The world's organisations index (one per world: a simulator moved on a day has a new world)."""
    index = _INDEXES.get(world)
    if index is None:
        index = _INDEXES[world] = Organisations(world)
    return index


def _holder(world: World, registry: str, handle: str) -> tuple[str, str | None, str] | None:
    """(name, country, e-mail domain) of the organisation a handle names at a registry, None if it
    names none: the registry's own (its placeholders' holder), or one of the world's by its number."""
    if handle == render.RIR_HANDLES[registry]:
        return render.RIR_NAMES[registry], None, render.PORT43[registry].removeprefix("whois.")
    pattern = _ORG_HANDLES.get(registry)
    match = pattern.match(handle) if pattern else None
    if match is None:
        return None
    obj = organisations(world).object_of(registry, int(match.group(2)))
    if obj < 0:
        return None
    org = render.org_of(world, obj)
    if org.abbr != match.group(1):
        return None
    return org.name, render.country(world, obj), org.domain


def _lacnic_contact(world: World, handle: str) -> list[Any] | None:
    """The vCard of a LACNIC contact handle of the world (its current one: a replaced contact's
    old handle names nobody), None for any other handle."""
    match = _LACNIC_CONTACT.match(handle)
    obj = organisations(world).object_of("lacnic", int(match.group(2))) if match else -1
    if obj < 0:
        return None
    _h, name, contact, email = render.contacts(world, obj)
    return shapes.lacnic_contact_card(name, render.country(world, obj), email) if contact == handle else None


def _entity_doc(registry: str, handle: str, base_url: str, card: list[Any]) -> dict[str, Any]:
    url = f"{base_url}entity/{handle}"
    notices: list[dict[str, Any]] = [{"title": "Terms and Conditions", "description": [render.TOS[registry]]}]
    if registry == "afrinic":
        notices.insert(0, {"title": "ABOUT", "description": ["This is the AfriNIC RDAP server."]})
    return {
        "rdapConformance": ["rdap_level_0", "nro_rdap_profile_0"],
        "notices": notices,
        "lang": "en",
        "links": [{"value": url, "rel": "self", "href": url}],
        "handle": handle,
        "status": ["active"],
        "port43": render.PORT43[registry],
        "vcardArray": card,
        "objectClassName": "entity",
    }


def entity_object(world: World, registry: str, handle: str, base_url: str) -> dict[str, Any] | None:
    """The registry's answer to `entity/<handle>` for an organisation of the world (and at LACNIC
    for a contact its networks name, `RYT2` in its captured answer), None (404) for any other
    handle. The shape is AFRINIC's real entity answer's (20c/rdap's recorded WOL-AFRINIC, in
    tests/data/real-answers/afrinic/entities/): conformance, notices, a `self` link, the vCard of
    kind `org` whose `fn` is the organisation's name (whatever its networks' answers show); a
    LACNIC contact's vCard is the one its networks' answers carry, without their roles (a role is
    the contact's relation to a network, not the contact's own)."""
    if registry == "lacnic" and (card := _lacnic_contact(world, handle)) is not None:
        return _entity_doc(registry, handle, base_url, card)
    holder = _holder(world, registry, handle)
    if holder is None:
        return None
    name, country, domain = holder
    label = f"1 Example Street\nExample City\n{shapes.country_name(country)}".rstrip()
    lines = label.split("\n")
    card = ["vcard", [
        ["version", {}, "text", "4.0"],
        ["kind", {}, "text", "org"],
        ["fn", {}, "text", name],
        ["tel", {"type": "work"}, "text", "tel:+000000000"],
        ["email", {}, "text", f"info@{domain}"],
        ["adr", {"label": label}, "text", lines + [""] * (7 - len(lines))],
    ]]
    return _entity_doc(registry, handle, base_url, card)


def entity_bytes(world: World, registry: str, handle: str, base_url: str) -> bytes | None:
    doc = entity_object(world, registry, handle, base_url)
    return None if doc is None else json.dumps(doc, separators=(",", ":")).encode()
