"""Local mode: a whole crawl in one process with no Kafka or Redis, resumable after an interrupt."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import signal
import time
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np

from whoiscrawl.crawl import Crawler, Member, run_shards
from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.records import DeadLetter, NetworkRecord
from whoiscrawl.registry import Egress, LookupResult, RegistryClient
from whoiscrawl.settings import CrawlSettings
from whoiscrawl.sources import dumps, freshness, manifest, seed, stats
from whoiscrawl.sources.published import (
    RegistryDump,
    StatsPlan,
    fetch_dumps,
    load_stats,
    stale_note,
    went_back,
)
from whoiscrawl.space import Bootstrap, Plan, Scope, crawlable, plan_crawl
from whoiscrawl.store import Progress, resumed_block
from whoiscrawl.store.memory import CheckpointError, MemoryStore
from whoiscrawl.strategy import Answer

log = logging.getLogger(__name__)

STATS = "stats"  # the checkpoint's `seeded` entry of the statistics used (the others: a dump each)
# ... and of what the files wrote: {"free": the free space written, "done": every dump seeded}
SOURCES = "sources"


class LocalCrawlError(RuntimeError):
    """A local crawl cannot start as asked; the text says what to change."""


@dataclass
class FileSink:
    """Results (or dead letters) as JSON lines; each line is written through before the crawl moves
    past it. The file is made at the first line."""

    path: Path
    _file: IO[str] | None = None
    count: int = 0
    # False: lines written a buffer at a time (until `close`), for what a rerun writes again whole
    # (a refresh's part settled by the files): a write per line was a tenth of a refresh's time.
    each: bool = True

    async def emit(self, record: NetworkRecord | DeadLetter) -> None:
        self.write(record.to_json().decode())

    def write(self, line: str) -> None:
        """One record's JSON, already made, as a line."""
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(line + "\n")
        if self.each:
            self._file.flush()  # in the OS's hands: survives the process being killed
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Written:
    """The blocks a resumed crawl's results already hold from the files (free space, dumps): an
    interrupted seeding is done again writing only what the results lack. Kept as a sorted array
    (8 bytes a block), only while the seeding is unfinished."""

    def __init__(self, keys: Iterable[int] = ()) -> None:
        self._keys = array("Q", np.sort(np.fromiter(keys, np.uint64)).tobytes())

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, record: object) -> bool:
        if not isinstance(record, NetworkRecord):
            return False
        key = record.first << 32 | record.last
        at = bisect.bisect_left(self._keys, key)
        return at < len(self._keys) and self._keys[at] == key


def read_results(path: Path) -> Iterator[NetworkRecord]:
    """A results file's records, streamed (a resume of `full` reads 11M of them)."""
    if path.exists():
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield NetworkRecord.from_own_json(line)


@dataclass
class LocalCrawl:
    """Everything one `whoiscrawl crawl` needs, with the defaults a user expects."""

    ranges: list[str]
    out: Path
    bootstrap: Bootstrap
    limits: dict[str, Limit]
    settings: CrawlSettings = field(default_factory=CrawlSettings)  # the crawl's knobs
    egresses: list[Egress] = field(default_factory=lambda: [Egress("local")])
    resume: bool = False
    stopping: asyncio.Event = field(default_factory=asyncio.Event)  # set (as Ctrl-C does) to stop
    # Special-purpose space to plan as delegated though this crawl reads no statistics: a refresh's
    # walk of what changed (the refresh read them: `StatsPlan.special_delegations`)
    delegated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list, init=False)  # warnings about the published files
    # (registry, handle) -> addresses of the contacts this crawl's fill asked before it was stopped
    # (its filled records in the results): a resume does not ask them again
    contacts_known: dict[tuple[str, str], list[str]] = field(default_factory=dict, init=False)

    @property
    def checkpoint(self) -> Path:
        return self.out.with_name(self.out.name + ".checkpoint.json")

    @property
    def dead_letters(self) -> Path:
        """Where answers no parser could read are kept, with their context (made at the first)."""
        return self.out.with_name(self.out.name + ".deadletters.jsonl")

    @property
    def published(self) -> Path:
        """Where the published files are downloaded to, beside the results."""
        return self.out.with_name(self.out.name + ".published")

    def note(self, text: str) -> None:
        """A warning about the published files: logged, and kept for the crawl's summary."""
        log.warning("%s", text)
        self.notes.append(text)

    def _open_store(self, plan: Plan) -> tuple[MemoryStore, bool, Written]:
        """The crawl's store (and whether it resumed): the checkpoint and the results so far when
        resuming (results without a checkpoint too: stopped before its first save), the plan's
        totals, and the blocks the files wrote already if their seeding was cut short."""
        store = MemoryStore(self.checkpoint)
        try:
            resumed = store.load() if self.resume else False
        except CheckpointError as exc:
            raise LocalCrawlError(str(exc)) from exc
        resumed = resumed or (self.resume and self.out.exists())
        pending = resumed and not seeding_done(store.seeded)
        written = array("Q")  # 8 bytes a block: a cut-short seeding of `full` left 11M
        for record in read_results(self.out) if resumed else []:
            seeded = store.seeded.get(record.registry) if record.source == "dump" else None
            answer = resumed_block(record, self.settings.resolution, seed.dump_leaf(record, seeded))
            store.index.add(answer.first, answer.last, answer.terminal)
            if pending and record.source in ("stats", "dump"):
                written.append(record.first << 32 | record.last)
            if (contact := (record.filled or {}).get("abuse_emails", {}).get("entity")) is not None:
                self.contacts_known[record.registry, contact] = record.abuse_emails
        store.counters.shards_total = len(plan.shards)
        store.counters.addresses_total = plan.addresses
        return store, resumed, Written(written)

    async def _plan(self) -> tuple[Plan, StatsPlan | None]:
        """The plan, less the free and reserved space the statistics list, with the special-purpose
        space they list as delegated (and the statistics)."""
        chosen = self.settings
        excludes, published, delegated = list(chosen.excludes), None, list(self.delegated)
        if "stats" in chosen.sources:
            # only the rows the crawl's scope touches (and those in special-purpose space: what the
            # statistics list delegated there is asked): nothing outside it is planned, asked or written
            within = self._asked_scope().overlaps
            published = await load_stats(chosen.files_base, self.published, within=within)
            for warning in published.warnings:
                self.note(warning)
            excludes += published.free_ranges()
            delegated += published.special_delegations()
        plan = plan_crawl(
            crawl="local", ranges=self.ranges, excludes=excludes, strategy=chosen.strategy,
            resolution=chosen.resolution, shard_prefix=chosen.shard_prefix, samples=chosen.samples,
            delegated=delegated,
        )
        return plan, published

    def _asked_scope(self, delegated: Iterable[str] = ()) -> Scope:
        """The space the user asked for (the plan's scope leaves the free space out), with the
        special-purpose space the statistics list delegated in it (`delegated`)."""
        asked = crawlable(self.ranges, list(self.settings.excludes), delegated)
        return Scope.of((c.first, c.last) for c in asked.iter_cidrs())

    def manifest(self, published: StatsPlan, store: MemoryStore) -> manifest.Manifest:
        """What this map was made from (`sources/manifest.py`): its scope, the files' serials, the
        statistics' rows in scope, a delegation they list in special-purpose space included (its
        change is seen on refresh); a refresh compares newer files with it."""
        scope = self._asked_scope(published.special_delegations())
        serials = {r: {"stats": s} for r, s in published.serials.items()}
        for registry, how in store.seeded.items():
            if how.get("serial"):
                serials.setdefault(registry, {})["dump"] = str(how["serial"])
        rows = sorted(manifest.row_of(d) for d in published.delegations if scope.overlaps(d.first, d.last))
        asked = scoped(self.ranges, list(self.settings.excludes))
        return manifest.Manifest(scope=asked, serials=serials, rows=rows,
                                 made=max(published.end_dates.values(), default=""))

    @staticmethod
    async def _free_space(
        published: StatsPlan, scope: Scope, store: MemoryStore, sink: FileSink, written: Written
    ) -> None:
        """The free and reserved space of the statistics in the results, once: a resume writes
        only what the results lack (`written`)."""
        for record in published.free_records(scope):
            if record in written:
                continue
            record.crawl = "local"
            await sink.emit(record)
            if store.index.add(record.first, record.last, True):
                store.counters.blocks += 1

    async def run(
        self, on_progress: Callable[[Progress, dict[str, int]], None] | None = None
    ) -> dict[str, Any]:
        if self.out.exists() and self.out.stat().st_size and not self.resume:
            raise LocalCrawlError(
                f"{self.out} already holds results: add --resume to continue that "
                "crawl, or choose another --out"
            )
        plan, published = await self._plan()
        store, resumed, written = self._open_store(plan)
        if published:
            self._same_statistics(published, store, resumed)
        sink = FileSink(self.out)
        delegated_by = published.router() if published else None
        chosen = self.settings
        letters = FileSink(self.dead_letters)
        client = RegistryClient(
            self.bootstrap, MemoryRateLimiter(self.limits), self.egresses, dict(chosen.whois_servers),
            delegated_by=delegated_by, delegation_country=stats.configured_country(), dead_letters=letters,
            delegation_at=published.holders() if published else None,
            timeout=chosen.lookup_timeout, listing_timeout=chosen.listing_timeout,
        )
        for (registry, contact), emails in self.contacts_known.items():
            client.know_contact(registry, contact, emails)
        crawler = Crawler(
            store, sink, client, Member(uuid.uuid4().hex), chosen, scope=plan.scope, stopping=self.stopping
        )
        started = time.monotonic()
        seeded = await self._files(published, store, written, crawler, plan.scope)
        complete = True
        if "live" in chosen.sources:
            complete = await self._walk(crawler, store, plan, on_progress)
        else:
            sink.close()
            store.save()
            await client.close()
        if complete and published is not None:
            self.manifest(published, store).write(self.out)
        letters.close()
        return {
            "complete": complete,
            "resumed": resumed,
            "out": str(self.out),
            "wall_s": round(time.monotonic() - started, 3),
            "lookups_by_registry": dict(crawler.lookups_by_registry),
            "failures": crawler.failures[:20],
            # answers no parser could read this run, kept in `dead_letters_file` (appended to on a resume)
            "dead_letters": letters.count,
            "dead_letters_file": str(self.dead_letters),
            "sources": sorted(chosen.sources),
            "dumps": seeded,
            "notes": self.notes[:20],
            **store.counters.__dict__,
        }

    async def _files(self, published: StatsPlan | None, store: MemoryStore, written: Written,
                     crawler: Crawler, scope: Scope) -> dict[str, Any]:
        """What the files settle, written once a crawl: the free space, then each dump seeded and
        its networks asked again. Each step is marked in the checkpoint (saved as it ends, and
        when stopped part way: Ctrl-C cancels it here), so a resume does only what is left; what a
        cut-short step wrote is in `written` and is not written again."""
        if seeding_done(store.seeded):
            return {}
        sources = store.seeded.setdefault(SOURCES, {})
        assert isinstance(crawler.sink, FileSink)

        async def saving() -> None:  # a crawl killed meanwhile resumes from the last save
            while True:
                await asyncio.sleep(0.5)
                store.save()

        saver = asyncio.create_task(saving())
        try:
            if published and not sources.get("free"):
                await self._free_space(published, self._asked_scope(), store, crawler.sink, written)
                sources["free"] = True
                store.save()
            seeded: dict[str, Any] = {}
            if "dumps" in self.settings.sources:
                seeding = Seeding(self, store, crawler.sink, scope, written)
                seeded = await seeding.left_over(crawler)
                fresh = [d for d in await self._dumps() if d.registry not in store.seeded]
                seeded |= await seeding.run(fresh, crawler)
            sources["done"] = True
            return seeded
        finally:
            saver.cancel()
            store.save()

    @staticmethod
    def _same_statistics(published: StatsPlan, store: MemoryStore, resumed: bool) -> None:
        """Remember the statistics' serials; on a resume, refuse statistics older than those the
        crawl used (its plan and free space came from them), before anything is written."""
        used = store.seeded.get(STATS, {}).get("serials", {}) if resumed else {}
        for registry, serial in published.serials.items():
            if went_back(used.get(registry), serial):
                raise LocalCrawlError(stale_note(f"{registry} statistics", used[registry], serial))
        store.seeded[STATS] = {"serials": {**used, **published.serials}}

    async def _dumps(self) -> list[RegistryDump]:
        chosen = self.settings
        got, notes = await fetch_dumps(chosen.files_base, self.published, chosen.accept_dump_terms)
        for note in notes:
            self.note(note)
        return got

    async def _walk(
        self, crawler: Crawler, store: MemoryStore, plan: Plan,
        on_progress: Callable[[Progress, dict[str, int]], None] | None,
    ) -> bool:
        """Walk the plan's shards (what no file settled), saving the checkpoint as it goes."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, crawler.stopping.set)

        async def report() -> None:
            while True:
                store.save()
                if on_progress:
                    on_progress(store.counters, dict(crawler.lookups_by_registry))
                await asyncio.sleep(0.5)

        reporter = asyncio.create_task(report())
        try:
            complete = await run_shards(crawler, list(plan.shards), self.settings.concurrency)
        finally:
            reporter.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            assert isinstance(crawler.sink, FileSink)
            crawler.sink.close()
            store.save()
            await crawler.client.close()
        if on_progress:
            on_progress(store.counters, dict(crawler.lookups_by_registry))
        return complete


@dataclass
class Seeding:
    """A local crawl's dumps handed to its store: records written to the results and their blocks
    known, so the walk asks only where no dump answers; then a share of them asked again live."""

    job: LocalCrawl  # its settings: resolution, verify, fill_redacted, concurrency, where files go
    store: MemoryStore
    sink: FileSink
    scope: Scope
    written: Written = field(default_factory=Written)  # what an earlier, cut-short seeding wrote

    # Records seeded between two turns given to the loop: a stop (Ctrl-C cancels the crawl's task)
    # takes effect at the next turn, not after the dump's last record (millions in `full`).
    TURN: ClassVar[int] = 256

    def __post_init__(self) -> None:
        chosen = self.job.settings
        live = "live" in chosen.sources  # without it nothing is asked, not even a freshness check
        self.verify = chosen.verify if live else 0.0
        self.fill_redacted = chosen.fill_redacted and live
        self.resolution, self.cache, self.note = chosen.resolution, self.job.published, self.job.note

    async def run(self, got: list[RegistryDump], crawler: Crawler) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        # each read's digest kept beside the files: a refresh of this map parses only what changed
        stagings = seed.staged_all(got, self.scope, self.cache, digests=True)
        async with contextlib.aclosing(stagings):
            async for dump, staged, report in stagings:
                if (done := await self._one(dump, staged, report, crawler)) is not None:
                    figures[dump.registry] = done
        self.store.save()
        return figures

    async def _one(self, dump: RegistryDump, staged: Path, got: dumps.DumpReport | dumps.DumpError,
                   crawler: Crawler) -> dict[str, Any] | None:
        """One dump staged: seeded and its sample asked again, or a note why not (crawled live)."""
        if (report := seed.usable(dump, got, self.note)) is None:
            return None
        recheck = self.recheck(dump.registry)
        how = seed.leaf_rule(dump, report)
        seeded = await self._seed(staged, how, recheck)
        self.store.seeded[dump.registry] = how  # a resume knows its records' leaves by this
        self.store.save()  # seeded: a resume goes on with its networks asked again (`left_over`)
        return {"serial": dump.serial, "records": report.records, "in_scope": seeded,
                "skipped": report.skipped, "freshness": await self.fresh(recheck, crawler, how)}

    def recheck(self, registry: str) -> Path:
        """The networks of a registry's dump to ask again live, until they all were."""
        return self.cache / f"{registry}.recheck.jsonl"

    async def left_over(self, crawler: Crawler) -> dict[str, Any]:
        """The networks to ask again that a crawl stopped part way left (their dump was seeded):
        asked from the first not answered before (`asked` in the dump's entry)."""
        figures: dict[str, Any] = {}
        for registry, how in list(self.store.seeded.items()):
            if registry not in (STATS, SOURCES) and self.recheck(registry).exists():
                figures[registry] = {"freshness": await self.fresh(self.recheck(registry), crawler, how)}
        return figures

    async def _seed(self, staged: Path, how: dict[str, Any], recheck: Path) -> int:
        """Every staged record out and its block known (`dump_leaf`); those to ask again live
        written to `recheck`."""
        step, n = freshness.every(self.verify), -1
        spans, asked = seed.SpanLog(), seed.SpanLog()
        ask = recheck.with_name(recheck.name + ".unaimed")
        with seed.open_staged(staged) as fh, ask.open("w", encoding="utf-8") as again:
            for n, line in enumerate(fh):
                record = NetworkRecord.from_own_json(line)
                record.crawl = "local"
                if (asking := seed.to_ask(record, n, step, self.fill_redacted)) is not None:
                    again.write(asking.to_json().decode() + "\n")
                    asked.add(record.first, record.last)
                record.raw = None  # what the dump left unresolved is the fill's to ask, not a result
                terminal = Answer.of(record, self.resolution).terminal or seed.dump_leaf(record, how)
                if record not in self.written:  # written before this crawl was stopped part way
                    await self.sink.emit(record)
                    self.store.counters.blocks += 1  # a block found all the same
                self.store.index.add(record.first, record.last, terminal)  # False inside a leaf parent
                spans.add(record.first, record.last)
                if n % self.TURN == self.TURN - 1:
                    await asyncio.sleep(0)  # a stop raises here: the dump is not marked seeded (`_one`)
        own = seed.own_addresses(spans.about(asked))  # each asked where it answers itself, not a child
        with ask.open(encoding="utf-8") as fh, recheck.open("w", encoding="utf-8") as again:
            for k, record in enumerate(seed.aimed(map(NetworkRecord.from_own_json, fh), own)):
                again.write(record.to_json().decode() + "\n")
                if k % self.TURN == self.TURN - 1:
                    await asyncio.sleep(0)
        ask.unlink()
        staged.unlink()
        return n + 1

    async def fresh(
        self, recheck: Path, crawler: Crawler, how: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Ask the networks of `recheck` again live (`seed.ask_again`); what disagrees or fills a
        field is written after the dump's record and known to the walk. `how`: the dump's entry in
        the checkpoint, whose `asked` (the networks before it all answered) a resume starts from;
        the few answered past it when the crawl stopped are asked again."""
        how = how if how is not None else {}

        def through(n: int) -> None:
            how["asked"] = n

        async def asked(result: LookupResult) -> None:
            crawler.lookups_by_registry[result.registry] += result.lookups
            self.store.counters.lookups += result.lookups

        async def changed(live: NetworkRecord) -> None:
            live.crawl = "local"
            await self.sink.emit(live)
            self.store.index.add(live.first, live.last, Answer.of(live, self.resolution).terminal)

        counts = await seed.ask_again(recheck, crawler.client, self.job.settings.concurrency, changed, asked,
                                      start=how.get("asked", 0), through=through)
        recheck.unlink()
        return counts


def seeding_done(seeded: dict[str, Any]) -> bool:
    """Did the files' seeding end (`SOURCES`)? A checkpoint older than the mark ended it once it
    names a dump seeded (it saved nothing before)."""
    if SOURCES in seeded:
        return bool(seeded[SOURCES].get("done"))
    return bool(set(seeded) - {STATS})


def scoped(ranges: list[str], excludes: list[str], delegated: Iterable[str] = ()) -> list[str]:
    """The crawlable space of ranges less excludes (with the special-purpose space the statistics
    list delegated in them, `delegated`), as CIDRs: two maps of one space say the same."""
    return [str(c) for c in crawlable(ranges, excludes, delegated).iter_cidrs()]
