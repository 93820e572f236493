"""Which sources a crawl uses, and what the published files settle before anything is asked live.

`stats`: every registry's delegation statistics, checked (counts, md5): free and reserved space to
skip, and the registry that delegated each block. `dumps`: each registry's bulk dump as records,
read only where the terms need no opt-in or the user gave it. A file that cannot be had or trusted
is a warning naming it; its registry is then crawled live. docs/sources.md."""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from whoiscrawl import rirs
from whoiscrawl.ipv4 import cidr_blocks, cidrs, ip_str, less
from whoiscrawl.records import NetworkRecord
from whoiscrawl.settings import DEFAULT_SOURCES
from whoiscrawl.sources import dumps, stats
from whoiscrawl.sources.fetch import FetchError, fetch, fetch_text
from whoiscrawl.space import Plan, Scope, registry_for

SOURCES = rirs.SOURCES
DEFAULT = DEFAULT_SOURCES


class SourcesError(ValueError):
    """Sources asked for that cannot be used; the text says what to change."""


def parse_sources(text: str) -> frozenset[str]:
    """`stats,dumps,live` (any of them, in any order) as a set."""
    chosen = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = chosen - set(SOURCES)
    if unknown or not chosen:
        raise SourcesError(f"--sources {text!r}: use one or more of {', '.join(SOURCES)}, comma-separated")
    return chosen


def parse_accepted(text: str | None) -> frozenset[str]:
    """The registries whose dump terms the user accepts (`ripencc,afrinic`, or `all`)."""
    if not text:
        return frozenset()
    chosen = frozenset(rirs.REGISTRIES if text.strip() == "all" else (s.strip() for s in text.split(",")))
    unknown = chosen - set(rirs.REGISTRIES)
    if unknown:
        raise SourcesError(f"--accept-dump-terms: unknown registries {sorted(unknown)}")
    return chosen


@dataclass(frozen=True)
class SourcesSettings:
    """A fleet crawl's sources, as its workers are given them (`whoiscrawl worker --sources ...`,
    the WhoisCrawl's `spec.sources`)."""

    sources: frozenset[str]
    files_base: str | None = None  # a mirror of the registries' download trees (None: theirs)
    accept_dump_terms: frozenset[str] = frozenset()
    verify: float = 0.0  # share of each registry's dumped networks asked again live
    fill_redacted: bool = False  # ask live for each dumped network lacking holder, country or abuse

    @property
    def loads_files(self) -> bool:
        return bool(self.sources & {"stats", "dumps"})


def went_back(used: str | None, now: str | None) -> bool:
    """Is a published file's serial (or date) older than the one the crawl already used? Serials
    compare as numbers where both are (RIPE.CURRENTSERIAL, the statistics' serial), else as text
    (dates: YYYYMMDD, ISO 8601)."""
    if not used or not now:
        return False
    if used.isdigit() and now.isdigit():
        return int(now) < int(used)
    return now < used


def stale_note(what: str, used: str, now: str) -> str:
    """The message refusing a file older than the one the crawl already used."""
    return (f"{what}: serial {now} is older than {used}, which this crawl already used: refused (a "
            f"stale mirror? point --files-base at one as new as {used}); nothing of it was written, "
            "and what the crawl has stays")


def needs_opt_in(registry: str) -> str | None:
    """The terms to accept before a registry's dump is read, None when it asks for none."""
    return rirs.BY_ID[registry].dump_terms


@dataclass
class StatsPlan:
    """What the statistics settle: the delegations of every registry whose file was good."""

    delegations: list[stats.Delegation] = field(default_factory=list)
    serials: dict[str, str] = field(default_factory=dict)  # registry -> its file's serial
    end_dates: dict[str, str] = field(default_factory=dict)  # registry -> its file's end date (YYYYMMDD)
    warnings: list[str] = field(default_factory=list)
    _index: stats.Delegations | None = field(default=None, init=False, repr=False, compare=False)
    _indexed: int = field(default=0, init=False, repr=False, compare=False)

    def free_ranges(self) -> list[str]:
        """Available and reserved space, exactly (`a-b` ranges): nothing there to ask for."""
        free = (d for d in self.delegations if not d.handed_out)
        return [f"{ip_str(d.first)}-{ip_str(d.last)}" for d in free]

    def special_delegations(self) -> list[str]:
        """The delegations (`a-b` ranges) reaching into IANA's special-purpose space: a registry
        holds and answers them (ARIN's 192.175.48.0/24, AS112), so a crawl asks them
        (`space.crawlable`), though it probes no other special-purpose address."""
        special = Scope.of(rirs.SPECIAL_SPANS)
        held = (d for d in self.delegations if d.handed_out and special.overlaps(d.first, d.last))
        return [f"{ip_str(d.first)}-{ip_str(d.last)}" for d in held]

    def free_records(self, scope: Scope) -> Iterator[NetworkRecord]:
        """Free and reserved space in the scope as records (`source: stats`), adjacent rows of one
        registry joined (available and reserved alike, as one RDAP placeholder spans both): the map
        says what no one holds, as the registries' placeholders do, without a request. IANA's
        special-purpose ranges are cut out first (`rirs.SPECIAL_SPANS`): a registry's row there
        (APNIC lists TEST-NET-2 198.51.100.0/24 reserved) is no free space of its, and the rows on
        either side of it are two placeholders, not one spanning it."""
        rows = sorted((d for d in self.delegations if not d.handed_out), key=lambda d: d.first)
        special = rirs.SPECIAL_SPANS
        pieces = ((a, b, d.registry, d.status) for d in rows for a, b in less(d.first, d.last, special))
        run: list[tuple[int, int, str, str]] = []
        for piece in [*pieces, None]:
            if run and (piece is None or piece[0] != run[-1][1] + 1 or piece[2] != run[0][2]):
                first, last, registry = run[0][0], run[-1][1], run[0][2]
                if scope.overlaps(first, last):
                    yield from self._free_records(registry, first, last, sorted({p[3] for p in run}))
                run = []
            if piece is not None:
                run.append(piece)

    def _free_records(self, registry: str, first: int, last: int, statuses: list[str]
                      ) -> Iterator[NetworkRecord]:
        """Free space as the registry's placeholders answer it: held by the registry, its mailbox
        the abuse contact (`rirs.Rir.abuse_mailbox`), so a map from the files and one from live
        answers say the same of it; one placeholder a CIDR where its objects are CIDRs
        (`rirs.Rir.cidr_objects`), else one for the run."""
        rir = rirs.BY_ID[registry]
        spans = [(first, last)]
        if rir.cidr_objects:
            spans = [(a, a + (1 << (32 - length)) - 1) for a, length in cidr_blocks(first, last)]
        for start, end in spans:
            blocks = cidrs(start, end)
            yield NetworkRecord(
                registry=registry, handle=dumps.handle_of(registry, start, end, blocks),
                start_address=ip_str(start), end_address=ip_str(end), cidrs=blocks, type=rirs.FREE_TYPE_WORD,
                status=statuses, registrant=rir.name, abuse_emails=[rir.abuse_mailbox], source="stats",
                serial=self.serials.get(registry),
            )

    def index(self) -> stats.Delegations:
        """The delegations searchable by address: one index for the router and the holders, made
        again only once rows were added (each took ~65 bytes a row, `full`'s 196,307 in a crawl of all)."""
        if self._index is None or self._indexed != len(self.delegations):
            self._index, self._indexed = stats.Delegations(self.delegations), len(self.delegations)
        return self._index

    def router(self) -> Callable[[int], str | None] | None:
        """Which registry delegated an address, by these statistics (the client's `delegated_by`);
        None with no delegations: the bootstrap routes alone."""
        return self.index().registry if self.delegations else None

    def holders(self) -> Callable[[int], tuple[int, int] | None] | None:
        """The delegation holding an address, by these statistics (the client's `delegation_at`);
        None with no delegations."""
        return self.index().at if self.delegations else None

    def without(self, registries: Iterable[str]) -> StatsPlan:
        """These statistics but those of `registries` (refused: older than the crawl used)."""
        gone = set(registries)
        return StatsPlan([d for d in self.delegations if d.registry not in gone],
                         {r: s for r, s in self.serials.items() if r not in gone},
                         {r: d for r, d in self.end_dates.items() if r not in gone}, list(self.warnings))


async def load_stats(
    files_base: str | None, cache: Path, registries: Iterable[str] = rirs.REGISTRIES,
    within: Callable[[int, int], bool] | None = None,
) -> StatsPlan:
    """Every registry's statistics, fetched and checked; a bad one is a warning and left out.
    `within`: only the delegations it takes (first, last) for are kept, and all free and reserved
    rows (a crawl's scope: the five files hold ~200k IPv4 rows, ~140 MB as rows, whatever the
    crawl's size; `stats.read_path`)."""
    plan = StatsPlan()
    async with aiohttp.ClientSession() as session:
        for registry in registries:
            url = rirs.BY_ID[registry].stats_url
            try:
                got = await fetch(url, files_base, cache, session)
                md5 = await fetch_text(url + ".md5", files_base, cache, session)
                header, rows = stats.read_path(got.path, md5, within)
            except (FetchError, stats.StatsError) as exc:
                plan.warnings.append(f"{registry} statistics not used ({exc}): its space is crawled live")
                continue
            plan.delegations.extend(rows)
            plan.serials[registry] = header.serial
            plan.end_dates[registry] = header.end_date
    return plan


@dataclass
class RegistryDump:
    """A registry's dump fetched: its files, serial and date, ready to be read as records."""

    registry: str
    paths: list[Path]
    serial: str | None
    observed_at: str

    def read(self, workdir: Path | None = None, digest_to: Path | None = None
             ) -> tuple[dumps.DumpReport, Iterator[NetworkRecord]]:
        """Its records streamed (`dumps.read_registry`; its contacts' index on disk under `workdir`,
        its digest written to `digest_to`)."""
        return dumps.read_registry(self.registry, self.paths, self.serial, self.observed_at, workdir,
                                   digest_to)


async def fetch_dumps(
    files_base: str | None, cache: Path, accepted: frozenset[str], registries: Iterable[str] = rirs.REGISTRIES
) -> tuple[list[RegistryDump], list[str]]:
    """Each registry's dump files on disk (those whose terms were accepted where they ask), and
    warnings for the rest: not published (ARIN), terms not accepted, or not to be had."""
    got: list[RegistryDump] = []
    notes: list[str] = []
    async with aiohttp.ClientSession() as session:
        for registry in registries:
            rir = rirs.BY_ID[registry]
            if not rir.dump_urls:
                continue  # ARIN: no public dump; crawled live
            if rir.dump_terms and registry not in accepted:
                notes.append(f"{registry} dump not read: it needs --accept-dump-terms {registry} "
                             f"({rir.dump_terms}); crawled live")
                continue
            try:
                files = [await fetch(u, files_base, cache, session) for u in rir.dump_urls]
                serial = None
                if rir.serial_url:
                    with contextlib.suppress(FetchError):  # the serial is provenance, not a condition
                        serial = (await fetch_text(rir.serial_url, files_base, cache, session)).strip()
            except FetchError as exc:
                notes.append(f"{registry} dump not read ({exc}): crawled live")
                continue
            when = max((f.modified for f in files if f.modified), default=None)
            got.append(RegistryDump(registry, [f.path for f in files], serial or None,
                                    when or datetime.now(UTC).isoformat(timespec="seconds")))
    return got, notes


def dump_registries(sources: frozenset[str], accepted: frozenset[str]) -> frozenset[str]:
    """The registries whose dump a crawl with these sources reads (publishes one; terms accepted
    where it asks)."""
    if "dumps" not in sources:
        return frozenset()
    return frozenset(r.id for r in rirs.CATALOGUE if r.dump_urls and (not r.dump_terms or r.id in accepted))


def estimate_requests(
    plan: Plan, stats_plan: StatsPlan | None, from_dumps: frozenset[str], verify: float,
    fills: Mapping[str, int] | None = None,
) -> dict[str, dict[str, int]]:
    """Requests a crawl of the plan needs, per registry, before it starts (docs/sources.md):
    a registry read from its dump needs the freshness check (`verify` of its delegations) and the
    fill's lookups counted from its dump (`fills`, `seed.fill_lookups`: LACNIC's abuse contacts);
    any other is walked live, at most one lookup per grid cell of its planned space (the upper
    bound: LACNIC's, which lists nothing; registries that list children need far fewer)."""
    fills = fills or {}
    index = stats_plan.index() if stats_plan and stats_plan.delegations else None
    cells: Counter[str] = Counter()
    for shard in plan.shards:
        registry = (index.registry(shard.first) if index else None) or registry_for(shard.first)
        if registry:
            cells[registry] += max(1, (shard.last - shard.first + 1) >> (32 - shard.resolution))
    delegations: Counter[str] = Counter()
    scope = plan.scope
    for d in stats_plan.delegations if stats_plan else []:
        if d.handed_out and scope.overlaps(d.first, d.last):
            delegations[d.registry] += 1
    out: dict[str, dict[str, int]] = {}
    for registry in sorted(set(cells) | set(delegations)):
        dumped = registry in from_dumps
        fill = fills.get(registry, 0) if dumped else 0
        need = math.ceil(verify * delegations[registry]) + fill if dumped else cells[registry]
        out[registry] = {"requests": need, "grid_cells": cells[registry],
                         "delegations": delegations[registry], "from_dump": int(dumped),
                         "fill_lookups": fill}
    return out
