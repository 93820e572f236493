"""The labelled corpus of real registry answers (tests/data/real-answers): each answer, and it read
through the client's own parsers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from netaddr import IPAddress

from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import contacts
from whoiscrawl.registry.rdap import RdapParser
from whoiscrawl.registry.whois import parse_whois

DATA = Path(__file__).resolve().parents[2] / "data"
LABELS: list[dict[str, Any]] = json.loads((DATA / "real-answers" / "labels.json").read_text())
REGISTRIES = ("afrinic", "apnic", "arin", "lacnic", "ripencc")


def answer(label: dict[str, Any]) -> Any:
    """The answer a label is about: a file, or one address's entry of the shared ipwhois files."""
    path, _, key = label["file"].partition("#")
    raw = (DATA / path).read_bytes()
    if key:
        return json.loads(raw)[key]["response"]
    return json.loads(raw) if label["kind"] == "rdap" else raw.decode("utf-8", "replace")


def entity_answer(label: dict[str, Any]) -> Any:
    """The recorded answer to the entity query the label's answer leads to (`entity`), if any."""
    return json.loads((DATA / label["entity"]).read_bytes()) if label.get("entity") else None


def parse(label: dict[str, Any], doc: Any = None) -> NetworkRecord:
    """An answer (the label's, or `doc` in its place) through the client's path: `RdapParser.parse`
    or `whois.parse_whois`; an RDAP holder named only by handle is then named by the entity's own
    answer where the label has it recorded, as the client asks for it (`contacts.unnamed_holder`,
    `contacts.entity_name`)."""
    doc = answer(label) if doc is None else doc
    address = int(IPAddress(label["address"]))
    if label["kind"] != "rdap":
        return parse_whois(doc, address, label["registry"])
    record = RdapParser().parse(doc, address, label["registry"])
    ref = contacts.unnamed_holder(doc)
    name = contacts.entity_name(entity_answer(label), ref.handle) if ref else None
    record.registrant = name or record.registrant
    return record
