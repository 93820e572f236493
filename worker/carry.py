"""A fleet generation's load as a refresh of the previous generation (docs/operator.md, A generation
as a refresh by difference): the manifest a load keeps with its `done`, the previous generation read
back (its manifest from Redis, its map from its compacted results topic), and what of it is carried.

The decision is the local refresh's (`sources/difference.py`); this module only reads a fleet's
records of it. A previous generation that cannot be trusted (none finished, no manifest, another
scope, files newer than today's) is refused with a reason: the generation crawls anew.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from netaddr import IPRange, IPSet

from whoiscrawl.ipv4 import Spans
from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources import freshness, manifest, seed
from whoiscrawl.sources.difference import Previous, Seen, StatsDifference, compare_dumped, removed
from whoiscrawl.sources.published import RegistryDump, StatsPlan, went_back
from whoiscrawl.space import Scope

# Statistics rows a field of the load's progress: each field is one message of the checkpoints topic
# (Kafka's default limit 1 MB; a row is about 50 bytes), so a whole-IPv4 manifest (about 250,000 rows)
# is some 125 fields of 100 kB, never one message.
MANIFEST_ROWS = 2000
ROWS_FIELD = "manifest:rows:"


class Refused(Exception):
    """The previous generation cannot be refreshed from: the text says why (it is crawled anew)."""


def cidrs(scope: Scope | None) -> list[str]:
    """A fleet's scope as CIDRs (a local map's manifest's form); None: the whole space."""
    spans = zip(scope.firsts, scope.lasts, strict=True) if scope else [(0, (1 << 32) - 1)]
    return [str(c) for c in IPSet(IPRange(f, t) for f, t in spans).iter_cidrs()]


def manifest_fields(made: manifest.Manifest) -> tuple[dict[str, Any], dict[str, str]]:
    """A load's manifest as its progress keeps it: the header (in `done`) and its rows, a field of
    at most `MANIFEST_ROWS` each."""
    header = {k: v for k, v in asdict(made).items() if k != "rows"}
    chunks = [made.rows[n:n + MANIFEST_ROWS] for n in range(0, len(made.rows), MANIFEST_ROWS)]
    header["row_fields"] = len(chunks)
    fields = {f"{ROWS_FIELD}{n}": json.dumps(rows, separators=(",", ":")) for n, rows in enumerate(chunks)}
    return header, fields


def made_by(scope: Scope | None, stats: StatsPlan | None,
            serials: dict[str, dict[str, str]]) -> manifest.Manifest:
    """The manifest of a load: its scope, the serials of the files it used, the statistics' rows in
    scope of the registries whose statistics it used."""
    within = scope or Scope.of([(0, (1 << 32) - 1)])
    used = {r for r, s in serials.items() if "stats" in s}
    rows = sorted(manifest.row_of(d) for d in (stats.delegations if stats else [])
                  if d.registry in used and within.overlaps(d.first, d.last))
    made = max((stats.end_dates.values() if stats else []), default="")
    return manifest.Manifest(cidrs(scope), serials, rows, made)


def read_manifest(crawl: str, state: dict[str, str]) -> manifest.Manifest:
    """The manifest a finished load of `crawl` kept (its progress, `state`); Refused if none."""
    if "done" not in state:
        raise Refused(f"{crawl} has no finished load (its data gone, or it never loaded its files)")
    header = json.loads(state["done"]).get("manifest")
    if not header:
        raise Refused(f"{crawl} kept no manifest of its files (loaded before 2026-12-07, or without "
                      "statistics)")
    rows: list[manifest.Row] = []
    for n in range(header.pop("row_fields")):
        if (text := state.get(f"{ROWS_FIELD}{n}")) is None:
            raise Refused(f"{crawl}'s manifest lacks its rows' field {n}")
        rows += [tuple(r) for r in json.loads(text)]
    try:
        return manifest.Manifest(rows=rows, **header)
    except TypeError as exc:
        raise Refused(f"{crawl}'s manifest cannot be read ({exc})") from None


def check(crawl: str, old: manifest.Manifest, scope: Scope | None, now: dict[str, dict[str, str]]) -> None:
    """Refused: the previous generation maps another scope, it or this one read no statistics (the
    local refresh needs them too: `map.json` is written only by a crawl that read them), or its
    files are newer than those now (`now`: registry -> {"stats"|"dump": serial})."""
    if old.scope != cidrs(scope):
        raise Refused(f"{crawl} mapped another scope (the crawl's ranges or excludes changed since)")
    for who, serials in ((crawl, old.serials), ("this generation", now)):
        if not any("stats" in kinds for kinds in serials.values()):  # nothing would say what changed
            raise Refused(f"{who} read no delegation statistics (sources.use without stats)")
    for registry, kinds in now.items():
        for kind, serial in kinds.items():
            was = old.serials.get(registry, {}).get(kind)
            if went_back(was, serial):
                raise Refused(f"{crawl} read {registry}'s {kind} serial {was}, newer than {serial} now: the "
                              "files went backwards (a stale mirror?)")


def previous_map(crawl: str, lines: Iterable[bytes], spool: Path | None = None) -> Previous:
    """The previous generation's map from its results topic's lines, spooled to a file in `spool`
    (deleted at its `close`: a whole-IPv4 map is GBs) and held compactly; Refused if it holds none."""
    prev = Previous.of_lines(lines, spool)
    if not len(prev):
        prev.close()
        raise Refused(f"{crawl}'s results topic holds no record (its data gone)")
    return prev


@dataclass
class Carried:
    """What a load carries from the previous generation: its records a file a registry (written as
    they come: millions in a whole-IPv4 map), its freshness sample, and the counts."""

    cache: Path  # where each registry's file is written (`path`)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (registry, kind) -> networks
    kept_live: dict[str, Spans] = field(default_factory=dict)  # fills carried: not asked
    sample: dict[str, list[NetworkRecord]] = field(default_factory=dict)  # to ask again, a registry
    files: dict[str, IO[str]] = field(default_factory=dict)

    def path(self, registry: str) -> Path:
        """Its staged file: compressed as a dump's are (`seed.open_staged`, which the load reads it by)."""
        return seed.staged_path(self.cache, f"carried-{registry}")

    def add(self, registry: str, line: bytes) -> None:
        """A record carried, as JSON (`to_json`'s bytes)."""
        if (fh := self.files.get(registry)) is None:
            fh = self.files[registry] = seed.open_staged(self.path(registry), "w")
        fh.write(line.decode() + "\n")
        self.counts[(registry, "carried")] += 1

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()

    def figures(self) -> dict[str, dict[str, int]]:
        """registry -> {carried, unchanged, changed, added, removed, delegations_changed}, for the
        load's figures."""
        out: dict[str, dict[str, int]] = {}
        for (registry, kind), n in sorted(self.counts.items()):
            out.setdefault(registry, {})[kind] = n
        return out


def from_dump(carried: Carried, dump: RegistryDump, staged: Iterator[str], prev: Previous,
              resolved: IO[str]) -> None:
    """A registry's new dump (its staged lines) against the previous map: what was asked live for its
    unchanged networks is carried (the fill not asked again); the dump's item sends the rest. Each
    staged line is written to `resolved` as the dump's item sends it: a network staged unparsed
    (unchanged since the previous read, `changed.Unchanged`) as the previous map's record read again."""
    registry, seen = dump.registry, Seen(prev)
    for line in staged:
        got = seed.staged_record(line)
        compared = compare_dumped(got, prev, dump)
        resolved.write(line if isinstance(got, NetworkRecord) else compared.record.to_json().decode() + "\n")
        if compared.at >= 0:
            seen.add(compared.at)
        carried.counts[(registry, compared.kind)] += 1
        if compared.after is not None and compared.kept is not None:
            # carried, not fetched: the same bytes whichever loader writes it (a resumed batch is
            # sent only where the topic lacks it)
            compared.after.fetched_at = compared.kept.fetched_at
            carried.add(registry, compared.after.to_json())
            carried.kept_live.setdefault(registry, Spans()).add(compared.record.first, compared.record.last)
    carried.counts[(registry, "removed")] += len(removed(prev, registry, seen))


def from_stats(carried: Carried, difference: StatsDifference, prev: Previous, step: int) -> None:
    """The previous networks no changed delegation row covers, carried in address order (the same
    order whichever loader stages them), as the previous map holds them; every `step`-th of them
    (none if 0) in the freshness sample."""
    kept = 0
    for at in prev.positions(by_key=True):
        key = prev.key(at)
        if difference.keeps(key, prev.free(at)):
            carried.add(key[0], prev.line(at))
            if freshness.sampled(kept, step):
                carried.sample.setdefault(key[0], []).append(prev.record(at))
            kept += 1
    for row in difference.changed:
        carried.counts[(row[0], "delegations_changed")] += 1
