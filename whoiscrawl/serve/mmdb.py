"""The map as a MaxMind DB: each segment of the index carries its most specific network.

Written from the index's arrays, not through mmdb-writer's tree: mmdb-writer builds a Python object
per tree node (netaddr sets to insert, a recursive encoder per record) and took 29.8 s for
`standard`'s 115,488 networks here, so about 48 minutes for `full`'s 11.25M, against the issue's 10.
Here the segments are split into CIDRs and the search tree is built a depth at a time in numpy (the
CIDRs are sorted, so each depth's nodes are their distinct prefixes); each distinct value of a
field's string table is encoded once and pointed at, each network's record written once, with its
own strings (network, addresses, handle, name) inline. The metadata is mmdb-writer's encoder's.
Format: MaxMind DB File Format Specification 2.0 (search tree, 16-byte separator, data section,
metadata after "\\xab\\xcd\\xefMaxMind.com").
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from mmdb_writer import METADATA_MAGIC, Encoder

from whoiscrawl.ipv4 import cidrs, ip_str
from whoiscrawl.serve.index import LISTS, NONE, MapIndex

DATABASE_TYPE = "whoiscrawl-IPv4-Holders"
# A record's fields as MMDB keys, from the index's string tables (MMDB has no null: a missing
# value is left out). parent_handle falls back to the enclosing network's handle, as `record` does.
MMDB_FIELDS = (
    ("holder", "holder"), ("country", "country"), ("registry", "registry"),
    ("abuse_emails", "abuse_emails"), ("status", "status"), ("type", "type"), ("source", "source"),
    ("observed", "fetched_at"),
)
INLINE = ("network", "start_address", "end_address", "handle", "name", "parent_handle")  # per network
SEPARATOR = b"\x00" * 16  # between the search tree and the data section
SPLIT_CHUNK = 1 << 18  # ranges split into CIDRs at once (their temporaries: ~100 bytes a range)


class MmdbError(ValueError):
    """An MMDB file that cannot be read; the text says which and why."""


def _size(n: int) -> tuple[int, bytes]:
    """A size as the control byte's 5 bits and the bytes after it (the spec: under 29 in the bits;
    then 29, 30 or 31 with 1, 2 or 3 bytes more, each past the last's range)."""
    if n < 29:
        return n, b""
    if n < 285:
        return 29, bytes((n - 29,))
    if n < 65821:
        return 30, (n - 285).to_bytes(2, "big")
    return 31, (n - 65821).to_bytes(3, "big")


def _string(data: bytes) -> bytes:
    """An MMDB UTF-8 string (type 2): control byte(s) with its length, then the bytes."""
    code, more = _size(len(data))
    return bytes((0x40 | code,)) + more + data


def _value(text: bytes, is_list: bool) -> bytes:
    """A table value as MMDB: a string, or for a list field an array (extended type 11: type bits 0,
    then 11 - 7, then the size's bytes) of strings."""
    if not is_list:
        return _string(text)
    items = text.split(b"\n")
    code, more = _size(len(items))
    return bytes((code, 0x04)) + more + b"".join(map(_string, items))


def _pointer(offset: int) -> bytes:
    """An MMDB pointer (type 1) to a data-section offset, in its shortest form (the spec's sizes 0
    to 3: 11, 19 and 27 bits, each past the last's range, then 32)."""
    if offset < 2048:
        return bytes((0x20 | offset >> 8, offset & 0xFF))
    if offset < 526336:
        offset -= 2048
        return bytes((0x28 | offset >> 16,)) + (offset & 0xFFFF).to_bytes(2, "big")
    if offset < 134744064:
        offset -= 526336
        return bytes((0x30 | offset >> 24,)) + (offset & 0xFFFFFF).to_bytes(3, "big")
    return b"\x38" + offset.to_bytes(4, "big")


def cidr_split(first: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CIDR blocks exactly covering each range first..end-1, as `ipv4.cidr_blocks` makes them a
    range at a time: (block's first address as uint32, prefix length as uint8, which range as
    int64), sorted by address when the ranges are sorted and disjoint (as the index's segments are);
    the whole space is two /1s. SPLIT_CHUNK ranges are split at a time, so the temporaries stay
    bounded however many there are."""
    parts = [_split(first[at : at + SPLIT_CHUNK], end[at : at + SPLIT_CHUNK], at)
             for at in range(0, len(first), SPLIT_CHUNK)]
    if not parts:
        return np.zeros(0, np.uint32), np.zeros(0, np.uint8), np.zeros(0, np.int64)
    f, ln, r = zip(*parts, strict=True)
    return np.concatenate(f), np.concatenate(ln), np.concatenate(r)


def _split(first: np.ndarray, end: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`cidr_split` of some ranges (the first being range `offset`), sorted by address. Each pass
    takes every range's largest aligned block at its start."""
    at, which = first.astype(np.int64), np.arange(offset, offset + len(first))
    stop = end.astype(np.int64)
    firsts, lengths, ranges = [], [], []
    while len(at):
        aligned = np.where(at == 0, np.int64(1) << 31, at & -at)  # /1 at most: the root holds no data
        fits = np.int64(1) << (np.frexp((stop - at).astype(np.float64))[1].astype(np.int64) - 1)
        size = np.minimum(aligned, fits)
        firsts.append(at.astype(np.uint32))
        lengths.append((33 - np.frexp(size.astype(np.float64))[1]).astype(np.uint8))
        ranges.append(which)
        at = at + size
        more = at < stop
        at, stop, which = at[more], stop[more], which[more]
    f, ln, r = np.concatenate(firsts), np.concatenate(lengths), np.concatenate(ranges)
    order = np.argsort(f, kind="stable")
    return f[order], ln[order], r[order]


def tree_levels(first: np.ndarray, length: np.ndarray) -> list[np.ndarray]:
    """The search tree's nodes over sorted disjoint CIDRs (prefix lengths 1 to 32): at each depth 0
    to 31, the prefixes of that length (uint32, sorted) of the CIDRs longer than it (the CIDRs are
    sorted, so a depth's distinct prefixes are found by comparing neighbours). Nodes are numbered
    a depth at a time, node 0 the root."""
    levels = [np.zeros(1, np.uint32)]
    for depth in range(1, 32):
        deeper = first[length > depth] >> np.uint32(32 - depth)
        levels.append(deeper[np.append(True, deeper[1:] != deeper[:-1])] if len(deeper) else deeper)
    return levels


def level_records(levels: list[np.ndarray], depth: int, first: np.ndarray, length: np.ndarray,
                  leaf: np.ndarray) -> np.ndarray:
    """The left and right records of the nodes at `depth` (an (n, 2) array): the number of the
    child node, or the data-section pointer of the CIDR ending there (`leaf`: each CIDR's record's
    offset in the data section, past the tree and the separator), or the node count (no data)."""
    count = sum(len(level) for level in levels)
    base = sum(len(level) for level in levels[: depth + 1])  # the first node one depth down
    prefixes = levels[depth].astype(np.int64)
    children = np.stack([prefixes << 1, (prefixes << 1) | 1], axis=1).ravel()
    out = np.full(len(children), count, np.int64)
    if depth + 1 < 32:
        below = levels[depth + 1]
        at = np.minimum(np.searchsorted(below, children), max(len(below) - 1, 0))
        is_node = below[at] == children if len(below) else np.zeros(len(children), bool)
        out[is_node] = base + at[is_node]
    mine = length == depth + 1
    prefix, value = first[mine] >> np.uint32(31 - depth), leaf[mine]
    at = np.minimum(np.searchsorted(prefix, children), max(len(prefix) - 1, 0))
    is_leaf = prefix[at] == children if len(prefix) else np.zeros(len(children), bool)
    out[is_leaf] = count + len(SEPARATOR) + value[at[is_leaf]]
    return out.reshape(-1, 2)


def tree_bytes(records: np.ndarray, size: int) -> bytes:
    """Nodes as the file stores them: two records of 24, 28 or 32 bits each, big-endian (28: the
    left record's top nibble, then the right's, in the middle byte). Made a byte column at a time
    (no wide temporaries)."""
    if size == 32:
        return records.astype(">u4").tobytes()
    left, right = records[:, 0], records[:, 1]
    out = np.empty((len(records), size // 4), np.uint8)  # 6 or 7 bytes a node
    for i, shift in enumerate((16, 8, 0)):
        out[:, i] = (left >> shift) & 0xFF
        out[:, i - 3] = (right >> shift) & 0xFF
    if size == 28:
        out[:, 3] = ((left >> 24) & 0xF) << 4 | (right >> 24) & 0xF
    return out.tobytes()


class _Data:
    """The data section, written to a file as it is made: each distinct value once, keys first."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh, self.size = fh, 0
        keys = (*INLINE, *(key for key, _ in MMDB_FIELDS))
        self.keys = {key: _pointer(self.add(_string(key.encode()))) for key in keys}

    def add(self, data: bytes) -> int:
        at = self.size
        self.fh.write(data)
        self.size += len(data)
        return at

    def table(self, index: MapIndex, name: str) -> list[bytes]:
        """A pointer to each value of a field's string table (code 0, no value: b"")."""
        blob, offsets = index.blobs[name]
        raw, bounds = blob.tobytes(), offsets.tolist()
        return [b""] + [_pointer(self.add(_value(raw[bounds[c] : bounds[c + 1]], name in LISTS)))
                        for c in range(1, len(bounds) - 1)]


def _texts(index: MapIndex, name: str) -> Callable[[int], bytes]:
    """A network's value of a string field as UTF-8 bytes (b"" when it has none)."""
    blob, offsets = index.blobs[name]
    raw, bounds, codes = blob.data, offsets, index.codes[name]
    return lambda net: bytes(raw[bounds.item(c) : bounds.item(c + 1)]) if (c := codes.item(net)) else b""


def _records(index: MapIndex, data: _Data, nets: np.ndarray) -> np.ndarray:
    """Each network's record written to the data section (what the MMDB answers where it is the
    most specific network: the fields `lookup` gives); their offsets."""
    tables = [(data.keys[key], data.table(index, name), index.codes[name]) for key, name in MMDB_FIELDS]
    handle_of, name_of, parent_of = (_texts(index, n) for n in ("handle", "name", "parent_handle"))
    k = data.keys
    offsets = np.empty(len(nets), np.int64)
    for i, net in enumerate(_ints(nets)):
        first, last, up = index.first.item(net), index.last.item(net), index.parent.item(net)
        parts = [k["network"], _string(" ".join(cidrs(first, last)).encode()),
                 k["start_address"], _string(ip_str(first).encode()),
                 k["end_address"], _string(ip_str(last).encode())]
        parent = parent_of(net) or (handle_of(up) if up >= 0 else b"")
        for name, text in (("handle", handle_of(net)), ("name", name_of(net)), ("parent_handle", parent)):
            if text:
                parts += (k[name], _string(text))
        for pointer, pointers, codes in tables:
            code = codes.item(net)
            if code != NONE:
                parts += (pointer, pointers[code])
        offsets[i] = data.add(bytes((0xE0 | len(parts) // 2,)) + b"".join(parts))
    return offsets


def _ints(values: np.ndarray, chunk: int = 1 << 16) -> Iterator[int]:
    """An array's values as Python ints, a chunk at a time (a list of millions of ints is 36 bytes
    each)."""
    for at in range(0, len(values), chunk):
        yield from values[at : at + chunk].tolist()


def write(index: MapIndex, out: Path) -> int:
    """Write the index as an MMDB (atomically: a temporary file renamed); returns the networks in it
    (those that are the most specific network of some address)."""
    starts = index.seg_start.astype(np.int64)
    ends = np.append(starts[1:], np.int64(1) << 32)
    held = index.seg_net >= 0
    nets = np.unique(index.seg_net[held])
    tmp = out.with_name(out.name + ".tmp")
    try:
        with tempfile.TemporaryFile(dir=out.parent) as section, tmp.open("wb") as fh:
            data = _Data(section)
            record_at = _records(index, data, nets)
            first, length, which = cidr_split(starts[held], ends[held])
            del starts, ends
            leaf = record_at[np.searchsorted(nets, index.seg_net[held][which])]
            del which
            levels = tree_levels(first, length)
            nodes = sum(len(level) for level in levels)
            size = next((s for s in (24, 28, 32) if nodes + len(SEPARATOR) + data.size < 1 << s), 0)
            if not size:
                raise MmdbError(f"{out}: the map is too large for an MMDB ({data.size:,} bytes of data)")
            for depth in range(32):  # written a depth at a time: only one depth's records in memory
                fh.write(tree_bytes(level_records(levels, depth, first, length, leaf), size))
            fh.write(SEPARATOR)
            section.seek(0)
            shutil.copyfileobj(section, fh, 1 << 24)
            fh.write(METADATA_MAGIC)
            fh.write(Encoder(cache=False).encode_meta(_metadata(nodes, size)))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(nets)


def _metadata(nodes: int, size: int) -> dict[str, Any]:
    return {"node_count": nodes, "record_size": size, "ip_version": 4, "database_type": DATABASE_TYPE,
            "languages": ["en"], "binary_format_major_version": 2, "binary_format_minor_version": 0,
            "build_epoch": int(time.time()),
            "description": {"en": "who holds IPv4 addresses, from whoiscrawl's map"}}


def open_reader(path: Path) -> Any:
    """A maxminddb reader of an MMDB file, or MmdbError naming the file and what is wrong with it."""
    import maxminddb

    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise MmdbError(f"{path} is not a readable MaxMind DB ({exc})") from exc
