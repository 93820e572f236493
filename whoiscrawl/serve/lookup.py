"""Who holds an address: addresses parsed and looked up in batches, written as cards, JSONL or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np

from whoiscrawl.ipv4 import cidrs, ip_int
from whoiscrawl.serve.index import MapIndex

BATCH = 1 << 16  # addresses parsed and looked up at once: memory stays flat for input of any size
FORMATS = ("card", "json", "csv")
CSV_COLUMNS = (
    "address", "error", "holder", "country", "registry", "start_address", "end_address", "network",
    "handle", "name", "abuse_emails", "parent_handle", "parents", "status", "type", "source", "fetched_at",
)
_CARD = (  # label, field of the answer
    ("holder", "holder"), ("country", "country"), ("registry", "registry"), ("network", "network"),
    ("handle", "handle"), ("name", "name"), ("abuse", "abuse_emails"), ("parents", "parents"),
    ("status", "status"), ("source", "source"), ("observed", "fetched_at"),
)


def parse_address(text: str) -> tuple[int, str | None]:
    """An IPv4 dotted quad as an integer, or (-1, why not): the text names what to fix."""
    if ":" in text:
        return -1, f"{text!r} is an IPv6 address: the map covers IPv4 only"
    try:
        return ip_int(text), None
    except ValueError:
        if "/" in text:
            return -1, f"{text!r} is a prefix: give one address (a dotted quad such as 192.0.2.1)"
        return -1, f"{text!r} is not an IPv4 address: give a dotted quad such as 192.0.2.1"


def answer(index: MapIndex, address: str, net: int) -> dict[str, Any]:
    """The JSON answer for one address the index was asked about."""
    if net < 0:
        return {"address": address, "found": False}
    doc = index.record(net)
    return {"address": address, "found": True,
            "network": " ".join(cidrs(int(index.first[net]), int(index.last[net]))), **doc}


def answers(index: MapIndex, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """An answer per input line (blank lines skipped), BATCH lookups at a time, in input order."""
    batch: list[str] = []
    for line in lines:
        text = line.strip()
        if text:
            batch.append(text)
            if len(batch) == BATCH:
                yield from _answer_batch(index, batch)
                batch = []
    yield from _answer_batch(index, batch)


def _answer_batch(index: MapIndex, texts: list[str]) -> Iterator[dict[str, Any]]:
    parsed = [parse_address(t) for t in texts]
    addrs = np.array([max(n, 0) for n, _ in parsed], np.uint32)
    nets = index.lookup(addrs).tolist() if len(addrs) else []
    for text, (_, error), net in zip(texts, parsed, nets, strict=True):
        yield {"address": text, "error": error} if error else answer(index, text, net)


def write(docs: Iterable[dict[str, Any]], fmt: str, out: IO[str]) -> dict[str, int]:
    """Write the answers in a format; counts of found, not found and malformed lines."""
    counts = {"found": 0, "not_found": 0, "errors": 0}
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore") if fmt == "csv" else None
    if writer:
        writer.writeheader()
    for doc in docs:
        counts["errors" if "error" in doc else "found" if doc["found"] else "not_found"] += 1
        if fmt == "json":
            out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        elif writer:
            writer.writerow({k: " ".join(v) if isinstance(v, list) else v for k, v in doc.items()})
        else:
            out.write(card(doc))
    return counts


def card(doc: dict[str, Any]) -> str:
    """A person's view of one answer."""
    buf = io.StringIO()
    buf.write(f"{doc['address']}\n")
    if "error" in doc:
        buf.write(f"  error     {doc['error']}\n\n")
        return buf.getvalue()
    if not doc["found"]:
        buf.write("  no network in the map holds this address\n\n")
        return buf.getvalue()
    for label, name in _CARD:
        value = doc.get(name)
        if name == "parents":
            value = ", ".join(value) + " (nearest first)" if value else None
        elif isinstance(value, list):
            value = ", ".join(value) if value else None
        if name == "network":
            value = f"{doc['start_address']} - {doc['end_address']} ({value})"
        buf.write(f"  {label:<9} {value if value is not None else '-'}\n")
    buf.write("\n")
    return buf.getvalue()
