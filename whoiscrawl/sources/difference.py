"""The refresh's decision, one home for its two callers (the local `whoiscrawl crawl --refresh`,
whoiscrawl/refresh.py, and the fleet's load of a generation, worker/sources.py): a previous map
against a registry's newer files (docs/refresh.md). Pure: it reads records, it writes nothing.

- A registry read from its dump: each network of the new dump against the same network of the
  previous dump (`compare_dumped`): unchanged, the previous record is kept with what was asked
  live for it; new or changed, the dump's; networks the new dump no longer holds are `removed`.
- Any other registry (ARIN: no dump): the statistics' difference (`stats_difference`): each
  delegation row in scope new, changed or gone is walked live again, every other previous
  network is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netaddr import IPRange, IPSet

from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources import changed, digest, manifest
from whoiscrawl.sources.dumps import unresolved_abuse
from whoiscrawl.sources.published import RegistryDump
from whoiscrawl.space import Scope

Key = tuple[str, int, int]  # a block: its registry and range
# Where a record was read and when: two reads of one unchanged network differ only in these.
PROVENANCE = frozenset({"fetched_at", "observed_at", "serial", "crawl", "raw", "query_address"})


@dataclass
class Previous:
    """The previous map: the latest record of each block, the last record its dump gave, and of
    which reads (serial, date) each registry's dumped records are."""

    latest: dict[Key, NetworkRecord] = field(default_factory=dict)
    dumped: dict[Key, NetworkRecord] = field(default_factory=dict)
    reads: dict[str, set[tuple[str | None, str | None]]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Previous:
        """The map at `path`, a complete one (its manifest was checked)."""
        with path.open("rb") as fh:
            return cls.of_lines(fh)

    @classmethod
    def of_lines(cls, lines: Iterable[bytes]) -> Previous:
        """A map from its JSON lines, in the order written (a later record of a block replaces an
        earlier one): a file's, or a fleet's results topic's (`queue.iter_result_values`); read as
        ours (`from_own_json`: no schema check per record)."""
        prev = cls()
        for line in lines:
            if not line.strip():
                continue
            record = NetworkRecord.from_own_json(line)
            key = (record.registry, record.first, record.last)
            prev.latest[key] = record
            if record.source == "dump" and record.filled is None:  # not a field filled live after
                prev.dumped[key] = record
                prev.reads.setdefault(record.registry, set()).add((record.serial, record.observed_at))
        return prev

    def reuse(self, registry: str, published: Path) -> changed.Reuse | None:
        """What a read of `registry`'s new dump may take from the previous one: its digest beside
        the previous map's files, if every dumped record of the map is of one read."""
        path, reads = digest.path_of(published, registry), self.reads.get(registry, set())
        if not path.exists() or len(reads) != 1:
            return None
        (serial, observed_at), = reads
        held = {(k[1], k[2]) for k in self.dumped if k[0] == registry}
        return changed.Reuse(path, serial, observed_at, held)


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

    @property
    def key(self) -> Key:
        return (self.record.registry, self.record.first, self.record.last)


def compare_dumped(got: NetworkRecord | changed.Unchanged, prev: Previous, dump: RegistryDump) -> Compared:
    """A staged network of `dump` (a record, or one not parsed as unchanged since the previous read)
    against the previous map's record of it: unchanged (every field but provenance), what was asked
    live for it after that record is kept (`after`), so nothing asked before is asked again."""
    key = (dump.registry, got.first, got.last)
    before = prev.dumped.get(key)
    record = _dumped(got, before, dump)
    if before is not None and (isinstance(got, changed.Unchanged) or same(before, record)) \
            and not contact_replaced(prev.latest[key], record):
        latest = prev.latest[key]
        return Compared(record, "unchanged", latest, None if latest is before else _still(latest, record))
    return Compared(record, "changed" if key in prev.latest else "added")


def contact_replaced(kept: NetworkRecord, dumped: NetworkRecord) -> bool:
    """Does the new dump name another abuse contact for a network whose address was filled from
    its contact (`kept.filled`)? The dump's records carry the handle only while staged (`raw`), so
    `same` cannot see it: a LACNIC customer's block names its ISP's contact, and the ISP replacing
    it changes nothing else of the block."""
    entity = ((kept.filled or {}).get("abuse_emails") or {}).get("entity")
    named = unresolved_abuse(dumped)
    return entity is not None and named is not None and named.casefold() != entity.casefold()


def removed(prev: Previous, registry: str, seen: set[Key]) -> list[Key]:
    """The previous map's networks of a registry read from its new dump that the dump no longer
    holds (`seen`: those it holds); free space is the statistics', not the dump's."""
    return [k for k, r in prev.latest.items() if k[0] == registry and k not in seen and r.source != "stats"]


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

    def keeps(self, key: Key, record: NetworkRecord) -> bool:
        """Is a previous network kept as it is?"""
        fresh_stats = record.source == "stats" and key[0] in self.fresh
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
