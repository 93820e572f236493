"""Local mode: a whole crawl in one process with no Kafka or Redis, resumable after an interrupt."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from whoiscrawl.crawl import Crawler, run_shards
from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import Egress, LookupResult, RegistryClient
from whoiscrawl.sources import dumps, freshness, seed, stats
from whoiscrawl.sources.published import (
    RegistryDump,
    StatsPlan,
    fetch_dumps,
    load_stats,
    stale_note,
    went_back,
)
from whoiscrawl.space import Bootstrap, Plan, Scope, crawlable, plan_crawl
from whoiscrawl.store import CheckpointError, MemoryStore, Progress
from whoiscrawl.strategy import Answer

log = logging.getLogger(__name__)

STATS = "stats"  # the checkpoint's `seeded` entry of the statistics used (the others: a dump each)


class LocalCrawlError(RuntimeError):
    """A local crawl cannot start as asked; the text says what to change."""


@dataclass
class FileSink:
    """Results as JSON lines; each line is written through before the crawl moves past it."""

    path: Path
    _file: IO[str] | None = None
    count: int = 0

    async def emit(self, record: NetworkRecord) -> None:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(record.to_json().decode() + "\n")
        self._file.flush()  # in the OS's hands: survives the process being killed
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_results(path: Path) -> list[NetworkRecord]:
    records = []
    if path.exists():
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    records.append(NetworkRecord.from_json(line))
    return records


@dataclass
class LocalCrawl:
    """Everything one `whoiscrawl crawl` needs, with the defaults a user expects."""

    ranges: list[str]
    out: Path
    bootstrap: Bootstrap
    limits: dict[str, Limit]
    excludes: list[str] = field(default_factory=list)
    strategy: str = "sweep"
    resolution: int = 24
    samples: int = 0
    shard_prefix: int | None = None  # automatic
    concurrency: int = 64
    list_children: bool = True  # follow registries' rdap-down links (RFC 9910) where they give one
    egresses: list[Egress] = field(default_factory=lambda: [Egress("local")])
    whois_servers: dict[str, str] = field(default_factory=dict)
    resume: bool = False
    failure_pauses: tuple[float, ...] = Crawler.failure_pauses  # before an address is asked again
    stopping: asyncio.Event = field(default_factory=asyncio.Event)  # set (as Ctrl-C does) to stop
    # What the registries publish, used before anything is asked live (docs/sources.md).
    sources: frozenset[str] = frozenset({"live"})  # stats, dumps, live
    files_base: str | None = None  # a mirror of their download trees (None: the real ones)
    accept_dump_terms: frozenset[str] = frozenset()  # registries whose dump terms the user accepted
    verify: float = 0.0  # share of each registry's dumped networks asked again live (freshness)
    fill_redacted: bool = False  # ask live for each dumped network lacking holder, country or abuse e-mail
    notes: list[str] = field(default_factory=list)  # warnings about the published files

    @property
    def checkpoint(self) -> Path:
        return self.out.with_name(self.out.name + ".checkpoint.json")

    @property
    def published(self) -> Path:
        """Where the published files are downloaded to, beside the results."""
        return self.out.with_name(self.out.name + ".published")

    def note(self, text: str) -> None:
        """A warning about the published files: logged, and kept for the crawl's summary."""
        log.warning("%s", text)
        self.notes.append(text)

    def _open_store(self, plan: Plan) -> tuple[MemoryStore, bool]:
        """The crawl's store (and whether it resumed): the checkpoint and the results so far when
        resuming, and the plan's totals."""
        store = MemoryStore(self.checkpoint)
        try:
            resumed = store.load() if self.resume else False
        except CheckpointError as exc:
            raise LocalCrawlError(str(exc)) from exc
        for record in read_results(self.out) if resumed else []:
            answer = Answer.of(record, self.resolution)
            seeded = store.seeded.get(record.registry) if record.source == "dump" else None
            store.index.add(answer.first, answer.last, answer.terminal or seed.dump_leaf(record, seeded))
        store.counters.shards_total = len(plan.shards)
        store.counters.addresses_total = plan.addresses
        return store, resumed

    async def _plan(self) -> tuple[Plan, StatsPlan | None]:
        """The plan, less the free and reserved space the statistics list (and the statistics)."""
        excludes, published = list(self.excludes), None
        if "stats" in self.sources:
            published = await load_stats(self.files_base, self.published)
            for warning in published.warnings:
                self.note(warning)
            excludes += published.free_ranges()
        plan = plan_crawl(
            crawl="local", ranges=self.ranges, excludes=excludes, strategy=self.strategy,
            resolution=self.resolution, shard_prefix=self.shard_prefix, samples=self.samples,
        )
        return plan, published

    def _asked_scope(self) -> Scope:
        """The space the user asked for (the plan's scope leaves the free space out)."""
        return Scope.of((c.first, c.last) for c in crawlable(self.ranges, self.excludes).iter_cidrs())

    @staticmethod
    async def _free_space(published: StatsPlan, scope: Scope, store: MemoryStore, sink: FileSink) -> None:
        """The free and reserved space of the statistics in the results, once (not on a resume)."""
        for record in published.free_records(scope):
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
        store, resumed = self._open_store(plan)
        if published:
            self._same_statistics(published, store, resumed)
        sink = FileSink(self.out)
        delegated_by = published.index().registry if published and published.delegations else None
        if published and not resumed:
            await self._free_space(published, self._asked_scope(), store, sink)
        client = RegistryClient(
            self.bootstrap, MemoryRateLimiter(self.limits), self.egresses, self.whois_servers,
            delegated_by=delegated_by, delegation_country=stats.configured_country(),
        )
        crawler = Crawler(
            store,
            sink,
            client,
            owner=uuid.uuid4().hex,
            list_children=self.list_children,
            scope=plan.scope,
            stopping=self.stopping,
            failure_pauses=self.failure_pauses,
        )
        started = time.monotonic()
        seeded: dict[str, Any] = {}
        if "dumps" in self.sources and not set(store.seeded) - {STATS}:
            seeded = await Seeding(self, store, sink, plan.scope).run(await self._dumps(), crawler)
        complete = True
        if "live" in self.sources:
            complete = await self._walk(crawler, store, plan, on_progress)
        else:
            sink.close()
            store.save()
            await client.close()
        return {
            "complete": complete,
            "resumed": resumed,
            "out": str(self.out),
            "wall_s": round(time.monotonic() - started, 3),
            "lookups_by_registry": dict(crawler.lookups_by_registry),
            "failures": crawler.failures[:20],
            "sources": sorted(self.sources),
            "dumps": seeded,
            "notes": self.notes[:20],
            **store.counters.__dict__,
        }

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
        got, notes = await fetch_dumps(self.files_base, self.published, self.accept_dump_terms)
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
            complete = await run_shards(crawler, list(plan.shards), self.concurrency)
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

    def __post_init__(self) -> None:
        live = "live" in self.job.sources  # without it nothing is asked, not even a freshness check
        self.verify = self.job.verify if live else 0.0
        self.fill_redacted = self.job.fill_redacted and live
        self.resolution, self.cache, self.note = self.job.resolution, self.job.published, self.job.note

    async def run(self, got: list[RegistryDump], crawler: Crawler) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for dump in got:
            self.cache.mkdir(parents=True, exist_ok=True)
            staged = self.cache / f"{dump.registry}.records.jsonl"
            try:
                report = seed.stage(dump, self.scope, staged)
            except dumps.DumpError as exc:
                self.note(f"{dump.registry} dump not used ({exc}): crawled live")
                continue
            if not report.complete:
                self.note(f"{dump.registry} dump not used: {'; '.join(report.problems)}; crawled live")
                continue
            for skipped in report.skipped_named[:5]:
                self.note(f"{dump.registry} dump: skipped {skipped}")
            recheck = self.cache / f"{dump.registry}.recheck.jsonl"
            how = seed.leaf_rule(dump, report)
            seeded = await self._seed(staged, how, recheck)
            self.store.seeded[dump.registry] = how  # a resume knows its records' leaves by this
            figures[dump.registry] = {
                "serial": dump.serial, "records": report.records, "in_scope": seeded,
                "skipped": report.skipped, "freshness": await self._fresh(recheck, crawler),
            }
        self.store.save()
        return figures

    async def _seed(self, staged: Path, how: dict[str, Any], recheck: Path) -> int:
        """Every staged record out and its block known (`dump_leaf`); those to ask again live
        written to `recheck`."""
        step, n = freshness.every(self.verify), -1
        with staged.open(encoding="utf-8") as fh, recheck.open("w", encoding="utf-8") as again:
            for n, line in enumerate(fh):
                record = NetworkRecord.from_json(line)
                record.crawl = "local"
                terminal = Answer.of(record, self.resolution).terminal or seed.dump_leaf(record, how)
                await self.sink.emit(record)
                self.store.index.add(record.first, record.last, terminal)  # False inside a leaf parent
                self.store.counters.blocks += 1  # a block found all the same
                if seed.to_ask(record, n, step, self.fill_redacted):
                    again.write(line)
        staged.unlink()
        return n + 1

    async def _fresh(self, recheck: Path, crawler: Crawler) -> dict[str, Any]:
        """Ask the networks of `recheck` again live (`seed.ask_again`); what disagrees or fills a
        field is written after the dump's record and known to the walk."""

        async def asked(result: LookupResult) -> None:
            crawler.lookups_by_registry[result.registry] += result.lookups
            self.store.counters.lookups += result.lookups

        async def changed(live: NetworkRecord) -> None:
            live.crawl = "local"
            await self.sink.emit(live)
            self.store.index.add(live.first, live.last, Answer.of(live, self.resolution).terminal)

        counts = await seed.ask_again(recheck, crawler.client, self.job.concurrency, changed, asked)
        recheck.unlink()
        return counts
