"""Local mode: a whole crawl in one process with no Kafka or Redis, resumable after an interrupt."""

from __future__ import annotations

import asyncio
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
from whoiscrawl.registry import Egress, RegistryClient
from whoiscrawl.space import Bootstrap, Plan, plan_crawl
from whoiscrawl.store import CheckpointError, MemoryStore, Progress
from whoiscrawl.strategy import Answer


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

    @property
    def checkpoint(self) -> Path:
        return self.out.with_name(self.out.name + ".checkpoint.json")

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
            store.index.add(answer.first, answer.last, answer.terminal)
        store.counters.shards_total = len(plan.shards)
        store.counters.addresses_total = plan.addresses
        return store, resumed

    async def run(
        self, on_progress: Callable[[Progress, dict[str, int]], None] | None = None
    ) -> dict[str, Any]:
        if self.out.exists() and self.out.stat().st_size and not self.resume:
            raise LocalCrawlError(
                f"{self.out} already holds results: add --resume to continue that "
                "crawl, or choose another --out"
            )
        plan = plan_crawl(
            crawl="local", ranges=self.ranges, excludes=self.excludes, strategy=self.strategy,
            resolution=self.resolution, shard_prefix=self.shard_prefix, samples=self.samples,
        )
        store, resumed = self._open_store(plan)
        sink = FileSink(self.out)
        client = RegistryClient(
            self.bootstrap, MemoryRateLimiter(self.limits), self.egresses, self.whois_servers
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
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, crawler.stopping.set)
        started = time.monotonic()

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
            sink.close()
            store.save()
            await client.close()
        if on_progress:
            on_progress(store.counters, dict(crawler.lookups_by_registry))
        return {
            "complete": complete,
            "resumed": resumed,
            "out": str(self.out),
            "wall_s": round(time.monotonic() - started, 3),
            "lookups_by_registry": dict(crawler.lookups_by_registry),
            "failures": crawler.failures[:20],
            **store.counters.__dict__,
        }
