"""The map as a MaxMind DB (mmdb-writer): each segment of the index carries its most specific network."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPNetwork, IPSet

from whoiscrawl.ipv4 import cidrs
from whoiscrawl.serve.index import MapIndex

DATABASE_TYPE = "whoiscrawl-IPv4-Holders"
# A record's fields as MMDB keys (MMDB has no null: a missing value is left out).
MMDB_FIELDS = (
    ("holder", "holder"), ("country", "country"), ("registry", "registry"), ("handle", "handle"),
    ("name", "name"), ("abuse_emails", "abuse_emails"), ("parent_handle", "parent_handle"),
    ("status", "status"), ("type", "type"), ("source", "source"), ("observed", "fetched_at"),
)


class MmdbError(ValueError):
    """An MMDB file that cannot be read; the text says which and why."""


def content(index: MapIndex, net: int) -> dict[str, Any]:
    """What the MMDB answers for the addresses network `net` is the most specific network of."""
    doc = index.record(net)
    out: dict[str, Any] = {
        "network": " ".join(cidrs(int(index.first[net]), int(index.last[net]))),
        "start_address": doc["start_address"], "end_address": doc["end_address"],
    }
    for key, name in MMDB_FIELDS:
        value = doc[name]
        if value not in (None, []):
            out[key] = value
    return out


def write(index: MapIndex, out: Path) -> int:
    """Write the index as an MMDB (atomically: a temporary file renamed); returns the networks in it."""
    writer = MMDBWriter(ip_version=4, database_type=DATABASE_TYPE,
                        description={"en": "who holds IPv4 addresses, from whoiscrawl's map"})
    ends = [*index.seg_start[1:].tolist(), 1 << 32]
    cache: dict[int, dict[str, Any]] = {}
    for start, end, net in zip(index.seg_start.tolist(), ends, index.seg_net.tolist(), strict=True):
        if net < 0:
            continue
        doc = cache.get(net)
        if doc is None:  # a network split by its children is written once per part, from one dict
            doc = cache[net] = content(index, net)
        writer.insert_network(IPSet(IPNetwork(c) for c in cidrs(start, end - 1)), doc)
    tmp = out.with_name(out.name + ".tmp")
    writer.to_db_file(str(tmp))
    os.replace(tmp, out)
    return len(cache)


def open_reader(path: Path) -> Any:
    """A maxminddb reader of an MMDB file, or MmdbError naming the file and what is wrong with it."""
    import maxminddb

    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise MmdbError(f"{path} is not a readable MaxMind DB ({exc})") from exc
