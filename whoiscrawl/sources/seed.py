"""Seeding a crawl from a dump, for the local crawl and the fleet alike: the records in scope staged,
which of them are leaves, and the networks asked again live (the freshness check)."""

from __future__ import annotations

import asyncio
import bisect
import gc
import gzip
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import signal
import sys
from array import array
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

import numpy as np

from whoiscrawl import rirs
from whoiscrawl.ipv4 import enclosing, ip_int, ip_str
from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import LookupFailed, LookupResult, RegistryClient
from whoiscrawl.sources import changed, digest, dumps, freshness
from whoiscrawl.sources.published import RegistryDump, fetch_dumps
from whoiscrawl.space import Scope

STAGED_LEVEL = 1  # gzip's fastest: ~10x smaller staged records for ~2 us of CPU a record written


def staged_path(folder: Path, registry: str) -> Path:
    """Where a registry's dump is staged (`staged_all`): gzip-compressed JSON lines (`open_staged`).
    A record is ~630 bytes as JSON, ~64 compressed (`standard`): RIPE NCC's 6M records in `full`
    were 3.9 GB of the loader's disk."""
    return folder / f"{registry}.records.jsonl.gz"


def open_staged(path: Path, mode: str = "r") -> IO[str]:
    """A staged file's JSON lines, to read (`r`) or write (`w`): gzip-compressed at `STAGED_LEVEL`
    where its name ends in `.gz` (`staged_path`), else as they are (the statistics' free space, a
    few thousand lines, and files staged under a name of the caller's)."""
    if path.suffix != ".gz":
        return path.open(mode, encoding="utf-8")
    if mode == "r":
        return gzip.open(path, "rt", encoding="utf-8")
    return gzip.open(path, "wt", encoding="utf-8", compresslevel=STAGED_LEVEL)


def stage(dump: RegistryDump, scope: Scope | None, staged: Path, digest_to: Path | None = None,
          reuse: changed.Reuse | None = None) -> dumps.DumpReport:
    """The dump's records inside the crawl's scope, streamed to a file: used only once the whole
    dump read well, so a file cut off loses nothing (its registry is crawled live instead). The
    dump's contacts are indexed on disk beside `staged` while it is read, its digest written to
    `digest_to`. With `reuse` (a refresh), each network unchanged since the previous read is staged
    as `[first,last]` (`changed.Unchanged`, `staged_record`) unparsed; a digest that cannot be used
    is said in the report (`digest_problem`) and the dump read whole."""
    records: Iterator[NetworkRecord | changed.Unchanged] | None = None
    problem = None
    if reuse is not None and digest_to is not None:
        try:
            before = reuse.load(dump.registry)
        except digest.DigestError as exc:
            problem = str(exc)
        else:
            report, records = changed.read_changed(dump, before, reuse.held, digest_to, staged.parent, scope)
    if records is None:
        report, records = dump.read(staged.parent, digest_to)
    report.digest_problem = problem
    spans = SpanLog()
    unparented = staged.with_name(f"unparented-{staged.name}")  # compressed as `staged` is
    try:
        with open_staged(unparented, "w") as fh:
            for record in records:
                if scope is not None and not scope.overlaps(record.first, record.last):
                    continue
                spans.add(record.first, record.last)
                if isinstance(record, changed.Unchanged):
                    report.reused += 1
                    fh.write(f"[{record.first},{record.last}]\n")
                else:
                    fh.write(record.to_json().decode() + "\n")
        name_parents(unparented, staged, dump.registry, spans, report)
    finally:
        unparented.unlink(missing_ok=True)
    return report


def name_parents(lines: Path, out: Path, registry: str, spans: SpanLog, report: dumps.DumpReport) -> None:
    """`lines` (staged records, `spans` theirs in order) to `out`, each record the dump names no
    parent of given the one its registry's RDAP names (`parentHandle`): the closest network of the
    dump holding it. RIPE NCC's and APNIC's inetnums carry no `parent:`; the dump holds every
    network, so the parent is the one around it. Not where a skipped object may sit between them
    (a hole inside the parent holding the record, or any skipped object whose span is unknown):
    there the parent is left unnamed rather than named wrong. A network unchanged since the previous
    read (a refresh) keeps the record that read gave it, its parent included."""
    parents = spans.parents(report.holes) if not report.unplaced else np.full(len(spans), -1)
    firsts, lasts = spans.firsts(), spans.lasts()
    with open_staged(lines) as fh, open_staged(out, "w") as to:
        for n, line in enumerate(fh):
            p = int(parents[n])
            if p >= 0 and not line.startswith("["):
                line = with_parent(line, dumps.handle_of(registry, int(firsts[p]), int(lasts[p])))
            to.write(line)


_PARENT = '"parent_handle":'  # as `NetworkRecord.to_json` writes the key (no space after the colon)


def with_parent(line: str, handle: str) -> str:
    """A record's JSON line (`NetworkRecord.to_json`'s) naming `handle` its parent where it names
    none: written into the line, not read and written again (that round trip was ~6% of staging
    RIPE NCC's dump). The key's first occurrence is the record's own: it comes before `raw` and
    `filled`, and a string value before it holds its quotes escaped. A handle (`dumps.handle_of`:
    an address range or a CIDR) needs no escaping."""
    at = line.index(_PARENT) + len(_PARENT)
    if not line.startswith("null", at):
        return line
    return f'{line[:at]}"{handle}"{line[at + 4:]}'


def staged_record(line: str) -> NetworkRecord | changed.Unchanged:
    """A line `stage` wrote: a record, or a network unchanged since the previous read."""
    if line.startswith("["):  # `[first,last]`, as `stage` writes it (json.loads: most of reading one)
        first, _, last = line.rstrip().removeprefix("[").removesuffix("]").partition(",")
        return changed.Unchanged(int(first), int(last))
    return NetworkRecord.from_own_json(line)


def cores() -> int:
    """How many stagings run at once: one a core this process may use (the loop itself mostly
    waits on them meanwhile)."""
    return max(1, len(os.sched_getaffinity(0)))


_STAGING = multiprocessing.get_context("forkserver")  # never fork a process running threads


def prepare_staging() -> None:
    """Start the process stagings are forked from (`stage_apart`) now, with what a staging runs
    imported in it once: each staging then starts with it loaded, where each imported it anew
    (numpy, the dump reader, the registry client: ~0.5 s of CPU a staging, on 2 cores beside the
    others). Called before the files are fetched, its imports are done meanwhile."""
    _STAGING.set_forkserver_preload([__name__])  # read when the server starts (later calls: no change)
    multiprocessing.forkserver.ensure_running()


async def stage_apart(dump: RegistryDump, scope: Scope | None, staged: Path, digest_to: Path | None = None,
                      reuse: changed.Reuse | None = None) -> dumps.DumpReport:
    """`stage` in a process of its own: reading a dump is minutes of CPU (RIPE NCC's in `full`),
    which on the loop's thread would stall everything else (progress, leases, Ctrl-C) and on
    another thread still hold the GIL. Cancelled (Ctrl-C), the process is stopped at once and its
    contacts' index removed; nothing was used of a staging not finished, so a resume stages again.
    A `DumpError` is raised here as in `stage`."""
    prepare_staging()
    reader, writer = _STAGING.Pipe(duplex=False)
    child = _STAGING.Process(target=_stage_child, args=(dump, scope, staged, writer, digest_to, reuse),
                             daemon=True)
    child.start()
    writer.close()
    try:
        got = await asyncio.to_thread(_receive, reader, dump.registry)
    except BaseException:
        child.terminate()  # SIGTERM: its `finally`s run (the index removed), then it exits
        child.join()
        raise
    finally:
        reader.close()
    child.join()
    if isinstance(got, BaseException):
        raise got
    return got


def _receive(reader: Connection, registry: str) -> dumps.DumpReport | BaseException:
    """What a staging process sent: its report or the exception it raised."""
    try:
        got: dumps.DumpReport | BaseException = reader.recv()
    except EOFError:
        return RuntimeError(f"staging {registry}'s dump stopped without an answer (killed?)")
    return got


def _stage_child(dump: RegistryDump, scope: Scope | None, staged: Path, writer: Connection,
                 digest_to: Path | None, reuse: changed.Reuse | None) -> None:
    """A staging process: Ctrl-C is the parent's to act on; SIGTERM unwinds (`finally`s run)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    # No passes of the cyclic collector: a read leaves no cycles to find (standard's whole APNIC and
    # LACNIC reads none, RIPE NCC's against its digest 471 objects), while each pass went over all
    # it holds (a tenth of RIPE NCC's staging of day 1); the process ends with the read.
    gc.disable()
    started = _resident_mb()
    got: dumps.DumpReport | BaseException
    try:
        got = report = stage(dump, scope, staged, digest_to, reuse)
        report.rss_mb = (started, round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    except Exception as exc:
        got = exc
    writer.send(got)
    writer.close()


def _resident_mb() -> float:
    """This process's resident memory now, MB (Linux's `/proc`): a staging starts with what the
    process it was forked from held."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        return round(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20), 1)


async def staged_all(
    got: list[RegistryDump], scope: Scope | None, cache: Path, digests: bool = False,
    reuse: Mapping[str, changed.Reuse] | None = None,
) -> AsyncGenerator[tuple[RegistryDump, Path, dumps.DumpReport | dumps.DumpError], None]:
    """Each dump staged (`stage_apart`) under `cache`, as many at once as there are `cores` (started
    in `got`'s order), and yielded as soon as its staging ends, with its staged file and its report
    (or why it could not be read): a registry is seeded while a bigger one still stages (in `full`,
    APNIC's, LACNIC's and AFRINIC's beside RIPE NCC's, not after it). With `digests`, each read's
    digest is kept under `cache` (`digest.path_of`), and a registry in `reuse` is read against its
    previous read (`stage`)."""
    gate = asyncio.Semaphore(cores())

    async def one(dump: RegistryDump) -> tuple[RegistryDump, Path, dumps.DumpReport | dumps.DumpError]:
        async with gate:
            staged = staged_path(cache, dump.registry)
            try:
                kept = digest.path_of(cache, dump.registry) if digests else None
                against = (reuse or {}).get(dump.registry)
                return dump, staged, await stage_apart(dump, scope, staged, kept, against)
            except dumps.DumpError as exc:
                return dump, staged, exc

    cache.mkdir(parents=True, exist_ok=True)
    tasks = [asyncio.create_task(one(dump)) for dump in got]
    try:
        for ended in asyncio.as_completed(tasks):
            yield await ended
    finally:  # stopped part way: the stagings still running are stopped too
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def usable(dump: RegistryDump, report: dumps.DumpReport | dumps.DumpError, note: Callable[[str], None],
           instead: str = "crawled live") -> dumps.DumpReport | None:
    """A staging's report if the dump read well, its first skipped objects noted; else None and a
    note why not, and what is done `instead`."""
    if isinstance(report, dumps.DumpError):
        note(f"{dump.registry} dump not used ({report}): {instead}")
        return None
    if not report.complete:
        note(f"{dump.registry} dump not used: {'; '.join(report.problems)}; {instead}")
        return None
    for skipped in report.skipped_named[:5]:
        note(f"{dump.registry} dump: skipped {skipped}")
    return report


def leaf_rule(dump: RegistryDump, report: dumps.DumpReport) -> dict[str, Any]:
    """What `dump_leaf` needs of a dump read well: its serial, whether every skipped object's span
    was read, and those spans (as JSON keeps them)."""
    holes = [list(h) for h in sorted(report.holes)]
    return {"serial": dump.serial, "whole": report.unplaced == 0, "holes": holes}


def dump_leaf(record: NetworkRecord, seeded: dict[str, Any] | None) -> bool:
    """Is a dumped network a leaf? A dump holds every network of its registry, so a parent's
    children are all known and nothing inside it needs probing; except a parent holding an object
    the dump skipped (`holes`), and any parent when a skipped object's span could not be read."""
    if not seeded or not seeded.get("whole"):
        return False
    return not _holds(seeded.get("holes") or [], record.first, record.last)


def _holds(holes: list[list[int]], first: int, last: int) -> bool:
    """Does first..last hold one of the (sorted) [first, last] spans?"""
    i = bisect.bisect_left(holes, [first, 0])
    while i < len(holes) and holes[i][0] <= last:
        if holes[i][1] <= last:
            return True
        i += 1
    return False


class SpanLog:
    """The spans of one registry's seeded networks, 8 bytes each, kept to place the few asked again
    (`own_addresses` needs each one's children). A list of tuples cost ~130 bytes a network: 760 MB
    for RIPE NCC's 6M inetnums in `full`, most of the local crawl's memory."""

    def __init__(self) -> None:
        self._firsts, self._lasts = array("I"), array("I")

    def __len__(self) -> int:
        return len(self._firsts)

    def add(self, first: int, last: int) -> None:
        self._firsts.append(first)
        self._lasts.append(last)

    def firsts(self) -> np.ndarray:
        return np.frombuffer(self._firsts, np.uint32)

    def lasts(self) -> np.ndarray:
        return np.frombuffer(self._lasts, np.uint32)

    def parents(self, unknown: Iterable[tuple[int, int]] = ()) -> np.ndarray:
        """Each span's parent, its position (`ipv4.enclosing`); -1 where none, and where the
        closest span holding it is one of `unknown` (no position of ours: a skipped object's)."""
        holes = np.array(list(unknown), np.uint32).reshape(-1, 2)
        firsts = np.concatenate([self.firsts(), holes[:, 0]])
        parent = enclosing(firsts, np.concatenate([self.lasts(), holes[:, 1]]))[:len(self)]
        parent[parent >= len(self)] = -1
        return parent

    def about(self, asked: SpanLog) -> list[tuple[int, int]]:
        """The spans reaching into one of `asked`'s: theirs, their parents' and their children's,
        all `own_addresses` needs to place them (a network's own address depends on its children
        alone, and every child reaches into it)."""
        if not asked or not self:
            return []
        scope = Scope.of(zip(asked._firsts, asked._lasts, strict=True))
        firsts, lasts = self.firsts(), self.lasts()
        near = scope.overlapping(firsts, lasts)
        return list(zip(firsts[near].tolist(), lasts[near].tolist(), strict=True))


def own_addresses(spans: list[tuple[int, int]]) -> dict[tuple[int, int], int | None]:
    """For each network of one registry (its span), the first address it answers for itself: the
    first not inside one of its children; None where its children cover it whole (a lookup
    anywhere in it answers a child). Asked at its first address instead, a parent whose first
    child starts there is never answered itself (LACNIC's parents kept their abuse address unfilled)."""
    own: dict[tuple[int, int], int | None] = {}
    open_: list[list[int]] = []  # the enclosing networks: [first, last, next address no child covers]

    def close(net: list[int]) -> None:
        first, last, cursor = net
        own.setdefault((first, last), cursor if cursor <= last else None)

    for first, last in sorted(set(spans), key=lambda s: (s[0], -s[1])):
        while open_ and open_[-1][1] < first:
            close(open_.pop())
        if open_:
            parent = open_[-1]
            if first > parent[2]:  # a gap before this child: the parent answers there
                own.setdefault((parent[0], parent[1]), parent[2])
            parent[2] = max(parent[2], last + 1)
        open_.append([first, last, first])
    for net in reversed(open_):
        close(net)
    return own


def aimed(records: Iterable[NetworkRecord], own: dict[tuple[int, int], int | None]
          ) -> Iterator[NetworkRecord]:
    """The networks to ask again, each with the address it answers for itself as `query_address`;
    one its children cover whole is left out (no lookup answers it: asking would only re-read a
    child), unless its abuse contact is asked by handle (`dumps.unresolved_abuse`: no address
    needed). `own`: `own_addresses` of the registry's networks."""
    for record in records:
        at = own.get((record.first, record.last), record.first)
        if at is not None:
            record.query_address = ip_str(at)
            yield record
        elif dumps.unresolved_abuse(record):
            yield record


def to_ask(record: NetworkRecord, n: int, step: int, fill_redacted: bool) -> NetworkRecord | None:
    """The n-th dumped network as it is to be asked again live, None if it is not: one in `step`
    (the freshness sample: asked as a network, whatever its dump names), and with `fill_redacted`
    every one lacking holder, country or abuse e-mail (one naming only its abuse contact's handle
    keeps it, for the contact to be asked once for every network naming it)."""
    if freshness.sampled(n, step):
        return replace(record, raw=None)
    if fill_redacted and freshness.redacted(record):
        if record.registrant and record.country and dumps.unresolved_abuse(record):
            return replace(record)
        return replace(record, raw=None)
    return None


def fill_count(records: Iterable[NetworkRecord], scope: Scope) -> int:
    """The fill's lookups for a dump's records in `scope` (`to_ask` with `fill_redacted`): one per
    distinct abuse contact named without an address (`RegistryClient.contact_emails` asks each once),
    one per other network lacking a field (asked itself)."""
    contacts: set[str] = set()
    networks = 0
    for record in records:
        if not scope.overlaps(record.first, record.last) or (asked := to_ask(record, 1, 0, True)) is None:
            continue
        handle = dumps.unresolved_abuse(asked)
        if handle:
            contacts.add(handle.casefold())
        else:
            networks += 1
    return len(contacts) + networks


async def fill_lookups(files_base: str | None, cache: Path, registries: Iterable[str], scope: Scope
                       ) -> tuple[dict[str, int], list[str]]:
    """`plan --estimate`: the fill's lookups per registry whose dump leaves abuse addresses out
    (`rirs.Rir.dump_redacts_abuse`: LACNIC), counted from its dump, fetched and streamed
    (`fill_count`); and notes for a dump not to be had (its fill then not counted)."""
    wanted = [r for r in registries if rirs.BY_ID[r].dump_redacts_abuse]
    got, notes = await fetch_dumps(files_base, cache, frozenset(wanted), wanted) if wanted else ([], [])
    lookups = {}
    for dump in got:
        _report, records = dump.read(cache)
        lookups[dump.registry] = fill_count(records, scope)
    return lookups, [f"{n} (its fill's lookups not counted)" for n in notes]


@dataclass
class _Asking:
    """One pass of `ask_again`: what it asks through, where answers go, what it counted."""

    client: RegistryClient
    changed: Callable[[NetworkRecord], Awaitable[None]]
    asked: Callable[[LookupResult], Awaitable[None]]
    through: Callable[[int], None] | None
    mark: int  # the lines before it all answered
    counts: Counter[str] = field(default_factory=lambda: Counter(asked=0))
    fields: Counter[str] = field(default_factory=Counter)
    ended: set[int] = field(default_factory=set)  # lines answered past `mark`

    async def network(self, record: NetworkRecord) -> None:
        """The network asked at its `query_address` (`aimed`), else at its first address."""
        at = ip_int(record.query_address) if record.query_address else record.first
        try:
            result = await self.client.lookup(at)
        except LookupFailed:
            self.counts["failed"] += 1
            return
        await self.asked(result)
        kind, differs = freshness.verdict(record, result.record)
        self.counts[kind] += 1
        self.fields.update(differs)
        if differs and result.record is not None:
            await self.changed(result.record)

    async def contact(self, record: NetworkRecord, handle: str) -> None:
        """The network's abuse addresses from its contact's entity; none given: the network asked."""
        emails, cost = await self.client.contact_emails(record.registry, handle)
        await self.asked(cost)
        self.counts["contacts_asked"] += int(cost.lookups > 0)
        if not emails:
            self.counts["contact_unanswered"] += 1
            await self.network(record)
            return
        self.counts.update(("filled", "by_contact"))
        self.fields["abuse_emails"] += 1
        await self.changed(filled_by_contact(record, emails, handle))

    def answered(self, n: int) -> None:
        """Line n answered: the mark moves past every line answered in a row."""
        self.ended.add(n)
        while self.mark in self.ended:
            self.ended.remove(self.mark)
            self.mark += 1
        if self.through:
            self.through(self.mark)


def filled_by_contact(dumped: NetworkRecord, emails: list[str], handle: str) -> NetworkRecord:
    """A dumped network with its abuse addresses from its contact `handle`'s RDAP entity: still the
    dump's record (source, serial, observed_at: every other field is the dump's), its `filled`
    naming the one field the contact's answer gave, and when. The network itself was not asked.
    A refresh tells it from the dump's own record by `filled` (`difference.Previous`)."""
    return replace(dumped, raw=None, query_address=None).with_filled("abuse_emails", emails, "rdap", handle)


async def ask_again(
    recheck: Path,
    client: RegistryClient,
    concurrency: int,
    changed: Callable[[NetworkRecord], Awaitable[None]],
    asked: Callable[[LookupResult], Awaitable[None]],
    start: int = 0,
    through: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Ask each network of `recheck` (JSON lines, `to_ask`) again live, `concurrency` at a time (the
    file streamed: LACNIC's dump leaves every abuse address out): one naming its abuse contact by
    handle only is filled from the contact's entity, asked once per handle (`contact_emails`; a
    contact that gives no address: the network is asked instead); any other at its `query_address`
    (`aimed`), else at its first address. `asked(result)` counts each answer's lookups;
    `changed(live)` gets each record that disagrees with the dump or fills a field it lacks, to be
    written after the dump's (the latest record of a block wins). A resume starts at line `start`;
    `through(n)` hears each time the first n lines are all answered (they finish out of order)."""
    pass_ = _Asking(client, changed, asked, through, start)
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int, record: NetworkRecord) -> None:
        try:
            handle = dumps.unresolved_abuse(record)
            await (pass_.contact(record, handle) if handle else pass_.network(record))
        finally:
            gate.release()
        pass_.answered(n)

    async with asyncio.TaskGroup() as group:
        with recheck.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                if n < start:
                    continue  # answered before the crawl was stopped
                await gate.acquire()  # a bounded number of records in flight: memory stays flat
                pass_.counts["asked"] += 1
                group.create_task(one(n, NetworkRecord.from_own_json(line)))
    return {**pass_.counts, "fields": dict(pass_.fields)}


async def ask_one(
    record: NetworkRecord,
    client: RegistryClient,
    changed: Callable[[NetworkRecord], Awaitable[None]],
    asked: Callable[[LookupResult], Awaitable[None]],
) -> dict[str, Any]:
    """One network of a recheck file asked again live, as `ask_again` asks each (a fleet's worker
    asks a batch of the fill this way: worker/fill.py); what it counted, as `ask_again` counts."""
    pass_ = _Asking(client, changed, asked, None, 0)
    pass_.counts["asked"] += 1
    handle = dumps.unresolved_abuse(record)
    await (pass_.contact(record, handle) if handle else pass_.network(record))
    return {**pass_.counts, "fields": dict(pass_.fields)}
