"""The delegation statistics each simulated registry publishes (`delegated-<rir>-extended-latest`).

The IPv4 records are the world's delegations: every allocated and assigned record the world's top
objects are built from, and the available and reserved ones its free-space placeholders come from
(`data.load_delegations`, the real 2018 files). The ASN and IPv6 records, which the world does not
model, are the real file's own. Each registry's quirks are kept (registries.md, "Published files"):
RIPE NCC writes 7 fields for available and reserved rows, AFRINIC the country `ZZ` for them, ARIN's
opaque-id is an MD5 hex string, APNIC opens with a comment banner, `value` is an address count that
need not be a power of two, and the `.md5` is GNU-style at ARIN, BSD-style elsewhere.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from whoiscrawl.ipv4 import ip_str
from whoiscrawl.sim import data, model
from whoiscrawl.sim.model import World

FREE = ("available", "reserved")


def file_name(registry: str) -> str:
    return f"delegated-{registry}-extended-latest"


def _real(registry: str) -> Path:
    return data.ensure_data() / file_name(registry)


def _header(registry: str) -> tuple[list[str], list[str], list[str]]:
    """The real file's comment banner, version-line fields and record types in summary order."""
    banner: list[str] = []
    version: list[str] = []
    types: list[str] = []
    with open(_real(registry), encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line.startswith("#") or not line.strip():
                if not version:
                    banner.append(line)
                continue
            fields = line.split("|")
            if not version:
                version = fields
            elif fields[-1] == "summary":
                types.append(fields[2])
            else:
                break
    return banner, version, types


def record(d: data.Delegation) -> str:
    """One IPv4 record line, in its registry's own spelling."""
    free = d.status in FREE
    cc = "" if d.cc == "ZZ" else d.cc
    if free and d.registry == "afrinic":
        cc = "ZZ"
    date = f"{d.date:08d}" if d.date else ("" if free else "00000000")
    fields = [d.registry, cc, "ipv4", ip_str(d.start), str(d.count), date, d.status]
    if not (free and d.registry == "ripencc"):
        fields.append(d.opaque)
    return "|".join(fields)


def _other_records(registry: str, kind: str) -> Iterator[str]:
    """The real file's records of one non-IPv4 type (asn, ipv6), as published."""
    with open(_real(registry), encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.rstrip("\n").split("|")
            if len(fields) > 6 and fields[2] == kind and fields[1] != "*":
                yield line.rstrip("\n")


def _count(registry: str, kind: str) -> int:
    return sum(1 for _ in _other_records(registry, kind))


def delegations(registry: str, world: World | None = None) -> list[data.Delegation]:
    """The registry's IPv4 rows: the real file's, or (a world that changed) each delegation as the
    world now holds it: at the registry it was moved to, its holder's country, the date of its
    last transfer."""
    if world is None:
        return [d for d in data.load_delegations() if d.registry == registry]
    return _held(world).get(registry, [])


@lru_cache(maxsize=2)  # the five files of one day ask for the same world's rows
def _held(world: World) -> dict[str, list[data.Delegation]]:
    parent, typ = (np.frombuffer(a, dtype=a.typecode) for a in (world.parent, world.typ))
    tops = np.flatnonzero((parent < 0) & (typ != 0)).tolist()
    top = {(world.start[i], world.end[i]): i for i in tops}
    out: dict[str, list[data.Delegation]] = {}
    for d in data.load_delegations():
        i = top.get((d.start, d.end), -1) if d.status not in FREE else -1
        if i >= 0:
            now = (world.registry(i), world.ccs[world.cc[i]], world.date[i])
            if now != (d.registry, d.cc, d.date or model.UNDATED):  # the world dates an undated row
                d = replace(d, registry=now[0], cc=now[1], date=now[2])
        out.setdefault(d.registry, []).append(d)
    return out


def dated(registry: str, serial: str, end: str, day: int) -> tuple[str, str]:
    """The version line's serial and end date `day` days after the real file's, each written as
    its registry writes it: RIPE NCC unix seconds, ARIN milliseconds, the others the date."""
    when = datetime.datetime.strptime(end, "%Y%m%d") + datetime.timedelta(days=day)
    if registry == "ripencc":
        serial = str(int(serial) + day * 86_400)
    elif registry == "arin":
        serial = str(int(serial) + day * 86_400_000)
    else:  # a date, not always the end date (APNIC's is the day after it)
        moved = datetime.datetime.strptime(serial, "%Y%m%d") + datetime.timedelta(days=day)
        serial = moved.strftime("%Y%m%d")
    return serial, when.strftime("%Y%m%d")


def lines(registry: str, records_delta: int = 0, world: World | None = None, day: int = 0) -> Iterator[str]:
    """The file's lines (no line ends): banner, version line, summaries, records by type.
    `records_delta` makes the version line's record count contradict the records (a fault); a
    `world` changed for `day` days gives its delegations and that day's serial and date."""
    banner, version, types = _header(registry)
    ipv4 = delegations(registry, world if day else None)
    counts = {kind: len(ipv4) if kind == "ipv4" else _count(registry, kind) for kind in types}
    yield from banner
    ver, _reg, serial, _n, start, end, offset = (version + [""] * 7)[:7]
    if day:
        serial, end = dated(registry, serial, end, day)
    yield "|".join((ver, registry, serial, str(sum(counts.values()) + records_delta), start, end, offset))
    for kind in types:
        yield f"{registry}|*|{kind}|*|{counts[kind]}|summary"
    for kind in types:
        yield from (map(record, ipv4) if kind == "ipv4" else _other_records(registry, kind))


def md5_line(registry: str, digest: str) -> str:
    """The `.md5` beside the file: GNU md5sum's form at ARIN, BSD's `MD5 (name) = hex` elsewhere."""
    name = file_name(registry)
    return f"{digest}  {name}\n" if registry == "arin" else f"MD5 ({name}) = {digest}\n"
