"""Delegation statistics (`delegated-<rir>-extended-latest`): one streaming parser for every registry's file.

Pure: no network, no Redis. The simulator may import it (it builds its world from the same files),
and `registry/contacts.py` reads a delegation's country through `Delegations` (a ground-floor
exception documented in docs/architecture.md). Formats: /work/shared/docs/registries.md,
docs/sources.md."""

from __future__ import annotations

import bisect
import hashlib
import os
import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from sys import intern

from whoiscrawl import rirs
from whoiscrawl.ipv4 import cidrs, ip_int
from whoiscrawl.settings import env_name
from whoiscrawl.space import Scope

ENV = env_name("delegated")  # a directory of delegated-*-extended-latest files (or one file)
HANDED_OUT = frozenset({"allocated", "assigned"})  # available/reserved space has no holder, no country
STATUSES = HANDED_OUT | {"available", "reserved"}
# BSD style (`MD5 (name) = hex`, four registries) and GNU style (`hex  name`, ARIN).
_MD5_BSD = re.compile(r"^MD5 \((?P<name>[^)]*)\) = (?P<hex>[0-9a-fA-F]{32})\s*$")
_MD5_GNU = re.compile(r"^(?P<hex>[0-9a-fA-F]{32})\s+\*?(?P<name>\S+)\s*$")


class StatsError(ValueError):
    """A statistics file that cannot be trusted; the text names the file and the line."""


@dataclass(frozen=True)
class Header:
    """The version line: `version|registry|serial|records|startdate|enddate|UTCoffset`."""

    version: str
    registry: str
    serial: str
    records: int
    start_date: str
    end_date: str
    utc_offset: str


@dataclass(frozen=True, slots=True)
class Delegation:
    """One IPv4 row: `registry|cc|ipv4|start|value|date|status[|opaque-id[|extensions]]`.
    Slotted, its texts interned (a date or a holder's id repeats over its rows): `full`'s 196,307
    rows, every one in a crawl of all IPv4, took 487 bytes each as they were read (95 MB)."""

    registry: str
    country: str | None  # None for ZZ or empty (free and reserved rows)
    first: int
    count: int  # an address count, not always a power of two
    date: str | None  # YYYYMMDD, None for 00000000 or empty
    status: str  # allocated | assigned | available | reserved
    opaque_id: str = ""  # not stable between files

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    @property
    def handed_out(self) -> bool:
        return self.status in HANDED_OUT

    def cidrs(self) -> list[str]:
        """The CIDRs the row covers (768 addresses are a /23 and a /24)."""
        return cidrs(self.first, self.last)


@dataclass
class StatsFile:
    """A statistics file read line by line: iterate for its IPv4 delegations, then `check()`.

    Streaming: the md5 is summed as lines go by and the counts are checked at the end, so a
    truncated or altered file raises StatsError once it has been read through (a caller keeps
    nothing it read before `check()` returns)."""

    name: str  # for messages: the file's path or URL
    lines: Iterable[bytes]
    header: Header | None = None
    summaries: dict[str, int] = field(default_factory=dict)  # type -> count of its summary line
    rows: dict[str, int] = field(default_factory=dict)  # type -> records read
    line_no: int = 0
    _md5: hashlib._Hash = field(default_factory=hashlib.md5)
    _done: bool = False

    def __iter__(self) -> Iterator[Delegation]:
        for raw in self.lines:
            self.line_no += 1
            self._md5.update(raw)
            line = raw.decode("utf-8", errors="replace").strip()
            if not line or line.startswith("#"):
                continue  # APNIC's banner, blank lines
            row = self._line(line.split("|"))
            if row is not None:
                yield row
        self._done = True

    def _error(self, what: str) -> StatsError:
        return StatsError(f"{self.name}, line {self.line_no}: {what}")

    def _line(self, parts: list[str]) -> Delegation | None:
        if self.header is None:
            self.header = self._version(parts)
            return None
        if len(parts) >= 6 and parts[1] == "*" and parts[5] == "summary":
            self.summaries[parts[2]] = self._int(parts[4], "summary count")
            return None
        if len(parts) < 7:
            raise self._error(f"{len(parts)} fields where a record has 7 or more: {'|'.join(parts)!r}")
        self.rows[parts[2]] = self.rows.get(parts[2], 0) + 1
        return self._delegation(parts) if parts[2] == "ipv4" else None

    def _version(self, parts: list[str]) -> Header:
        if len(parts) < 7 or not parts[0][:1].isdigit():
            raise self._error("the first line is not a version line (version|registry|serial|records|...)")
        return Header(parts[0], parts[1], parts[2], self._int(parts[3], "record count"), *parts[4:7])

    def _int(self, text: str, what: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise self._error(f"{what} {text!r} is not a number") from None

    def _delegation(self, parts: list[str]) -> Delegation:
        registry, cc, _, start, value, date, status = parts[:7]
        if rirs.BY_ID.get(registry) is None:
            raise self._error(f"unknown registry {registry!r}")
        if status not in STATUSES:
            raise self._error(f"unknown status {status!r}")
        try:
            first = ip_int(start)
        except ValueError:
            raise self._error(f"{start!r} is not an IPv4 address") from None
        count = self._int(value, "address count")
        if count < 1 or first + count - 1 > 0xFFFFFFFF:
            raise self._error(f"{count} addresses from {start} leave the IPv4 space")
        country = cc.upper() if len(cc) == 2 and cc.upper() != "ZZ" else None
        when = date if date.isdigit() and int(date) else None
        return Delegation(intern(registry), country and intern(country), first, count, when and intern(when),
                          intern(status), intern(parts[7]) if len(parts) > 7 else "")

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    def check(self, md5_text: str | None = None) -> Header:
        """The counts against the version and summary lines, and the md5 against its `.md5` file
        (either style): StatsError naming the file and what disagrees."""
        if not self._done:
            raise StatsError(f"{self.name}: read it through before checking it")
        if self.header is None:
            raise StatsError(f"{self.name}: empty, no version line")
        read = sum(self.rows.values())
        if read != self.header.records:
            raise self._error(f"truncated or altered: the version line says {self.header.records} "
                              f"records, the file holds {read}")
        for kind, count in self.summaries.items():
            if self.rows.get(kind, 0) != count:
                raise self._error(f"the {kind} summary says {count} records, the file holds "
                                  f"{self.rows.get(kind, 0)}")
        if md5_text is not None:
            expected = parse_md5(md5_text, self.name)
            if expected != self.md5:
                raise StatsError(f"{self.name}: md5 {self.md5} does not match its .md5 file ({expected})")
        return self.header


def parse_md5(text: str, name: str = "the .md5 file") -> str:
    """The digest of a `.md5` file, BSD style (`MD5 (file) = hex`) or GNU style (`hex  file`)."""
    for line in text.splitlines():
        found = _MD5_BSD.match(line.strip()) or _MD5_GNU.match(line.strip())
        if found:
            return found["hex"].lower()
    raise StatsError(f"{name}.md5: no digest in it (expected `MD5 (file) = hex` or `hex  file`)")


@cache
def _special() -> Scope:
    return Scope.of(rirs.SPECIAL_SPANS)


def read_path(
    path: str | Path, md5_text: str | None = None, within: Callable[[int, int], bool] | None = None
) -> tuple[Header, list[Delegation]]:
    """A whole file's IPv4 delegations, checked (a few MB: the largest holds ~200k rows); `within`:
    only the handed-out ones it takes (first, last) for, every one reaching into special-purpose
    space (a handful: a plan withholds that space, and asks what the statistics list delegated
    there, ARIN's AS112 block: `StatsPlan.special_delegations`), and every free or reserved row (a
    few thousand; a run of them is one placeholder however far past a scope's edge it reaches:
    `StatsPlan.free_records`), the whole file read and checked all the same."""
    special = _special().overlaps
    with open(path, "rb") as fh:
        stats = StatsFile(str(path), fh)
        rows = [d for d in stats if within is None or not d.handed_out or within(d.first, d.last)
                or special(d.first, d.last)]
    return stats.check(md5_text), rows


class Delegations:
    """Handed-out IPv4 delegations searchable by address: the one holding a block, its country and
    registry. Delegations never overlap, so one bisection finds it."""

    def __init__(self, rows: Iterable[Delegation]) -> None:
        ordered = sorted((d.first, d.last, d.country, d.registry) for d in rows if d.handed_out)
        self._starts = array("I", (r[0] for r in ordered))  # 4 bytes a row (a list: 36)
        self._ends = array("I", (r[1] for r in ordered))
        self._ccs = [r[2] for r in ordered]
        self._registries = [r[3] for r in ordered]

    def __len__(self) -> int:
        return len(self._starts)

    @classmethod
    def from_path(cls, path: str | Path) -> Delegations:
        """One file, or every `delegated-*` file of a directory (`.md5` files aside)."""
        p = Path(path)
        files = sorted(f for f in p.glob("delegated-*") if f.suffix != ".md5") if p.is_dir() else [p]
        return cls(d for f in files for d in read_path(f)[1])

    def _holding(self, first: int, last: int) -> int | None:
        k = bisect.bisect_right(self._starts, first) - 1
        return None if k < 0 or self._ends[k] < last else k

    def country(self, first: int, last: int) -> str | None:
        """The country of the delegation that contains first..last, None if none does."""
        k = self._holding(first, last)
        return None if k is None else self._ccs[k]

    def registry(self, address: int) -> str | None:
        """The registry that delegated the address (a transfer's new holder, not the /8's), or None."""
        k = self._holding(address, address)
        return None if k is None else self._registries[k]

    def at(self, address: int) -> tuple[int, int] | None:
        """The delegation holding the address, as (first, last), or None."""
        k = self._holding(address, address)
        return None if k is None else (self._starts[k], self._ends[k])


@cache
def configured() -> Delegations | None:
    """The statistics named by $WHOISCRAWL_DELEGATED, read once; None when it is not set."""
    where = os.environ.get(ENV)
    return Delegations.from_path(where) if where else None


def configured_country() -> Callable[[int, int], str | None] | None:
    """The country of a block's delegation in the statistics named by $WHOISCRAWL_DELEGATED (read at
    the edge, where a registry client is built), None when it is not set."""
    delegations = configured()
    return delegations.country if delegations else None
