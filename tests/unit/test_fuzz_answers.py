"""Hostile answers survive: mutations of the real corpus (truncated, oversized, deeply nested, wrong
types, wrong encodings, hostile strings) through every parser of outside data; each ends in a
record that passes the result schema or in the parser's failure with its reason, never a crash."""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netaddr import IPAddress
from unitsupport_answers import LABELS, answer

from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import relations
from whoiscrawl.registry.outcome import MalformedAnswer
from whoiscrawl.registry.rdap import (
    ParsedListing,
    RdapParser,
    down_link,
    rate_limit_notice,
    read_answer,
    truncated,
)
from whoiscrawl.registry.whois import (
    WhoisRateLimited,
    arin_subtree,
    inside,
    parse_whois,
    parse_whois_listing,
    read_arin_listing,
)
from whoiscrawl.space import Bootstrap, SpaceError, bundled_bootstrap_document

# Deterministic and database-free, so CI runs the same documents every time; no deadline (a
# loaded machine is no failure). The example counts add up to the documents of one run.
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
DOCUMENTS: Counter[str] = Counter()

RDAP = [label for label in LABELS if label["kind"] == "rdap"]
WHOIS = [label for label in LABELS if label["kind"] == "whois"]
RPSL = [label for label in WHOIS if label["registry"] in ("ripencc", "apnic", "afrinic")]
ARIN = [label for label in WHOIS if label["registry"] == "arin"]

HOSTILE_TEXT = st.sampled_from([
    "", " ", "\x00", "\u202e\u0644", "%s%n%x", "'; DROP TABLE x;--", "<script>x</script>", "A" * 20_000,
    "\U0001f600" * 64, "\ud800", "0.0.0.0 - 255.255.255.255", "999.1.1.1 - 1.1.1.1", "1.2.3.4/33",
    "1.2.3.4 - 1.2.3.0", "::1", "-", "NaN", "abuse@", "@@", "x" * 300 + "@" + "y" * 300 + ".example",
    "ORG-X-MNT", "\r\r\n", "null",
]) | st.text(max_size=40)
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), HOSTILE_TEXT,
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document: keys of objects and indexes of arrays."""
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _paths(value, (*prefix, index))
    return found


def _nested(depth: int) -> Any:
    """Entities inside entities, `depth` deep, each level a vCard holding the next (one copy each)."""
    value: Any = {"objectClassName": "entity", "roles": ["abuse"]}
    for level in range(depth):
        value = {"entities": [value]} if level % 2 else {"vcardArray": ["vcard", [["fn", {}, "text", value]]]}
    return value


def _mutate_doc(data: st.DataObject, doc: Any) -> Any:
    """One structural mutation: a value replaced by a hostile one, a key dropped, a branch made
    deeply nested, or a list made long."""
    doc = copy.deepcopy(doc)
    paths = _paths(doc)
    where = data.draw(st.sampled_from(paths))
    op = data.draw(st.sampled_from(["replace", "drop", "nest", "grow"]))
    if not where:
        return data.draw(HOSTILE) if op == "replace" else doc
    parent = doc
    for step in where[:-1]:
        parent = parent[step]
    key = where[-1]
    if op == "replace":
        parent[key] = data.draw(HOSTILE)
    elif op == "drop" and isinstance(parent, dict):
        del parent[key]
    elif op == "nest":
        parent[key] = _nested(data.draw(st.integers(1, 200)))
    elif op == "grow":
        parent[key] = [parent[key]] * data.draw(st.integers(20, 200))  # serialised as so many copies
    return doc


def _mutate_bytes(data: st.DataObject, body: bytes) -> bytes:
    """One mutation of the bytes on the wire: cut short, another encoding, bytes flipped, deep
    nesting no JSON decoder follows, or left alone."""
    op = data.draw(st.sampled_from(["cut", "utf16", "latin1", "flip", "deep", "bom", "none"]))
    if op == "cut":
        return body[: data.draw(st.integers(0, max(0, len(body) - 1)))]
    if op == "utf16":
        return body.decode("utf-8", "replace").encode("utf-16")
    if op == "latin1":
        return body.decode("utf-8", "replace").encode("latin-1", "replace")
    if op == "flip" and body:
        at = data.draw(st.integers(0, len(body) - 1))
        return body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1 :]
    if op == "deep":
        depth = data.draw(st.integers(500, 200_000))
        return b'{"handle": "x", "entities": ' + b"[" * depth + b"]" * depth + b"}"
    if op == "bom":
        return b"\xef\xbb\xbf" + body
    return body


def _mutate_text(data: st.DataObject, text: str) -> str:
    """One mutation of a WHOIS answer: cut short, lines dropped, repeated or made hostile, CR line
    ends, or bytes of another encoding read as the client reads them."""
    lines = text.splitlines(keepends=True) or [""]
    op = data.draw(st.sampled_from(["cut", "drop", "repeat", "value", "insert", "cr", "encoding"]))
    at = data.draw(st.integers(0, len(lines) - 1))
    if op == "cut":
        return text[: data.draw(st.integers(0, len(text)))]
    if op == "drop":
        return "".join([*lines[:at], *lines[at + data.draw(st.integers(1, 20)) :]])
    if op == "repeat":
        return "".join([*lines[:at], *lines[at : at + 8] * data.draw(st.integers(2, 300)), *lines[at:]])
    if op == "value":
        name = lines[at].partition(":")[0]
        lines[at] = f"{name}: {data.draw(HOSTILE_TEXT)}\n"
        return "".join(lines)
    if op == "insert":
        name = data.draw(st.sampled_from(["inetnum", "NetRange", "route", "abuse-c", "nic-hdl", "org",
                                          "% Abuse contact for 'x' is", "% Information related to", "owner"]))
        return "".join([*lines[:at], f"{name}: {data.draw(HOSTILE_TEXT)}\n", *lines[at:]])
    if op == "cr":
        return text.replace("\n", data.draw(st.sampled_from(["\r\n", "\r", "\r\r\n"])))
    encoded = text.encode(data.draw(st.sampled_from(["utf-16", "latin-1", "cp1252"])), "replace")
    return encoded.decode("utf-8", "replace")  # as whois.query decodes the socket's bytes


def _check(record: NetworkRecord, address: int | None = None) -> None:
    """A record the parsers made holds its address and passes the result schema unchanged."""
    if address is not None:
        assert record.first <= address <= record.last
    assert NetworkRecord.from_json(record.to_json()) == record


def _address(label: dict[str, Any]) -> int:
    return int(IPAddress(label["address"]))


@settings(FUZZ, max_examples=3500)
@given(st.data())
def test_rdap_answers_survive(data: st.DataObject):
    label = data.draw(st.sampled_from(RDAP))
    doc = _mutate_doc(data, answer(label)) if data.draw(st.booleans()) else answer(label)
    body = _mutate_bytes(data, json.dumps(doc).encode())
    DOCUMENTS["rdap"] += 1
    decoded = read_answer(body, label["registry"])  # None: not JSON, the client's malformed answer
    if isinstance(decoded, dict):
        for probe in (down_link, truncated, rate_limit_notice, relations.too_many_rows):
            probe(decoded)
    try:
        record = RdapParser().parse(decoded, _address(label), label["registry"])
    except MalformedAnswer as exc:
        assert str(exc)
        return
    _check(record, _address(label))


@settings(FUZZ, max_examples=600)
@given(st.data())
def test_rdap_listings_survive(data: st.DataObject):
    docs = data.draw(st.lists(st.sampled_from(RDAP), min_size=1, max_size=6))
    items = [_mutate_doc(data, answer(lb)) if data.draw(st.booleans()) else answer(lb) for lb in docs]
    body = _mutate_bytes(data, json.dumps({"ipSearchResults": items}).encode())
    DOCUMENTS["rdap listing"] += 1
    decoded = read_answer(body, docs[0]["registry"])
    if isinstance(decoded, ParsedListing):
        assert decoded.malformed or all(_check(child) is None for child, _ in decoded.children)


@settings(FUZZ, max_examples=3500)
@given(st.data())
def test_whois_answers_survive(data: st.DataObject):
    label = data.draw(st.sampled_from(WHOIS))
    text = answer(label)
    for _ in range(data.draw(st.integers(1, 3))):
        text = _mutate_text(data, text)
    DOCUMENTS["whois"] += 1
    try:
        record = parse_whois(text, _address(label), label["registry"])
    except (MalformedAnswer, WhoisRateLimited) as exc:
        assert str(exc)
        return
    _check(record, _address(label))


_CLOSING = "\n% This query was served by the RIPE Database Query Service version 1.0 (TEST)\n"
_ARIN_TERMS = "\n#\n# ARIN WHOIS data and services are subject to the Terms of Use\n#\n"


@settings(FUZZ, max_examples=800)
@given(st.data())
def test_whois_listings_survive(data: st.DataObject):
    arin = data.draw(st.booleans())
    labels = data.draw(st.lists(st.sampled_from(ARIN if arin else RPSL), min_size=1, max_size=5))
    text = "".join(answer(label) for label in labels) + (_ARIN_TERMS if arin else _CLOSING)
    text = _mutate_text(data, text)
    DOCUMENTS["whois listing"] += 1
    try:
        if arin:  # as the client reads an `r >` answer: located, then every network parsed
            records = arin_subtree(inside(read_arin_listing(text), 0, 2**32 - 1), "PARENT")
        else:
            records = parse_whois_listing(text, labels[0]["registry"], "PARENT")
    except (MalformedAnswer, WhoisRateLimited) as exc:
        assert str(exc)
        return
    for record in records:
        _check(record)


@settings(FUZZ, max_examples=1600)
@given(st.data())
def test_bootstrap_documents_survive(data: st.DataObject):
    body = json.dumps(_mutate_doc(data, bundled_bootstrap_document())).encode()
    body = _mutate_bytes(data, body) if data.draw(st.booleans()) else body
    DOCUMENTS["bootstrap"] += 1
    try:
        bootstrap = Bootstrap.from_json(body)
    except SpaceError as exc:
        assert str(exc)
        return
    address = data.draw(st.integers(0, 2**32 - 1))
    base = bootstrap.base_url(address)
    assert base is None or bootstrap.registry_of_url(base) in (None, *bootstrap.registry_of_base.values())
    bootstrap.base_of("ripencc")


def test_the_runs_read_ten_thousand_documents():
    """The fuzz tests above (run before this one, in file order) read 10,000 documents or more."""
    print(dict(DOCUMENTS), sum(DOCUMENTS.values()))
    assert sum(DOCUMENTS.values()) >= 10_000
