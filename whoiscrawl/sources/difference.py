"""The refresh's decision, one home for its two callers (the local `whoiscrawl crawl --refresh`,
whoiscrawl/refresh.py, and the fleet's load of a generation, worker/sources.py): a previous map
against a registry's newer files (docs/refresh.md). It writes nothing of the map: it reads records
(a streamed previous map spooled to a temporary file, `Previous.of_lines`, to read them back).

- A registry read from its dump: each network of the new dump against the same network of the
  previous dump (`compare_dumped`): unchanged, the previous record is kept with what was asked
  live for it; new or changed, the dump's; networks the new dump no longer holds are `removed`.
- Any other registry (ARIN: no dump): the statistics' difference (`stats_difference`): each
  delegation row in scope new, changed or gone is walked live again, every other previous
  network is kept.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from netaddr import IPRange, IPSet

from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources import changed, digest, manifest
from whoiscrawl.sources.dumps import unresolved_abuse
from whoiscrawl.sources.published import RegistryDump
from whoiscrawl.space import Scope

Key = tuple[str, int, int]  # a block: its registry and range
# Where a record was read and when: two reads of one unchanged network differ only in these.
PROVENANCE = frozenset({"fetched_at", "observed_at", "serial", "crawl", "raw", "query_address"})


class Previous:
    """The previous map, held compactly (docs/refresh.md, The previous map in ~50 bytes a block): per
    block its key, where its latest record and the last record its dump gave lie in the map's file,
    and whether it is the statistics' free space; a record is read back (`os.pread`) only when asked
    for. And of which reads (serial, date) each registry's dumped records are. Held as parsed records
    it took ~2.2 kB a block: 24 GB for `full`'s 11.25M."""

    def __init__(self) -> None:
        self.reads: dict[str, set[tuple[str | None, str | None]]] = {}
        self._names: list[str] = []  # a registry's code: its place here
        empty_u4, empty_i8 = np.zeros(0, np.uint32), np.zeros(0, np.int64)
        # per block, in the order of its first line in the map (the order a dict of the map kept)
        self._codes, self._keys, self._free = np.zeros(0, np.uint8), np.zeros(0, np.uint64), np.zeros(0, bool)
        self._latest_at, self._latest_len = empty_i8, empty_u4
        self._dumped_at, self._dumped_len = empty_i8, empty_u4  # -1: no record of the block's dump
        # the blocks by registry (name order) then key: positions, their keys, each registry's run
        self._by_key, self._sorted = empty_u4, np.zeros(0, np.uint64)
        self._runs: dict[str, tuple[int, np.ndarray]] = {}
        self._file: BinaryIO | None = None
        self._closer: weakref.finalize | None = None
        self.latest: Mapping[Key, NetworkRecord] = _Records(self, dumped=False)
        self.dumped: Mapping[Key, NetworkRecord] = _Records(self, dumped=True)

    @classmethod
    def read(cls, path: Path) -> Previous:
        """The map at `path`, a complete one (its manifest was checked); the file stays open (read
        back from) until `close`."""
        fh = path.open("rb")
        try:
            return cls._of(_numbered(fh), fh)
        except BaseException:
            fh.close()
            raise

    @classmethod
    def of_lines(cls, lines: Iterable[bytes], spool: Path | None = None) -> Previous:
        """A map from its JSON lines, in the order written (a later record of a block replaces an
        earlier one): a fleet's results topic's (`queue.iter_result_values`), or any stream. They
        are spooled to a temporary file in `spool` (the system's default place if None), read back
        from it and deleted with it at `close`. Read as ours (`from_own_json`: no schema check)."""
        fh = tempfile.TemporaryFile(dir=spool)  # noqa: SIM115 (open until `close`: read back from)
        try:
            prev = cls._of(_spooled(lines, fh), fh)
            fh.flush()
            return prev
        except BaseException:
            fh.close()
            raise

    @classmethod
    def _of(cls, numbered: Iterable[tuple[int, bytes]], fh: BinaryIO) -> Previous:
        prev, lines, codes = cls(), _Lines(), dict[str, int]()
        for at, line in numbered:
            record = NetworkRecord.from_own_json(line)
            code = codes.setdefault(record.registry, len(codes))
            flags = _FREE if record.source == "stats" else 0
            if record.source == "dump" and record.filled is None:  # not a field filled live after
                flags |= _DUMPED
                prev.reads.setdefault(record.registry, set()).add((record.serial, record.observed_at))
            lines.add(code, record.first << 32 | record.last, at, len(line), flags)
        prev._names = list(codes)
        prev._index(lines)
        prev._file, prev._closer = fh, weakref.finalize(prev, fh.close)
        return prev

    def _index(self, lines: _Lines) -> None:
        """The blocks of the map's lines: a block's latest record is its last line, its dumped one
        the last of its lines flagged so. Sorted once, in 32-bit positions, each line's columns let
        go as soon as used: the peak stays under ~100 bytes a line (tests/unit/test_sources_previous.py)."""
        rank = np.argsort(np.argsort(np.array(self._names, dtype=object))).astype(np.uint8)  # by name
        codes, keys = np.frombuffer(lines.codes, np.uint8), np.frombuffer(lines.keys, np.uint64)
        order = np.lexsort((keys, rank[codes])).astype(np.uint32)  # stable: a block's later line after
        k, c = keys[order], codes[order]
        del codes, keys
        lines.codes, lines.keys = array("B"), array("Q")
        starts = np.ones(len(order), bool)  # each block's first line, in `order`
        starts[1:] = (k[1:] != k[:-1]) | (c[1:] != c[:-1])
        self._sorted, block_codes = k[starts], c[starts]
        sorted_ranks = rank[block_codes]
        del k, c
        ends = np.ones(len(order), bool)
        ends[:-1] = starts[1:]
        latest, first = order[ends], order[starts]
        del ends
        flags = np.frombuffer(lines.flags, np.uint8)
        chosen = (flags[order] & _DUMPED) != 0
        in_block, dumped_lines = (np.cumsum(starts, dtype=np.uint32) - 1)[chosen], order[chosen]
        del order, chosen, starts
        last = np.ones(len(in_block), bool)
        last[:-1] = in_block[1:] != in_block[:-1]
        dumped = np.full(len(first), -1, np.int64)
        dumped[in_block[last]] = dumped_lines[last]
        del in_block, dumped_lines, last
        place = np.argsort(first, kind="stable").astype(np.uint32)  # the blocks by their first line
        del first
        self._by_key = np.empty(len(place), np.uint32)
        self._by_key[place] = np.arange(len(place), dtype=np.uint32)
        self._codes, self._keys = block_codes[place], self._sorted[place]
        latest, dumped = latest[place], dumped[place]
        del block_codes, place
        self._free = (flags[latest] & _FREE) != 0
        self._locate(lines, latest, dumped)
        for code, name in enumerate(self._names):
            lo, hi = (np.searchsorted(sorted_ranks, rank[code], side) for side in ("left", "right"))
            self._runs[name] = (int(lo), self._sorted[lo:hi])

    def _locate(self, lines: _Lines, latest: np.ndarray, dumped: np.ndarray) -> None:
        """Where each block's latest and dumped records lie in the file (-1: no dumped one)."""
        offsets, lengths = np.frombuffer(lines.offsets, np.int64), np.frombuffer(lines.lengths, np.uint32)
        self._latest_at, self._latest_len = offsets[latest], lengths[latest]
        has = dumped >= 0
        self._dumped_at = np.full(len(dumped), -1, np.int64)
        self._dumped_at[has] = offsets[dumped[has]]
        self._dumped_len = np.zeros(len(dumped), np.uint32)
        self._dumped_len[has] = lengths[dumped[has]]

    def close(self) -> None:
        """The map's file closed (a spooled one deleted)."""
        if self._closer is not None:
            self._closer()

    def __enter__(self) -> Previous:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, key: Key) -> int:
        """The block's place in the map (its position), or -1 if the map holds no such block."""
        run = self._runs.get(key[0])
        if run is None:
            return -1
        lo, keys = run
        wanted = np.uint64(key[1] << 32 | key[2])
        n = int(np.searchsorted(keys, wanted))
        return int(self._by_key[lo + n]) if n < len(keys) and keys[n] == wanted else -1

    def key(self, at: int) -> Key:
        packed = int(self._keys[at])
        return (self._names[self._codes[at]], packed >> 32, packed & 0xFFFFFFFF)

    def positions(self, by_key: bool = False) -> Iterator[int]:
        """Every block's position: in the map's order (of each block's first line), or by key (registry,
        first, last: `sorted` of the keys)."""
        if by_key:
            for at in self._by_key:
                yield int(at)
        else:
            yield from range(len(self))

    def free(self, at: int) -> bool:
        """Is the block the statistics' free space (`source` stats)?"""
        return bool(self._free[at])

    def line(self, at: int) -> bytes:
        """The block's latest record as the map's file holds it."""
        return self._read(int(self._latest_at[at]), int(self._latest_len[at]))

    def record(self, at: int) -> NetworkRecord:
        """The block's latest record."""
        return NetworkRecord.from_own_json(self.line(at))

    def dumped_record(self, at: int) -> NetworkRecord | None:
        """The last record the block's dump gave, None if none."""
        start = int(self._dumped_at[at])
        return None if start < 0 else \
            NetworkRecord.from_own_json(self._read(start, int(self._dumped_len[at])))

    def has_dumped(self, at: int) -> bool:
        """Does the map hold a record its dump gave for the block?"""
        return bool(self._dumped_at[at] >= 0)

    def dumped_count(self) -> int:
        """How many blocks the map holds a record of their dump for."""
        return int(np.count_nonzero(self._dumped_at >= 0))

    def latest_is_dumped(self, at: int) -> bool:
        """Is the block's latest record the one its dump gave (nothing asked live after it)?"""
        return bool(self._dumped_at[at] == self._latest_at[at])

    def _read(self, start: int, length: int) -> bytes:
        if self._file is None:
            raise ValueError("the previous map holds no record")
        return os.pread(self._file.fileno(), length, start)

    def reuse(self, registry: str, published: Path) -> changed.Reuse | None:
        """What a read of `registry`'s new dump may take from the previous one: its digest beside
        the previous map's files, if every dumped record of the map is of one read."""
        path, reads = digest.path_of(published, registry), self.reads.get(registry, set())
        if not path.exists() or len(reads) != 1:
            return None
        (serial, observed_at), = reads
        held = self._keys[(self._codes == self._names.index(registry)) & (self._dumped_at >= 0)]
        return changed.Reuse(path, serial, observed_at, held)


_DUMPED, _FREE = 1, 2  # a line's flags: a record its dump gave (`dumped`); the statistics' free space


@dataclass
class _Lines:
    """The map's lines as read, 22 bytes each until indexed: registry code, key, place, length, flags."""

    codes: array = field(default_factory=lambda: array("B"))
    keys: array = field(default_factory=lambda: array("Q"))
    offsets: array = field(default_factory=lambda: array("q"))
    lengths: array = field(default_factory=lambda: array("I"))
    flags: array = field(default_factory=lambda: array("B"))

    def add(self, code: int, key: int, offset: int, length: int, flags: int) -> None:
        self.codes.append(code)
        self.keys.append(key)
        self.offsets.append(offset)
        self.lengths.append(length)
        self.flags.append(flags)


def _numbered(fh: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """A file's non-blank lines, each with its place in the file (newline left off)."""
    at = 0
    for line in fh:
        if line.strip():
            yield at, line.rstrip(b"\r\n")
        at += len(line)


def _spooled(lines: Iterable[bytes], fh: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """`_numbered` of lines as they are written to `fh`, a line each."""
    at = 0
    for line in lines:
        if not line.strip():
            continue
        line = line.rstrip(b"\r\n")
        fh.write(line + b"\n")
        yield at, line
        at += len(line) + 1


class _Records(Mapping[Key, NetworkRecord]):
    """A view of the previous map by key: each block's latest record, or the one its dump gave
    (`dumped`), read back when asked for; iterated in the map's order."""

    def __init__(self, prev: Previous, dumped: bool) -> None:
        self._prev, self._dumped = prev, dumped

    def __getitem__(self, key: object) -> NetworkRecord:
        at = self._prev.find(key) if isinstance(key, tuple) else -1
        got = None if at < 0 else self._prev.dumped_record(at) if self._dumped else self._prev.record(at)
        if got is None:
            raise KeyError(key)
        return got

    def __contains__(self, key: object) -> bool:
        at = self._prev.find(key) if isinstance(key, tuple) else -1
        return at >= 0 and (not self._dumped or self._prev.has_dumped(at))

    def __iter__(self) -> Iterator[Key]:
        for at in self._prev.positions():
            if not self._dumped or self._prev.has_dumped(at):
                yield self._prev.key(at)

    def __len__(self) -> int:
        return len(self._prev) if not self._dumped else self._prev.dumped_count()


class Seen:
    """Which of the previous map's blocks a registry's new dump holds: a byte a block of the map (a
    set of keys took ~150 bytes a block)."""

    def __init__(self, prev: Previous) -> None:
        self.held = np.zeros(len(prev), bool)

    @classmethod
    def of(cls, prev: Previous, keys: Iterable[Key]) -> Seen:
        seen = cls(prev)
        for key in keys:
            if (at := prev.find(key)) >= 0:
                seen.add(at)
        return seen

    def add(self, at: int) -> None:
        """The block at `at` (`Previous.find`'s) is held."""
        self.held[at] = True


def _still(kept: NetworkRecord, dumped: NetworkRecord) -> NetworkRecord:
    """A record asked live for a network its new dump gives unchanged, kept: one that is the
    dump's but a field filled live (`filled`) is of the new dump's read now."""
    if kept.source == "dump" and kept.filled is not None:
        return kept.read_again(dumped.serial, dumped.observed_at)
    return kept


def facts(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A record's fields (its `to_dict`, or its JSON read) but its provenance: what two reads of one
    unchanged network share."""
    return {k: v for k, v in doc.items() if k not in PROVENANCE}


def same(a: NetworkRecord, b: NetworkRecord) -> bool:
    """One network read twice, unchanged (its provenance aside)?"""
    return facts(a.to_dict()) == facts(b.to_dict())


@dataclass(frozen=True)
class Compared:
    """A network of a registry's new dump against the previous map."""

    record: NetworkRecord  # the network as the new dump gives it (the previous read's if not parsed)
    kind: str  # "unchanged", "changed" (the previous map held it otherwise) or "added"
    kept: NetworkRecord | None = None  # unchanged: the previous map's latest record of it
    after: NetworkRecord | None = None  # what was asked live for it and still holds: written after
    at: int = -1  # its block's place in the previous map (`Previous.find`), -1 if not there

    @property
    def key(self) -> Key:
        return (self.record.registry, self.record.first, self.record.last)


def compare_dumped(got: NetworkRecord | changed.Unchanged, prev: Previous, dump: RegistryDump) -> Compared:
    """A staged network of `dump` (a record, or one not parsed as unchanged since the previous read)
    against the previous map's record of it: unchanged (every field but provenance), what was asked
    live for it after that record is kept (`after`), so nothing asked before is asked again."""
    at = prev.find((dump.registry, got.first, got.last))
    before = prev.dumped_record(at) if at >= 0 else None
    record = _dumped(got, before, dump)
    if before is not None and (isinstance(got, changed.Unchanged) or same(before, record)):
        latest = before if prev.latest_is_dumped(at) else prev.record(at)
        if not contact_replaced(latest, record):
            after = None if latest is before else _still(latest, record)
            return Compared(record, "unchanged", latest, after, at)
    return Compared(record, "changed" if at >= 0 else "added", at=at)


def contact_replaced(kept: NetworkRecord, dumped: NetworkRecord) -> bool:
    """Does the new dump name another abuse contact for a network whose address was filled from
    its contact (`kept.filled`)? The dump's records carry the handle only while staged (`raw`), so
    `same` cannot see it: a LACNIC customer's block names its ISP's contact, and the ISP replacing
    it changes nothing else of the block."""
    entity = ((kept.filled or {}).get("abuse_emails") or {}).get("entity")
    named = unresolved_abuse(dumped)
    return entity is not None and named is not None and named.casefold() != entity.casefold()


def removed(prev: Previous, registry: str, seen: Seen | Iterable[Key]) -> list[Key]:
    """The previous map's networks of a registry read from its new dump that the dump no longer
    holds (`seen`: those it holds); free space is the statistics', not the dump's."""
    held = (seen if isinstance(seen, Seen) else Seen.of(prev, seen)).held
    if registry not in prev._names:
        return []
    gone = (prev._codes == prev._names.index(registry)) & ~held & ~prev._free
    return [prev.key(int(at)) for at in np.flatnonzero(gone)]


@dataclass(frozen=True)
class StatsDifference:
    """The statistics' difference, for the registries not read from a dump: the delegation rows new,
    changed or gone since the previous map's files; every previous network outside them is kept,
    those present now are walked live again."""

    changed: frozenset[manifest.Row]
    present: frozenset[manifest.Row]  # of `changed`, the rows the new statistics hold
    dumped: frozenset[str]  # registries read from their new dumps: not decided here
    fresh: frozenset[str]  # registries whose new statistics were read: their free space written anew
    spans: Scope

    def keeps(self, key: Key, free: bool) -> bool:
        """Is a previous network kept as it is? `free`: it is the statistics' free space (`Previous.free`)."""
        fresh_stats = free and key[0] in self.fresh
        return not (key[0] in self.dumped or fresh_stats or self.spans.overlaps(key[1], key[2]))

    def walk(self, scope: list[str]) -> list[str]:
        """The CIDRs of the changed delegations present now, in `scope`: to walk live again."""
        inside = IPSet(scope) & IPSet(IPRange(r[1], r[1] + r[2] - 1) for r in self.present)
        return [str(c) for c in inside.iter_cidrs()]


def stats_difference(old: Iterable[manifest.Row], now: Iterable[manifest.Row], dumped: Iterable[str],
                     fresh: Iterable[str]) -> StatsDifference:
    """The rows in scope of the previous map's statistics (`old`) against the new ones (`now`); a
    registry read from its dump, or whose new statistics were not read (a warning says why: its
    networks kept unchecked), is not compared."""
    by_registry: dict[str, tuple[set[manifest.Row], set[manifest.Row]]] = {}
    for n, rows in enumerate((old, now)):
        for row in rows:
            by_registry.setdefault(row[0], (set(), set()))[n].add(row)
    dumped, fresh = frozenset(dumped), frozenset(fresh)
    differ: set[manifest.Row] = set()
    for registry, (was, is_) in by_registry.items():
        if registry not in dumped and registry in fresh:
            differ |= was ^ is_
    present = frozenset(r for r in differ if r in by_registry[r[0]][1])
    spans = Scope.of(sorted((r[1], r[1] + r[2] - 1) for r in differ))
    return StatsDifference(frozenset(differ), present, dumped, fresh, spans)


def _dumped(got: NetworkRecord | changed.Unchanged, before: NetworkRecord | None,
            dump: RegistryDump) -> NetworkRecord:
    """A staged network's record: the new dump's, or for one unchanged since the previous read
    (not parsed), the previous read's, read again from the new files."""
    if isinstance(got, changed.Unchanged):
        if before is None:  # `Reuse.held`: only what the previous map holds is taken unparsed
            raise AssertionError(f"{dump.registry} {got}: unchanged but not in the previous map")
        return before.read_again(dump.serial, dump.observed_at)
    return got
